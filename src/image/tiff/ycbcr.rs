//! YCbCr TIFFs not compressed with JPEG, as Pillow reads them, which depends on the compression:
//!
//! - compressed (LZW, Deflate, LZMA, PackBits, …): Pillow hands the file to libtiff's RGBA
//!   interface (`TIFFRGBAImage`), which undoes the chroma subsampling (each pixel takes its
//!   block's Cb and Cr, no interpolation) and converts with `TIFFYCbCrtoRGB`: integer tables
//!   built from YCbCrCoefficients and ReferenceBlackWhite ([`LibtiffTables`], a port of
//!   libtiff 4.7's `TIFFYCbCrToRGBInit`, float arithmetic and truncations included);
//! - uncompressed: Pillow's own raw reader gives mode `YCbCr` (three samples a pixel, the tags
//!   ignored), which `convert_to_rgb` turns into RGB with Pillow's fixed-point JPEG formula
//!   ([`pillow_to_rgb`]). Subsampled uncompressed data is refused: Pillow reads it as if it were
//!   not subsampled and calls it truncated.
//!
//! Not for: JPEG-compressed YCbCr (libjpeg converts it, in `codec.rs`), or reading the data.

/// libtiff's lookup tables for one file's coefficients and reference black and white.
pub(super) struct LibtiffTables {
    y: [i32; 256],
    cr_r: [i32; 256],
    cb_b: [i32; 256],
    cr_g: [i32; 256],
    cb_g: [i32; 256],
}

/// libtiff's defaults (CCIR 601-1; and ReferenceBlackWhite for YCbCr).
pub(super) const DEFAULT_COEFFICIENTS: [f32; 3] = [0.299, 0.587, 0.114];
pub(super) const DEFAULT_REFERENCE: [f32; 6] = [0.0, 255.0, 128.0, 255.0, 128.0, 255.0];

const SHIFT: u32 = 16;
const ONE_HALF: i32 = 1 << (SHIFT - 1);

/// `FIX`: to 16.16 fixed point through a double, truncated.
fn fix(x: f32) -> i32 {
    (f64::from(x) * f64::from(1u32 << SHIFT) + 0.5) as i32
}

/// `CLAMP` on floats (NaN goes to `min`).
fn clamp(f: f32, min: f32, max: f32) -> f32 {
    if f.is_nan() || f < min {
        min
    } else if f > max {
        max
    } else {
        f
    }
}

/// `CLAMPw`.
fn clamp_w(v: f32) -> f32 {
    v.clamp(-128.0 * 32.0, 128.0 * 32.0)
}

/// `Code2V`: code `c` scaled from the reference range `rb..rw` to `0..cr`.
fn code_to_value(c: i32, rb: f32, rw: f32, cr: i32) -> f32 {
    let num = (c - rb as i32) as f32 * cr as f32;
    let span = rw - rb;
    // TIFF_FLOAT_EQ(rw, rb) is !(|rw - rb| > 0).
    num / if (rw - rb).abs() > 0.0 { span } else { 1.0 }
}

impl LibtiffTables {
    /// `TIFFYCbCrToRGBInit`; `None` where libtiff refuses the tags (its RGBA interface then
    /// fails, and so does Pillow).
    pub(super) fn new(luma: [f32; 3], reference: [f32; 6]) -> Option<Self> {
        let in_range = |f: f32| f > (-0x7FFF_FFFF + 128) as f32 && f < 0x7FFF_FFFF as f32;
        // libtiff's test is TIFF_FLOAT_EQ(green, 0), i.e. !(|green| > 0).
        if luma.iter().any(|v| v.is_nan()) || luma[1] == 0.0 {
            return None;
        }
        if !reference.iter().all(|&f| in_range(f)) {
            return None;
        }
        let [red, green, blue] = luma;
        let f1 = 2.0 - 2.0 * red;
        let d1 = fix(clamp(f1, 0.0, 2.0));
        let f2 = red * f1 / green;
        let d2 = -fix(clamp(f2, 0.0, 2.0));
        let f3 = 2.0 - 2.0 * blue;
        let d3 = fix(clamp(f3, 0.0, 2.0));
        let f4 = blue * f3 / green;
        let d4 = -fix(clamp(f4, 0.0, 2.0));
        let mut t = LibtiffTables {
            y: [0; 256],
            cr_r: [0; 256],
            cb_b: [0; 256],
            cr_g: [0; 256],
            cb_g: [0; 256],
        };
        let r = reference;
        for i in 0..256usize {
            let x = i as i32 - 128;
            let cr = clamp_w(code_to_value(x, r[4] - 128.0, r[5] - 128.0, 127)) as i32;
            let cb = clamp_w(code_to_value(x, r[2] - 128.0, r[3] - 128.0, 127)) as i32;
            t.cr_r[i] = d1.wrapping_mul(cr).wrapping_add(ONE_HALF) >> SHIFT;
            t.cb_b[i] = d3.wrapping_mul(cb).wrapping_add(ONE_HALF) >> SHIFT;
            t.cr_g[i] = d2.wrapping_mul(cr);
            t.cb_g[i] = d4.wrapping_mul(cb).wrapping_add(ONE_HALF);
            t.y[i] = clamp_w(code_to_value(x + 128, r[0], r[1], 255)) as i32;
        }
        Some(t)
    }

