//! The few libheif calls imgvec needs (libheif ≥ 1.15, the C API, linked by `build.rs` through
//! pkg-config), wrapped so that every object is freed on every path and every error is a string.
//!
//! Safety: the size limits are checked on the primary image's header (`ispe`, and the size after
//! transformations) before libheif decodes anything, and libheif's own limit on a side is set
//! (the smaller of imgvec's and libheif's default);
//! the pixel plane is read within the width, height and stride libheif reports.
//!
//! Not for: choosing what to apply (`heif.rs`), or the conversion to RGB as Pillow does it
//! (`convert.rs`).

use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr;
use std::sync::Once;

use ::image::{DynamicImage, RgbImage, RgbaImage};

use crate::image::convert::to_rgb_like_pil;
use crate::image::limits::{check_size, MAX_SIDE};
use crate::image::DecodeError;

#[repr(C)]
struct HeifError {
    code: c_int,
    subcode: c_int,
    message: *const c_char,
}

#[repr(C)]
struct HeifContext {
    _private: [u8; 0],
}
#[repr(C)]
struct HeifImageHandle {
    _private: [u8; 0],
}
#[repr(C)]
struct HeifImage {
    _private: [u8; 0],
}

/// `struct heif_decoding_options` up to its version-2 fields (always allocated by libheif, which
/// fills in its `version`; only fields the version has are written).
#[repr(C)]
struct HeifDecodingOptions {
    version: u8,
    ignore_transformations: u8,
    start_progress: *mut c_void,
    on_progress: *mut c_void,
    end_progress: *mut c_void,
    progress_user_data: *mut c_void,
    convert_hdr_to_8bit: u8,
}

const HEIF_COLORSPACE_RGB: c_int = 1;
const HEIF_CHROMA_INTERLEAVED_RGB: c_int = 10;
const HEIF_CHROMA_INTERLEAVED_RGBA: c_int = 11;
const HEIF_CHANNEL_INTERLEAVED: c_int = 10;
const HEIF_ERROR_INVALID_INPUT: c_int = 2;
const HEIF_ERROR_MEMORY_ALLOCATION: c_int = 6;
const HEIF_SUBERROR_END_OF_DATA: c_int = 100;
const HEIF_SUBERROR_SECURITY_LIMIT_EXCEEDED: c_int = 1000;

// Linked by build.rs (pkg-config).
extern "C" {
    fn heif_init(params: *mut c_void) -> HeifError;
    fn heif_context_alloc() -> *mut HeifContext;
    fn heif_context_free(ctx: *mut HeifContext);
    fn heif_context_set_maximum_image_size_limit(ctx: *mut HeifContext, maximum_width: c_int);
    fn heif_context_read_from_memory_without_copy(
        ctx: *mut HeifContext,
        mem: *const c_void,
        size: usize,
        options: *const c_void,
    ) -> HeifError;
    fn heif_context_get_primary_image_handle(
        ctx: *mut HeifContext,
        handle: *mut *mut HeifImageHandle,
    ) -> HeifError;
    fn heif_image_handle_release(handle: *const HeifImageHandle);
    fn heif_image_handle_get_width(handle: *const HeifImageHandle) -> c_int;
    fn heif_image_handle_get_height(handle: *const HeifImageHandle) -> c_int;
    fn heif_image_handle_get_ispe_width(handle: *const HeifImageHandle) -> c_int;
    fn heif_image_handle_get_ispe_height(handle: *const HeifImageHandle) -> c_int;
    fn heif_image_handle_has_alpha_channel(handle: *const HeifImageHandle) -> c_int;
    fn heif_decoding_options_alloc() -> *mut HeifDecodingOptions;
    fn heif_decoding_options_free(options: *mut HeifDecodingOptions);
    fn heif_decode_image(
        handle: *const HeifImageHandle,
        out_img: *mut *mut HeifImage,
        colorspace: c_int,
        chroma: c_int,
        options: *const HeifDecodingOptions,
    ) -> HeifError;
    fn heif_image_release(img: *const HeifImage);
    fn heif_image_get_width(img: *const HeifImage, channel: c_int) -> c_int;
    fn heif_image_get_height(img: *const HeifImage, channel: c_int) -> c_int;
    fn heif_image_get_plane_readonly(
        img: *const HeifImage,
        channel: c_int,
        out_stride: *mut c_int,
    ) -> *const u8;
    fn heif_image_get_bits_per_pixel_range(img: *const HeifImage, channel: c_int) -> c_int;
    fn heif_get_version() -> *const c_char;
}

