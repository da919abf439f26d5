//! Recognising an image by its content: the format from the first bytes of a file, whatever its
//! name. Used by `walk` to pick image files and by [`super::decode_rgb`] to choose a decoder.
//!
//! Not for: checking that the rest of the file decodes (a file that sniffs as an image can still
//! fail in [`super::decode_rgb`]), HEIC/HEIF and AVIF (`heif.rs` recognises them by their brands),
//! or formats imgvec does not decode (PNM, JPEG XL, …).

use ::image::ImageFormat;

/// The format of an image from its first bytes (16 are enough), or `None` when it is not one of
/// the formats this build decodes (PNG, JPEG, GIF, WebP, BMP, TIFF), whatever the file's name.
pub fn sniff_image_format(header: &[u8]) -> Option<ImageFormat> {
    // BigTIFF, which `guess_format` does not know.
    if header.starts_with(b"II\x2b\0") || header.starts_with(b"MM\0\x2b") {
        return Some(ImageFormat::Tiff);
    }
    let format = ::image::guess_format(header).ok()?;
    match format {
        ImageFormat::Png
        | ImageFormat::Jpeg
        | ImageFormat::Gif
        | ImageFormat::WebP
        | ImageFormat::Tiff => Some(format),
        // "BM" alone matches plenty of text: also require a known DIB header size.
        ImageFormat::Bmp => {
            let dib = header.get(14..18)?;
            let dib = u32::from_le_bytes([dib[0], dib[1], dib[2], dib[3]]);
            matches!(dib, 12 | 16 | 40 | 52 | 56 | 64 | 108 | 124).then_some(format)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::test_util::{bmp_header, JPEG_CMYK, PNG_RGB16};
    use crate::image::{decode_rgb, DecodeError};

    #[test]
    fn sniffing_recognises_images_by_content() {
        assert_eq!(sniff_image_format(JPEG_CMYK), Some(ImageFormat::Jpeg));
        assert_eq!(sniff_image_format(PNG_RGB16), Some(ImageFormat::Png));
        assert_eq!(sniff_image_format(b"GIF89a\x01\0"), Some(ImageFormat::Gif));
        assert_eq!(
            sniff_image_format(b"RIFF\x10\0\0\0WEBPVP8 "),
            Some(ImageFormat::WebP)
        );
        assert_eq!(
            sniff_image_format(b"II*\0\x08\0\0\0"),
            Some(ImageFormat::Tiff)
        );
        assert_eq!(
            sniff_image_format(&bmp_header(2, 2)),
            Some(ImageFormat::Bmp)
        );
        assert_eq!(sniff_image_format(b"BMW service notes, 2024\n"), None);
        assert_eq!(sniff_image_format(b"P6\n1 1\n255\n"), None); // PNM: not decoded here
        assert_eq!(sniff_image_format(b"hello"), None);
        assert_eq!(sniff_image_format(b""), None);
        assert!(matches!(
            decode_rgb(b"not an image", true),
            Err(DecodeError::UnknownFormat)
        ));
    }
}
