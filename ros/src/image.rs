//! sensor_msgs/Image and CompressedImage -> one RGB buffer for the engine.
//!
//! Raw images are checked (sizes, step, data length) before any pixel is
//! read; JPEG is decoded by zune-jpeg in strict mode (a truncated JPEG is an
//! error, not a grey picture) and PNG by the `image` crate, both with a size
//! limit. The output buffer is reused while the camera's size stays the same.

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};

use image::RgbImage;
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use crate::msg::{CompressedImage, Image};

/// Largest accepted side, in pixels.
pub const MAX_SIDE: u32 = 8192;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ImageDecodeError {
    #[error("bad image size {width}x{height} (each side 1..={MAX_SIDE})")]
    Size { width: u32, height: u32 },
    #[error("unsupported encoding {0:?} (rgb8, bgr8, rgba8, bgra8, mono8)")]
    Encoding(String),
    #[error("step {step} is smaller than width x {channels} channels = {min}")]
    Step { step: u32, channels: u32, min: u64 },
    #[error("data has {found} bytes, height x step = {expected}")]
    Length { expected: u64, found: usize },
    #[error("compressed data is neither JPEG nor PNG (format {0:?})")]
    UnknownFormat(String),
    #[error("corrupt JPEG: {0}")]
    Jpeg(String),
    #[error("corrupt PNG: {0}")]
    Png(String),
}

impl ImageDecodeError {
    /// A short, stable name for counting drops by reason.
    pub fn kind(&self) -> &'static str {
        match self {
            ImageDecodeError::Size { .. } => "image_size",
            ImageDecodeError::Encoding(_) => "image_encoding",
            ImageDecodeError::Step { .. } => "image_step",
            ImageDecodeError::Length { .. } => "image_length",
            ImageDecodeError::UnknownFormat(_) => "image_format",
            ImageDecodeError::Jpeg(_) => "jpeg",
            ImageDecodeError::Png(_) => "png",
        }
    }
}

fn check_size(width: u32, height: u32) -> Result<(), ImageDecodeError> {
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(ImageDecodeError::Size { width, height });
    }
    Ok(())
}

/// Resizes `out` only if the camera's size changed.
fn ensure_size(out: &mut RgbImage, width: u32, height: u32) {
    if out.dimensions() != (width, height) {
        *out = RgbImage::new(width, height);
    }
}

/// Decodes a raw image into `out` (RGB).
pub fn decode_raw(msg: &Image, out: &mut RgbImage) -> Result<(), ImageDecodeError> {
    let (w, h) = (msg.width, msg.height);
    check_size(w, h)?;
    // (channels, index of R, G, B in a pixel)
    let (channels, order): (u32, [usize; 3]) = match msg.encoding.as_str() {
        "rgb8" => (3, [0, 1, 2]),
        "bgr8" => (3, [2, 1, 0]),
        "rgba8" => (4, [0, 1, 2]),
        "bgra8" => (4, [2, 1, 0]),
        "mono8" => (1, [0, 0, 0]),
        other => return Err(ImageDecodeError::Encoding(other.to_string())),
    };
    let min = w as u64 * channels as u64;
    if (msg.step as u64) < min {
        return Err(ImageDecodeError::Step {
            step: msg.step,
            channels,
            min,
        });
    }
    let expected = msg.step as u64 * h as u64;
    if msg.data.len() as u64 != expected {
        return Err(ImageDecodeError::Length {
            expected,
            found: msg.data.len(),
        });
    }
    ensure_size(out, w, h);
    let row_out = w as usize * 3;
    let c = channels as usize;
    for (y, dst) in out.chunks_exact_mut(row_out).enumerate() {
        let start = y * msg.step as usize;
        let src = &msg.data[start..start + w as usize * c];
        for (d, s) in dst.chunks_exact_mut(3).zip(src.chunks_exact(c)) {
            d[0] = s[order[0]];
            d[1] = s[order[1]];
            d[2] = s[order[2]];
        }
    }
    Ok(())
}

/// Decodes a JPEG or PNG CompressedImage into `out` (RGB). The codec is
/// chosen by the data's signature; `format` is only reported in errors.
pub fn decode_compressed(
    msg: &CompressedImage,
    out: &mut RgbImage,
) -> Result<(), ImageDecodeError> {
    let data = msg.data.as_slice();
    // The decoders allocate their working buffers on each image (zune-jpeg
    // has no API to reuse them); the scope lets the hot-path test tell.
    let decoding = sarm_runtime::alloc_scope::Scope::ImageDecode;
    if data.starts_with(&[0xFF, 0xD8, 0xFF]) {
        sarm_runtime::alloc_scope::within(decoding, || decode_jpeg(data, out))
    } else if data.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        sarm_runtime::alloc_scope::within(decoding, || decode_png(data, out))
    } else {
        Err(ImageDecodeError::UnknownFormat(msg.format.clone()))
    }
}

fn decode_jpeg(data: &[u8], out: &mut RgbImage) -> Result<(), ImageDecodeError> {
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(MAX_SIDE as usize)
        .set_max_height(MAX_SIDE as usize)
        .jpeg_set_out_colorspace(ColorSpace::RGB);
    let result = catch_unwind(AssertUnwindSafe(|| -> Result<(), ImageDecodeError> {
        let mut dec = JpegDecoder::new_with_options(ZCursor::new(data), options);
        dec.decode_headers()
            .map_err(|e| ImageDecodeError::Jpeg(format!("{e:?}")))?;
        let (w, h) = dec
            .dimensions()
            .map(|(w, h)| (w as u32, h as u32))
            .ok_or_else(|| ImageDecodeError::Jpeg("no dimensions".into()))?;
        check_size(w, h)?;
        ensure_size(out, w, h);
        dec.decode_into(out.as_mut())
            .map_err(|e| ImageDecodeError::Jpeg(format!("{e:?}")))
    }));
    result.unwrap_or_else(|_| Err(ImageDecodeError::Jpeg("decoder panicked".into())))
}

