//! The engine's per-episode loop: frames in, one score per scored frame out.
//!
//! Frames arrive in order at the model's frame rate. A frame is encoded only
//! if some scored frame's window reads it (scoring stride), and at most once
//! (the cache). A scored frame is emitted as soon as the last frame its
//! window needs has arrived: `delay` frames late for LeRobot's centred
//! window, immediately for a causal one. At the end of the episode the
//! frames still waiting are scored with their windows clamped to the last
//! frame, as LeRobot clamps at episode edges.

use std::time::{Duration, Instant};

use heapless::Vec as HVec;
use image::RgbImage;

use crate::backend::{Backend, BackendInfo, InferenceError};
use crate::bundle::{Bundle, BundleError, HeadKind, Precision};
use crate::cache::FrameCache;
use crate::encoder::{EncodeError, ImageEncoder};
use crate::reward::{RewardModel, WindowScores};
use crate::smoothing::{ConfidenceSmoother, SmootherConfig};
use crate::state::{StateError, StateNormalizer};
use crate::window::{WindowSpec, MAX_WINDOW};

/// The most stages a head may have.
pub const MAX_STAGES: usize = 32;

#[derive(Debug, Clone, PartialEq)]
pub struct ScorerConfig {
    pub precision: Precision,
    /// Score frames 0, s, 2s, ... only (1 = every frame).
    pub stride: usize,
    /// Confidence-weighted smoothing of progress, if set.
    pub smoothing: Option<SmootherConfig>,
    /// Task text; the bundle's default task when `None`.
    pub task: Option<String>,
}

impl Default for ScorerConfig {
    fn default() -> Self {
        ScorerConfig {
            precision: Precision::Fp32,
            stride: 1,
            smoothing: None,
            task: None,
        }
    }
}

/// What a frame carries into the engine.
#[derive(Debug, Clone, Copy)]
pub enum FrameData<'a> {
    /// A camera image, encoded by the bundle's image encoder.
    Image(&'a RgbImage),
    /// Precomputed image features (`image_dim` values), e.g. from a dataset.
    Features(&'a [f32]),
}

/// Why a frame or a window could not be scored. The frame is not consumed.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error("bad joint state: {0}")]
    State(#[from] StateError),
    #[error("bad image: {0}")]
    Encode(#[from] EncodeError),
    #[error("feature vector has {found} values, the bundle expects {expected}")]
    Features { expected: usize, found: usize },
    #[error("feature vector contains NaN or infinity")]
    FeaturesNotFinite,
    #[error(transparent)]
    Inference(#[from] InferenceError),
    #[error("this scorer was built without an image encoder; pass features")]
    NoEncoder,
    #[error("frame {frame} needed by a window is not cached (internal error)")]
    Missing { frame: usize },
}

/// One head's output for a scored frame.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadScore {
    pub kind: HeadKind,
    pub stage: usize,
    pub confidence: f32,
    pub probs: HVec<f32, MAX_STAGES>,
    pub tau: f32,
    pub progress: f32,
    /// Smoothed progress, when smoothing is on.
    pub smoothed: Option<f32>,
}

/// The score of one frame of the episode.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameScore {
    pub frame_index: usize,
    pub window: HVec<usize, MAX_WINDOW>,
    pub heads: HVec<HeadScore, 2>,
}

impl FrameScore {
    pub fn head(&self, kind: HeadKind) -> Option<&HeadScore> {
        self.heads.iter().find(|h| h.kind == kind)
    }
}

/// Where the time of `push`/`finish` went.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PushTimings {
    pub encode: Duration,
    pub reward: Duration,
}

/// Which backend a scorer runs on, and where each of its graphs runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ScorerBackend {
    pub backend: BackendInfo,
    /// (graph, provider): `tract`, or the onnxruntime execution provider.
    pub graphs: Vec<(&'static str, String)>,
}

impl ScorerBackend {
    /// Key/value pairs for /diagnostics: the backend, its library and
    /// version, and `provider_<graph>` per graph.
    pub fn key_values(&self) -> Vec<(String, String)> {
        let mut kv: Vec<(String, String)> = self
            .backend
            .key_values()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        for (graph, provider) in &self.graphs {
            kv.push((format!("provider_{graph}"), provider.clone()));
        }
        kv
    }
}