/// Why libheif could not give the image.
pub(super) enum Error {
    /// Over imgvec's size limits.
    TooLarge(DecodeError),
    /// Anything else: libheif's message, or ours.
    Other(String),
}

/// libheif's version string (`imgvec info`).
pub fn version() -> String {
    // SAFETY: libheif returns a static NUL-terminated string.
    unsafe {
        let v = heif_get_version();
        if v.is_null() {
            return "unknown".to_string();
        }
        CStr::from_ptr(v).to_string_lossy().into_owned()
    }
}

/// `Err` with libheif's message unless `e` is success.
fn check(e: HeifError, what: &str) -> Result<(), Error> {
    if e.code == 0 {
        return Ok(());
    }
    let message = if e.message.is_null() {
        String::new()
    } else {
        // SAFETY: libheif's messages are NUL-terminated and static (or live in the context).
        unsafe { CStr::from_ptr(e.message) }
            .to_string_lossy()
            .trim()
            .to_string()
    };
    let reason = match (e.code, e.subcode) {
        (HEIF_ERROR_INVALID_INPUT, HEIF_SUBERROR_END_OF_DATA) => {
            format!("truncated: the file ends before its image data does ({message})")
        }
        (_, HEIF_SUBERROR_SECURITY_LIMIT_EXCEEDED) | (HEIF_ERROR_MEMORY_ALLOCATION, _) => {
            return Err(Error::TooLarge(DecodeError::TooLarge {
                reason: format!("{what}: {message}"),
            }))
        }
        _ => format!("{what}: {message}"),
    };
    Err(Error::Other(reason))
}

struct Context(*mut HeifContext);
impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: allocated by heif_context_alloc, freed once.
        unsafe { heif_context_free(self.0) }
    }
}
struct Handle(*mut HeifImageHandle);
impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: obtained from libheif, released once.
        unsafe { heif_image_handle_release(self.0) }
    }
}
struct Image(*mut HeifImage);
impl Drop for Image {
    fn drop(&mut self) {
        // SAFETY: obtained from heif_decode_image, released once.
        unsafe { heif_image_release(self.0) }
    }
}
struct Options(*mut HeifDecodingOptions);
impl Drop for Options {
    fn drop(&mut self) {
        // SAFETY: allocated by heif_decoding_options_alloc, freed once.
        unsafe { heif_decoding_options_free(self.0) }
    }
}

/// The primary image's pixels as libheif gives them: 8-bit interleaved RGB or RGBA.
pub(super) struct Pixels {
    width: u32,
    height: u32,
    alpha: bool,
    data: Vec<u8>,
}

impl Pixels {
    /// RGB as transformers' `convert_to_rgb` makes it of Pillow's RGB/RGBA image (alpha over
    /// white).
    pub(super) fn into_rgb(self) -> Result<RgbImage, DecodeError> {
        let mismatch = || DecodeError::UnsupportedMode("pixel buffer size mismatch".to_string());
        if self.alpha {
            let rgba =
                RgbaImage::from_raw(self.width, self.height, self.data).ok_or_else(mismatch)?;
            to_rgb_like_pil(DynamicImage::ImageRgba8(rgba), false)
        } else {
            RgbImage::from_raw(self.width, self.height, self.data).ok_or_else(mismatch)
        }
    }
}

static INIT: Once = Once::new();

/// libheif's own default limit on an image's width and height.
const LIBHEIF_DEFAULT_SIDE: u32 = 32_768;

