//! What a frame's score becomes on the wire and on disk: `sarm_msgs/Progress`
//! messages (one per head) and LeRobot's per-frame parquet rows. `sarm
//! label` and `sarm run` share this, so offline and live outputs agree.

use sarm_runtime::episode::{EpisodeRewards, EpisodeSeries};
use sarm_runtime::{FrameScore, HeadKind};

use crate::msg::{Header, Progress, Time};
use crate::progress_parquet::ProgressRow;

/// Turns scores into Progress messages: sequence numbers and per-head
/// rewards (the engine's [`EpisodeRewards`]).
#[derive(Debug, Clone)]
pub struct ProgressStamper {
    robot_id: String,
    frame_id: String,
    seq: u64,
    rewards: EpisodeRewards,
}

impl ProgressStamper {
    pub fn new(robot_id: &str, frame_id: &str, heads: usize) -> Self {
        ProgressStamper {
            robot_id: robot_id.to_string(),
            frame_id: frame_id.to_string(),
            seq: 0,
            rewards: EpisodeRewards::new(heads),
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
        self.rewards.reset();
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
            let reward = self.rewards.reward(hi, h.progress);
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

/// The scored frames of one episode, for LeRobot's parquet (the engine's
/// [`EpisodeSeries`] as parquet rows).
#[derive(Debug, Clone, Default)]
pub struct EpisodeProgress {
    series: EpisodeSeries,
}

impl EpisodeProgress {
    pub fn new(heads: Vec<HeadKind>) -> Self {
        EpisodeProgress {
            series: EpisodeSeries::new(heads),
        }
    }

    pub fn push(&mut self, score: &FrameScore) {
        self.series.push(score);
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    pub fn scored(&self) -> usize {
        self.series.scored()
    }

    pub fn clear(&mut self) {
        self.series.clear();
    }

    /// One row per frame of the episode (`frames` at the model's rate, at
    /// least one past the last scored frame), interpolated between scored
    /// frames as LeRobot's `--stride` does.
    pub fn rows(&self, frames: i64, episode_index: i64, index_offset: i64) -> Vec<ProgressRow> {
        let c = self.series.columns(frames);
        (0..c.sparse.len())
            .map(|f| ProgressRow {
                index: index_offset + f as i64,
                episode_index,
                frame_index: f as i64,
                progress_sparse: c.sparse[f],
                progress_dense: c.dense.as_ref().map(|d| d[f]),
            })
            .collect()
    }
}
