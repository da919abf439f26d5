//! CIELab to RGB exactly as the reference pipeline does it. Pillow reads a CIELab TIFF as mode
//! `LAB` (a* and b* turned from signed to offset bytes); transformers' `convert_to_rgb` then
//! calls `convert("RGBA")`, which Pillow does through LittleCMS: a transform from its built-in
//! Lab profile (`cmsCreateLab2Profile`, D50) to its built-in sRGB profile, perceptual intent, 8
//! bits in and out. LittleCMS optimises that transform into a 33×33×33 table of 16-bit RGB,
//! sampled from the floating-point pipeline Lab → XYZ (D50) → sRGB matrix → inverse sRGB curve,
//! and evaluates it per pixel by tetrahedral interpolation.
//!
//! This is a port of exactly those steps of LittleCMS 2.19 (the version in Pillow's wheels):
//! the table is computed the same way (the same float32 rounding between stages, the same
//! `pow`, the same fast-floor saturation), then interpolated the same way, so the bytes match;
//! a test checks the table against a digest of the one LittleCMS builds. Why a port and not a
//! crate: no colour-management crate reproduces LittleCMS's optimised 8-bit path to the bit,
//! and the `lcms2` bindings would bring a C library for one fixed transform.
//!
//! Not for: any other profile, intent or bit depth (CIELab TIFFs Pillow reads are 8-bit).

use std::sync::OnceLock;

/// Grid points per axis of LittleCMS's table for a 3-channel input.
const GRID: usize = 33;

/// The 33³ × 3 table, indexed `((L·33 + a)·33 + b)·3`.
fn table() -> &'static [u16] {
    static TABLE: OnceLock<Vec<u16>> = OnceLock::new();
    TABLE.get_or_init(build_table)
}

/// LittleCMS's `_cmsQuickSaturateWord`: round half up through its 16.16 fast floor.
fn quick_saturate_word(d: f64) -> u16 {
    let d = d + 0.5;
    if d <= 0.0 {
        return 0;
    }
    if d >= 65535.0 {
        return 0xFFFF;
    }
    // _cmsQuickFloor(d - 32767) + 32767: adding 1.5·2³⁶ leaves the value in 16.16 fixed point
    // in the low 32 bits of the double.
    let bits = (d - 32767.0 + 68_719_476_736.0 * 1.5).to_bits() as u32 as i32;
    ((bits >> 16) + 32767) as u16
}

/// CIE L*a*b* to XYZ's inverse companding (`f_1` in LittleCMS).
fn f_1(t: f64) -> f64 {
    if t <= 24.0 / 116.0 {
        (108.0 / 841.0) * (t - (16.0 / 116.0))
    } else {
        t * t * t
    }
}

/// The inverse of sRGB's XYZ-to-RGB matrix as LittleCMS builds it from the sRGB primaries
/// adapted to D50, scaled for its XYZ encoding (row-major; digits as it computes them).
const XYZ_TO_RGB: [f64; 9] = [
    6.268277080696412,
    -3.2343685646958003,
    -0.9813731532183343,
    -1.9574671393474465,
    3.832201717897245,
    0.06686577801362019,
    0.14392565943970465,
    -0.457980758567983,
    2.8114645655935195,
];

/// The inverse of sRGB's parametric curve (LittleCMS type −4) with sRGB's parameters.
fn inverse_srgb_curve(r: f64) -> f64 {
    const G: f64 = 2.4;
    const A: f64 = 1.0 / 1.055;
    const B: f64 = 0.055 / 1.055;
    const C: f64 = 1.0 / 12.92;
    const D: f64 = 0.04045;
    let e = A * D + B;
    let disc = if e < 0.0 { 0.0 } else { e.powf(G) };
    if r >= disc {
        (r.powf(1.0 / G) - B) / A
    } else {
        r / C
    }
}

/// One table entry: the float pipeline at 16-bit Lab input `lab`, back to 16 bits.
fn sample(lab: [u16; 3]) -> [u16; 3] {
    // Stages pass float32 values, computing inside each in double.
    let input = lab.map(|v| (f64::from(v) / 65535.0) as f32);
    let l = f64::from(input[0]) * 100.0;
    let a = f64::from(input[1]) * 255.0 - 128.0;
    let b = f64::from(input[2]) * 255.0 - 128.0;
    let y = (l + 16.0) / 116.0;
    let x = y + 0.002 * a;
    let z = y - 0.005 * b;
    const D50: [f64; 3] = [0.9642, 1.0, 0.8249];
    const MAX_ENCODEABLE_XYZ: f64 = 1.0 + 32767.0 / 32768.0;
    let xyz = [
        (f_1(x) * D50[0] / MAX_ENCODEABLE_XYZ) as f32,
        (f_1(y) * D50[1] / MAX_ENCODEABLE_XYZ) as f32,
        (f_1(z) * D50[2] / MAX_ENCODEABLE_XYZ) as f32,
    ];
    let mut out = [0u16; 3];
    for (c, o) in out.iter_mut().enumerate() {
        let mut t = 0.0f64;
        for (j, &v) in xyz.iter().enumerate() {
            t += f64::from(v) * XYZ_TO_RGB[c * 3 + j];
        }
        let linear = t as f32;
        let encoded = inverse_srgb_curve(f64::from(linear)) as f32;
        *o = quick_saturate_word(f64::from(encoded) * 65535.0);
    }
    out
}

