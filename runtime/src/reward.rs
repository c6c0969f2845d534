//! The SARM reward step: stage transformer -> per-frame stage argmax ->
//! one-hot -> subtask transformer -> tau -> global progress, for every head
//! the bundle has. Mirrors `SARMRewardModel.calculate_rewards`.

use std::time::{Duration, Instant};

use tract_onnx::prelude::*;

use crate::backend::{f32_output, Dim, InferenceError, InputBuffer, OnnxGraph, TensorDecl};
use crate::bundle::{Bundle, BundleError, Head, HeadKind, Precision, RewardGraph};
use crate::progress::softmax_argmax;

/// Outputs of one head for every position of a window.
#[derive(Debug, Clone)]
pub struct HeadScores {
    pub kind: HeadKind,
    pub num_stages: usize,
    /// Row-major `[T][num_stages]` softmax probabilities.
    pub probs: Vec<f32>,
    pub stage: Vec<usize>,
    pub confidence: Vec<f32>,
    pub tau: Vec<f32>,
    pub progress: Vec<f32>,
}

impl HeadScores {
    fn new(kind: HeadKind, num_stages: usize, t: usize) -> Self {
        HeadScores {
            kind,
            num_stages,
            probs: vec![0.0; t * num_stages],
            stage: vec![0; t],
            confidence: vec![0.0; t],
            tau: vec![0.0; t],
            progress: vec![0.0; t],
        }
    }

    /// Stage probabilities at window position `t`.
    pub fn probs_at(&self, t: usize) -> &[f32] {
        &self.probs[t * self.num_stages..(t + 1) * self.num_stages]
    }
}

/// Scores of all heads for one window; allocated once, refilled per window.
#[derive(Debug, Clone)]
pub struct WindowScores {
    pub heads: Vec<HeadScores>,
}

impl WindowScores {
    pub fn head(&self, kind: HeadKind) -> Option<&HeadScores> {
        self.heads.iter().find(|h| h.kind == kind)
    }
}

/// Wall time of each graph in one [`RewardModel::run_timed`] call.
#[derive(Debug, Clone, Default)]
pub struct StepTimings {
    pub stage: Duration,
    /// One entry per head, in bundle order.
    pub subtask: heapless::Vec<Duration, 2>,
}

/// The stage and subtask graphs of one precision, with their input buffers.
#[derive(Debug)]
pub struct RewardModel {
    precision: Precision,
    window_len: usize,
    max_stages: usize,
    heads: Vec<Head>,
    stage: OnnxGraph,
    subtask: OnnxGraph,
    image: InputBuffer,
    text: InputBuffer,
    state: InputBuffer,
    onehot: InputBuffer,
}

