//! Indexed image files as the page shows them: bounded-size JPEG thumbnails (made once, kept in
//! memory) and the original bytes.
//!
//! What it is for: reading the file at a document's stored path — the only path ever read; none
//! comes from a request — checking it is still the file that was indexed (its SHA-256 is the
//! document id), and making a thumbnail with the project's bounded decoder (EXIF orientation
//! applied), a few at a time on blocking threads.
//!
//! What it is not for: finding documents (the handlers ask the store), or query images.

use std::io::ErrorKind;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use axum::body::Bytes;
use image::codecs::jpeg::JpegEncoder;
use image::ImageFormat;
use tokio::sync::Semaphore;

use super::api::{run_blocking, ApiError};
use super::lru::Lru;
use crate::image::heif::sniff_heif;
use crate::image::raw::raw_preview;
use crate::image::{decode_rgb, sniff_image_format};
use crate::pipeline::sha256_hex;

/// Longest side of a thumbnail, pixels (tiles are about 180 CSS pixels wide; twice that for sharp
/// screens).
pub const THUMB_SIDE: u32 = 360;
/// JPEG quality of thumbnails.
const THUMB_QUALITY: u8 = 80;
/// Thumbnails made at once (a 12 MP photo decodes to 36 MB).
const THUMB_PERMITS: usize = 4;
/// Largest file served or thumbnailed.
const MAX_FILE_BYTES: u64 = 1 << 30;

/// The thumbnail maker and its cache.
pub struct Thumbs {
    cache: Mutex<Lru<String, Bytes>>,
    permits: Semaphore,
}

/// An original file, checked.
pub struct Original {
    pub bytes: Bytes,
    pub format: ImageFormat,
}

impl Thumbs {
    /// A thumbnail maker keeping at most `cache_bytes` of thumbnails in memory.
    pub fn new(cache_bytes: usize) -> Self {
        Self {
            cache: Mutex::new(Lru::new(cache_bytes)),
            permits: Semaphore::new(THUMB_PERMITS),
        }
    }

    /// The thumbnail of document `id` if one was made and is still in memory.
    pub fn cached(&self, id: &str) -> Option<Bytes> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.get(&id.to_string())
    }

    /// The JPEG thumbnail of document `id`, whose file is at `path`.
    pub async fn thumbnail(&self, id: &str, path: &str) -> Result<Bytes, ApiError> {
        let lock = || self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(b) = self.cached(id) {
            return Ok(b);
        }
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| ApiError::internal("the thumbnail queue is closed", e))?;
        // Made while this request waited for a permit?
        if let Some(b) = lock().get(&id.to_string()) {
            return Ok(b);
        }
        let original = read_original(id, path).await?;
        let path = path.to_string();
        let jpeg = run_blocking(move || {
            make_thumbnail(&original.bytes, THUMB_SIDE).map_err(|why| {
                ApiError::new(
                    axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                    format!("{path}: no thumbnail: {why}"),
                )
            })
        })
        .await?;
        let jpeg = Bytes::from(jpeg);
        lock().put(id.to_string(), jpeg.clone(), jpeg.len() + id.len() + 64);
        Ok(jpeg)
    }
}

/// Reads the file at `path` and checks that it is still document `id`: an image whose SHA-256 is
/// the id (ids that are not SHA-256s, from indexes other tools made, are not checked).
pub async fn read_original(id: &str, path: &str) -> Result<Original, ApiError> {
    let gone = |why: String| ApiError::not_found(format!("{path}: {why}"));
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound => {
                gone("the file is gone (moved or deleted since it was indexed)".into())
            }
            _ => gone(format!("cannot read the file: {e}")),
        })?;
    if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
        return Err(gone("not a file imgvec serves".into()));
    }
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| gone(format!("cannot read the file: {e}")))?;
    let bytes = Bytes::from(bytes);
    if is_sha256(id) {
        let check = bytes.clone();
        let sha = run_blocking(move || Ok(sha256_hex(&check))).await?;
        if sha != id {
            return Err(gone(
                "the file has changed since it was indexed (run imgvec ingest again)".into(),
            ));
        }
    }
    // A camera RAW file is shown by its preview, which a browser can display.
    if let Some((_, preview)) = raw_preview(&bytes) {
        let preview = preview.map_err(gone)?;
        return Ok(Original {
            bytes: Bytes::copy_from_slice(preview.jpeg),
            format: ImageFormat::Jpeg,
        });
    }
    // HEIC/AVIF: kept as they are here (a thumbnail decodes them); `original` converts them
    // with [`as_jpeg`], since most browsers show neither.
    if sniff_heif(&bytes).is_some() {
        return Ok(Original {
            bytes,
            format: ImageFormat::Avif,
        });
    }
    let format = sniff_image_format(&bytes)
        .ok_or_else(|| gone("the file is not an image any more".into()))?;
    Ok(Original { bytes, format })
}

