//! CCITT bi-level coding as libtiff decodes it for TIFF: Modified Huffman (compression 2, each
//! row 1-D coded and byte-aligned, no EOLs), Group 3 (compression 3: an EOL before each row,
//! 1-D or, with T4Options bit 0, a tag bit choosing 1-D or 2-D per row) and Group 4
//! (compression 4: every row 2-D against the one above, no EOLs).
//!
//! Why our own row logic: the `fax` crate decodes only 1-D Group 3 and Group 4 (no 2-D Group 3,
//! no Modified Huffman) and its Group 3 decoder drops a strip's last row unless an RTC follows,
//! which libtiff does not write. Its code tables are sound, so the run-length and mode codes are
//! read with `fax::maps` and the rest (framing, EOL search, the 2-D reference-line rules of
//! T.4 §4.2) is here. Like libtiff, a row that ends early (bad code, EOL, end of data) is filled
//! with white, a row whose runs add up to more than its width loses the runs past the end (white
//! from the last change that fits, libtiff's "line length mismatch"; they are not clipped), and
//! decoding stops at the end of the data; the rows not reached stay white.
//!
//! Output: `rows` rows of `ceil(width / 8)` bytes, a black pixel as a 1 bit (as libtiff gives
//! them; what 1 means is the Photometric tag's business, in `pixels.rs`).
//!
//! Not for: anything but the bits of one strip or tile. Work is bounded by the data: every code
//! read consumes at least one bit, and a row never holds more transitions than its width.

use fax::maps::{black, mode, white, Mode};
use fax::BitReader;

/// How the rows of a strip are coded.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Scheme {
    /// Compression 2: 1-D rows, each starting on a byte boundary, no EOLs.
    ModifiedHuffman,
    /// Compression 3; `two_d` is T4Options bit 0.
    Group3 { two_d: bool },
    /// Compression 4.
    Group4,
}

/// Decodes one strip or tile of `rows` rows of `width` pixels.
pub(super) fn decode(raw: &[u8], width: usize, rows: usize, scheme: Scheme) -> Vec<u8> {
    let row_bytes = width.div_ceil(8);
    let mut out = vec![0u8; row_bytes * rows];
    let mut bits = Bits { data: raw, pos: 0 };
    // Changing elements (positions where the colour flips, starting white) of the row above
    // and of this row.
    let mut reference: Vec<usize> = Vec::new();
    let mut current: Vec<usize> = Vec::with_capacity(width + 2);
    for row in out.chunks_exact_mut(row_bytes) {
        current.clear();
        let two_d = match scheme {
            Scheme::ModifiedHuffman => false,
            Scheme::Group4 => true,
            Scheme::Group3 { two_d } => {
                if !bits.sync_eol() {
                    break;
                }
                // With 2-D coding, a tag bit after each EOL: 1 for a 1-D row.
                two_d && bits.take(1) == Some(0)
            }
        };
        let ended = if two_d {
            row_2d(
                &mut bits,
                width,
                &reference,
                &mut current,
                scheme == Scheme::Group4,
            )
        } else {
            row_1d(&mut bits, width, &mut current)
        };
        fill(row, &current, width);
        std::mem::swap(&mut reference, &mut current);
        if ended == RowEnd::OutOfData {
            break;
        }
        if scheme == Scheme::ModifiedHuffman {
            bits.align_byte();
        }
    }
    out
}

/// Why a row stopped.
#[derive(PartialEq, Eq, Debug)]
enum RowEnd {
    /// Complete, or cut short by a bad code or an EOL: the next row can follow.
    Done,
    /// The data ran out, or (Group 4) an EOL ended the strip.
    OutOfData,
}

/// Bits of the data, most significant first; reads past the end see zeros.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn exhausted(&self) -> bool {
        self.pos >= self.data.len() * 8
    }

    /// The next `n` (at most 16) bits, without consuming them.
    fn bits(&self, n: u8) -> u16 {
        let at = self.pos / 8;
        let window = (0..3).fold(0u32, |w, k| {
            w << 8 | u32::from(self.data.get(at + k).copied().unwrap_or(0))
        });
        (((window << (self.pos % 8)) & 0xFF_FFFF) >> (24 - u32::from(n))) as u16
    }

    fn take(&mut self, n: u8) -> Option<u16> {
        if self.exhausted() {
            return None;
        }
        let v = self.bits(n);
        self.pos += usize::from(n);
        Some(v)
    }

    /// Eleven zero bits ahead: an EOL (with any fill bits), never a run-length or mode code.
    fn eol_ahead(&self) -> bool {
        self.bits(11) == 0
    }

    /// Finds the next EOL (skipping anything before it, as libtiff does after a bad row) and
    /// moves past it; false if the data ends first.
    fn sync_eol(&mut self) -> bool {
        while !self.eol_ahead() {
            if self.exhausted() {
                return false;
            }
            self.pos += 1;
        }
        // The zeros (EOL and fill bits), then the EOL's final 1.
        while !self.exhausted() && self.bits(1) == 0 {
            self.pos += 1;
        }
        self.pos += 1;
        !self.exhausted() || self.pos == self.data.len() * 8
    }

    fn align_byte(&mut self) {
        self.pos = self.pos.div_ceil(8) * 8;
    }

    /// One run length (make-up codes summed with the terminating code), `None` on a bad code,
    /// an EOL or the end of the data.
    fn run(&mut self, black: bool) -> Option<usize> {
        let mut total = 0usize;
        loop {
            if self.eol_ahead() || self.exhausted() {
                return None;
            }
            let n = if black {
                black::decode(self)?
            } else {
                white::decode(self)?
            };
            total += usize::from(n);
            if n < 64 {
                return Some(total);
            }
        }
    }
}

