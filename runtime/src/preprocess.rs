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
    #[error("resizing {width}x{height} failed: {message}")]
    Resize {
        width: u32,
        height: u32,
        message: String,
    },
}

/// Preallocated preprocessing for one encoder input size.
pub struct Preprocessor {
    rule: ResizeRule,
    alg: ResizeAlg,
    width: u32,
    height: u32,
    scale: f32,
    mean: [f32; 3],
    std: [f32; 3],
    resizer: Resizer,
    /// The camera image as f32 pixels; reallocated only when its size changes.
    source: Image<'static>,
    resized: Image<'static>,
}

impl std::fmt::Debug for Preprocessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preprocessor")
            .field("rule", &self.rule)
            .field("width", &self.width)
            .field("height", &self.height)
            .finish()
    }
}

impl Preprocessor {
    /// From a validated manifest (mean and std have 3 entries).
    pub fn new(spec: &ImageEncoderSpec) -> Self {
        let filter = match spec.filter {
            ResizeFilter::Bilinear => FilterType::Bilinear,
            ResizeFilter::Bicubic => FilterType::CatmullRom,
        };
        let triple = |v: &[f32]| [v[0], v[1], v[2]];
        Preprocessor {
            rule: spec.resize,
            alg: ResizeAlg::Convolution(filter),
            width: spec.width,
            height: spec.height,
            scale: spec.scale,
            mean: triple(&spec.mean),
            std: triple(&spec.std),
            resizer: Resizer::new(),
            source: Image::new(1, 1, PixelType::F32x3),
            resized: Image::new(spec.width, spec.height, PixelType::F32x3),
        }
    }

    /// Number of f32 values written by [`Self::run`]: 3 x height x width.
    pub fn output_len(&self) -> usize {
        3 * self.width as usize * self.height as usize
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

    /// Writes the normalised NCHW tensor of `img` into `out`.
    pub fn run(&mut self, img: &RgbImage, out: &mut [f32]) -> Result<(), ImageError> {
        let (w, h) = img.dimensions();
        if w == 0 || h == 0 {
            return Err(ImageError::Empty {
                width: w,
                height: h,
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
        for (dst, px) in self
            .source
            .buffer_mut()
            .chunks_exact_mut(4)
            .zip(img.as_raw())
        {
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
        let plane = self.width as usize * self.height as usize;
        let bytes = self.resized.buffer();
        for c in 0..3 {
            let (scale, mean, std) = (self.scale, self.mean[c], self.std[c]);
            let dst = &mut out[c * plane..(c + 1) * plane];
            for (d, px) in dst.iter_mut().zip(bytes.chunks_exact(12)) {
                let v =
                    f32::from_ne_bytes([px[4 * c], px[4 * c + 1], px[4 * c + 2], px[4 * c + 3]]);
                *d = (v * scale - mean) / std;
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
