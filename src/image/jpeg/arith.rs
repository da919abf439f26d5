//! Arithmetic-coded JPEG (SOF9/SOF10, `cjpeg -arithmetic`): the QM-coder and the per-block
//! decoding of each kind of scan, ported from libjpeg-turbo's `jdarith.c` (same statistics
//! bins, same conditioning, same handling of markers inside the data), so coefficients are
//! exactly libjpeg's.
//!
//! Not for: which blocks a scan covers or where they go (`scan.rs`), or the DAC segment's
//! parsing (`markers.rs` stores [`Conditioning`]).

use super::{Result, ScanKind, NATURAL_ORDER};

/// Arithmetic conditioning tables (DAC marker): `L` and `U` per DC table, `K` per AC table.
#[derive(Clone, Copy)]
pub(super) struct Conditioning {
    pub(super) dc_l: [u8; 16],
    pub(super) dc_u: [u8; 16],
    pub(super) ac_k: [u8; 16],
}

impl Default for Conditioning {
    fn default() -> Self {
        Self {
            dc_l: [0; 16],
            dc_u: [1; 16],
            ac_k: [5; 16],
        }
    }
}

/// `jpeg_aritab`: Qe value, next index after LPS, next index after MPS, switch MPS.
const ARITAB: [(u16, u8, u8, u8); 114] = [
    (0x5a1d, 1, 1, 1),
    (0x2586, 14, 2, 0),
    (0x1114, 16, 3, 0),
    (0x080b, 18, 4, 0),
    (0x03d8, 20, 5, 0),
    (0x01da, 23, 6, 0),
    (0x00e5, 25, 7, 0),
    (0x006f, 28, 8, 0),
    (0x0036, 30, 9, 0),
    (0x001a, 33, 10, 0),
    (0x000d, 35, 11, 0),
    (0x0006, 9, 12, 0),
    (0x0003, 10, 13, 0),
    (0x0001, 12, 13, 0),
    (0x5a7f, 15, 15, 1),
    (0x3f25, 36, 16, 0),
    (0x2cf2, 38, 17, 0),
    (0x207c, 39, 18, 0),
    (0x17b9, 40, 19, 0),
    (0x1182, 42, 20, 0),
    (0x0cef, 43, 21, 0),
    (0x09a1, 45, 22, 0),
    (0x072f, 46, 23, 0),
    (0x055c, 48, 24, 0),
    (0x0406, 49, 25, 0),
    (0x0303, 51, 26, 0),
    (0x0240, 52, 27, 0),
    (0x01b1, 54, 28, 0),
    (0x0144, 56, 29, 0),
    (0x00f5, 57, 30, 0),
    (0x00b7, 59, 31, 0),
    (0x008a, 60, 32, 0),
    (0x0068, 62, 33, 0),
    (0x004e, 63, 34, 0),
    (0x003b, 32, 35, 0),
    (0x002c, 33, 9, 0),
    (0x5ae1, 37, 37, 1),
    (0x484c, 64, 38, 0),
    (0x3a0d, 65, 39, 0),
    (0x2ef1, 67, 40, 0),
    (0x261f, 68, 41, 0),
    (0x1f33, 69, 42, 0),
    (0x19a8, 70, 43, 0),
    (0x1518, 72, 44, 0),
    (0x1177, 73, 45, 0),
    (0x0e74, 74, 46, 0),
    (0x0bfb, 75, 47, 0),
    (0x09f8, 77, 48, 0),
    (0x0861, 78, 49, 0),
    (0x0706, 79, 50, 0),
    (0x05cd, 48, 51, 0),
    (0x04de, 50, 52, 0),
    (0x040f, 50, 53, 0),
    (0x0363, 51, 54, 0),
    (0x02d4, 52, 55, 0),
    (0x025c, 53, 56, 0),
    (0x01f8, 54, 57, 0),
    (0x01a4, 55, 58, 0),
    (0x0160, 56, 59, 0),
    (0x0125, 57, 60, 0),
    (0x00f6, 58, 61, 0),
    (0x00cb, 59, 62, 0),
    (0x00ab, 61, 63, 0),
    (0x008f, 61, 32, 0),
    (0x5b12, 65, 65, 1),
    (0x4d04, 80, 66, 0),
    (0x412c, 81, 67, 0),
    (0x37d8, 82, 68, 0),
    (0x2fe8, 83, 69, 0),
    (0x293c, 84, 70, 0),
    (0x2379, 86, 71, 0),
    (0x1edf, 87, 72, 0),
    (0x1aa9, 87, 73, 0),
    (0x174e, 72, 74, 0),
    (0x1424, 72, 75, 0),
    (0x119c, 74, 76, 0),
    (0x0f6b, 74, 77, 0),
    (0x0d51, 75, 78, 0),
    (0x0bb6, 77, 79, 0),
    (0x0a40, 77, 48, 0),
    (0x5832, 80, 81, 1),
    (0x4d1c, 88, 82, 0),
    (0x438e, 89, 83, 0),
    (0x3bdd, 90, 84, 0),
    (0x34ee, 91, 85, 0),
    (0x2eae, 92, 86, 0),
    (0x299a, 93, 87, 0),
    (0x2516, 86, 71, 0),
    (0x5570, 88, 89, 1),
    (0x4ca9, 95, 90, 0),
    (0x44d9, 96, 91, 0),
    (0x3e22, 97, 92, 0),
    (0x3824, 99, 93, 0),
    (0x32b4, 99, 94, 0),
    (0x2e17, 93, 86, 0),
    (0x56a8, 95, 96, 1),
    (0x4f46, 101, 97, 0),
    (0x47e5, 102, 98, 0),
    (0x41cf, 103, 99, 0),
    (0x3c3d, 104, 100, 0),
    (0x375e, 99, 93, 0),
    (0x5231, 105, 102, 0),
    (0x4c0f, 106, 103, 0),
    (0x4639, 107, 104, 0),
    (0x415e, 103, 99, 0),
    (0x5627, 105, 106, 1),
    (0x50e7, 108, 107, 0),
    (0x4b85, 109, 103, 0),
    (0x5597, 110, 109, 0),
    (0x504f, 111, 107, 0),
    (0x5a10, 110, 111, 1),
    (0x5522, 112, 109, 0),
    (0x59eb, 112, 111, 1),
    (0x5a1d, 113, 113, 0),
];