    /// `TIFFYCbCrtoRGB` for 8-bit samples.
    pub(super) fn to_rgb(&self, y: u8, cb: u8, cr: u8) -> [u8; 3] {
        let (y, cb, cr) = (usize::from(y), usize::from(cb), usize::from(cr));
        let yv = self.y[y];
        let g = self.cb_g[cb].wrapping_add(self.cr_g[cr]) >> SHIFT;
        [
            yv.wrapping_add(self.cr_r[cr]),
            yv.wrapping_add(g),
            yv.wrapping_add(self.cb_b[cb]),
        ]
        .map(|v| v.clamp(0, 255) as u8)
    }
}

/// Pillow's `ImagingConvertYCbCr2RGB` (its tables are `trunc(c·(v − 128)·64 + 0.5)`, shifted
/// back by 6 bits).
pub(super) fn pillow_to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let t = |c: f64, v: u8| (c * (f64::from(v) - 128.0) * 64.0 + 0.5).trunc() as i32;
    let y = i32::from(y);
    let r = y + (t(1.402, cr) >> 6);
    let g = y + ((t(-0.34414, cb) + t(-0.71414, cr)) >> 6);
    let b = y + (t(1.772, cb) >> 6);
    [r, g, b].map(|v| v.clamp(0, 255) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtiff_defaults_match_pillow() {
        let t = LibtiffTables::new(DEFAULT_COEFFICIENTS, DEFAULT_REFERENCE).unwrap();
        // Pillow 13 / libtiff 4.7.2 on a 1×1-sampled Deflate YCbCr TIFF.
        assert_eq!(t.to_rgb(128, 128, 128), [128, 128, 128]);
        assert_eq!(t.to_rgb(0, 0, 0), [0, 135, 0]);
        assert_eq!(t.to_rgb(255, 255, 255), [255, 121, 255]);
        assert_eq!(t.to_rgb(16, 240, 16), [0, 57, 214]);
    }

    #[test]
    fn pillow_formula_matches_its_tables() {
        // Entries of Pillow's R_Cr, G_Cb, G_Cr and B_Cb tables (ConvertYCbCr.c).
        let t = |c: f64, v: u8| (c * (f64::from(v) - 128.0) * 64.0 + 0.5).trunc() as i32;
        assert_eq!(t(1.402, 0), -11484);
        assert_eq!(t(-0.34414, 129), -21);
        assert_eq!(t(-0.71414, 0), 5850);
        assert_eq!(t(1.772, 255), 14403);
        // Pillow 13 on the same pixels, uncompressed (mode YCbCr).
        assert_eq!(pillow_to_rgb(128, 128, 128), [128, 128, 128]);
        assert_eq!(pillow_to_rgb(0, 0, 0), [0, 135, 0]);
        assert_eq!(pillow_to_rgb(255, 255, 255), [255, 120, 255]);
        assert_eq!(pillow_to_rgb(16, 240, 16), [0, 57, 214]);
    }

    #[test]
    fn refused_tags_give_none() {
        assert!(LibtiffTables::new([0.299, 0.0, 0.114], DEFAULT_REFERENCE).is_none());
        assert!(LibtiffTables::new([f32::NAN, 0.5, 0.1], DEFAULT_REFERENCE).is_none());
        let mut r = DEFAULT_REFERENCE;
        r[1] = f32::INFINITY;
        assert!(LibtiffTables::new(DEFAULT_COEFFICIENTS, r).is_none());
    }
}