impl std::fmt::Display for ScorerBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.backend.kind, self.backend.version)?;
        if let Some(lib) = &self.backend.library {
            write!(f, " ({})", lib.display())?;
        }
        let graphs: Vec<String> = self
            .graphs
            .iter()
            .map(|(g, p)| format!("{g} on {p}"))
            .collect();
        write!(f, ": {}", graphs.join(", "))
    }
}

/// Pending input of the newest frame when it was not needed by any window
/// yet: if it turns out to be the episode's last frame, clamped windows read it.
#[derive(Debug, Default)]
struct Held {
    frame: Option<usize>,
    width: u32,
    height: u32,
    pixels: Vec<u8>,
    features: Vec<f32>,
    is_image: bool,
    joints: Vec<f32>,
}

#[derive(Debug)]
pub struct Scorer {
    backend: Backend,
    window: WindowSpec,
    stride: usize,
    encoder: Option<ImageEncoder>,
    reward: RewardModel,
    normalizer: StateNormalizer,
    cache: FrameCache,
    smoothers: Vec<ConfidenceSmoother>,
    image_dim: usize,
    state_dim: usize,
    /// Frames received in this episode.
    received: usize,
    /// Next frame index to score.
    next_scored: usize,
    held: Held,
    frames_encoded: u64,
    /// The newest frame stored in the cache (its features can stand in for
    /// a frame that is not encoded under overload).
    last_stored: Option<usize>,
    timings: PushTimings,
    indices: [usize; MAX_WINDOW],
    scores: WindowScores,
    out: FrameScore,
}

impl Scorer {
    /// Loads the bundle's models for `config.precision` on tract, with the
    /// image encoder.
    pub fn new(bundle: &Bundle, config: &ScorerConfig) -> Result<Self, BundleError> {
        Self::with_backend(bundle, config, &Backend::tract())
    }

    /// Loads the bundle's models (image encoder included) for
    /// `config.precision` on `backend`.
    pub fn with_backend(
        bundle: &Bundle,
        config: &ScorerConfig,
        backend: &Backend,
    ) -> Result<Self, BundleError> {
        let encoder = ImageEncoder::load_with(bundle, backend, config.precision, 1)?;
        Self::build(bundle, config, backend, Some(encoder))
    }

    /// Without the image encoder, on tract: frames must carry features.
    pub fn features_only(bundle: &Bundle, config: &ScorerConfig) -> Result<Self, BundleError> {
        Self::build(bundle, config, &Backend::tract(), None)
    }

    /// Without the image encoder, on `backend`: frames must carry features.
    pub fn features_only_with_backend(
        bundle: &Bundle,
        config: &ScorerConfig,
        backend: &Backend,
    ) -> Result<Self, BundleError> {
        Self::build(bundle, config, backend, None)
    }

