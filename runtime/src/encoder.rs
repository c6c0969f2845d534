//! The image encoder: camera image -> preprocessing -> ONNX -> feature vector.

use tract_onnx::prelude::*;

use crate::backend::{f32_output, Dim, InferenceError, InputBuffer, OnnxGraph, TensorDecl};
use crate::bundle::{Bundle, BundleError};
use crate::preprocess::{ImageError, Preprocessor};

/// Why a frame could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Inference(#[from] InferenceError),
}

#[derive(Debug)]
pub struct ImageEncoder {
    pre: Preprocessor,
    graph: OnnxGraph,
    input: InputBuffer,
    output_dim: usize,
}

impl ImageEncoder {
    pub fn load(bundle: &Bundle) -> Result<Self, BundleError> {
        let spec = &bundle.manifest.image_encoder;
        let (h, w) = (spec.height as usize, spec.width as usize);
        let graph = OnnxGraph::load(
            &bundle.image_encoder_file(),
            "image_encoder.file",
            &[TensorDecl::new(
                &spec.input,
                &[Dim::Batch, Dim::Fixed(3), Dim::Fixed(h), Dim::Fixed(w)],
            )],
            &[TensorDecl::new(
                &spec.output,
                &[Dim::Batch, Dim::Fixed(spec.output_dim)],
            )],
            1,
        )?;
        let input = InputBuffer::zeros(&[1, 3, h, w])
            .map_err(|e| BundleError::mismatch("image_encoder", "an f32 input buffer", e))?;
        Ok(ImageEncoder {
            pre: Preprocessor::new(spec),
            graph,
            input,
            output_dim: spec.output_dim,
        })
    }

    pub fn output_dim(&self) -> usize {
        self.output_dim
    }

    pub fn graph(&self) -> &OnnxGraph {
        &self.graph
    }

    /// Preprocesses only (for tests and benchmarks of the resize step).
    pub fn preprocess(&mut self, img: &image::RgbImage) -> Result<&[f32], ImageError> {
        let data = self.input.data_mut();
        self.pre.run(img, data)?;
        Ok(self.input.data_mut())
    }

    /// Runs the encoder on the input already prepared by [`Self::preprocess`].
    pub fn run_prepared(&mut self, out: &mut [f32]) -> Result<(), InferenceError> {
        let result = self.graph.run(tvec![self.input.value()])?;
        let feats = f32_output(&result[0], self.graph.path())?;
        out.copy_from_slice(&feats[..self.output_dim]);
        Ok(())
    }

    /// Encodes one image into `out` (`output_dim` values).
    pub fn encode(&mut self, img: &image::RgbImage, out: &mut [f32]) -> Result<(), EncodeError> {
        self.preprocess(img)?;
        self.run_prepared(out)?;
        Ok(())
    }
}