impl RewardModel {
    /// Loads the stage and subtask graphs of `precision` and checks their
    /// tensors against the manifest.
    pub fn load(bundle: &Bundle, precision: Precision) -> Result<Self, BundleError> {
        let m = &bundle.manifest;
        let t = bundle.window.len();
        let cmax = bundle.max_stages();
        let names = &m.tensors;
        let common = [
            TensorDecl::new(
                &names.image_features,
                &[Dim::Batch, Dim::Time, Dim::Fixed(m.model.image_dim)],
            ),
            TensorDecl::new(
                &names.text_embedding,
                &[Dim::Batch, Dim::Fixed(m.model.text_dim)],
            ),
            TensorDecl::new(
                &names.state,
                &[Dim::Batch, Dim::Time, Dim::Fixed(m.model.state_dim)],
            ),
        ];
        let stage_outputs: Vec<TensorDecl> = bundle
            .heads
            .iter()
            .map(|h| {
                TensorDecl::new(
                    &h.logits_tensor,
                    &[Dim::Batch, Dim::Time, Dim::Fixed(h.num_stages())],
                )
            })
            .collect();
        let mut subtask_inputs = common.to_vec();
        subtask_inputs.push(TensorDecl::new(
            &names.stage_onehot,
            &[Dim::Batch, Dim::Time, Dim::Fixed(cmax)],
        ));
        let tau_outputs: Vec<TensorDecl> = bundle
            .heads
            .iter()
            .map(|h| TensorDecl::new(&h.tau_tensor, &[Dim::Batch, Dim::Time]))
            .collect();

        let file = |role: RewardGraph| {
            bundle.reward_file(precision, role).ok_or_else(|| {
                BundleError::mismatch(
                    format!("precision.{precision}"),
                    format!("a [precision.{precision}] table"),
                    format!("precisions {:?}", m.precision.keys().collect::<Vec<_>>()),
                )
            })
        };
        let stage = OnnxGraph::load(
            &file(RewardGraph::Stage)?,
            &format!("precision.{precision}.stage"),
            &common,
            &stage_outputs,
            t,
        )?;
        let subtask = OnnxGraph::load(
            &file(RewardGraph::Subtask)?,
            &format!("precision.{precision}.subtask"),
            &subtask_inputs,
            &tau_outputs,
            t,
        )?;
        let buf = |shape: &[usize]| {
            InputBuffer::zeros(shape)
                .map_err(|e| BundleError::mismatch("tensors", "f32 input buffers", e))
        };
        Ok(RewardModel {
            precision,
            window_len: t,
            max_stages: cmax,
            heads: bundle.heads.clone(),
            stage,
            subtask,
            image: buf(&[1, t, m.model.image_dim])?,
            text: buf(&[1, m.model.text_dim])?,
            state: buf(&[1, t, m.model.state_dim])?,
            onehot: buf(&[1, t, cmax])?,
        })
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    pub fn window_len(&self) -> usize {
        self.window_len
    }

    pub fn stage_graph(&self) -> &OnnxGraph {
        &self.stage
    }

    pub fn subtask_graph(&self) -> &OnnxGraph {
        &self.subtask
    }

    /// A score buffer shaped for this model.
    pub fn new_scores(&self) -> WindowScores {
        WindowScores {
            heads: self
                .heads
                .iter()
                .map(|h| HeadScores::new(h.kind, h.num_stages(), self.window_len))
                .collect(),
        }
    }

    /// The `[T][image_dim]` image-feature input, to be filled in place.
    pub fn image_input(&mut self) -> &mut [f32] {
        self.image.data_mut()
    }

    /// The `[T][state_dim]` normalised, padded joint-state input.
    pub fn state_input(&mut self) -> &mut [f32] {
        self.state.data_mut()
    }

    /// Both window inputs at once, `([T][image_dim], [T][state_dim])`, so a
    /// window is filled with one borrow of each buffer.
    pub fn window_inputs(&mut self) -> (&mut [f32], &mut [f32]) {
        (self.image.data_mut(), self.state.data_mut())
    }

    /// Sets the task embedding (kept across windows).
    pub fn set_text(&mut self, embedding: &[f32]) {
        let dst = self.text.data_mut();
        let n = dst.len().min(embedding.len());
        dst[..n].copy_from_slice(&embedding[..n]);
    }

    /// Runs the stage graph once, then the subtask graph once per head.
    pub fn run(&mut self, out: &mut WindowScores) -> Result<(), InferenceError> {
        self.run_timed(out, None)
    }

    /// [`Self::run`], recording how long each graph took.
    pub fn run_timed(
        &mut self,
        out: &mut WindowScores,
        mut timings: Option<&mut StepTimings>,
    ) -> Result<(), InferenceError> {
        let t = self.window_len;
        let started = Instant::now();
        let logits = self.stage.run(tvec![
            self.image.value(),
            self.text.value(),
            self.state.value()
        ])?;
        for (hi, head) in self.heads.iter().enumerate() {
            let scores = &mut out.heads[hi];
            let c = head.num_stages();
            let l = f32_output(&logits[hi], self.stage.path())?;
            for ti in 0..t {
                let (k, conf) = softmax_argmax(
                    &l[ti * c..(ti + 1) * c],
                    &mut scores.probs[ti * c..(ti + 1) * c],
                );
                scores.stage[ti] = k;
                scores.confidence[ti] = conf;
            }
        }
        drop(logits);
        if let Some(tm) = timings.as_deref_mut() {
            tm.stage = started.elapsed();
            tm.subtask.clear();
        }
        for (hi, head) in self.heads.iter().enumerate() {
            let cmax = self.max_stages;
            {
                let onehot = self.onehot.data_mut();
                onehot.fill(0.0);
                for ti in 0..t {
                    onehot[ti * cmax + out.heads[hi].stage[ti]] = 1.0;
                }
            }
            let sub_started = Instant::now();
            let taus = self.subtask.run(tvec![
                self.image.value(),
                self.text.value(),
                self.state.value(),
                self.onehot.value()
            ])?;
            if let Some(tm) = timings.as_deref_mut() {
                let _ = tm.subtask.push(sub_started.elapsed());
            }
            let tau = f32_output(&taus[hi], self.subtask.path())?;
            let scores = &mut out.heads[hi];
            for (ti, &tau_t) in tau.iter().enumerate().take(t) {
                scores.tau[ti] = tau_t;
                scores.progress[ti] = head.breakpoints.progress(scores.stage[ti], tau_t);
            }
        }
        Ok(())
    }
}