fn build_table() -> Vec<u16> {
    let node = |i: usize| quick_saturate_word(i as f64 * 65535.0 / (GRID - 1) as f64);
    let mut table = Vec::with_capacity(GRID * GRID * GRID * 3);
    for l in 0..GRID {
        for a in 0..GRID {
            for b in 0..GRID {
                table.extend_from_slice(&sample([node(l), node(a), node(b)]));
            }
        }
    }
    table
}

/// LittleCMS's `_cmsToFixedDomain`.
fn to_fixed_domain(a: i32) -> i32 {
    a + (a + 0x7FFF) / 0xFFFF
}

/// LittleCMS's `TetrahedralInterp16` over the table.
fn interpolate(input: [u16; 3]) -> [u16; 3] {
    let t = table();
    let opta = [3usize, 3 * GRID, 3 * GRID * GRID];
    let fixed = input.map(|v| to_fixed_domain(i32::from(v) * (GRID as i32 - 1)));
    let (r, base) = (fixed.map(|f| f & 0xFFFF), fixed.map(|f| (f >> 16) as usize));
    // Neighbour offsets along each axis; none past the last node.
    let step = |axis: usize, input_axis: usize| {
        if input[input_axis] == 0xFFFF {
            0
        } else {
            opta[axis]
        }
    };
    let (x1, y1, z1) = (step(2, 0), step(1, 1), step(0, 2));
    let (rx, ry, rz) = (r[0], r[1], r[2]);
    let at = base[0] * opta[2] + base[1] * opta[1] + base[2] * opta[0];
    // The three corners after the origin, as offsets, and which weight goes with which
    // difference: LittleCMS's six cases.
    let (c1, c2, c3) = if rx >= ry {
        if ry >= rz {
            (x1, x1 + y1, x1 + y1 + z1)
        } else if rz >= rx {
            (x1 + z1, x1 + y1 + z1, z1)
        } else {
            (x1, x1 + y1 + z1, x1 + z1)
        }
    } else if rx >= rz {
        (x1 + y1, y1, x1 + y1 + z1)
    } else if ry >= rz {
        (x1 + y1 + z1, y1, y1 + z1)
    } else {
        (x1 + y1 + z1, y1 + z1, z1)
    };
    let mut out = [0u16; 3];
    for (ch, o) in out.iter_mut().enumerate() {
        let v = |off: usize| i32::from(t[at + off + ch]);
        let (p0, p1, p2, p3) = (v(0), v(c1), v(c2), v(c3));
        // Differences along the path origin → … → far corner, weighted by rx, ry, rz.
        let (dx, dy, dz) = if rx >= ry {
            if ry >= rz {
                (p1 - p0, p2 - p1, p3 - p2)
            } else if rz >= rx {
                (p1 - p3, p2 - p1, p3 - p0)
            } else {
                (p1 - p0, p2 - p3, p3 - p1)
            }
        } else if rx >= rz {
            (p1 - p2, p2 - p0, p3 - p1)
        } else if ry >= rz {
            (p1 - p3, p2 - p0, p3 - p2)
        } else {
            (p1 - p2, p2 - p3, p3 - p0)
        };
        let rest = dx
            .wrapping_mul(rx)
            .wrapping_add(dy.wrapping_mul(ry))
            .wrapping_add(dz.wrapping_mul(rz))
            .wrapping_add(0x8001);
        *o = (p0 + ((rest + (rest >> 16)) >> 16)) as u16;
    }
    out
}

/// LittleCMS's `FROM_16_TO_8`.
fn to_8(v: u16) -> u8 {
    ((u32::from(v) * 65281 + 8_388_608) >> 24) as u8
}

/// One CIELab pixel as the TIFF stores it (L* 0..255, a* and b* signed) to RGB.
pub(super) fn to_rgb(l: u8, a: u8, b: u8) -> [u8; 3] {
    // Pillow's LAB mode holds a* and b* offset by 128; LittleCMS widens bytes as v·257.
    let wide = [l, a ^ 0x80, b ^ 0x80].map(|v| u16::from(v) * 257);
    interpolate(wide).map(to_8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FNV-1a over the table's little-endian bytes.
    fn digest(t: &[u16]) -> u64 {
        t.iter()
            .flat_map(|v| v.to_le_bytes())
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            })
    }

    #[test]
    fn table_is_the_one_littlecms_builds() {
        // Digest of the table LittleCMS 2.19 built for Pillow's LAB → RGBA transform (read
        // out of the library; any change to the port's arithmetic changes it).
        assert_eq!(table().len(), 33 * 33 * 33 * 3);
        assert_eq!(digest(table()), LITTLECMS_TABLE_DIGEST);
    }

    #[test]
    fn pixels_match_pillow() {
        // Pillow 13 (LittleCMS 2.19): LAB bytes (31, 174, 65) → RGB (36, 0, 124); these are
        // TIFF bytes, so a* and b* carry the sign bit flipped relative to Pillow's.
        assert_eq!(to_rgb(31, 174 ^ 0x80, 65 ^ 0x80), [36, 0, 124]);
        assert_eq!(to_rgb(0, 0, 0), [1, 0, 1]);
        assert_eq!(to_rgb(255, 0, 0), [254, 255, 254]);
        assert_eq!(to_rgb(100, 20 ^ 0x80, 200 ^ 0x80), [0, 121, 0]);
    }

    const LITTLECMS_TABLE_DIGEST: u64 = 0x47d6_9328_fb36_e87b;
}
