//! The SARM reward step: stage transformer -> per-frame stage argmax ->
//! one-hot -> subtask transformer -> tau -> global progress, for every head
//! the bundle has. Mirrors `SARMRewardModel.calculate_rewards`.

use std::time::{Duration, Instant};

use crate::backend::{Backend, Dim, Graph, GraphSpec, InferenceError, TensorDecl};
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

// Input order of both graphs: image features, text, state (+ one-hot).
const IMAGE: usize = 0;
const TEXT: usize = 1;
const STATE: usize = 2;
const ONEHOT: usize = 3;

/// The most windows one [`RewardModel`] call may score (bounds its buffers).
pub const MAX_WINDOW_BATCH: usize = 64;

/// The stage and subtask graphs of one precision, loaded for `batch`
/// windows per call: 1 for the node's per-tick path, more for offline
/// labelling, where one call over several windows runs the transformers'
/// matrix products on more rows at once. The windows are written into the
/// stage graph's inputs and copied to the subtask graph's.
#[derive(Debug)]
pub struct RewardModel {
    precision: Precision,
    window_len: usize,
    batch: usize,
    max_stages: usize,
    heads: Vec<Head>,
    stage: Graph,
    subtask: Graph,
}

impl RewardModel {
    /// Loads the stage and subtask graphs of `precision` on tract.
    pub fn load(bundle: &Bundle, precision: Precision) -> Result<Self, BundleError> {
        Self::load_with(bundle, &Backend::tract(), precision)
    }

    /// Loads the stage and subtask graphs of `precision` on `backend`, one
    /// window per call, and checks their tensors against the manifest.
    pub fn load_with(
        bundle: &Bundle,
        backend: &Backend,
        precision: Precision,
    ) -> Result<Self, BundleError> {
        Self::load_batched(bundle, backend, precision, 1)
    }