/// Which statistics bin: DC or AC table `t`, offset `i`, or the fixed 0.5 estimate.
#[derive(Clone, Copy)]
enum Bin {
    Dc(usize, usize),
    Ac(usize, usize),
    Fixed,
}

/// The QM-decoder over one scan's data and its adaptive statistics.
pub(super) struct Arith<'a> {
    data: &'a [u8],
    /// Position in `data`; left on the `0xFF` of a marker once one is met.
    pub(super) pos: usize,
    c: i64,
    a: i64,
    ct: i32,
    at_marker: bool,
    /// The data ended (not at a marker) while bits were still needed: the file is truncated.
    pub(super) hit_end: bool,
    dc_stats: [[u8; 64]; 16],
    ac_stats: [[u8; 256]; 16],
    fixed: u8,
    dc_context: [usize; 4],
    last_dc: [i32; 4],
    /// A corrupt code was met: the rest of the scan decodes as nothing (libjpeg's `ct = -1`).
    broken: bool,
    cond: Conditioning,
}

impl<'a> Arith<'a> {
    pub(super) fn new(data: &'a [u8], pos: usize, cond: Conditioning) -> Self {
        Self {
            data,
            pos,
            c: 0,
            a: 0,
            ct: -16,
            at_marker: false,
            hit_end: false,
            dc_stats: [[0; 64]; 16],
            ac_stats: [[0; 256]; 16],
            fixed: 113,
            dc_context: [0; 4],
            last_dc: [0; 4],
            broken: false,
            cond,
        }
    }

    /// Clears the statistics a scan (or restart interval) starts from, as `start_pass` and
    /// `process_restart` do. `tables` holds `(dc table, ac table)` per scan component.
    pub(super) fn reset(&mut self, kind: ScanKind, tables: &[(usize, usize)]) {
        for (i, &(td, ta)) in tables.iter().enumerate() {
            if matches!(kind, ScanKind::Sequential | ScanKind::DcFirst) {
                self.dc_stats[td] = [0; 64];
                self.last_dc[i] = 0;
                self.dc_context[i] = 0;
            }
            if matches!(
                kind,
                ScanKind::Sequential | ScanKind::AcFirst | ScanKind::AcRefine
            ) {
                self.ac_stats[ta] = [0; 256];
            }
        }
        self.c = 0;
        self.a = 0;
        self.ct = -16;
        self.broken = false;
    }

