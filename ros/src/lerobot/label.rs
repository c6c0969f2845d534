//! One dataset episode through the engine: decode the frames the windows
//! read (each once, in order), encode them in batches, score every planned
//! frame as soon as its window's frames are encoded, drop features no
//! window still needs, and interpolate the frames in between.
//!
//! Memory is bounded by the window's span, not the episode's length
//! (plus the episode's timestamps, states and output rows).

use std::collections::VecDeque;

use image::RgbImage;
use sarm_runtime::encoder::ImageEncoder;
use sarm_runtime::reward::{RewardModel, WindowScores};
use sarm_runtime::state::{StateError, StateNormalizer};
use sarm_runtime::{Backend, Bundle, BundleError, HeadKind, Precision};

use super::dataset::EpisodeData;
use super::plan::{Plan, PlanError};
use super::video::{FrameSource, VideoError};
use crate::progress_parquet::{interpolate, ProgressRow};

/// Frames encoded together by default (`--encode-batch`): one. On the
/// CPU, batches are slower per frame for EfficientNet-lite0 (measured on
/// the ALOHA dataset fixture, `--jobs 2`: tract 7.4 s at 8 per call vs
/// 3.1 s at 1, onnxruntime 1.14 s vs 1.02 s); a GPU execution provider is
/// where larger batches pay.
pub const DEFAULT_ENCODE_BATCH: usize = 1;

/// Windows scored together (the reward model's batch): one call of each
/// transformer over 16 windows runs its matrix products on 16x the rows,
/// which at LeRobot's default size (hidden 768) costs about 0.6x per window
/// of 16 single-window calls. Windows wait until a batch is full (their
/// frames stay cached: memory grows by 16 feature vectors, not with the
/// episode); the episode's last batch runs partial.
pub const REWARD_BATCH: usize = 16;

/// Why an episode could not be labelled. The run reports it and goes on
/// (or stops under `--strict`); nothing of the episode is written.
#[derive(Debug, thiserror::Error)]
pub enum EpisodeError {
    #[error(transparent)]
    Video(#[from] VideoError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("frame {frame}: bad state: {source}")]
    State {
        frame: i64,
        #[source]
        source: StateError,
    },
    #[error("frame {frame}: cannot encode the camera image: {message}")]
    Encode { frame: i64, message: String },
    #[error("scoring frame {frame}: {message}")]
    Score { frame: i64, message: String },
    #[error("{0}")]
    Data(String),
}

impl EpisodeError {
    /// A short kind for the run's report.
    pub fn kind(&self) -> &'static str {
        match self {
            EpisodeError::Video(v) => v.kind(),
            EpisodeError::Plan(_) => "bad_timestamps",
            EpisodeError::State { .. } => "bad_state",
            EpisodeError::Encode { .. } => "undecodable_frame",
            EpisodeError::Score { .. } => "inference",
            EpisodeError::Data(_) => "bad_data",
        }
    }
}

/// The bundle's models for one worker.
pub struct Models {
    encoder: ImageEncoder,
    /// The encoder's output for one batch, `image_dim` values per frame.
    batch_features: Vec<f32>,
    reward: RewardModel,
    normalizer: StateNormalizer,
    /// One score buffer per window slot of a batch.
    scores: Vec<WindowScores>,
    heads: Vec<HeadKind>,
    readout: usize,
    image_dim: usize,
    state_dim: usize,
    joints: usize,
}

impl Models {
    /// The encoder (for batches of `encode_batch` frames) and the reward
    /// model (for batches of [`REWARD_BATCH`] windows) of `precision` on
    /// `backend`.
    pub fn load(
        bundle: &Bundle,
        backend: &Backend,
        precision: Precision,
        encode_batch: usize,
    ) -> Result<Self, BundleError> {
        let encoder = ImageEncoder::load_with(bundle, backend, precision, encode_batch)?;
        let reward = RewardModel::load_batched(bundle, backend, precision, REWARD_BATCH)?;
        let scores = (0..REWARD_BATCH).map(|_| reward.new_scores()).collect();
        let m = &bundle.manifest;
        Ok(Models {
            batch_features: vec![0.0; encode_batch * encoder.output_dim()],
            encoder,
            reward,
            normalizer: StateNormalizer::new(&m.state),
            scores,
            heads: bundle.heads.iter().map(|h| h.kind).collect(),
            readout: bundle.window.readout(),
            image_dim: m.model.image_dim,
            state_dim: m.model.state_dim,
            joints: m.state.joint_names.len(),
        })
    }

    pub fn heads(&self) -> &[HeadKind] {
        &self.heads
    }
}

/// An episode's inputs besides its frames.
pub struct EpisodeInput<'a> {
    pub episode_index: i64,
    pub data: &'a EpisodeData,
    /// For each bundle joint, its position in the dataset's state vector.
    pub joint_order: &'a [usize],
    /// The task's text embedding.
    pub text: &'a [f32],
    /// The episode's offset in its mp4 (`videos/<key>/from_timestamp`).
    pub from_timestamp: f64,
    pub tolerance_s: f64,
}

