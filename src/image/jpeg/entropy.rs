//! Entropy decoding: the bit reader over entropy-coded data (byte stuffing, markers, restart
//! intervals) and the Huffman decoding of one block for each kind of scan, as libjpeg's
//! `jdhuff.c` (sequential) and `jdphuff.c` (progressive) do it.
//!
//! Not for: which blocks a scan covers, or where their coefficients go (`scan.rs`).

use super::markers::{Huffman, FAST_BITS};
use super::{Result, NATURAL_ORDER};

/// Entropy-coded data reader. Past a marker or the end of the data it supplies zero bits, as
/// libjpeg does, but remembers if any were consumed (then the data was truncated or corrupt).
pub(super) struct Bits<'a> {
    data: &'a [u8],
    pub(super) pos: usize,
    acc: u64,
    n: u32,
    pad: u32,
    at_marker: bool,
    pub(super) overrun: bool,
    /// The data ended (not at a marker) while bits were wanted: the file is truncated.
    pub(super) eof: bool,
}

impl<'a> Bits<'a> {
    pub(super) fn new(data: &'a [u8], pos: usize) -> Self {
        Self {
            data,
            pos,
            acc: 0,
            n: 0,
            pad: 0,
            at_marker: false,
            overrun: false,
            eof: false,
        }
    }

    fn fill(&mut self) {
        while self.n <= 56 {
            let byte = if self.at_marker || self.pos >= self.data.len() {
                self.eof |= self.pos >= self.data.len();
                self.at_marker = true;
                self.pad += 8;
                0
            } else {
                let b = self.data[self.pos];
                if b == 0xFF {
                    if self.data.get(self.pos + 1) == Some(&0) {
                        self.pos += 2;
                        0xFF
                    } else {
                        // A lone 0xFF at the very end is a cut, not a marker.
                        self.eof |= self.pos + 1 >= self.data.len();
                        self.at_marker = true;
                        self.pad += 8;
                        0
                    }
                } else {
                    self.pos += 1;
                    b
                }
            };
            self.acc |= u64::from(byte) << (56 - self.n);
            self.n += 8;
        }
    }

    #[inline]
    fn consume(&mut self, k: u32) {
        self.acc <<= k;
        self.n -= k;
        if self.n < self.pad {
            self.overrun = true;
            self.pad = self.n;
        }
    }

    #[inline]
    pub(super) fn bits(&mut self, k: u32) -> u32 {
        if k == 0 {
            return 0;
        }
        if self.n < k {
            self.fill();
        }
        let v = (self.acc >> (64 - k)) as u32;
        self.consume(k);
        v
    }

    #[inline]
    pub(super) fn bit(&mut self) -> bool {
        self.bits(1) != 0
    }

    /// `HUFF_EXTEND(bits(s), s)`.
    #[inline]
    pub(super) fn receive_extend(&mut self, s: u32) -> i32 {
        if s == 0 {
            return 0;
        }
        let v = self.bits(s) as i32;
        if v < 1 << (s - 1) {
            v - (1 << s) + 1
        } else {
            v
        }
    }

    #[inline]
    pub(super) fn decode(&mut self, h: &Huffman) -> Result<u8> {
        if self.n < 16 {
            self.fill();
        }
        let f = h.fast[(self.acc >> (64 - FAST_BITS)) as usize];
        if f != 0 {
            self.consume(u32::from(f >> 8));
            return Ok(f as u8);
        }
        for l in FAST_BITS + 1..=16 {
            let code = (self.acc >> (64 - l)) as i32;
            if code <= h.maxcode[l as usize] {
                self.consume(l);
                let i = code + h.valoffset[l as usize];
                return h
                    .values
                    .get(i as usize)
                    .copied()
                    .ok_or_else(|| "bad Huffman code".to_string());
            }
        }
        Err("bad Huffman code".into())
    }

    /// Drops buffered bits and reads an RSTn marker.
    pub(super) fn restart(&mut self) -> Result<()> {
        self.acc = 0;
        self.n = 0;
        self.pad = 0;
        self.at_marker = false;
        while self.data.get(self.pos) == Some(&0xFF) && self.data.get(self.pos + 1) == Some(&0xFF) {
            self.pos += 1;
        }
        match (self.data.get(self.pos), self.data.get(self.pos + 1)) {
            (Some(0xFF), Some(0xD0..=0xD7)) => {
                self.pos += 2;
                Ok(())
            }
            _ => {
                self.eof |= self.pos + 1 >= self.data.len();
                Err("missing restart marker".into())
            }
        }
    }
}

