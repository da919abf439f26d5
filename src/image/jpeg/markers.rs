//! JPEG marker segments: finding markers, the frame header (SOF), Huffman tables (DHT) and
//! quantization tables (DQT), and the Huffman table structure itself.
//!
//! Not for: the entropy-coded data between markers (`scan.rs`, `entropy.rs`) or the markers the
//! main loop in `mod.rs` handles in place (DRI, APPn, COM).

use super::{Component, Decoder, Frame, Result, NATURAL_ORDER};

/// Codes of up to this many bits are decoded by one table lookup.
pub(super) const FAST_BITS: u32 = 9;

/// A Huffman table as libjpeg builds it (`jpeg_make_d_derived_tbl`), with a lookup table for
/// short codes.
pub(super) struct Huffman {
    /// `(length << 8) | symbol` for codes of at most FAST_BITS bits, else 0.
    pub(super) fast: Vec<u16>,
    pub(super) maxcode: [i32; 18],
    pub(super) valoffset: [i32; 18],
    pub(super) values: Vec<u8>,
}

impl Huffman {
    fn new(counts: &[u8], symbols: &[u8]) -> Result<Self> {
        let mut fast = vec![0u16; 1 << FAST_BITS];
        let mut maxcode = [-1i32; 18];
        let mut valoffset = [0i32; 18];
        let mut code: u32 = 0;
        let mut k = 0usize;
        for l in 1..=16u32 {
            let n = counts[l as usize - 1] as usize;
            valoffset[l as usize] = k as i32 - code as i32;
            for _ in 0..n {
                if code >= 1 << l {
                    return Err("bad Huffman table".into());
                }
                if l <= FAST_BITS {
                    let shift = FAST_BITS - l;
                    for i in 0..(1u32 << shift) {
                        fast[((code << shift) | i) as usize] =
                            ((l as u16) << 8) | u16::from(symbols[k]);
                    }
                }
                code += 1;
                k += 1;
            }
            if n > 0 {
                maxcode[l as usize] = code as i32 - 1;
            }
            // libjpeg's jdhuff.c check: no code may be all ones.
            if code >= 1 << l {
                return Err("bad Huffman table".into());
            }
            code <<= 1;
        }
        maxcode[17] = i32::MAX;
        Ok(Self {
            fast,
            maxcode,
            valoffset,
            values: symbols.to_vec(),
        })
    }
}

impl<'a> Decoder<'a> {
    /// The next marker code, skipping garbage and fill bytes; `None` at the end of the data.
    pub(super) fn next_marker(&mut self) -> Option<u8> {
        loop {
            while *self.data.get(self.pos)? != 0xFF {
                self.pos += 1;
            }
            while *self.data.get(self.pos)? == 0xFF {
                self.pos += 1;
            }
            let code = *self.data.get(self.pos)?;
            self.pos += 1;
            if code != 0 {
                return Some(code);
            }
        }
    }

    /// The payload of a marker segment (after its length), advancing past it.
    pub(super) fn segment(&mut self) -> Result<&'a [u8]> {
        let data = self.data;
        let len = data
            .get(self.pos..self.pos + 2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
            .ok_or(super::TRUNCATED_BEFORE_DATA)?;
        if len < 2 {
            return Err("bad marker segment length".into());
        }
        let seg = data
            .get(self.pos + 2..self.pos + len)
            .ok_or(super::TRUNCATED_SEGMENT)?;
        self.pos += len;
        Ok(seg)
    }

    /// SOF0/1/2: the frame header. Sizes every component and checks the memory it will need.
    pub(super) fn read_sof(
        &mut self,
        progressive: bool,
        arithmetic: bool,
        max_bytes: u64,
    ) -> Result<()> {
        if self.frame.is_some() {
            return Err("more than one frame".into());
        }
        let s = self.segment()?;
        if s.len() < 6 {
            return Err("bad SOF".into());
        }
        if s[0] != 8 {
            return Err(format!("{}-bit JPEG is not supported", s[0]));
        }
        let height = usize::from(u16::from_be_bytes([s[1], s[2]]));
        let width = usize::from(u16::from_be_bytes([s[3], s[4]]));
        let nc = usize::from(s[5]);
        if height == 0 || width == 0 {
            return Err("zero image size (DNL) is not supported".into());
        }
        // Too large: the caller's fallback decoder names the limit.
        if (width * height) as u64 > crate::image::MAX_PIXELS {
            return Err("image too large".into());
        }
        if !matches!(nc, 1 | 3 | 4) || s.len() < 6 + 3 * nc {
            return Err(format!("{nc}-component JPEG is not supported"));
        }
        let comps = read_components(&s[6..6 + 3 * nc])?;
        let mut frame = frame_layout(progressive, width, height, comps, max_bytes)?;
        frame.arithmetic = arithmetic;
        self.frame = Some(frame);
        Ok(())
    }

