//! One scan (SOS segment and the entropy-coded data after it): which components and
//! coefficients it carries, which blocks it covers in which order (interleaved MCUs or one
//! component's blocks), restart intervals, and where each decoded block goes: straight through
//! the IDCT into a sample plane for a single-scan baseline file, else into coefficient storage.
//!
//! Not for: reading bits or Huffman codes (`entropy.rs`), or anything after the last scan
//! (`color.rs`).

use super::arith::Arith;
use super::entropy::{decode_ac_first, decode_ac_refine, decode_sequential, Band, Bits};
use super::idct::idct_islow;
use super::markers::Huffman;
use super::{Component, Decoder, Frame, Result, ScanKind};

/// A parsed SOS header.
struct ScanHeader {
    /// `(index into the frame's components, DC table, AC table)` per scan component.
    comps: Vec<(usize, usize, usize)>,
    /// Spectral selection and the successive-approximation low bit (progressive only).
    band: Band,
    kind: ScanKind,
    /// Decode straight into sample planes (no coefficient storage).
    streaming: bool,
}

/// The entropy decoder of a scan: Huffman bits or the arithmetic decoder.
enum Entropy<'a> {
    Huffman(Bits<'a>),
    Arith(Box<Arith<'a>>),
}

/// Most scans a file may have (libjpeg-turbo's fuzzers and `djpeg -maxscans` use 500): each
/// scan walks the whole coefficient array, so a crafted file of tiny scans costs time.
const MAX_SCANS: usize = 500;
/// Most blocks all scans together may visit: bounds the time a progressive file can take
/// (a 100 MP photo's ten or so scans visit about 50 million).
const MAX_BLOCK_VISITS: u64 = 1 << 28;

/// The decoder state a scan reads: its Huffman tables and restart interval.
struct Tables<'t> {
    dc: &'t [Option<Huffman>; 4],
    ac: &'t [Option<Huffman>; 4],
    restart_interval: usize,
}

impl<'a> Decoder<'a> {
    /// SOS: reads the scan header, then decodes the scan's entropy-coded data.
    pub(super) fn read_scan(&mut self) -> Result<()> {
        let s = self.segment()?;
        let frame = self.frame.as_mut().ok_or("scan before frame header")?;
        let mut scan = parse_scan_header(s, frame)?;
        if self.scans >= MAX_SCANS {
            return Err(format!("{} more than {MAX_SCANS} scans", super::WORK_LIMIT));
        }
        for &(ci, td, ta) in &scan.comps {
            if !frame.arithmetic && (td > 3 || ta > 3) {
                return Err("bad Huffman table index".into());
            }
            let c = &mut frame.comps[ci];
            if c.quant.is_none() {
                c.quant = Some(self.qt[c.tq].ok_or("missing quantization table")?);
            }
            c.dc_pred = 0;
        }
        self.eobrun = 0;
        // A sequential frame whose first scan holds every component (the usual baseline
        // file) is decoded straight into sample planes; anything else keeps coefficients.
        scan.streaming = !frame.progressive
            && !frame.arithmetic
            && self.scans == 0
            && scan.comps.len() == frame.comps.len();
        if self.scans > 0 && frame.comps.iter().any(|c| !c.plane.is_empty()) {
            return Err("unexpected scan after a complete sequential scan".into());
        }
        for &(ci, _, _) in &scan.comps {
            let c = &mut frame.comps[ci];
            if scan.streaming {
                c.plane = vec![128u8; c.wib * 8 * c.hib * 8];
            } else if c.coefs.is_empty() {
                c.coefs = vec![0i16; c.bw * frame.mcus_y * c.v * 64];
            }
        }
        self.block_visits += scan_blocks(frame, &scan) as u64;
        if self.block_visits > MAX_BLOCK_VISITS {
            return Err(format!(
                "{} more than {MAX_BLOCK_VISITS} block visits in its scans",
                super::WORK_LIMIT
            ));
        }
        let mut ent = if frame.arithmetic {
            Entropy::Arith(Box::new(Arith::new(self.data, self.pos, self.cond)))
        } else {
            Entropy::Huffman(Bits::new(self.data, self.pos))
        };
        let tables = Tables {
            dc: &self.dc,
            ac: &self.ac,
            restart_interval: self.restart_interval,
        };
        let complete = decode_mcus(frame, &scan, &tables, &mut ent, &mut self.eobrun)?;
        self.truncated |= !complete;
        self.pos = match ent {
            Entropy::Huffman(bits) => bits.pos,
            Entropy::Arith(a) => a.pos,
        };
        self.scans += 1;
        Ok(())
    }
}

