//! What the engine derives from an episode's scores, beyond the model:
//!
//! - [`EpisodeRewards`]: the per-head reward of a scored frame, progress
//!   minus the head's previous progress in the episode (0 on its first);
//! - [`RabcDriver`]: online RA-BC weights of the scored frames, each known
//!   `chunk_size` scored frames later or at the episode's end, carrying the
//!   frame's index and camera stamp;
//! - [`EpisodeSeries`]: the scored progress of one episode, turned into one
//!   value per frame of the model's clock as LeRobot's `--stride`
//!   interpolation does (`np.interp`), for `sarm_progress.parquet`.
//!
//! `sarm label` and the node share these, so offline and live agree.

use std::collections::VecDeque;

use crate::bundle::HeadKind;
use crate::rabc::{FrameWeight, OnlineRabc, RabcParams, RabcParamsError};
use crate::scorer::FrameScore;

/// Per-head rewards: progress minus the previous scored frame's progress.
#[derive(Debug, Clone)]
pub struct EpisodeRewards {
    previous: Vec<Option<f32>>,
}

impl EpisodeRewards {
    pub fn new(heads: usize) -> Self {
        EpisodeRewards {
            previous: vec![None; heads],
        }
    }

    /// A new episode: rewards restart from its first frame.
    pub fn reset(&mut self) {
        self.previous.iter_mut().for_each(|p| *p = None);
    }

    /// The reward of head `head` at this frame (`progress` is its progress).
    pub fn reward(&mut self, head: usize, progress: f32) -> f32 {
        match self.previous.get_mut(head) {
            Some(prev) => {
                let r = prev.map_or(0.0, |p| progress - p);
                *prev = Some(progress);
                r
            }
            None => 0.0,
        }
    }
}

/// One frame's weight, ready to publish.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StampedWeight {
    pub frame_index: usize,
    /// The camera stamp of the weighted frame.
    pub stamp_ns: i64,
    pub weight: FrameWeight,
}

/// Online RA-BC over the scored frames of the current episode.
///
/// Holds at most `chunk_size + 1` pending frames, allocated once.
#[derive(Debug, Clone)]
pub struct RabcDriver {
    rabc: OnlineRabc,
    head: HeadKind,
    /// Frame indices and stamps of the frames whose weight is pending.
    frames: VecDeque<(usize, i64)>,
}

impl RabcDriver {
    /// `head`: the head whose progress the weights use (the first head if
    /// the bundle lacks it).
    pub fn new(params: RabcParams, head: HeadKind) -> Result<Self, RabcParamsError> {
        Ok(RabcDriver {
            rabc: OnlineRabc::new(params)?,
            head,
            frames: VecDeque::with_capacity(params.chunk_size + 2),
        })
    }

    pub fn chunk_size(&self) -> usize {
        self.rabc.params().chunk_size
    }

    /// A scored frame; hands each weight that became known to `emit`.
    pub fn push(
        &mut self,
        score: &FrameScore,
        stamp_ns: i64,
        emit: &mut impl FnMut(StampedWeight),
    ) {
        let Some(h) = score.head(self.head).or(score.heads.first()) else {
            return;
        };
        self.frames.push_back((score.frame_index, stamp_ns));
        let frames = &mut self.frames;
        self.rabc
            .push(h.progress, &mut |w| emit(Self::stamp(frames, w)));
    }

    /// The episode ended: the weights still pending (their deltas clamped
    /// to the last frame). Ready for the next episode.
    pub fn finish(&mut self, emit: &mut impl FnMut(StampedWeight)) {
        let frames = &mut self.frames;
        self.rabc.finish(&mut |w| emit(Self::stamp(frames, w)));
        frames.clear();
    }

    fn stamp(frames: &mut VecDeque<(usize, i64)>, w: FrameWeight) -> StampedWeight {
        let (frame_index, stamp_ns) = frames.pop_front().unwrap_or((w.frame_index, 0));
        StampedWeight {
            frame_index,
            stamp_ns,
            weight: w,
        }
    }
}

/// The scored frames of one episode and their progress per head.
#[derive(Debug, Clone, Default)]
pub struct EpisodeSeries {
    heads: Vec<HeadKind>,
    frames: Vec<i64>,
    progress: Vec<Vec<f32>>,
}

/// One episode's progress per frame of the model's clock.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressColumns {
    pub sparse: Vec<f32>,
    /// Only for bundles with both heads.
    pub dense: Option<Vec<f32>>,
}