/// What labelling an episode produced.
#[derive(Debug, Clone)]
pub struct EpisodeOutput {
    pub rows: Vec<ProgressRow>,
    pub scored: usize,
    pub encoded: usize,
}

/// Encoded frames a pending window may still read, oldest first; freed
/// buffers are reused.
struct FeatureCache {
    dim: usize,
    live: VecDeque<(usize, Vec<f32>)>,
    free: Vec<Vec<f32>>,
    /// Frame 0 for anchored windows, kept for the whole episode.
    anchor: Option<Vec<f32>>,
}

impl FeatureCache {
    fn slot(&mut self) -> Vec<f32> {
        self.free.pop().unwrap_or_else(|| vec![0.0; self.dim])
    }

    fn get(&self, frame: usize) -> Option<&[f32]> {
        if frame == 0 {
            if let Some(a) = &self.anchor {
                return Some(a);
            }
        }
        let i = self.live.partition_point(|(f, _)| *f < frame);
        match self.live.get(i) {
            Some((f, v)) if *f == frame => Some(v),
            _ => None,
        }
    }

    fn evict_before(&mut self, frame: usize) {
        while self.live.front().is_some_and(|(f, _)| *f < frame) {
            if let Some((_, v)) = self.live.pop_front() {
                self.free.push(v);
            }
        }
    }
}