/// The SOS segment's payload: components (each named once, each in the frame) and, for a
/// progressive frame, valid spectral selection and successive approximation.
fn parse_scan_header(s: &[u8], frame: &Frame) -> Result<ScanHeader> {
    let ns = usize::from(*s.first().ok_or("bad SOS")?);
    if !(1..=4).contains(&ns) || s.len() < 4 + 2 * ns {
        return Err("bad SOS".into());
    }
    let mut comps = Vec::with_capacity(ns);
    for i in 0..ns {
        let (id, tables) = (s[1 + 2 * i], s[2 + 2 * i]);
        let ci = frame
            .comps
            .iter()
            .position(|c| c.id == id)
            .ok_or("scan names an unknown component")?;
        if comps.iter().any(|&(c, _, _)| c == ci) {
            return Err("component repeated in scan".into());
        }
        comps.push((ci, usize::from(tables >> 4), usize::from(tables & 15)));
    }
    let p = 1 + 2 * ns;
    let (ss, se, ah, al) = (
        usize::from(s[p]),
        usize::from(s[p + 1]),
        u32::from(s[p + 2] >> 4),
        u32::from(s[p + 2] & 15),
    );
    if frame.progressive {
        let valid = if ss == 0 {
            se == 0
        } else {
            se >= ss && se <= 63 && ns == 1
        };
        if !valid || al > 13 || (ah != 0 && ah != al + 1) {
            return Err("bad progressive scan parameters".into());
        }
    }
    let kind = if !frame.progressive {
        ScanKind::Sequential
    } else if ss == 0 {
        if ah == 0 {
            ScanKind::DcFirst
        } else {
            ScanKind::DcRefine
        }
    } else if ah == 0 {
        ScanKind::AcFirst
    } else {
        ScanKind::AcRefine
    };
    Ok(ScanHeader {
        comps,
        band: Band { ss, se, al },
        kind,
        streaming: false,
    })
}

/// How many blocks a scan visits.
fn scan_blocks(frame: &Frame, scan: &ScanHeader) -> usize {
    if scan.comps.len() > 1 {
        let per_mcu: usize = scan
            .comps
            .iter()
            .map(|&(ci, _, _)| {
                let c = &frame.comps[ci];
                c.h * c.v
            })
            .sum();
        frame.mcus_x * frame.mcus_y * per_mcu
    } else {
        let c = &frame.comps[scan.comps[0].0];
        c.wib * c.hib
    }
}

/// The scan's MCUs (one component's blocks when not interleaved) in order, handling restart
/// markers. Returns `false` when the data ended before the scan did (the file is truncated:
/// the rest of the scan stays empty, as libjpeg leaves it); fails on corrupt data.
fn decode_mcus(
    frame: &mut Frame,
    scan: &ScanHeader,
    tables: &Tables,
    ent: &mut Entropy,
    eobrun: &mut u32,
) -> Result<bool> {
    let total = if scan.comps.len() > 1 {
        frame.mcus_x * frame.mcus_y
    } else {
        let c = &frame.comps[scan.comps[0].0];
        c.wib * c.hib
    };
    let arith_tables: Vec<(usize, usize)> = scan.comps.iter().map(|&(_, d, a)| (d, a)).collect();
    if let Entropy::Arith(a) = ent {
        a.reset(scan.kind, &arith_tables);
    }
    let mut to_go = tables.restart_interval;
    for m in 0..total {
        let result = decode_mcu(
            frame,
            scan,
            tables,
            ent,
            eobrun,
            &mut to_go,
            m,
            &arith_tables,
        );
        let at_end = match ent {
            Entropy::Huffman(bits) => bits.eof,
            Entropy::Arith(a) => a.hit_end,
        };
        // Whatever went wrong once the data had ended, the file is truncated.
        if at_end {
            return Ok(false);
        }
        result?;
    }
    Ok(true)
}