    /// Reads the RSTn marker that ends a restart interval (skipping anything before it, as
    /// libjpeg's resynchronisation does for the usual case), then resets the statistics.
    pub(super) fn restart(&mut self, kind: ScanKind, tables: &[(usize, usize)]) -> Result<()> {
        loop {
            while self.data.get(self.pos).is_some_and(|&b| b != 0xFF) {
                self.pos += 1;
            }
            while self.data.get(self.pos) == Some(&0xFF) {
                self.pos += 1;
            }
            match self.data.get(self.pos) {
                Some(0) => self.pos += 1,
                Some(0xD0..=0xD7) => {
                    self.pos += 1;
                    break;
                }
                Some(_) => {
                    self.pos -= 1;
                    return Err("missing restart marker".into());
                }
                None => {
                    self.hit_end = true;
                    return Err("missing restart marker".into());
                }
            }
        }
        self.at_marker = false;
        self.reset(kind, tables);
        Ok(())
    }

    /// The next data byte: 0 at a marker (left unread) or past the end.
    fn byte(&mut self) -> i64 {
        if self.at_marker {
            return 0;
        }
        let Some(&b) = self.data.get(self.pos) else {
            self.hit_end = true;
            self.at_marker = true;
            return 0;
        };
        if b != 0xFF {
            self.pos += 1;
            return i64::from(b);
        }
        let mut p = self.pos + 1;
        while self.data.get(p) == Some(&0xFF) {
            p += 1;
        }
        match self.data.get(p) {
            Some(0) => {
                self.pos = p + 1;
                0xFF
            }
            Some(_) => {
                self.pos = p - 1; // on the marker's last 0xFF
                self.at_marker = true;
                0
            }
            None => {
                self.hit_end = true;
                self.at_marker = true;
                0
            }
        }
    }

    fn stat(&mut self, bin: Bin) -> &mut u8 {
        match bin {
            Bin::Dc(t, i) => &mut self.dc_stats[t][i],
            Bin::Ac(t, i) => &mut self.ac_stats[t][i],
            Bin::Fixed => &mut self.fixed,
        }
    }

    /// `arith_decode`: one binary decision with the estimate in `bin`.
    fn decode(&mut self, bin: Bin) -> usize {
        while self.a < 0x8000 {
            self.ct -= 1;
            if self.ct < 0 {
                let data = self.byte();
                self.c = (self.c << 8) | data;
                self.ct += 8;
                if self.ct < 0 {
                    self.ct += 1;
                    if self.ct == 0 {
                        self.a = 0x8000;
                    }
                }
            }
            self.a <<= 1;
        }
        let sv = *self.stat(bin);
        let (qe, nl, nm, switch) = ARITAB[usize::from(sv & 0x7F)];
        let (qe, nl, nm) = (i64::from(qe), nl | (switch << 7), nm);
        let mut sv = sv;
        let temp = self.a - qe;
        self.a = temp;
        let temp = temp << self.ct;
        let st;
        if self.c >= temp {
            self.c -= temp;
            if self.a < qe {
                self.a = qe;
                st = (sv & 0x80) ^ nm;
            } else {
                self.a = qe;
                st = (sv & 0x80) ^ nl;
                sv ^= 0x80;
            }
        } else if self.a < 0x8000 {
            if self.a < qe {
                st = (sv & 0x80) ^ nl;
                sv ^= 0x80;
            } else {
                st = (sv & 0x80) ^ nm;
            }
        } else {
            return usize::from(sv >> 7);
        }
        *self.stat(bin) = st;
        usize::from(sv >> 7)
    }

    /// A DC difference (Figures F.19-F.24), updating the component's conditioning context.
    /// `None` on a corrupt magnitude.
    fn dc_diff(&mut self, t: usize, ci: usize) -> Option<i32> {
        let s0 = self.dc_context[ci];
        if self.decode(Bin::Dc(t, s0)) == 0 {
            self.dc_context[ci] = 0;
            return Some(0);
        }
        let sign = self.decode(Bin::Dc(t, s0 + 1));
        let mut st = s0 + 2 + sign;
        let mut m = self.decode(Bin::Dc(t, st)) as i32;
        if m != 0 {
            st = 20;
            while self.decode(Bin::Dc(t, st)) != 0 {
                m <<= 1;
                if m == 0x8000 {
                    return None;
                }
                st += 1;
            }
        }
        let (l, u) = (self.cond.dc_l[t], self.cond.dc_u[t]);
        self.dc_context[ci] = if m < ((1i32 << l) >> 1) {
            0
        } else if m > ((1i32 << u) >> 1) {
            12 + sign * 4
        } else {
            4 + sign * 4
        };
        let v = self.pattern(m, Bin::Dc(t, st + 14)) + 1;
        Some(if sign != 0 { -v } else { v })
    }

    /// The bits of a magnitude below its top bit `m`, all from one bin (Figure F.24).
    fn pattern(&mut self, mut m: i32, bin: Bin) -> i32 {
        let mut v = m;
        m >>= 1;
        while m != 0 {
            if self.decode(bin) != 0 {
                v |= m;
            }
            m >>= 1;
        }
        v
    }