/// Labels one episode. `on_frames(n)` is called as the episode's frames
/// are covered (n frames at a time), for the progress bar.
pub fn label_episode(
    models: &mut Models,
    input: &EpisodeInput<'_>,
    plan: &Plan,
    frames: &mut dyn FrameSource,
    on_frames: &mut dyn FnMut(u64),
) -> Result<EpisodeOutput, EpisodeError> {
    let data = input.data;
    if plan.len() != data.len() {
        return Err(EpisodeError::Data(format!(
            "plan for {} frames, episode has {}",
            plan.len(),
            data.len()
        )));
    }
    models.reward.set_text(input.text);
    let anchored = plan.anchored;
    let mut cache = FeatureCache {
        dim: models.image_dim,
        live: VecDeque::new(),
        free: Vec::new(),
        anchor: None,
    };
    let queries: Vec<f64> = plan
        .needed
        .iter()
        .map(|&f| input.from_timestamp + data.timestamp[f])
        .collect();
    let encode_batch = models.encoder.batch();
    let mut batch: Vec<(usize, RgbImage)> = Vec::with_capacity(encode_batch);
    let mut spare: Vec<RgbImage> = Vec::new();
    let mut next_window = 0usize;
    let mut scored_x: Vec<i64> = Vec::with_capacity(plan.scored.len());
    let mut scored_y: Vec<Vec<f32>> =
        vec![Vec::with_capacity(plan.scored.len()); models.heads.len()];
    let mut covered = 0usize;
    let mut joints = vec![0.0f32; models.joints];
    let mut encoded = 0usize;
    let mut failure: Option<EpisodeError> = None;

    // Encode the batch, then score the windows whose frames are all in,
    // [`REWARD_BATCH`] at a time (fewer only in the episode's last call).
    let mut flush = |batch: &mut Vec<(usize, RgbImage)>,
                     spare: &mut Vec<RgbImage>,
                     cache: &mut FeatureCache,
                     next_window: &mut usize,
                     last_delivered: usize,
                     last_call: bool,
                     models: &mut Models|
     -> Result<(), EpisodeError> {
        if let Some(&(first, _)) = batch.first() {
            let dim = models.image_dim;
            let n = batch.len();
            let Models {
                encoder,
                batch_features,
                ..
            } = &mut *models;
            encoder
                .encode_batch(
                    batch.iter().map(|(_, img)| img),
                    &mut batch_features[..n * dim],
                )
                .map_err(|e| EpisodeError::Encode {
                    frame: data.frame_index[first],
                    message: e.to_string(),
                })?;
        }
        for (i, (frame, img)) in batch.drain(..).enumerate() {
            let mut feat = cache.slot();
            let dim = feat.len();
            feat.copy_from_slice(&models.batch_features[i * dim..(i + 1) * dim]);
            encoded += 1;
            if frame == 0 && anchored {
                cache.anchor = Some(feat.clone());
            }
            cache.live.push_back((frame, feat));
            spare.push(img);
        }
        while *next_window < plan.scored.len() {
            let first = *next_window;
            let ready = (first..plan.scored.len())
                .take(REWARD_BATCH)
                .take_while(|&k| plan.window(k).iter().all(|&f| f <= last_delivered))
                .count();
            if ready == 0 || (ready < REWARD_BATCH && !last_call) {
                break;
            }
            let frame_of = |k: usize| data.frame_index[plan.scored[k]];
            for slot in 0..ready {
                let k = first + slot;
                let window = plan.window(k);
                fill_window(
                    models,
                    slot,
                    cache,
                    window,
                    data,
                    input.joint_order,
                    &mut joints,
                )
                .map_err(|e| match e {
                    FillError::State(source) => EpisodeError::State {
                        frame: frame_of(k),
                        source,
                    },
                    FillError::Missing(m) => EpisodeError::Score {
                        frame: frame_of(k),
                        message: format!("frame {m} not encoded (internal error)"),
                    },
                })?;
            }
            models
                .reward
                .run_batch(&mut models.scores[..ready])
                .map_err(|e| EpisodeError::Score {
                    frame: frame_of(first),
                    message: e.to_string(),
                })?;
            for (slot, scores) in models.scores[..ready].iter().enumerate() {
                let f = plan.scored[first + slot];
                scored_x.push(f as i64);
                for (hi, h) in scores.heads.iter().enumerate() {
                    scored_y[hi].push(h.progress[models.readout]);
                }
                let upto = f + 1;
                if upto > covered {
                    on_frames((upto - covered) as u64);
                    covered = upto;
                }
            }
            *next_window = first + ready;
            // Frames before the next window's first frame are not read again.
            if let Some(w) = (*next_window < plan.scored.len()).then(|| plan.window(*next_window)) {
                let lowest = w
                    .iter()
                    .skip(usize::from(anchored))
                    .min()
                    .copied()
                    .unwrap_or(0);
                cache.evict_before(lowest);
            }
        }
        Ok(())
    };

    let mut last_delivered = 0usize;
    let result = frames.frames(&queries, input.tolerance_s, &mut |q, img| {
        let frame = plan.needed[q];
        let mut slot = spare.pop().unwrap_or_else(|| RgbImage::new(1, 1));
        if slot.dimensions() != img.dimensions() {
            slot = RgbImage::new(img.width(), img.height());
        }
        slot.copy_from_slice(img.as_raw());
        batch.push((frame, slot));
        last_delivered = frame;
        if batch.len() == encode_batch {
            if let Err(e) = flush(
                &mut batch,
                &mut spare,
                &mut cache,
                &mut next_window,
                frame,
                false,
                models,
            ) {
                failure = Some(e);
                return false;
            }
        }
        true
    });
    match result {
        Err(VideoError::Stopped) => {
            return Err(failure.unwrap_or(EpisodeError::Data("decoding stopped".into())))
        }
        Err(e) => return Err(e.into()),
        Ok(()) => {}
    }
    flush(
        &mut batch,
        &mut spare,
        &mut cache,
        &mut next_window,
        last_delivered,
        true,
        models,
    )?;
    if next_window != plan.scored.len() {
        return Err(EpisodeError::Data(format!(
            "{} of {} planned frames were scored (frames missing from the video)",
            next_window,
            plan.scored.len()
        )));
    }
    if covered < data.len() {
        on_frames((data.len() - covered) as u64);
    }

    // One row per dataset frame, interpolated as LeRobot's --stride does.
    let positions = 0..data.len() as i64;
    let columns: Vec<Vec<f32>> = scored_y
        .iter()
        .map(|ys| interpolate(&scored_x, ys, positions.clone()))
        .collect();
    let sparse = models
        .heads
        .iter()
        .position(|h| *h == HeadKind::Sparse)
        .unwrap_or(0);
    let dense = models
        .heads
        .iter()
        .position(|h| *h == HeadKind::Dense)
        .filter(|_| models.heads.len() > 1);
    let rows = (0..data.len())
        .map(|i| ProgressRow {
            index: data.index[i],
            episode_index: input.episode_index,
            frame_index: data.frame_index[i],
            progress_sparse: columns[sparse][i],
            progress_dense: dense.map(|d| columns[d][i]),
        })
        .collect();
    Ok(EpisodeOutput {
        rows,
        scored: scored_x.len(),
        encoded,
    })
}

enum FillError {
    State(StateError),
    Missing(usize),
}

/// Writes window `window`'s features and normalised joint states into the
/// reward model's batch slot `slot`.
fn fill_window(
    models: &mut Models,
    slot: usize,
    cache: &FeatureCache,
    window: &[usize],
    data: &EpisodeData,
    joint_order: &[usize],
    joints: &mut [f32],
) -> Result<(), FillError> {
    let (d, s) = (models.image_dim, models.state_dim);
    let (image_in, state_in) = models.reward.window_inputs_at(slot);
    for (pos, &frame) in window.iter().enumerate() {
        let feat = cache.get(frame).ok_or(FillError::Missing(frame))?;
        image_in[pos * d..(pos + 1) * d].copy_from_slice(feat);
        let row = data.state_row(frame);
        for (j, &src) in joint_order.iter().enumerate() {
            joints[j] = row[src];
        }
        models
            .normalizer
            .write(joints, &mut state_in[pos * s..(pos + 1) * s])
            .map_err(FillError::State)?;
    }
    Ok(())
}
