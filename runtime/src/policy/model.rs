//! The policy's model call: observation -> normalised input tensors ->
//! the ONNX graph (through the backend seam) -> the normalised action chunk
//! `(1, chunk_size, A)`. Inputs are written in place into the graph's
//! preallocated buffers.

use std::time::{Duration, Instant};

use super::bundle::PolicyBundle;
use super::observation::{Observation, ObservationError, ObservationPrep};
use crate::backend::{Backend, Dim, Graph, GraphSpec, InferenceError, TensorDecl};
use crate::bundle::{BundleError, Precision};

/// How long the parts of a model call took.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CallTimings {
    /// Observation -> normalised input tensors (resize, normalisation).
    pub observation: Duration,
    /// The graph run.
    pub inference: Duration,
}

/// The graph of one precision on one backend, with its observation
/// preparation.
#[derive(Debug)]
pub struct PolicyModel {
    graph: Graph,
    prep: ObservationPrep,
    precision: Precision,
    chunk_len: usize,
}

impl PolicyModel {
    /// Loads the bundle's graph of `precision` on `backend` and checks its
    /// tensors against the manifest.
    pub fn load(
        bundle: &PolicyBundle,
        backend: &Backend,
        precision: Precision,
    ) -> Result<Self, BundleError> {
        let Some((path, field)) = bundle.model_file(precision) else {
            return Err(BundleError::mismatch(
                format!("precision.{precision}"),
                format!("a [precision.{precision}] graph"),
                format!(
                    "none (this bundle has {:?})",
                    bundle
                        .precisions()
                        .iter()
                        .map(|p| p.as_str())
                        .collect::<Vec<_>>()
                ),
            ));
        };
        let mut inputs = Vec::new();
        if let Some(s) = &bundle.state {
            inputs.push(TensorDecl::new(
                &s.tensor,
                &[Dim::Batch, Dim::Fixed(s.names.len())],
            ));
        }
        if let Some(e) = &bundle.environment_state {
            inputs.push(TensorDecl::new(&e.tensor, &[Dim::Batch, Dim::Fixed(e.len)]));
        }
        for c in &bundle.cameras {
            inputs.push(TensorDecl::new(
                &c.tensor,
                &[
                    Dim::Batch,
                    Dim::Fixed(3),
                    Dim::Fixed(c.height as usize),
                    Dim::Fixed(c.width as usize),
                ],
            ));
        }
        let dim = bundle.action_dim();
        let outputs = [TensorDecl::new(
            &bundle.action.tensor,
            &[Dim::Batch, Dim::Fixed(bundle.chunk_size), Dim::Fixed(dim)],
        )];
        let graph = backend.load(&GraphSpec {
            path: &path,
            field: &field,
            inputs: &inputs,
            outputs: &outputs,
            batch: 1,
            time: 1,
        })?;
        Ok(PolicyModel {
            graph,
            prep: ObservationPrep::new(bundle),
            precision,
            chunk_len: bundle.chunk_size * dim,
        })
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Writes the normalised tensors of `obs` into the graph's inputs.
    pub fn prepare(&mut self, obs: &Observation<'_>) -> Result<(), ObservationError> {
        let mut inputs = self.graph.inputs_mut();
        self.prep.write(obs, &mut inputs)
    }

    /// The prepared input `ix` (graph order: state, environment state,
    /// cameras), as the graph will read it.
    pub fn input(&self, ix: usize) -> &[f32] {
        self.graph.input(ix)
    }

    /// Input `ix` to fill directly (tests and benchmarks feed recorded
    /// normalised tensors this way).
    pub fn input_mut(&mut self, ix: usize) -> &mut [f32] {
        self.graph.input_mut(ix)
    }

    /// Runs the graph on the prepared inputs; returns the normalised chunk
    /// (`chunk_size * A` values, row-major).
    pub fn run(&mut self) -> Result<&[f32], InferenceError> {
        self.graph.run()?;
        Ok(self.chunk())
    }

    /// The chunk of the last run.
    pub fn chunk(&self) -> &[f32] {
        let out = self.graph.output(0);
        &out[..self.chunk_len.min(out.len())]
    }

    /// [`Self::prepare`] then [`Self::run`], timed.
    pub fn infer(&mut self, obs: &Observation<'_>) -> Result<CallTimings, PolicyError> {
        let t0 = Instant::now();
        self.prepare(obs)?;
        let t1 = Instant::now();
        self.graph.run()?;
        Ok(CallTimings {
            observation: t1 - t0,
            inference: t1.elapsed(),
        })
    }
}

/// Why a policy step failed. The step produced no action; the safety layer
/// holds.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("observation: {0}")]
    Observation(#[from] ObservationError),
    #[error(transparent)]
    Inference(#[from] InferenceError),
    #[error(transparent)]
    Chunk(#[from] super::selector::ChunkSizeError),
    #[error("the policy had no action to serve after its model call")]
    Starved,
}