    /// [`Self::load_with`] for `batch` windows per call ([`Self::run_batch`]).
    pub fn load_batched(
        bundle: &Bundle,
        backend: &Backend,
        precision: Precision,
        batch: usize,
    ) -> Result<Self, BundleError> {
        if batch == 0 || batch > MAX_WINDOW_BATCH {
            return Err(BundleError::mismatch(
                "reward batch",
                format!("1..={MAX_WINDOW_BATCH} windows"),
                batch,
            ));
        }
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
        let stage = backend.load(&GraphSpec {
            path: &file(RewardGraph::Stage)?,
            field: &format!("precision.{precision}.stage"),
            inputs: &common,
            outputs: &stage_outputs,
            batch,
            time: t,
        })?;
        let subtask = backend.load(&GraphSpec {
            path: &file(RewardGraph::Subtask)?,
            field: &format!("precision.{precision}.subtask"),
            inputs: &subtask_inputs,
            outputs: &tau_outputs,
            batch,
            time: t,
        })?;
        Ok(RewardModel {
            precision,
            window_len: t,
            batch,
            max_stages: cmax,
            heads: bundle.heads.clone(),
            stage,
            subtask,
        })
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    pub fn window_len(&self) -> usize {
        self.window_len
    }

    /// Windows per call (what the model was loaded for).
    pub fn batch(&self) -> usize {
        self.batch
    }

    pub fn stage_graph(&self) -> &Graph {
        &self.stage
    }

    pub fn subtask_graph(&self) -> &Graph {
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
        self.stage.input_mut(IMAGE)
    }

    /// The `[T][state_dim]` normalised, padded joint-state input.
    pub fn state_input(&mut self) -> &mut [f32] {
        self.stage.input_mut(STATE)
    }

    /// Both window inputs at once, `([T][image_dim], [T][state_dim])`, so a
    /// window is filled with one borrow of each buffer.
    pub fn window_inputs(&mut self) -> (&mut [f32], &mut [f32]) {
        self.window_inputs_at(0)
    }

    /// The inputs of window `slot` of a batch (`slot < batch`; a larger
    /// slot gives empty slices).
    pub fn window_inputs_at(&mut self, slot: usize) -> (&mut [f32], &mut [f32]) {
        let mut inputs = self.stage.inputs_mut().into_iter();
        let image = inputs.next().unwrap_or_default();
        let _text = inputs.next();
        let state = inputs.next().unwrap_or_default();
        (
            slot_of_mut(image, slot, self.batch),
            slot_of_mut(state, slot, self.batch),
        )
    }

    /// Sets the task embedding of every window slot (kept across windows).
    pub fn set_text(&mut self, embedding: &[f32]) {
        for graph in [&mut self.stage, &mut self.subtask] {
            let dst = graph.input_mut(TEXT);
            let per = dst.len() / self.batch.max(1);
            let n = per.min(embedding.len());
            for row in dst.chunks_exact_mut(per.max(1)) {
                row[..n].copy_from_slice(&embedding[..n]);
            }
        }
    }

    /// Runs the stage graph once, then the subtask graph once per head, on
    /// window slot 0 (of a model loaded for one window per call).
    pub fn run(&mut self, out: &mut WindowScores) -> Result<(), InferenceError> {
        self.run_timed(out, None)
    }

    /// Scores the first `outs.len()` window slots in one call of each graph
    /// (slots past them are computed and ignored: a partial batch costs a
    /// full one). `outs.len()` must be at most [`Self::batch`].
    pub fn run_batch(&mut self, outs: &mut [WindowScores]) -> Result<(), InferenceError> {
        self.run_slots(outs, None)
    }

    /// [`Self::run`], recording how long each graph took.
    pub fn run_timed(
        &mut self,
        out: &mut WindowScores,
        timings: Option<&mut StepTimings>,
    ) -> Result<(), InferenceError> {
        self.run_slots(std::slice::from_mut(out), timings)
    }

    fn run_slots(
        &mut self,
        outs: &mut [WindowScores],
        mut timings: Option<&mut StepTimings>,
    ) -> Result<(), InferenceError> {
        if outs.len() > self.batch {
            return Err(InferenceError {
                path: self.stage.path().to_path_buf(),
                message: format!(
                    "{} windows given to a reward model loaded for {} per call",
                    outs.len(),
                    self.batch
                ),
            });
        }
        let t = self.window_len;
        let started = Instant::now();
        self.stage.run()?;
        for (b, out) in outs.iter_mut().enumerate() {
            for (hi, head) in self.heads.iter().enumerate() {
                let scores = &mut out.heads[hi];
                let c = head.num_stages();
                let l = slot_of(self.stage.output(hi), b, self.batch);
                for ti in 0..t {
                    let (k, conf) = softmax_argmax(
                        &l[ti * c..(ti + 1) * c],
                        &mut scores.probs[ti * c..(ti + 1) * c],
                    );
                    scores.stage[ti] = k;
                    scores.confidence[ti] = conf;
                }
            }
        }
        for ix in [IMAGE, STATE] {
            self.subtask
                .input_mut(ix)
                .copy_from_slice(self.stage.input(ix));
        }
        if let Some(tm) = timings.as_deref_mut() {
            tm.stage = started.elapsed();
            tm.subtask.clear();
        }
        for (hi, head) in self.heads.iter().enumerate() {
            let cmax = self.max_stages;
            {
                let onehot = self.subtask.input_mut(ONEHOT);
                onehot.fill(0.0);
                for (b, out) in outs.iter().enumerate() {
                    let rows = (b * t) * cmax;
                    for ti in 0..t {
                        onehot[rows + ti * cmax + out.heads[hi].stage[ti]] = 1.0;
                    }
                }
            }
            let sub_started = Instant::now();
            self.subtask.run()?;
            if let Some(tm) = timings.as_deref_mut() {
                let _ = tm.subtask.push(sub_started.elapsed());
            }
            let tau_all = self.subtask.output(hi);
            for (b, out) in outs.iter_mut().enumerate() {
                let tau = slot_of(tau_all, b, self.batch);
                let scores = &mut out.heads[hi];
                for (ti, &tau_t) in tau.iter().enumerate().take(t) {
                    scores.tau[ti] = tau_t;
                    scores.progress[ti] = head.breakpoints.progress(scores.stage[ti], tau_t);
                }
            }
        }
        Ok(())
    }
}

/// Window `slot`'s part of a batch-major `[batch][...]` buffer (empty
/// past the batch).
fn slot_of(buf: &[f32], slot: usize, batch: usize) -> &[f32] {
    let per = buf.len() / batch.max(1);
    buf.get(slot * per..(slot + 1) * per).unwrap_or_default()
}

/// [`slot_of`], writable.
fn slot_of_mut(buf: &mut [f32], slot: usize, batch: usize) -> &mut [f32] {
    let per = buf.len() / batch.max(1);
    buf.get_mut(slot * per..(slot + 1) * per)
        .unwrap_or_default()
}
