//! Camera image -> encoder input: resize (and centre-crop) with an
//! antialiased convolution filter, scale, per-channel mean/std, NCHW.
//!
//! Resampling runs on float pixels, as the exporter's torchvision reference
//! does: rounding the resized image back to u8 alone moved EfficientNet
//! features to a cosine of 0.984 on the golden 640x480 scene.
//!
//! "Shorter side, then centre crop" is done as one resize from a fractional
//! source box. That box is exactly the region torchvision's
//! `resize(shorter side)` + `center_crop` keeps, at the same scale factor, so
//! no intermediate image is needed.

use fast_image_resize::images::Image;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;

use crate::bundle::manifest::{ImageEncoderSpec, ResizeFilter, ResizeRule};

/// Why an image could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image is empty ({width}x{height})")]
    Empty { width: u32, height: u32 },
    #[error("image of {width}x{height} RGB pixels needs {expected} bytes, found {found}")]
    Length {
        width: u32,
        height: u32,
        expected: usize,
        found: usize,
    },
    #[error("resizing {width}x{height} failed: {message}")]
    Resize {
        width: u32,
        height: u32,
        message: String,
    },
}

/// Resampling of a camera image to a model's input size on float pixels:
/// the part of preprocessing the reward encoder and the policy share.
///
/// The output is interleaved RGB f32 (0..255 scale, not rounded), height x
/// width. Buffers are kept between calls; the source buffer is reallocated
/// only when the camera's size changes.
pub struct Resampler {
    rule: ResizeRule,
    alg: ResizeAlg,
    width: u32,
    height: u32,
    resizer: Resizer,
    /// The camera image as f32 pixels.
    source: Image<'static>,
    resized: Image<'static>,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("rule", &self.rule)
            .field("width", &self.width)
            .field("height", &self.height)
            .finish()
    }
}

impl Resampler {
    /// To `width` x `height` (both > 0) by `rule` with `filter`, antialiased
    /// when downscaling (a convolution whose support grows with the scale,
    /// as torchvision's `antialias=True` and PIL do).
    pub fn new(rule: ResizeRule, filter: ResizeFilter, width: u32, height: u32) -> Self {
        let filter = match filter {
            ResizeFilter::Bilinear => FilterType::Bilinear,
            ResizeFilter::Bicubic => FilterType::CatmullRom,
        };
        Resampler {
            rule,
            alg: ResizeAlg::Convolution(filter),
            width,
            height,
            resizer: Resizer::new(),
            source: Image::new(1, 1, PixelType::F32x3),
            resized: Image::new(width, height, PixelType::F32x3),
        }
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// The source box (left, top, width, height) that ends up in the output.
    pub fn source_box(&self, src_w: u32, src_h: u32) -> (f64, f64, f64, f64) {
        match self.rule {
            ResizeRule::Stretch => (0.0, 0.0, src_w as f64, src_h as f64),
            ResizeRule::ShorterSideCenterCrop => {
                // torchvision: the shorter side becomes `size`, the longer
                // one int(size * long / short); then crop `size` at
                // round((resized - size) / 2).
                let (w, h) = (src_w as f64, src_h as f64);
                let (tw, th) = (self.width as f64, self.height as f64);
                let size = tw.max(th);
                let (rw, rh) = if w <= h {
                    (size, (size * h / w).trunc())
                } else {
                    ((size * w / h).trunc(), size)
                };
                // Python's round() is round-half-to-even.
                let left = ((rw - tw) / 2.0).round_ties_even();
                let top = ((rh - th) / 2.0).round_ties_even();
                let (sx, sy) = (w / rw, h / rh);
                (left * sx, top * sy, tw * sx, th * sy)
            }
        }
    }

    /// Resamples the `w` x `h` interleaved RGB8 image `rgb` to the output
    /// size (`width * height` f32 RGB pixels).
    pub fn run(&mut self, w: u32, h: u32, rgb: &[u8]) -> Result<Resampled<'_>, ImageError> {
        if w == 0 || h == 0 {
            return Err(ImageError::Empty {
                width: w,
                height: h,
            });
        }
        let expected = 3 * w as usize * h as usize;
        if rgb.len() != expected {
            return Err(ImageError::Length {
                width: w,
                height: h,
                expected,
                found: rgb.len(),
            });
        }
        let resize_err = |message: String| ImageError::Resize {
            width: w,
            height: h,
            message,
        };
        if (self.source.width(), self.source.height()) != (w, h) {
            self.source = Image::new(w, h, PixelType::F32x3);
        }
        for (dst, px) in self.source.buffer_mut().chunks_exact_mut(4).zip(rgb) {
            dst.copy_from_slice(&(*px as f32).to_ne_bytes());
        }
        let (left, top, bw, bh) = self.source_box(w, h);
        let options = ResizeOptions::new()
            .resize_alg(self.alg)
            .crop(left, top, bw, bh);
        let (resizer, source, resized) = (&mut self.resizer, &self.source, &mut self.resized);
        // fast_image_resize computes its filter coefficients on each call
        // (a few small allocations per frame; it has no API to keep them).
        crate::alloc_scope::within(crate::alloc_scope::Scope::Resize, || {
            resizer.resize(source, resized, &options)
        })
        .map_err(|e| resize_err(e.to_string()))?;
        Ok(Resampled {
            bytes: self.resized.buffer(),
        })
    }
}

