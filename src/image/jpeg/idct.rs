//! The inverse DCT: libjpeg-turbo's `jpeg_idct_islow` (`jidctint.c`), the accurate integer
//! IDCT libjpeg uses by default, with its constants, rounding and range limiting.
//!
//! Not for: dequantization tables (read in `markers.rs`) or where the samples go.

/// Fixed-point precision of the constants and of the first pass.
const CONST_BITS: u32 = 13;
const PASS1_BITS: u32 = 2;
const FIX_0_298631336: i64 = 2446;
const FIX_0_390180644: i64 = 3196;
const FIX_0_541196100: i64 = 4433;
const FIX_0_765366865: i64 = 6270;
const FIX_0_899976223: i64 = 7373;
const FIX_1_175875602: i64 = 9633;
const FIX_1_501321110: i64 = 12299;
const FIX_1_847759065: i64 = 15137;
const FIX_1_961570560: i64 = 16069;
const FIX_2_053119869: i64 = 16819;
const FIX_2_562915447: i64 = 20995;
const FIX_3_072711026: i64 = 25172;

#[inline]
fn descale(x: i64, n: u32) -> i64 {
    (x + (1 << (n - 1))) >> n
}

/// libjpeg's post-IDCT range limit: `range_limit[x & 1023]`.
#[inline]
fn range_limit(x: i64) -> u8 {
    let v = (x as i32 & 1023) as usize;
    match v {
        0..=127 => (v + 128) as u8,
        128..=511 => 255,
        512..=895 => 0,
        _ => (v - 896) as u8,
    }
}

/// The odd part shared by both passes of `jpeg_idct_islow`.
#[inline(always)]
fn odd_part(t0: i64, t1: i64, t2: i64, t3: i64) -> (i64, i64, i64, i64) {
    let z4 = t1 + t3;
    let z3 = t0 + t2;
    let z2 = t1 + t2;
    let z1 = t0 + t3;
    let z5 = (z3 + z4) * FIX_1_175875602;
    let t3 = t3 * FIX_1_501321110;
    let t2 = t2 * FIX_3_072711026;
    let t1 = t1 * FIX_2_053119869;
    let t0 = t0 * FIX_0_298631336;
    let z4 = z4 * -FIX_0_390180644 + z5;
    let z3 = z3 * -FIX_1_961570560 + z5;
    let z1 = z1 * -FIX_0_899976223;
    let z2 = z2 * -FIX_2_562915447;
    (t0 + z1 + z3, t1 + z2 + z4, t2 + z2 + z3, t3 + z1 + z4)
}

/// `jpeg_idct_islow` (libjpeg-turbo `jidctint.c`): dequantize, 8×8 integer IDCT, range limit.
/// 64-bit intermediates like C's `JLONG`; the all-zero-AC shortcuts give the same numbers as
/// the full computation.
pub(super) fn idct_islow(coef: &[i16], quant: &[u16; 64], out: &mut [u8], stride: usize) {
    let Ok(coef) = <&[i16; 64]>::try_from(coef) else {
        return;
    };
    let mut ws = [0i64; 64];
    for col in 0..8 {
        let mut dq = [0i64; 8];
        for (r, d) in dq.iter_mut().enumerate() {
            *d = i64::from(coef[r * 8 + col]) * i64::from(quant[r * 8 + col]);
        }
        if dq[1..].iter().all(|&x| x == 0) {
            let dc = i64::from((dq[0] << PASS1_BITS) as i32);
            for r in 0..8 {
                ws[r * 8 + col] = dc;
            }
            continue;
        }
        let z1 = (dq[2] + dq[6]) * FIX_0_541196100;
        let tmp2 = z1 + dq[6] * -FIX_1_847759065;
        let tmp3 = z1 + dq[2] * FIX_0_765366865;
        let tmp0 = (dq[0] + dq[4]) << CONST_BITS;
        let tmp1 = (dq[0] - dq[4]) << CONST_BITS;
        let (tmp10, tmp13, tmp11, tmp12) = (tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2);
        let (t0, t1, t2, t3) = odd_part(dq[7], dq[5], dq[3], dq[1]);
        let n = CONST_BITS - PASS1_BITS;
        // The workspace is C `int`.
        let d = |x: i64| i64::from(descale(x, n) as i32);
        ws[col] = d(tmp10 + t3);
        ws[8 + col] = d(tmp11 + t2);
        ws[16 + col] = d(tmp12 + t1);
        ws[24 + col] = d(tmp13 + t0);
        ws[32 + col] = d(tmp13 - t0);
        ws[40 + col] = d(tmp12 - t1);
        ws[48 + col] = d(tmp11 - t2);
        ws[56 + col] = d(tmp10 - t3);
    }
    let n = CONST_BITS + PASS1_BITS + 3;
    for (row, w) in ws.chunks_exact(8).enumerate() {
        let Some(o) = out.get_mut(row * stride..row * stride + 8) else {
            return;
        };
        if w[1..].iter().all(|&x| x == 0) {
            o.fill(range_limit(descale(w[0], PASS1_BITS + 3)));
            continue;
        }
        let z1 = (w[2] + w[6]) * FIX_0_541196100;
        let tmp0 = (w[0] + w[4]) << CONST_BITS;
        let tmp3 = z1 + w[2] * FIX_0_765366865;
        let tmp1 = (w[0] - w[4]) << CONST_BITS;
        let tmp2 = z1 + w[6] * -FIX_1_847759065;
        let (tmp10, tmp13, tmp11, tmp12) = (tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2);
        let (t0, t1, t2, t3) = odd_part(w[7], w[5], w[3], w[1]);
        o[0] = range_limit(descale(tmp10 + t3, n));
        o[7] = range_limit(descale(tmp10 - t3, n));
        o[1] = range_limit(descale(tmp11 + t2, n));
        o[6] = range_limit(descale(tmp11 - t2, n));
        o[2] = range_limit(descale(tmp12 + t1, n));
        o[5] = range_limit(descale(tmp12 - t1, n));
        o[3] = range_limit(descale(tmp13 + t0, n));
        o[4] = range_limit(descale(tmp13 - t0, n));
    }
}