impl EpisodeSeries {
    pub fn new(heads: Vec<HeadKind>) -> Self {
        EpisodeSeries {
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

    /// Frames scored so far.
    pub fn scored(&self) -> usize {
        self.frames.len()
    }

    pub fn clear(&mut self) {
        self.frames.clear();
        self.progress.iter_mut().for_each(Vec::clear);
    }

    /// Progress of frames `0..frames` (at least one past the last scored
    /// frame), interpolated between scored frames as LeRobot's `--stride`.
    pub fn columns(&self, frames: i64) -> ProgressColumns {
        let frames = frames.max(self.frames.iter().map(|f| f + 1).max().unwrap_or(0));
        let column = |hi: usize| interpolate(&self.frames, &self.progress[hi], 0..frames);
        let sparse = self
            .heads
            .iter()
            .position(|h| *h == HeadKind::Sparse)
            .map(column)
            .unwrap_or_else(|| {
                if self.heads.is_empty() {
                    vec![f32::NAN; frames as usize]
                } else {
                    column(0)
                }
            });
        let dense = self
            .heads
            .iter()
            .position(|h| *h == HeadKind::Dense)
            .filter(|_| self.heads.len() > 1)
            .map(column);
        ProgressColumns { sparse, dense }
    }
}

/// `np.interp(all, xs, ys)` with `xs` increasing; values before the first
/// and after the last point are the end values. No points: NaN.
pub fn interpolate(xs: &[i64], ys: &[f32], all: impl Iterator<Item = i64>) -> Vec<f32> {
    all.map(|x| {
        if xs.is_empty() || ys.len() < xs.len() {
            return f32::NAN;
        }
        let i = xs.partition_point(|&v| v < x);
        if i == 0 {
            ys[0]
        } else if i == xs.len() {
            ys[xs.len() - 1]
        } else if xs[i] == x {
            ys[i]
        } else {
            let (x0, x1) = (xs[i - 1] as f64, xs[i] as f64);
            let (y0, y1) = (ys[i - 1] as f64, ys[i] as f64);
            (y0 + (y1 - y0) * (x as f64 - x0) / (x1 - x0)) as f32
        }
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scorer::HeadScore;
    use heapless::Vec as HVec;

    fn score(frame: usize, sparse: f32, dense: f32) -> FrameScore {
        let head = |kind, progress| HeadScore {
            kind,
            stage: 0,
            confidence: 1.0,
            probs: HVec::new(),
            tau: 0.0,
            progress,
            smoothed: None,
        };
        let mut heads = HVec::new();
        let _ = heads.push(head(HeadKind::Sparse, sparse));
        let _ = heads.push(head(HeadKind::Dense, dense));
        FrameScore {
            frame_index: frame,
            window: HVec::new(),
            heads,
        }
    }

    #[test]
    fn rewards_are_progress_differences_restarting_each_episode() {
        let mut r = EpisodeRewards::new(2);
        assert_eq!(r.reward(0, 0.25), 0.0);
        assert_eq!(r.reward(0, 0.5), 0.25);
        assert_eq!(r.reward(1, 0.1), 0.0);
        assert_eq!(r.reward(0, 0.375), -0.125);
        assert_eq!(r.reward(7, 0.9), 0.0, "an unknown head has no reward");
        r.reset();
        assert_eq!(r.reward(0, 0.9), 0.0);
    }

    #[test]
    fn the_driver_weights_the_chosen_head_with_each_frames_stamp() {
        let params = RabcParams {
            chunk_size: 2,
            ..RabcParams::default()
        };
        let mut d = RabcDriver::new(params, HeadKind::Dense).unwrap();
        let mut out = Vec::new();
        // Scored frames 0, 3, 6, 9 (stride 3): weights count scored frames.
        for (k, f) in [0usize, 3, 6, 9].into_iter().enumerate() {
            let p = k as f32 * 0.25;
            d.push(&score(f, 0.0, p), 1000 + f as i64, &mut |w| out.push(w));
        }
        assert_eq!(out.len(), 2, "H = 2 scored frames late");
        d.finish(&mut |w| out.push(w));
        let frames: Vec<(usize, i64)> = out.iter().map(|w| (w.frame_index, w.stamp_ns)).collect();
        assert_eq!(frames, [(0, 1000), (3, 1003), (6, 1006), (9, 1009)]);
        // The dense head's deltas: 0.5, 0.5, then clamped to the last: 0.25, 0.
        let deltas: Vec<f32> = out.iter().map(|w| w.weight.delta).collect();
        assert_eq!(deltas, [0.5, 0.5, 0.25, 0.0]);
        // Nothing carries over into the next episode.
        d.finish(&mut |w| out.push(w));
        assert_eq!(out.len(), 4);
    }

    #[test]
    fn interpolation_matches_np_interp() {
        // np.interp([0,1,2,5,7,9], [1,4,7], [0.1,0.4,0.7]) = [.1,.1,.2,.5,.7,.7]
        let v = interpolate(&[1, 4, 7], &[0.1, 0.4, 0.7], [0, 1, 2, 5, 7, 9].into_iter());
        let want = [0.1, 0.1, 0.2, 0.5, 0.7, 0.7];
        for (a, b) in v.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{v:?}");
        }
    }

    #[test]
    fn series_interpolate_between_scored_frames_like_np_interp() {
        let mut s = EpisodeSeries::new(vec![HeadKind::Sparse, HeadKind::Dense]);
        s.push(&score(1, 0.1, 0.0));
        s.push(&score(4, 0.4, 0.5));
        s.push(&score(7, 0.7, 1.0));
        // np.interp(range(9), [1, 4, 7], [0.1, 0.4, 0.7])
        let c = s.columns(9);
        let want = [0.1, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.7];
        assert_eq!(c.sparse.len(), 9);
        for (a, b) in c.sparse.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{:?}", c.sparse);
        }
        assert_eq!(c.dense.as_ref().map(Vec::len), Some(9));
        // Fewer frames than scored: still one past the last scored frame.
        assert_eq!(s.columns(3).sparse.len(), 8);
        s.clear();
        assert!(s.is_empty());
    }
}