impl BitReader for Bits<'_> {
    type Error = ();

    fn peek(&self, bits: u8) -> Option<u16> {
        (bits <= 16).then(|| self.bits(bits))
    }

    fn consume(&mut self, bits: u8) -> Result<(), ()> {
        self.pos += usize::from(bits);
        Ok(())
    }

    fn bits_to_byte_boundary(&self) -> u8 {
        ((8 - self.pos % 8) % 8) as u8
    }
}

/// Where the row stopped, for the caller, after libtiff's cleanup (`CLEANUP_RUNS`): runs that
/// went past the row's end are dropped (not clipped) until the row fits again, and a row cut short
/// (or left short by that) is padded with white to `width`.
fn end_of_row(bits: &Bits, current: &mut Vec<usize>, a0: usize, width: usize) -> RowEnd {
    let mut a0 = a0;
    if a0 > width {
        while current.last().is_some_and(|&c| c > width) {
            current.pop();
        }
        a0 = current.last().copied().unwrap_or(0);
    }
    if a0 < width && current.len() % 2 == 1 {
        // Cut short inside a black run: white from here.
        current.push(a0);
    }
    if bits.pos > bits.data.len() * 8 || (a0 < width && bits.exhausted()) {
        RowEnd::OutOfData
    } else {
        RowEnd::Done
    }
}

/// A 1-D coded row: white and black runs alternately until the row is full.
fn row_1d(bits: &mut Bits, width: usize, current: &mut Vec<usize>) -> RowEnd {
    let mut a0 = 0usize;
    let mut black = false;
    while a0 < width {
        let Some(run) = bits.run(black) else {
            return end_of_row(bits, current, a0, width);
        };
        a0 += run;
        current.push(a0);
        black = !black;
    }
    end_of_row(bits, current, a0, width)
}

/// A 2-D coded row against `reference` (T.4 §4.2.1.3): pass, horizontal and vertical modes.
/// `group4`: seven zero bits where a mode code belongs are an EOL, which ends the strip (libtiff's
/// Fax4Decode takes it for the end-of-facsimile block, whatever follows).
fn row_2d(
    bits: &mut Bits,
    width: usize,
    reference: &[usize],
    current: &mut Vec<usize>,
    group4: bool,
) -> RowEnd {
    // a0 starts on an imaginary white pixel before the row.
    let mut a0: Option<usize> = None;
    let mut black = false;
    loop {
        let at = a0.unwrap_or(0);
        if a0.is_some() && at >= width {
            return end_of_row(bits, current, at, width);
        }
        if group4 && !bits.exhausted() && bits.bits(7) == 0 {
            // libtiff (EXPAND2D's S_EOL) ends the row with a run of the current colour from where
            // the last change was written: a pending pass-mode run is left out of it, and the
            // opposite colour fills as many pixels at the end of the row.
            let last = current.last().copied().unwrap_or(0).min(at);
            current.push(width - (at - last));
            if current.len() % 2 == 1 {
                current.push(width);
            }
            return RowEnd::OutOfData;
        }
        if bits.eol_ahead() || bits.exhausted() {
            return end_of_row(bits, current, at, width);
        }
        let Some(m) = mode::decode(bits) else {
            return end_of_row(bits, current, at, width);
        };
        let (b1, b2) = b1_b2(reference, a0, black, width);
        match m {
            Mode::Pass => a0 = Some(b2),
            Mode::Horizontal => {
                let (Some(r1), Some(r2)) = (bits.run(black), bits.run(!black)) else {
                    return end_of_row(bits, current, at, width);
                };
                // More changes than a row can hold: garbage (libtiff's "buffer overflow").
                if current.len() > 2 * width + 4 {
                    return end_of_row(bits, current, at, width);
                }
                // Not clipped to the row: a run past its end is dropped at the end of the row.
                let a1 = at + r1;
                let a2 = a1 + r2;
                current.extend([a1, a2]);
                a0 = Some(a2);
            }
            Mode::Vertical(d) => {
                // Left of a0 is an error (libtiff's "unexpected VL"); right of the row's end, the
                // change is dropped at the end of the row.
                let a1 = b1 as isize + isize::from(d);
                if a1 < at as isize || current.len() > 2 * width + 4 {
                    return end_of_row(bits, current, at, width);
                }
                let a1 = a1 as usize;
                current.push(a1);
                a0 = Some(a1);
                black = !black;
            }
            Mode::Extension | Mode::EOF => return end_of_row(bits, current, at, width),
        }
    }
}