/// Quality of a HEIC/AVIF file shown full size as JPEG.
const FULL_QUALITY: u8 = 90;

/// A HEIC/HEIF or AVIF file as the page shows it full size: a JPEG of the decoded image, upright.
pub fn heif_as_jpeg(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let decoded = decode_rgb(bytes, true).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, FULL_QUALITY)
        .encode_image(&decoded.rgb)
        .map_err(|e| format!("cannot encode it as JPEG: {e}"))?;
    Ok(out)
}

/// A JPEG of the image scaled to fit `side`×`side` (never enlarged), upright per its EXIF tag.
pub fn make_thumbnail(bytes: &[u8], side: u32) -> Result<Vec<u8>, String> {
    let decoded = decode_rgb(bytes, true).map_err(|e| e.to_string())?;
    let (w, h) = decoded.rgb.dimensions();
    let (tw, th) = fit(w, h, side);
    let small = if (tw, th) == (w, h) {
        decoded.rgb
    } else {
        image::imageops::thumbnail(&decoded.rgb, tw, th)
    };
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, THUMB_QUALITY)
        .encode_image(&small)
        .map_err(|e| format!("cannot encode the thumbnail: {e}"))?;
    Ok(out)
}

/// The size of a `w`×`h` image scaled to fit a `side` square, at least 1×1, never enlarged.
pub fn fit(w: u32, h: u32, side: u32) -> (u32, u32) {
    if w <= side && h <= side {
        return (w, h);
    }
    let scale = f64::from(side) / f64::from(w.max(h));
    let s = |x: u32| ((f64::from(x) * scale).round() as u32).clamp(1, side);
    (s(w), s(h))
}

/// Lower-case hex SHA-256, as imgvec makes document ids.
pub fn is_sha256(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `id` can be a document id at all: 1-128 letters, digits, `-` or `_` (anything else —
/// slashes, dots, percent signs — is refused before the store is asked).
pub fn is_doc_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The `Content-Type` of an image format.
pub fn mime(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Png => "image/png",
        ImageFormat::Jpeg => "image/jpeg",
        ImageFormat::Gif => "image/gif",
        ImageFormat::WebP => "image/webp",
        ImageFormat::Bmp => "image/bmp",
        ImageFormat::Tiff => "image/tiff",
        _ => "application/octet-stream",
    }
}

/// The file name of a stored path, for messages.
pub fn file_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A HEIC is shown upright as a JPEG, full size and as a thumbnail.
    #[test]
    #[cfg_attr(not(feature = "heif"), ignore = "needs --features heif")]
    fn heic_is_shown_as_jpeg() {
        let heic = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/heif/files/heic_orient6.heic"),
        )
        .unwrap();
        let jpeg = heif_as_jpeg(&heic).unwrap();
        assert_eq!(sniff_image_format(&jpeg), Some(ImageFormat::Jpeg));
        let shown = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((shown.width(), shown.height()), (48, 64));
        let thumb = image::load_from_memory(&make_thumbnail(&heic, 32).unwrap()).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (24, 32));
    }

    #[test]
    fn thumbnails_fit_the_square_and_keep_the_shape() {
        assert_eq!(fit(4000, 3000, 360), (360, 270));
        assert_eq!(fit(3000, 4000, 360), (270, 360));
        assert_eq!(fit(100, 50, 360), (100, 50));
        assert_eq!(fit(100_000, 10, 360), (360, 1));
    }

    #[test]
    fn a_thumbnail_is_a_small_jpeg() {
        let img = image::RgbImage::from_fn(800, 600, |x, y| image::Rgb([x as u8, y as u8, 0]));
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), ImageFormat::Png)
            .unwrap();
        let jpeg = make_thumbnail(&png, 360).unwrap();
        let back = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((back.width(), back.height()), (360, 270));
        assert_eq!(sniff_image_format(&jpeg), Some(ImageFormat::Jpeg));
        assert!(make_thumbnail(b"not an image", 360).is_err());
    }

    #[test]
    fn ids_are_checked_before_use() {
        assert!(is_sha256(&"ab".repeat(32)));
        assert!(!is_sha256(&"AB".repeat(32)));
        assert!(is_doc_id("1001") && is_doc_id(&"ab".repeat(32)));
        for bad in [
            "",
            "..",
            "../etc/passwd",
            "a/b",
            "a%2Fb",
            "a.b",
            &"a".repeat(129),
        ] {
            assert!(!is_doc_id(bad), "{bad}");
        }
    }
}
