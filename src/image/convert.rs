//! Pillow's mode conversions to RGB, as transformers' `convert_to_rgb` runs them: RGBA and LA
//! composited onto white with `AlphaComposite.c`'s integer arithmetic, grayscale replicated,
//! 16-bit samples reduced to their high byte, and CMYK through Pillow's `cmyk2rgb`.
//!
//! Not for: decoding (`decode.rs`, `jpeg/`), or libjpeg's own colour conversions (YCbCr, YCCK:
//! `jpeg/color.rs`, which uses [`cmyk_channel`] for its last step).
//!
//! One deliberate difference: 16-bit grayscale uses the high byte of each sample (Pillow clips
//! them to 255, which turns them white).

use ::image::{DynamicImage, RgbImage};

use super::DecodeError;

/// Pillow's `cmyk2rgb` for one channel, given libjpeg's (inverted, "CMYK;I") ink value `c` and
/// black `k`: `MULDIV255(c, k)`, which equals `round(c·k/255)`.
#[inline]
pub(crate) fn cmyk_channel(c: u8, k: u8) -> u8 {
    let t = u32::from(c) * u32::from(k) + 128;
    (((t >> 8) + t) >> 8) as u8
}

/// Pillow's `alpha_composite` of an `(v, a)` pixel over opaque white (`AlphaComposite.c`, with
/// the destination fixed at 255: `coef1 = a·128`, `coef2 = (255 − a)·128`).
#[inline]
pub(crate) fn over_white(v: u8, a: u8) -> u8 {
    if a == 0 {
        return 255;
    }
    let (v, a) = (u32::from(v), u32::from(a));
    let tmp = 128 * (v * a + 255 * (255 - a)) + (0x80 << 7);
    ((((tmp >> 8) + tmp) >> 8) >> 7) as u8
}

/// transformers' `convert_to_rgb`: mode RGB passes through; anything else becomes RGBA, is
/// composited onto white and converted to RGB. 16-bit samples keep their high byte.
pub(crate) fn to_rgb_like_pil(
    image: DynamicImage,
    rgb_with_trns: bool,
) -> Result<RgbImage, DecodeError> {
    let (w, h) = (image.width(), image.height());
    let build = |data: Vec<u8>| {
        RgbImage::from_raw(w, h, data)
            .ok_or_else(|| DecodeError::UnsupportedMode("pixel buffer size mismatch".to_string()))
    };
    let rgba = |src: &[u8], drop_alpha: bool| -> Vec<u8> {
        let mut out = Vec::with_capacity(src.len() / 4 * 3);
        for p in src.chunks_exact(4) {
            if drop_alpha {
                out.extend_from_slice(&p[..3]);
            } else {
                out.extend_from_slice(&[
                    over_white(p[0], p[3]),
                    over_white(p[1], p[3]),
                    over_white(p[2], p[3]),
                ]);
            }
        }
        out
    };
    let la = |src: &[u8]| -> Vec<u8> {
        let mut out = Vec::with_capacity(src.len() / 2 * 3);
        for p in src.chunks_exact(2) {
            let v = over_white(p[0], p[1]);
            out.extend_from_slice(&[v, v, v]);
        }
        out
    };
    let high = |src: &[u16]| -> Vec<u8> { src.iter().map(|&v| (v >> 8) as u8).collect() };
    match image {
        DynamicImage::ImageRgb8(img) => Ok(img),
        DynamicImage::ImageRgba8(img) => build(rgba(img.as_raw(), rgb_with_trns)),
        DynamicImage::ImageLuma8(img) => {
            build(img.as_raw().iter().flat_map(|&v| [v, v, v]).collect())
        }
        DynamicImage::ImageLumaA8(img) => build(la(img.as_raw())),
        DynamicImage::ImageRgb16(img) => build(high(img.as_raw())),
        DynamicImage::ImageRgba16(img) => build(rgba(&high(img.as_raw()), rgb_with_trns)),
        DynamicImage::ImageLuma16(img) => build(
            img.as_raw()
                .iter()
                .flat_map(|&v| [(v >> 8) as u8; 3])
                .collect(),
        ),
        DynamicImage::ImageLumaA16(img) => build(la(&high(img.as_raw()))),
        DynamicImage::ImageRgb32F(_) => Ok(image.to_rgb8()),
        DynamicImage::ImageRgba32F(_) => build(rgba(image.to_rgba8().as_raw(), false)),
        other => Err(DecodeError::UnsupportedMode(format!("{:?}", other.color()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::decode_rgb;
    use crate::image::test_util::*;
    use ::image::ImageFormat;

    #[test]
    fn composite_over_white_matches_pillow() {
        // Image.alpha_composite(white, (v, v, v, a)), all 65 536 pixels, alpha-major.
        let table = (0..=255u8).flat_map(|a| (0..=255u8).map(move |v| over_white(v, a)));
        assert_eq!(fnv(table), 0x5546cee15493f6a7);
    }

    #[test]
    fn png_modes_convert_like_pil() {
        let pattern_4x3: Vec<u8> = pattern(4, 3).into_raw();
        // Gray values, as the RGB triplets they become.
        let gray = |v: &[u8]| -> Vec<u8> { v.iter().flat_map(|&v| [v; 3]).collect() };
        let cases: [(&[u8], Vec<u8>); 6] = [
            // Mode RGB with a tRNS colour: transformers passes it through untouched.
            (PNG_RGB_TRNS, pattern_4x3),
            // Mode L with tRNS: the transparent value becomes white.
            (
                PNG_GRAY_TRNS,
                gray(&[0, 37, 74, 111, 91, 141, 191, 241, 182, 255, 52, 115]),
            ),
            (
                PNG_GRAY_ALPHA,
                gray(&[202, 178, 165, 162, 162, 168, 194, 253, 188, 253, 171, 163]),
            ),
            // 16-bit RGB: Pillow keeps the high byte.
            (
                PNG_RGB16,
                vec![
                    0, 53, 106, 37, 90, 143, 74, 127, 180, 111, 164, 217, 91, 144, 197, 141, 194,
                    248, 191, 245, 41, 242, 38, 91, 182, 236, 32, 246, 42, 95, 52, 105, 158, 115,
                    168, 221,
                ],
            ),
            // 16-bit gray: the high byte too (Pillow would clip to 255: a deliberate difference).
            (
                PNG_GRAY16,
                gray(&[0, 37, 74, 111, 91, 141, 191, 242, 182, 246, 52, 115]),
            ),
            // Palette with per-entry alpha (tRNS).
            (
                PNG_PALETTE_TRNS,
                vec![
                    0, 1, 2, 255, 255, 255, 130, 131, 131, 248, 248, 248, 12, 13, 14, 15, 16, 17,
                    18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35,
                ],
            ),
        ];
        for (file, expected) in cases {
            let decoded = decode_rgb(file, true).unwrap();
            assert_eq!(decoded.format, ImageFormat::Png);
            assert_eq!(decoded.rgb.into_raw(), expected);
        }
    }
}