/// Decodes the primary image of `bytes` to 8-bit RGB(A), `apply_transformations` (clap, irot,
/// imir) or not, with 10- and 12-bit images reduced to 8 bits by libheif.
pub(super) fn decode_primary(bytes: &[u8], apply_transformations: bool) -> Result<Pixels, Error> {
    // Loads the codec plugins where libheif is built with them as plugins (newer distributions);
    // reference-counted, never undone.
    INIT.call_once(|| {
        // SAFETY: NULL asks for the default parameters.
        let _ = unsafe { heif_init(ptr::null_mut()) };
    });
    // SAFETY: every pointer passed below is either from libheif or into `bytes`, which outlives
    // the context (`Context` is dropped at the end of this function); objects are freed by their
    // guards in reverse order of creation.
    unsafe {
        let ctx = heif_context_alloc();
        if ctx.is_null() {
            return Err(Error::Other("libheif could not allocate a context".into()));
        }
        let ctx = Context(ctx);
        // libheif refuses sides over this while parsing (its default is 32 768: never raised).
        let limit = c_int::try_from(MAX_SIDE.min(LIBHEIF_DEFAULT_SIDE)).unwrap_or(c_int::MAX);
        heif_context_set_maximum_image_size_limit(ctx.0, limit);
        check(
            heif_context_read_from_memory_without_copy(
                ctx.0,
                bytes.as_ptr().cast(),
                bytes.len(),
                ptr::null(),
            ),
            "cannot read the file's structure",
        )?;
        let mut handle = ptr::null_mut();
        check(
            heif_context_get_primary_image_handle(ctx.0, &mut handle),
            "no primary image",
        )?;
        if handle.is_null() {
            return Err(Error::Other("no primary image".into()));
        }
        let handle = Handle(handle);
        let side = |v: c_int| u32::try_from(v).unwrap_or(0);
        let (width, height) = (
            side(heif_image_handle_get_width(handle.0)),
            side(heif_image_handle_get_height(handle.0)),
        );
        let (ispe_w, ispe_h) = (
            side(heif_image_handle_get_ispe_width(handle.0)),
            side(heif_image_handle_get_ispe_height(handle.0)),
        );
        if width == 0 || height == 0 {
            return Err(Error::Other(format!("empty image ({width}×{height})")));
        }
        // Decoding needs the coded image (ispe), a grid's or overlay's own canvas (which
        // libheif 1.15 allocates as declared, whatever the ispe says) and the output, each 4
        // bytes a pixel at most.
        let canvas = super::derived_size(bytes).unwrap_or((width, height));
        for (w, h) in [(ispe_w, ispe_h), canvas, (width, height)] {
            check_size(w, h, u64::from(w) * u64::from(h) * 4).map_err(Error::TooLarge)?;
        }
        let alpha = heif_image_handle_has_alpha_channel(handle.0) != 0;
        let options = heif_decoding_options_alloc();
        if options.is_null() {
            return Err(Error::Other("libheif could not allocate options".into()));
        }
        let options = Options(options);
        (*options.0).ignore_transformations = u8::from(!apply_transformations);
        if (*options.0).version >= 2 {
            (*options.0).convert_hdr_to_8bit = 1;
        }
        let chroma = if alpha {
            HEIF_CHROMA_INTERLEAVED_RGBA
        } else {
            HEIF_CHROMA_INTERLEAVED_RGB
        };
        let mut img = ptr::null_mut();
        check(
            heif_decode_image(handle.0, &mut img, HEIF_COLORSPACE_RGB, chroma, options.0),
            "cannot decode the image",
        )?;
        if img.is_null() {
            return Err(Error::Other("cannot decode the image".into()));
        }
        let img = Image(img);
        let (w, h) = (
            heif_image_get_width(img.0, HEIF_CHANNEL_INTERLEAVED),
            heif_image_get_height(img.0, HEIF_CHANNEL_INTERLEAVED),
        );
        let (w, h) = (side(w), side(h));
        if w == 0 || h == 0 {
            return Err(Error::Other(format!("decoded an empty image ({w}×{h})")));
        }
        check_size(w, h, u64::from(w) * u64::from(h) * 4).map_err(Error::TooLarge)?;
        let mut stride: c_int = 0;
        let plane = heif_image_get_plane_readonly(img.0, HEIF_CHANNEL_INTERLEAVED, &mut stride);
        let channels = if alpha { 4 } else { 3 };
        let row = w as usize * channels;
        let stride = usize::try_from(stride).unwrap_or(0);
        let bits = heif_image_get_bits_per_pixel_range(img.0, HEIF_CHANNEL_INTERLEAVED);
        if plane.is_null() || stride < row || bits != 8 {
            return Err(Error::Other(
                "libheif gave no 8-bit RGB plane for this image".into(),
            ));
        }
        let mut data = Vec::with_capacity(row * h as usize);
        for y in 0..h as usize {
            // SAFETY: the plane holds `h` rows of `stride` bytes, each with `row` pixel bytes.
            let line = std::slice::from_raw_parts(plane.add(y * stride), row);
            data.extend_from_slice(line);
        }
        Ok(Pixels {
            width: w,
            height: h,
            alpha,
            data,
        })
    }
}