    /// DAC: arithmetic conditioning values (`jdmarker.c`'s `get_dac`).
    pub(super) fn read_dac(&mut self) -> Result<()> {
        let s = self.segment()?;
        if s.len() % 2 != 0 {
            return Err("bad DAC length".into());
        }
        for pair in s.chunks_exact(2) {
            let (index, val) = (usize::from(pair[0]), pair[1]);
            match index {
                0..=15 => {
                    let (l, u) = (val & 15, val >> 4);
                    if l > u {
                        return Err("bad DAC value".into());
                    }
                    self.cond.dc_l[index] = l;
                    self.cond.dc_u[index] = u;
                }
                16..=31 => self.cond.ac_k[index - 16] = val,
                _ => return Err("bad DAC index".into()),
            }
        }
        Ok(())
    }

    /// DHT: one or more Huffman tables.
    pub(super) fn read_dht(&mut self) -> Result<()> {
        let mut s = self.segment()?;
        while !s.is_empty() {
            if s.len() < 17 {
                return Err("bad DHT".into());
            }
            let (class, id) = (s[0] >> 4, usize::from(s[0] & 15));
            let counts = &s[1..17];
            let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
            if class > 1 || id > 3 || total > 256 || s.len() < 17 + total {
                return Err("bad DHT".into());
            }
            let table = Huffman::new(counts, &s[17..17 + total])?;
            if class == 0 {
                self.dc[id] = Some(table);
            } else {
                self.ac[id] = Some(table);
            }
            s = &s[17 + total..];
        }
        Ok(())
    }

    /// DQT: one or more quantization tables, stored in natural order.
    pub(super) fn read_dqt(&mut self) -> Result<()> {
        let mut s = self.segment()?;
        while !s.is_empty() {
            let (precision, id) = (s[0] >> 4, usize::from(s[0] & 15));
            let size = if precision == 0 { 64 } else { 128 };
            if precision > 1 || id > 3 || s.len() < 1 + size {
                return Err("bad DQT".into());
            }
            let mut q = [0u16; 64];
            for (i, &n) in NATURAL_ORDER[..64].iter().enumerate() {
                q[n] = if precision == 0 {
                    u16::from(s[1 + i])
                } else {
                    u16::from_be_bytes([s[1 + 2 * i], s[2 + 2 * i]])
                };
            }
            self.qt[id] = Some(q);
            s = &s[1 + size..];
        }
        Ok(())
    }
}

/// The frame header's component specifications, three bytes each: id, sampling factors, table.
fn read_components(specs: &[u8]) -> Result<Vec<Component>> {
    let mut comps = Vec::with_capacity(specs.len() / 3);
    for c in specs.chunks_exact(3) {
        let (h, v, tq) = (
            usize::from(c[1] >> 4),
            usize::from(c[1] & 15),
            usize::from(c[2]),
        );
        if !(1..=4).contains(&h) || !(1..=4).contains(&v) || tq > 3 {
            return Err("bad component parameters".into());
        }
        if comps.iter().any(|x: &Component| x.id == c[0]) {
            return Err("duplicate component id".into());
        }
        comps.push(Component::new(c[0], h, v, tq));
    }
    Ok(comps)
}

/// MCU grid and per-component sizes of a `width × height` frame; refuses one whose buffers
/// (coefficients, sample planes, RGB output) would need more than `max_bytes`.
fn frame_layout(
    progressive: bool,
    width: usize,
    height: usize,
    mut comps: Vec<Component>,
    max_bytes: u64,
) -> Result<Frame> {
    let max_h = comps.iter().map(|c| c.h).max().unwrap_or(1);
    let max_v = comps.iter().map(|c| c.v).max().unwrap_or(1);
    let mcus_x = width.div_ceil(8 * max_h);
    let mcus_y = height.div_ceil(8 * max_v);
    let mut bytes: u64 = (width * height * 3) as u64;
    for c in &mut comps {
        // Upsampling must be one of libjpeg's integral cases.
        if max_h % c.h != 0 || max_v % c.v != 0 {
            return Err("fractional sampling ratios are not supported".into());
        }
        c.dw = (width * c.h).div_ceil(max_h);
        c.dh = (height * c.v).div_ceil(max_v);
        c.wib = c.dw.div_ceil(8);
        c.hib = c.dh.div_ceil(8);
        c.bw = mcus_x * c.h;
        let blocks = c.bw * mcus_y * c.v;
        bytes += (blocks * 64 * 2 + c.wib * c.hib * 64 + width * height) as u64;
    }
    if bytes > max_bytes {
        return Err(format!("needs {} MiB", bytes >> 20));
    }
    Ok(Frame {
        progressive,
        arithmetic: false,
        width,
        height,
        max_h,
        max_v,
        mcus_x,
        mcus_y,
        comps,
    })
}