/// libjpeg's `decode_mcu` (sequential): one whole block, DC prediction included.
pub(super) fn decode_sequential(
    bits: &mut Bits,
    dc: &Huffman,
    ac: &Huffman,
    pred: &mut i32,
    block: &mut [i16],
) -> Result<()> {
    let s = u32::from(bits.decode(dc)?);
    if s > 15 {
        return Err("bad DC coefficient".into());
    }
    *pred = pred.wrapping_add(bits.receive_extend(s));
    block[0] = *pred as i16;
    decode_ac_coefs(bits, ac, block, 1, 63, 0)?;
    Ok(())
}

/// Run-length/size coded AC coefficients into `block`, zigzag indices `k..=last`, each shifted
/// left by `al`. Returns the run-length bits `r` of the end-of-band code that stopped it, if one
/// did (a sequential scan ends the block on any of them, a progressive one starts an EOB run).
#[inline]
fn decode_ac_coefs(
    bits: &mut Bits,
    ac: &Huffman,
    block: &mut [i16],
    mut k: usize,
    last: usize,
    al: u32,
) -> Result<Option<u32>> {
    while k <= last {
        let rs = bits.decode(ac)?;
        let (r, s) = (u32::from(rs >> 4), u32::from(rs & 15));
        if s != 0 {
            k += r as usize;
            block[NATURAL_ORDER[k]] = (bits.receive_extend(s) << al) as i16;
        } else if r == 15 {
            k += 15;
        } else {
            return Ok(Some(r));
        }
        k += 1;
    }
    Ok(None)
}

/// The coefficients a progressive AC scan covers (`Ss..=Se`, in zigzag order) and its
/// successive-approximation bit position `Al`.
#[derive(Clone, Copy)]
pub(super) struct Band {
    pub(super) ss: usize,
    pub(super) se: usize,
    pub(super) al: u32,
}

/// The length of an end-of-band run coded with `r` extra bits (`EOBr`).
fn eob_run(bits: &mut Bits, r: u32) -> u32 {
    let mut run = 1 << r;
    if r != 0 {
        run += bits.bits(r);
    }
    run
}

/// libjpeg's `decode_mcu_AC_first`: the first pass over a band of AC coefficients.
pub(super) fn decode_ac_first(
    bits: &mut Bits,
    ac: &Huffman,
    eobrun: &mut u32,
    block: &mut [i16],
    band: Band,
) -> Result<()> {
    let Band { ss, se, al } = band;
    if *eobrun > 0 {
        *eobrun -= 1;
        return Ok(());
    }
    if let Some(r) = decode_ac_coefs(bits, ac, block, ss, se, al)? {
        *eobrun = eob_run(bits, r) - 1;
    }
    Ok(())
}

/// libjpeg's `decode_mcu_AC_refine`.
pub(super) fn decode_ac_refine(
    bits: &mut Bits,
    ac: &Huffman,
    eobrun: &mut u32,
    block: &mut [i16],
    band: Band,
) -> Result<()> {
    let Band { ss, se, al } = band;
    let p1: i16 = (1i32 << al) as i16;
    let m1: i16 = (-1i32 << al) as i16;
    let mut k = ss;
    let refine = |bits: &mut Bits, coef: &mut i16| {
        if bits.bit() && (*coef & p1) == 0 {
            *coef = if *coef >= 0 {
                coef.wrapping_add(p1)
            } else {
                coef.wrapping_add(m1)
            };
        }
    };
    if *eobrun == 0 {
        while k <= se {
            let rs = bits.decode(ac)?;
            let (mut r, s) = (i32::from(rs >> 4), u32::from(rs & 15));
            let mut value: i16 = 0;
            if s != 0 {
                if s != 1 {
                    return Err("bad refinement coefficient".into());
                }
                value = if bits.bit() { p1 } else { m1 };
            } else if r != 15 {
                *eobrun = eob_run(bits, r as u32);
                break;
            }
            while k <= se {
                let coef = &mut block[NATURAL_ORDER[k]];
                if *coef != 0 {
                    refine(bits, coef);
                } else {
                    r -= 1;
                    if r < 0 {
                        break;
                    }
                }
                k += 1;
            }
            if value != 0 {
                if k > se {
                    return Err("bad refinement run".into());
                }
                block[NATURAL_ORDER[k]] = value;
            }
            k += 1;
        }
    }
    if *eobrun > 0 {
        while k <= se {
            let coef = &mut block[NATURAL_ORDER[k]];
            if *coef != 0 {
                refine(bits, coef);
            }
            k += 1;
        }
        *eobrun -= 1;
    }
    Ok(())
}
