//! The image encoder: camera image -> preprocessing -> ONNX -> feature vector.
//!
//! The graph is loaded for a batch size fixed at load: 1 for the node's
//! per-frame path, N for offline labelling ([`ImageEncoder::encode_batch`]
//! runs up to N images in one call; a partial batch costs a full one).

use image::RgbImage;

use crate::backend::{Backend, Dim, Graph, GraphSpec, InferenceError, TensorDecl};
use crate::bundle::{Bundle, BundleError, Precision};
use crate::preprocess::{ImageError, Preprocessor};

/// The largest batch an encoder may be loaded for (bounds its buffers:
/// 64 images of 224x224 are 38 MB of input).
pub const MAX_BATCH: usize = 64;

/// Why a frame could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Inference(#[from] InferenceError),
    #[error("more than {batch} images given to an encoder loaded for batches of {batch}")]
    Batch { batch: usize },
    #[error("output buffer holds {found} values, {expected} needed")]
    Output { expected: usize, found: usize },
}

#[derive(Debug)]
pub struct ImageEncoder {
    pre: Preprocessor,
    graph: Graph,
    batch: usize,
    /// Values per preprocessed image (3 * height * width).
    image_len: usize,
    output_dim: usize,
}

impl ImageEncoder {
    /// The fp32 encoder on tract, one image per call.
    pub fn load(bundle: &Bundle) -> Result<Self, BundleError> {
        Self::load_with(bundle, &Backend::tract(), Precision::Fp32, 1)
    }

    /// The encoder of `precision` (the fp32 file when the bundle has no
    /// encoder of that precision) on `backend`, for batches of `batch` images.
    pub fn load_with(
        bundle: &Bundle,
        backend: &Backend,
        precision: Precision,
        batch: usize,
    ) -> Result<Self, BundleError> {
        if batch == 0 || batch > MAX_BATCH {
            return Err(BundleError::mismatch(
                "encoder batch",
                format!("1..={MAX_BATCH} images"),
                batch,
            ));
        }
        let spec = &bundle.manifest.image_encoder;
        let (h, w) = (spec.height as usize, spec.width as usize);
        let (path, field) = bundle.image_encoder_file(precision);
        let graph = backend.load(&GraphSpec {
            path: &path,
            field: &field,
            inputs: &[TensorDecl::new(
                &spec.input,
                &[Dim::Batch, Dim::Fixed(3), Dim::Fixed(h), Dim::Fixed(w)],
            )],
            outputs: &[TensorDecl::new(
                &spec.output,
                &[Dim::Batch, Dim::Fixed(spec.output_dim)],
            )],
            batch,
            time: 1,
        })?;
        Ok(ImageEncoder {
            pre: Preprocessor::new(spec),
            graph,
            batch,
            image_len: 3 * h * w,
            output_dim: spec.output_dim,
        })
    }

    pub fn output_dim(&self) -> usize {
        self.output_dim
    }

    /// Images per call (fixed at load).
    pub fn batch(&self) -> usize {
        self.batch
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Preprocesses `img` into batch slot 0 only (tests and benchmarks of
    /// the resize step); returns the prepared values.
    pub fn preprocess(&mut self, img: &RgbImage) -> Result<&[f32], ImageError> {
        let n = self.image_len;
        let data = &mut self.graph.input_mut(0)[..n];
        self.pre.run(img, data)?;
        Ok(data)
    }

    /// Runs the encoder on the inputs already prepared by
    /// [`Self::preprocess`] or [`Self::encode_batch`]; writes the features of
    /// the first `out.len() / output_dim` images to `out`.
    pub fn run_prepared(&mut self, out: &mut [f32]) -> Result<(), InferenceError> {
        self.graph.run()?;
        let feats = self.graph.output(0);
        let n = out.len().min(feats.len());
        out[..n].copy_from_slice(&feats[..n]);
        Ok(())
    }

    /// Encodes one image into `out` (`output_dim` values).
    pub fn encode(&mut self, img: &RgbImage, out: &mut [f32]) -> Result<(), EncodeError> {
        self.encode_batch([img], out)
    }

    /// Encodes up to [`Self::batch`] images in one call; `out` gets
    /// `output_dim` values per image, in order.
    pub fn encode_batch<'a>(
        &mut self,
        images: impl IntoIterator<Item = &'a RgbImage>,
        out: &mut [f32],
    ) -> Result<(), EncodeError> {
        let (len, dim) = (self.image_len, self.output_dim);
        let input = self.graph.input_mut(0);
        let mut count = 0;
        for img in images {
            if count == self.batch {
                return Err(EncodeError::Batch { batch: self.batch });
            }
            self.pre
                .run(img, &mut input[count * len..(count + 1) * len])?;
            count += 1;
        }
        if out.len() != count * dim {
            return Err(EncodeError::Output {
                expected: count * dim,
                found: out.len(),
            });
        }
        self.run_prepared(out)?;
        Ok(())
    }
}