    /// A nonzero AC value at zigzag position `k` whose statistics start at `st` (after the
    /// zero-run decisions): sign, magnitude category and bits. `None` on a corrupt magnitude.
    fn ac_value(&mut self, t: usize, k: usize, st: usize) -> Option<i32> {
        let sign = self.decode(Bin::Fixed);
        let mut st = st + 2;
        let mut m = self.decode(Bin::Ac(t, st)) as i32;
        if m != 0 && self.decode(Bin::Ac(t, st)) != 0 {
            m <<= 1;
            st = if k <= usize::from(self.cond.ac_k[t]) {
                189
            } else {
                217
            };
            while self.decode(Bin::Ac(t, st)) != 0 {
                m <<= 1;
                if m == 0x8000 {
                    return None;
                }
                st += 1;
            }
        }
        let v = self.pattern(m, Bin::Ac(t, st + 14)) + 1;
        Some(if sign != 0 { -v } else { v })
    }

    /// AC coefficients `ss..=se` of a first (or only) scan into `block`, scaled by `al`.
    fn ac_first(&mut self, t: usize, block: &mut [i16], ss: usize, se: usize, al: u32) {
        let mut k = ss;
        while k <= se {
            let mut st = 3 * (k - 1);
            if self.decode(Bin::Ac(t, st)) != 0 {
                return; // end of block
            }
            while self.decode(Bin::Ac(t, st + 1)) == 0 {
                st += 3;
                k += 1;
                if k > se {
                    self.broken = true;
                    return;
                }
            }
            let Some(v) = self.ac_value(t, k, st) else {
                self.broken = true;
                return;
            };
            block[NATURAL_ORDER[k]] = ((v as u32) << al) as i16;
            k += 1;
        }
    }

    /// `decode_mcu_AC_refine` for one block.
    fn ac_refine(&mut self, t: usize, block: &mut [i16], ss: usize, se: usize, al: u32) {
        let p1 = (1i32 << al) as i16;
        let m1 = ((-1i32) << al) as i16;
        let kex = (1..=se)
            .rev()
            .find(|&k| block[NATURAL_ORDER[k]] != 0)
            .unwrap_or(0);
        let mut k = ss;
        while k <= se {
            let mut st = 3 * (k - 1);
            if k > kex && self.decode(Bin::Ac(t, st)) != 0 {
                return;
            }
            loop {
                let z = NATURAL_ORDER[k];
                if block[z] != 0 {
                    if self.decode(Bin::Ac(t, st + 2)) != 0 {
                        let c = block[z];
                        block[z] = c.wrapping_add(if c < 0 { m1 } else { p1 });
                    }
                    break;
                }
                if self.decode(Bin::Ac(t, st + 1)) != 0 {
                    let neg = self.decode(Bin::Fixed) != 0;
                    block[NATURAL_ORDER[k]] = if neg { m1 } else { p1 };
                    break;
                }
                st += 3;
                k += 1;
                if k > se {
                    self.broken = true;
                    return;
                }
            }
            k += 1;
        }
    }

    /// One block of a scan of `kind`: `ci` is the component's place in the scan, `td`/`ta` its
    /// tables, `ss..=se` and `al` the band. Corrupt data leaves the rest of the scan empty, as
    /// libjpeg does (with a warning).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn block(
        &mut self,
        kind: ScanKind,
        ci: usize,
        (td, ta): (usize, usize),
        block: &mut [i16],
        (ss, se): (usize, usize),
        al: u32,
    ) {
        if self.broken && !matches!(kind, ScanKind::DcRefine) {
            return;
        }
        match kind {
            ScanKind::Sequential | ScanKind::DcFirst => {
                let Some(diff) = self.dc_diff(td, ci) else {
                    self.broken = true;
                    return;
                };
                self.last_dc[ci] = (self.last_dc[ci] + diff) & 0xFFFF;
                // libjpeg stores the 16-bit value in a JCOEF (a short).
                let dc = self.last_dc[ci] as u16 as i16;
                if matches!(kind, ScanKind::Sequential) {
                    block[0] = dc;
                    self.ac_first(ta, block, 1, 63, 0);
                } else {
                    block[0] = ((i32::from(dc) as u32) << al) as i16;
                }
            }
            ScanKind::DcRefine => {
                if self.decode(Bin::Fixed) != 0 {
                    block[0] |= (1i32 << al) as i16;
                }
            }
            ScanKind::AcFirst => self.ac_first(ta, block, ss, se, al),
            ScanKind::AcRefine => self.ac_refine(ta, block, ss, se, al),
        }
    }
}