/// A resampled image: interleaved f32 RGB, row-major.
#[derive(Debug, Clone, Copy)]
pub struct Resampled<'a> {
    /// fast_image_resize's `F32x3` buffer (native-endian f32 triples; a
    /// byte buffer without f32 alignment guarantee, hence read per value).
    bytes: &'a [u8],
}

impl<'a> Resampled<'a> {
    /// The pixels in row-major order, each `[r, g, b]` on the 0..255 scale.
    pub fn pixels(&self) -> impl Iterator<Item = [f32; 3]> + 'a {
        self.bytes.chunks_exact(12).map(|px| {
            let v = |i: usize| f32::from_ne_bytes([px[i], px[i + 1], px[i + 2], px[i + 3]]);
            [v(0), v(4), v(8)]
        })
    }
}

/// Preallocated preprocessing for one encoder input size.
pub struct Preprocessor {
    resampler: Resampler,
    scale: f32,
    mean: [f32; 3],
    std: [f32; 3],
}

impl std::fmt::Debug for Preprocessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preprocessor")
            .field("resampler", &self.resampler)
            .finish()
    }
}

impl Preprocessor {
    /// From a validated manifest (mean and std have 3 entries).
    pub fn new(spec: &ImageEncoderSpec) -> Self {
        let triple = |v: &[f32]| [v[0], v[1], v[2]];
        Preprocessor {
            resampler: Resampler::new(spec.resize, spec.filter, spec.width, spec.height),
            scale: spec.scale,
            mean: triple(&spec.mean),
            std: triple(&spec.std),
        }
    }

    /// Number of f32 values written by [`Self::run`]: 3 x height x width.
    pub fn output_len(&self) -> usize {
        3 * self.resampler.width as usize * self.resampler.height as usize
    }

    /// The source box (left, top, width, height) that ends up in the output.
    pub fn source_box(&self, src_w: u32, src_h: u32) -> (f64, f64, f64, f64) {
        self.resampler.source_box(src_w, src_h)
    }

    /// Writes the normalised NCHW tensor of `img` into `out`.
    pub fn run(&mut self, img: &RgbImage, out: &mut [f32]) -> Result<(), ImageError> {
        let (w, h) = img.dimensions();
        let plane = self.resampler.width as usize * self.resampler.height as usize;
        let (scale, mean, std) = (self.scale, self.mean, self.std);
        let pixels = self.resampler.run(w, h, img.as_raw())?;
        for c in 0..3 {
            let dst = &mut out[c * plane..(c + 1) * plane];
            for (d, px) in dst.iter_mut().zip(pixels.pixels()) {
                *d = (px[c] * scale - mean[c]) / std[c];
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rule: ResizeRule) -> ImageEncoderSpec {
        toml::from_str::<ImageEncoderSpec>(&format!(
            r#"
            kind = "test"
            cameras = ["top"]
            input = "pixels"
            output = "features"
            layout = "NCHW"
            height = 4
            width = 4
            resize = "{}"
            filter = "bilinear"
            scale = 0.00392156862745098
            mean = [0.5, 0.5, 0.5]
            std = [0.25, 0.25, 0.25]
            output_dim = 8
            precision = "fp32"
            file = {{ path = "x.onnx", sha256 = "00", bytes = 0 }}
            "#,
            match rule {
                ResizeRule::Stretch => "stretch",
                ResizeRule::ShorterSideCenterCrop => "shorter-side-center-crop",
            }
        ))
        .unwrap()
    }

    #[test]
    fn identity_size_is_exact_normalisation() {
        let mut p = Preprocessor::new(&spec(ResizeRule::ShorterSideCenterCrop));
        let img = RgbImage::from_fn(4, 4, |x, y| {
            image::Rgb([(x * 60) as u8, (y * 60) as u8, 255])
        });
        let mut out = vec![0.0; p.output_len()];
        p.run(&img, &mut out).unwrap();
        // R channel, pixel (x=1, y=0): 60/255 -> (0.2353 - 0.5) / 0.25
        let expected = (60.0 / 255.0 - 0.5) / 0.25;
        assert!((out[1] - expected).abs() < 1e-6, "{}", out[1]);
        // B channel is constant 255 -> (1 - 0.5) / 0.25 = 2
        assert!(out[32..48].iter().all(|v| (v - 2.0).abs() < 1e-6));
    }

    #[test]
    fn shorter_side_crop_box_matches_torchvision_arithmetic() {
        let p = Preprocessor::new(&spec(ResizeRule::ShorterSideCenterCrop));
        // 640x480 -> shorter side 4: resized 5x4 (int(4*640/480) = 5), crop
        // left = round(0.5) = 0 in Python (half to even).
        let (l, t, w, h) = p.source_box(640, 480);
        assert_eq!(l, 0.0);
        assert_eq!(t, 0.0);
        assert!((h - 480.0).abs() < 1e-9);
        assert!((w - 4.0 * 640.0 / 5.0).abs() < 1e-9);
        assert!(l >= 0.0 && l + w <= 640.0 + 1e-9);
        let s = Preprocessor::new(&spec(ResizeRule::Stretch));
        assert_eq!(s.source_box(640, 480), (0.0, 0.0, 640.0, 480.0));
    }

    #[test]
    fn empty_image_is_an_error() {
        let mut p = Preprocessor::new(&spec(ResizeRule::Stretch));
        let mut out = vec![0.0; p.output_len()];
        assert!(p.run(&RgbImage::new(0, 0), &mut out).is_err());
    }
}