/// MCU number `m` of the scan (after the restart marker due before it, if any).
#[allow(clippy::too_many_arguments)]
fn decode_mcu(
    frame: &mut Frame,
    scan: &ScanHeader,
    tables: &Tables,
    ent: &mut Entropy,
    eobrun: &mut u32,
    to_go: &mut usize,
    m: usize,
    arith_tables: &[(usize, usize)],
) -> Result<()> {
    let interleaved = scan.comps.len() > 1;
    let mut scratch = [0i16; 64];
    let mcus_x = frame.mcus_x;
    {
        if tables.restart_interval > 0 {
            if *to_go == 0 {
                match ent {
                    Entropy::Huffman(bits) => bits.restart()?,
                    Entropy::Arith(a) => a.restart(scan.kind, arith_tables)?,
                }
                for &(ci, _, _) in &scan.comps {
                    frame.comps[ci].dc_pred = 0;
                }
                *eobrun = 0;
                *to_go = tables.restart_interval;
            }
            *to_go -= 1;
        }
        for (k, &(ci, td, ta)) in scan.comps.iter().enumerate() {
            let c = &mut frame.comps[ci];
            let (nbx, nby, bx0, by0) = if interleaved {
                (c.h, c.v, (m % mcus_x) * c.h, (m / mcus_x) * c.v)
            } else {
                (1, 1, m % c.wib, m / c.wib)
            };
            let (dc, ac) = (
                tables.dc.get(td).and_then(Option::as_ref),
                tables.ac.get(ta).and_then(Option::as_ref),
            );
            for by in by0..by0 + nby {
                for bx in bx0..bx0 + nbx {
                    let bits = match ent {
                        Entropy::Huffman(bits) => bits,
                        Entropy::Arith(a) => {
                            let off = (by * c.bw + bx) * 64;
                            let band = (scan.band.ss, scan.band.se);
                            let block = &mut c.coefs[off..off + 64];
                            a.block(scan.kind, k, (td, ta), block, band, scan.band.al);
                            continue;
                        }
                    };
                    if scan.streaming {
                        decode_into_plane(bits, c, dc, ac, bx, by, &mut scratch)?;
                        continue;
                    }
                    let off = (by * c.bw + bx) * 64;
                    let block = &mut c.coefs[off..off + 64];
                    decode_block(scan, bits, &mut c.dc_pred, block, dc, ac, eobrun)?;
                }
            }
        }
        match ent {
            Entropy::Huffman(bits) if bits.overrun => Err("corrupt entropy-coded data".into()),
            _ => Ok(()),
        }
    }
}

/// Single-scan sequential decode: block `(bx, by)` of `c` through the IDCT into its plane.
fn decode_into_plane(
    bits: &mut Bits,
    c: &mut Component,
    dc: Option<&Huffman>,
    ac: Option<&Huffman>,
    bx: usize,
    by: usize,
    scratch: &mut [i16; 64],
) -> Result<()> {
    let (Some(dc), Some(ac)) = (dc, ac) else {
        return Err("missing Huffman table".into());
    };
    scratch.fill(0);
    decode_sequential(bits, dc, ac, &mut c.dc_pred, scratch)?;
    // Blocks of MCU padding past the component's size are dropped.
    if bx < c.wib && by < c.hib {
        let quant = c.quant.as_ref().ok_or("missing quantization table")?;
        let stride = c.wib * 8;
        idct_islow(
            scratch,
            quant,
            &mut c.plane[by * 8 * stride + bx * 8..],
            stride,
        );
    }
    Ok(())
}

/// One block's part of the scan, added to its stored coefficients.
fn decode_block(
    scan: &ScanHeader,
    bits: &mut Bits,
    dc_pred: &mut i32,
    block: &mut [i16],
    dc: Option<&Huffman>,
    ac: Option<&Huffman>,
    eobrun: &mut u32,
) -> Result<()> {
    let (band, al) = (scan.band, scan.band.al);
    match (scan.kind, dc, ac) {
        (ScanKind::Sequential, Some(dc), Some(ac)) => {
            decode_sequential(bits, dc, ac, dc_pred, block)?
        }
        (ScanKind::DcFirst, Some(dc), _) => {
            let s = u32::from(bits.decode(dc)?);
            if s > 15 {
                return Err("bad DC coefficient".into());
            }
            *dc_pred = dc_pred.wrapping_add(bits.receive_extend(s));
            block[0] = (*dc_pred << al) as i16;
        }
        (ScanKind::DcRefine, _, _) => {
            if bits.bit() {
                block[0] |= (1i32 << al) as i16;
            }
        }
        (ScanKind::AcFirst, _, Some(ac)) => decode_ac_first(bits, ac, eobrun, block, band)?,
        (ScanKind::AcRefine, _, Some(ac)) => decode_ac_refine(bits, ac, eobrun, block, band)?,
        _ => return Err("missing Huffman table".into()),
    }
    Ok(())
}