fn decode_png(data: &[u8], out: &mut RgbImage) -> Result<(), ImageDecodeError> {
    let result = catch_unwind(AssertUnwindSafe(
        || -> Result<RgbImage, ImageDecodeError> {
            let mut reader =
                image::ImageReader::with_format(Cursor::new(data), image::ImageFormat::Png);
            let mut limits = image::Limits::default();
            limits.max_image_width = Some(MAX_SIDE);
            limits.max_image_height = Some(MAX_SIDE);
            reader.limits(limits);
            let img = reader
                .decode()
                .map_err(|e| ImageDecodeError::Png(e.to_string()))?;
            Ok(img.to_rgb8())
        },
    ));
    let img = result.unwrap_or_else(|_| Err(ImageDecodeError::Png("decoder panicked".into())))?;
    check_size(img.width(), img.height())?;
    *out = img;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(encoding: &str, w: u32, h: u32, step: u32, data: Vec<u8>) -> Image {
        Image {
            encoding: encoding.into(),
            width: w,
            height: h,
            step,
            data,
            ..Default::default()
        }
    }

    #[test]
    fn raw_encodings_become_rgb() {
        let mut out = RgbImage::new(1, 1);
        // 2x1, step padded to 8 bytes per row.
        decode_raw(
            &raw("bgr8", 2, 1, 8, vec![1, 2, 3, 4, 5, 6, 0, 0]),
            &mut out,
        )
        .unwrap();
        assert_eq!(out.as_raw(), &[3, 2, 1, 6, 5, 4]);
        decode_raw(&raw("rgba8", 1, 1, 4, vec![9, 8, 7, 255]), &mut out).unwrap();
        assert_eq!(out.as_raw(), &[9, 8, 7]);
        decode_raw(&raw("bgra8", 1, 1, 4, vec![9, 8, 7, 255]), &mut out).unwrap();
        assert_eq!(out.as_raw(), &[7, 8, 9]);
        decode_raw(&raw("mono8", 2, 1, 2, vec![10, 20]), &mut out).unwrap();
        assert_eq!(out.as_raw(), &[10, 10, 10, 20, 20, 20]);
    }

    #[test]
    fn raw_checks_sizes() {
        let mut out = RgbImage::new(1, 1);
        let e = decode_raw(&raw("rgb8", 2, 2, 5, vec![0; 10]), &mut out).unwrap_err();
        assert!(matches!(e, ImageDecodeError::Step { .. }), "{e}");
        let e = decode_raw(&raw("rgb8", 2, 2, 6, vec![0; 11]), &mut out).unwrap_err();
        assert_eq!(
            e,
            ImageDecodeError::Length {
                expected: 12,
                found: 11
            }
        );
        let e = decode_raw(&raw("yuv422", 2, 2, 4, vec![0; 8]), &mut out).unwrap_err();
        assert_eq!(e.kind(), "image_encoding");
        let e = decode_raw(&raw("rgb8", 0, 2, 0, vec![]), &mut out).unwrap_err();
        assert_eq!(e.kind(), "image_size");
        // 2^32-overflowing products are caught by u64 arithmetic.
        let e = decode_raw(&raw("rgb8", 8000, 8000, u32::MAX, vec![0; 3]), &mut out).unwrap_err();
        assert_eq!(e.kind(), "image_length");
    }

    fn encode(img: &RgbImage, format: image::ImageFormat) -> Vec<u8> {
        let mut buf = Cursor::new(Vec::new());
        img.write_to(&mut buf, format).unwrap();
        buf.into_inner()
    }

    #[test]
    fn jpeg_and_png_decode_and_corruption_is_an_error() {
        let img = RgbImage::from_fn(32, 24, |x, y| image::Rgb([x as u8 * 8, y as u8 * 10, 100]));
        let mut out = RgbImage::new(1, 1);
        let png = encode(&img, image::ImageFormat::Png);
        let msg = CompressedImage {
            format: "png".into(),
            data: png.clone(),
            ..Default::default()
        };
        decode_compressed(&msg, &mut out).unwrap();
        assert_eq!(out, img);
        let jpeg = encode(&img, image::ImageFormat::Jpeg);
        let mut msg = CompressedImage {
            format: "jpeg".into(),
            data: jpeg.clone(),
            ..Default::default()
        };
        decode_compressed(&msg, &mut out).unwrap();
        assert_eq!(out.dimensions(), (32, 24));
        let diff: u64 = out
            .as_raw()
            .iter()
            .zip(img.as_raw())
            .map(|(a, b)| (*a as i32 - *b as i32).unsigned_abs() as u64)
            .sum();
        assert!(diff / (32 * 24 * 3) < 8, "lossy but close");
        msg.data.truncate(jpeg.len() / 2);
        assert_eq!(
            decode_compressed(&msg, &mut out).unwrap_err().kind(),
            "jpeg"
        );
        msg.data = png[..png.len() / 2].to_vec();
        assert_eq!(decode_compressed(&msg, &mut out).unwrap_err().kind(), "png");
        msg.data = b"GIF89a....".to_vec();
        assert_eq!(
            decode_compressed(&msg, &mut out).unwrap_err().kind(),
            "image_format"
        );
    }
}