/// b1: the first changing element of the reference row right of a0 whose colour is opposite
/// a0's (a change to black when a0 is white); b2: the next one. `width` when there is none.
fn b1_b2(reference: &[usize], a0: Option<usize>, black: bool, width: usize) -> (usize, usize) {
    // Changes at even indices start black runs, at odd ones white runs.
    let wanted = usize::from(black);
    let start = match a0 {
        None => 0,
        Some(a0) => reference.partition_point(|&x| x <= a0),
    };
    let i = if start % 2 == wanted {
        start
    } else {
        start + 1
    };
    let b1 = reference.get(i).copied().unwrap_or(width).min(width);
    let b2 = reference.get(i + 1).copied().unwrap_or(width).min(width);
    (b1, b2)
}

/// Sets the bits of the black runs in `row` from its changing elements.
fn fill(row: &mut [u8], changes: &[usize], width: usize) {
    for pair in changes.chunks(2) {
        let start = pair[0].min(width);
        let end = pair.get(1).copied().unwrap_or(width).min(width);
        for x in start..end {
            row[x / 8] |= 0x80 >> (x % 8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bits written MSB first from a string of '0' and '1' (spaces ignored).
    fn pack(s: &str) -> Vec<u8> {
        let bits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        bits.chunks(8)
            .map(|c| {
                c.iter()
                    .enumerate()
                    .fold(0u8, |acc, (i, &b)| acc | (u8::from(b == b'1') << (7 - i)))
            })
            .collect()
    }

    #[test]
    fn modified_huffman_rows_are_byte_aligned() {
        // Width 8: row 1 = white 3 (1000), black 5 (0011); row 2 = white 8 (10011).
        let data = pack("1000 0011 | 10011 000".replace('|', "").as_str());
        let out = decode(&data, 8, 2, Scheme::ModifiedHuffman);
        assert_eq!(out, vec![0b0001_1111, 0]);
    }

    #[test]
    fn group3_2d_row_refers_to_the_row_above() {
        // Width 8. Row 1 (1-D): EOL, tag 1, white 3, black 5. Row 2 (2-D): EOL, tag 0,
        // V(0) (b1 = 3), then V(0) again (b1 = 8: end of row).
        let data = pack("000000000001 1 1000 0011  000000000001 0 1 1  0000");
        let out = decode(&data, 8, 2, Scheme::Group3 { two_d: true });
        assert_eq!(out, vec![0b0001_1111, 0b0001_1111]);
    }

    #[test]
    fn data_ending_early_leaves_white_rows() {
        let data = pack("000000000001 1 1000 0011");
        let out = decode(&data, 8, 3, Scheme::Group3 { two_d: true });
        assert_eq!(out, vec![0b0001_1111, 0, 0]);
    }

    #[test]
    fn group4_runs_past_the_row_are_dropped_as_libtiff_drops_them() {
        // Width 8: H, white 3 (1000), black 6 (0010) is 9 pixels, so libtiff drops the black
        // run (white to the end) rather than clipping it (black from 3).
        let data = pack("001 1000 0010");
        assert_eq!(decode(&data, 8, 1, Scheme::Group4), vec![0]);
        // White 3, black 5 fits: kept.
        let data = pack("001 1000 0011");
        assert_eq!(decode(&data, 8, 1, Scheme::Group4), vec![0b0001_1111]);
    }

    #[test]
    fn a_group4_eol_ends_the_row_in_its_colour_and_the_strip() {
        // Row 1: H, white 3, black 5 (0011). Row 2: V0 (black from 3), then seven zero bits: an
        // EOL, so black to the end of the row; row 3's V0 codes after it are never read.
        let data = pack("001 1000 0011  1 0000000 1000  1 1 1");
        assert_eq!(
            decode(&data, 8, 3, Scheme::Group4),
            vec![0b0001_1111, 0b0001_1111, 0]
        );
    }

    #[test]
    fn garbage_neither_panics_nor_loops() {
        let data: Vec<u8> = (0..400u32).map(|i| (i * 37 + 11) as u8).collect();
        for scheme in [
            Scheme::ModifiedHuffman,
            Scheme::Group3 { two_d: true },
            Scheme::Group3 { two_d: false },
            Scheme::Group4,
        ] {
            let out = decode(&data, 77, 50, scheme);
            assert_eq!(out.len(), 10 * 50);
        }
    }
}