    fn build(
        bundle: &Bundle,
        config: &ScorerConfig,
        backend: &Backend,
        encoder: Option<ImageEncoder>,
    ) -> Result<Self, BundleError> {
        if config.stride == 0 {
            return Err(BundleError::mismatch("scoring.stride", "a stride >= 1", 0));
        }
        if bundle.heads.iter().any(|h| h.num_stages() > MAX_STAGES) {
            return Err(BundleError::mismatch(
                "heads",
                format!("at most {MAX_STAGES} stages per head"),
                bundle.max_stages(),
            ));
        }
        let mut reward = RewardModel::load_with(bundle, backend, config.precision)?;
        reward.set_text(bundle.task_embedding(config.task.as_deref())?);
        let smoothers = match config.smoothing {
            Some(cfg) => bundle
                .heads
                .iter()
                .map(|_| ConfidenceSmoother::new(cfg))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| BundleError::mismatch("smoothing", "valid settings", e))?,
            None => Vec::new(),
        };
        let m = &bundle.manifest;
        let window = bundle.window.clone();
        // Frames from the oldest one a pending window reads to the newest.
        let capacity = window.reach_back() + window.delay() + 1;
        let scores = reward.new_scores();
        let mut heads = HVec::new();
        for h in &bundle.heads {
            let _ = heads.push(HeadScore {
                kind: h.kind,
                stage: 0,
                confidence: 0.0,
                probs: HVec::new(),
                tau: 0.0,
                progress: 0.0,
                smoothed: None,
            });
        }
        Ok(Scorer {
            backend: backend.clone(),
            stride: config.stride,
            encoder,
            reward,
            normalizer: StateNormalizer::new(&m.state),
            cache: FrameCache::new(capacity, m.model.image_dim, m.model.state_dim),
            smoothers,
            image_dim: m.model.image_dim,
            state_dim: m.model.state_dim,
            received: 0,
            next_scored: 0,
            held: Held::default(),
            frames_encoded: 0,
            last_stored: None,
            timings: PushTimings::default(),
            indices: [0; MAX_WINDOW],
            scores,
            out: FrameScore {
                frame_index: 0,
                window: HVec::new(),
                heads,
            },
            window,
        })
    }

    pub fn window(&self) -> &WindowSpec {
        &self.window
    }

    /// The backend and the provider each graph runs on, for the start-up
    /// log and /diagnostics.
    pub fn backend_info(&self) -> ScorerBackend {
        let mut graphs = Vec::new();
        if let Some(e) = &self.encoder {
            graphs.push(("encoder", e.graph().provider().to_string()));
        }
        graphs.push(("stage", self.reward.stage_graph().provider().to_string()));
        graphs.push((
            "subtask",
            self.reward.subtask_graph().provider().to_string(),
        ));
        ScorerBackend {
            backend: self.backend.describe(),
            graphs,
        }
    }

    /// Frames received in the current episode.
    pub fn frames_received(&self) -> usize {
        self.received
    }

    /// Frames run through the image encoder (or copied as features) so far.
    pub fn frames_encoded(&self) -> u64 {
        self.frames_encoded
    }

    /// Forgets the current episode; the next frame is frame 0.
    pub fn reset_episode(&mut self) {
        self.cache.clear();
        self.received = 0;
        self.next_scored = 0;
        self.held.frame = None;
        self.last_stored = None;
        for s in &mut self.smoothers {
            s.reset();
        }
    }

    /// Feeds the next frame. Scores every frame whose window is now complete
    /// and hands each to `emit`. On error the frame is not consumed.
    pub fn push(
        &mut self,
        data: FrameData<'_>,
        joints: &[f32],
        emit: &mut dyn FnMut(&FrameScore),
    ) -> Result<(), ScoreError> {
        self.normalizer.check(joints)?;
        if let FrameData::Features(f) = data {
            self.check_features(f)?;
        }
        let j = self.received;
        if self.window.needed(j, self.stride) {
            self.store(j, data, joints)?;
            self.held.frame = None;
        } else {
            self.hold(j, data, joints)?;
        }
        self.received += 1;
        // Score every frame whose window's newest frame has arrived.
        let delay = self.window.delay();
        while self.next_scored + delay <= j {
            self.score(self.next_scored, j, emit)?;
            self.next_scored += self.stride;
        }
        Ok(())
    }

    /// Ends the episode: scores the frames still waiting for future frames,
    /// with their windows clamped to the last frame, then resets.
    pub fn finish(&mut self, emit: &mut dyn FnMut(&FrameScore)) -> Result<(), ScoreError> {
        if self.received == 0 {
            self.reset_episode();
            return Ok(());
        }
        let last = self.received - 1;
        if self.held.frame == Some(last) && !self.cache.contains(last) {
            self.store_held(last)?;
        }
        while self.next_scored <= last {
            self.score(self.next_scored, last, emit)?;
            self.next_scored += self.stride;
        }
        self.reset_episode();
        Ok(())
    }

    fn check_features(&self, f: &[f32]) -> Result<(), ScoreError> {
        if f.len() != self.image_dim {
            return Err(ScoreError::Features {
                expected: self.image_dim,
                found: f.len(),
            });
        }
        if f.iter().any(|v| !v.is_finite()) {
            return Err(ScoreError::FeaturesNotFinite);
        }
        Ok(())
    }

    fn store(
        &mut self,
        frame: usize,
        data: FrameData<'_>,
        joints: &[f32],
    ) -> Result<(), ScoreError> {
        let (feat, state) = self.cache.slot_mut(frame);
        self.normalizer.write(joints, state)?;
        match data {
            FrameData::Features(f) => feat.copy_from_slice(f),
            FrameData::Image(img) => {
                let encoder = self.encoder.as_mut().ok_or(ScoreError::NoEncoder)?;
                let started = Instant::now();
                encoder.encode(img, feat)?;
                self.timings.encode += started.elapsed();
            }
        }
        self.cache.commit(frame);
        self.last_stored = Some(frame);
        self.frames_encoded += 1;
        Ok(())
    }

    fn hold(
        &mut self,
        frame: usize,
        data: FrameData<'_>,
        joints: &[f32],
    ) -> Result<(), ScoreError> {
        let held = &mut self.held;
        held.joints.clear();
        held.joints.extend_from_slice(joints);
        match data {
            FrameData::Features(f) => {
                held.is_image = false;
                held.features.clear();
                held.features.extend_from_slice(f);
            }
            FrameData::Image(img) => {
                if self.encoder.is_none() {
                    return Err(ScoreError::NoEncoder);
                }
                held.is_image = true;
                held.width = img.width();
                held.height = img.height();
                held.pixels.clear();
                held.pixels.extend_from_slice(img.as_raw());
            }
        }
        held.frame = Some(frame);
        Ok(())
    }

    fn store_held(&mut self, frame: usize) -> Result<(), ScoreError> {
        let held = std::mem::take(&mut self.held);
        let joints = held.joints.clone();
        let result = if held.is_image {
            match RgbImage::from_raw(held.width, held.height, held.pixels.clone()) {
                Some(img) => self.store(frame, FrameData::Image(&img), &joints),
                None => Err(ScoreError::Missing { frame }),
            }
        } else {
            self.store(frame, FrameData::Features(&held.features), &joints)
        };
        self.held = held;
        self.held.frame = None;
        result
    }

    fn score(
        &mut self,
        scored: usize,
        last: usize,
        emit: &mut dyn FnMut(&FrameScore),
    ) -> Result<(), ScoreError> {
        let t = self.window.len();
        self.window.indices(scored, last, &mut self.indices[..t]);
        let (d, s) = (self.image_dim, self.state_dim);
        let (image_in, state_in) = self.reward.window_inputs();
        for (pos, &frame) in self.indices[..t].iter().enumerate() {
            let (feat, state) = self.cache.get(frame).ok_or(ScoreError::Missing { frame })?;
            image_in[pos * d..(pos + 1) * d].copy_from_slice(feat);
            state_in[pos * s..(pos + 1) * s].copy_from_slice(state);
        }
        let started = Instant::now();
        self.reward.run(&mut self.scores)?;
        self.timings.reward += started.elapsed();

        let r = self.window.readout();
        self.out.frame_index = scored;
        self.out.window.clear();
        for &i in &self.indices[..t] {
            let _ = self.out.window.push(i);
        }
        for (hi, (out, scores)) in self
            .out
            .heads
            .iter_mut()
            .zip(&self.scores.heads)
            .enumerate()
        {
            out.stage = scores.stage[r];
            out.confidence = scores.confidence[r];
            out.probs.clear();
            for p in scores.probs_at(r) {
                let _ = out.probs.push(*p);
            }
            out.tau = scores.tau[r];
            out.progress = scores.progress[r];
            out.smoothed = self
                .smoothers
                .get_mut(hi)
                .map(|s| s.update(out.progress as f64, out.confidence as f64) as f32);
        }
        emit(&self.out);
        Ok(())
    }

    /// Features of the newest frame in the cache, if any: a stand-in for a
    /// frame the caller chooses not to encode (e.g. under overload).
    pub fn latest_features(&self) -> Option<&[f32]> {
        self.cache.get(self.last_stored?).map(|(f, _)| f)
    }

    /// Whether the next pushed frame will be read by a window (and so
    /// encoded); frames that are not are only held, which is cheap.
    pub fn next_frame_needed(&self) -> bool {
        self.window.needed(self.received, self.stride)
    }

    /// Time spent in the image encoder and the reward model since the last
    /// call (covers `push` and `finish`), then resets.
    pub fn take_timings(&mut self) -> PushTimings {
        std::mem::take(&mut self.timings)
    }

    /// Direct access to the reward model (benchmarks, golden tests of raw windows).
    pub fn reward_model(&mut self) -> &mut RewardModel {
        &mut self.reward
    }
}
