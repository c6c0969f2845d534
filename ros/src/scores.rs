//! What a frame's score becomes on the wire and on disk: `sarm_msgs/Progress`
//! messages (one per head) and LeRobot's per-frame parquet rows. `sarm
//! label` and `sarm run` share this, so offline and live outputs agree.

use sarm_runtime::{FrameScore, HeadKind};

use crate::msg::{Header, Progress, Time};
use crate::progress_parquet::{interpolate, ProgressRow};

/// Turns scores into Progress messages: sequence numbers and per-head
/// rewards (progress minus the head's previous progress in the episode).
#[derive(Debug, Clone)]
pub struct ProgressStamper {
    robot_id: String,
    frame_id: String,
    seq: u64,
    previous: Vec<Option<f32>>,
}

impl ProgressStamper {
    pub fn new(robot_id: &str, frame_id: &str, heads: usize) -> Self {
        ProgressStamper {
            robot_id: robot_id.to_string(),
            frame_id: frame_id.to_string(),
            seq: 0,
            previous: vec![None; heads],
        }
    }

    /// Continue numbering after `seq` (e.g. from before a restart).
    pub fn set_seq(&mut self, seq: u64) {
        self.seq = seq;
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// A new episode: rewards restart from its first frame.
    pub fn reset_episode(&mut self) {
        self.previous.iter_mut().for_each(|p| *p = None);
    }

    /// The Progress messages of `score` (stamped with its camera frame's stamp).
    pub fn messages(
        &mut self,
        score: &FrameScore,
        episode_index: i64,
        stamp_ns: i64,
    ) -> Vec<Progress> {
        let mut out = Vec::with_capacity(score.heads.len());
        for (hi, h) in score.heads.iter().enumerate() {
            let reward = match self.previous.get_mut(hi) {
                Some(prev) => {
                    let r = prev.map_or(0.0, |p| h.progress - p);
                    *prev = Some(h.progress);
                    r
                }
                None => 0.0,
            };
            self.seq += 1;
            out.push(Progress {
                header: Header {
                    stamp: Time::from_nanos(stamp_ns),
                    frame_id: self.frame_id.clone(),
                },
                robot_id: self.robot_id.clone(),
                episode_index,
                frame_index: score.frame_index as i64,
                seq: self.seq,
                head: h.kind.as_str().into(),
                stage: h.stage as u32,
                stage_confidence: h.confidence,
                stage_probs: h.probs.to_vec(),
                stage_progress: h.tau,
                progress: h.progress,
                progress_smoothed: h.smoothed.unwrap_or(h.progress),
                reward,
            });
        }
        out
    }
}

/// The scored frames of one episode, for LeRobot's parquet.
#[derive(Debug, Clone, Default)]
pub struct EpisodeProgress {
    heads: Vec<HeadKind>,
    frames: Vec<i64>,
    progress: Vec<Vec<f32>>,
}

impl EpisodeProgress {
    pub fn new(heads: Vec<HeadKind>) -> Self {
        EpisodeProgress {
            progress: vec![Vec::new(); heads.len()],
            heads,
            frames: Vec::new(),
        }
    }

    pub fn push(&mut self, score: &FrameScore) {
        self.frames.push(score.frame_index as i64);
        for (hi, h) in score.heads.iter().enumerate() {
            if let Some(col) = self.progress.get_mut(hi) {
                col.push(h.progress);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn scored(&self) -> usize {
        self.frames.len()
    }

    pub fn clear(&mut self) {
        self.frames.clear();
        self.progress.iter_mut().for_each(Vec::clear);
    }

    /// One row per frame of the episode (`frames` at the model's rate, at
    /// least one past the last scored frame), interpolated between scored
    /// frames as LeRobot's `--stride` does.
    pub fn rows(&self, frames: i64, episode_index: i64, index_offset: i64) -> Vec<ProgressRow> {
        let frames = frames.max(self.frames.iter().map(|f| f + 1).max().unwrap_or(0));
        let column = |hi: usize| interpolate(&self.frames, &self.progress[hi], 0..frames);
        let sparse = self
            .heads
            .iter()
            .position(|h| *h == HeadKind::Sparse)
            .map(column)
            .unwrap_or_else(|| column(0));
        let dense = self
            .heads
            .iter()
            .position(|h| *h == HeadKind::Dense)
            .filter(|_| self.heads.len() > 1)
            .map(column);
        (0..frames as usize)
            .map(|f| ProgressRow {
                index: index_offset + f as i64,
                episode_index,
                frame_index: f as i64,
                progress_sparse: sparse[f],
                progress_dense: dense.as_ref().map(|d| d[f]),
            })
            .collect()
    }
}
