//! RA-BC sample weights (Reward-Aligned Behavior Cloning), with LeRobot's
//! rule (`lerobot/utils/rabc.py`, `RABCWeights`, lerobot 0.4.4):
//!
//! - delta of frame t = progress[min(t + H, last)] - progress[t], H the
//!   policy's chunk size: the tail of an episode is clamped to its last
//!   frame, whose own delta is 0; a NaN progress at either end gives NaN;
//! - dataset-wide statistics over every valid delta (f64, population std):
//!   mu = max(mean, 0), sigma = max(std, eps);
//! - weight 1 if delta > kappa, 0 if delta < 0, between them the soft weight
//!   clip((delta - (mu - 2 sigma)) / (4 sigma + eps), 0, 1); a NaN delta gets
//!   LeRobot's fallback weight 1.
//!
//! LeRobot casts deltas to f32 before weighting and keeps the statistics in
//! f64; this module does the same, so the sink's weights equal LeRobot's bit
//! for bit. On the robot the dataset's statistics are not known:
//! [`OnlineRabc`] weights each frame with running statistics (Welford) over
//! every delta seen so far, H frames after the frame itself.

use thiserror::Error;

/// LeRobot's weight for a frame without a valid delta.
pub const FALLBACK_WEIGHT: f32 = 1.0;

/// Settings, checked by [`RabcParams::validate`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RabcParams {
    /// H: the policy's action chunk, in progress frames (LeRobot's policies use 50).
    pub chunk_size: usize,
    /// Deltas above this get weight 1 (LeRobot's `rabc_kappa`).
    pub kappa: f64,
    /// Floor of the deviation and the soft weight's denominator (`rabc_epsilon`).
    pub epsilon: f64,
}

impl Default for RabcParams {
    fn default() -> Self {
        RabcParams {
            chunk_size: 50,
            kappa: 0.01,
            epsilon: 1e-6,
        }
    }
}

#[derive(Debug, Error, PartialEq)]
pub enum RabcParamsError {
    #[error("rabc.chunk_size must be at least 1 (found {0})")]
    ChunkSize(usize),
    #[error("rabc.chunk_size {0} is larger than the supported {MAX_CHUNK_SIZE}")]
    ChunkTooLarge(usize),
    #[error("rabc.kappa must be a finite number >= 0 (found {0})")]
    Kappa(f64),
    #[error("rabc.epsilon must be a finite number > 0 (found {0})")]
    Epsilon(f64),
}

/// Largest chunk the online weighting keeps a window for.
pub const MAX_CHUNK_SIZE: usize = 4096;

impl RabcParams {
    pub fn validate(&self) -> Result<(), RabcParamsError> {
        if self.chunk_size == 0 {
            return Err(RabcParamsError::ChunkSize(self.chunk_size));
        }
        if self.chunk_size > MAX_CHUNK_SIZE {
            return Err(RabcParamsError::ChunkTooLarge(self.chunk_size));
        }
        if !(self.kappa.is_finite() && self.kappa >= 0.0) {
            return Err(RabcParamsError::Kappa(self.kappa));
        }
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            return Err(RabcParamsError::Epsilon(self.epsilon));
        }
        Ok(())
    }
}

/// Mean and deviation of deltas, before LeRobot's clamps.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DeltaStats {
    pub mean: f64,
    pub std: f64,
}

impl DeltaStats {
    /// Dataset-wide statistics as LeRobot computes them (`np.mean`,
    /// `np.std` with ddof 0) over the valid deltas; NaNs are skipped. No
    /// deltas: mean 0, std 0 (the clamps make that mu 0, sigma eps).
    pub fn of(deltas: impl Iterator<Item = f64> + Clone) -> Self {
        let valid = deltas.filter(|d| !d.is_nan());
        let (n, sum) = valid
            .clone()
            .fold((0usize, 0.0f64), |(n, s), d| (n + 1, s + d));
        if n == 0 {
            return DeltaStats::default();
        }
        let mean = sum / n as f64;
        let var = valid.map(|d| (d - mean) * (d - mean)).sum::<f64>() / n as f64;
        DeltaStats {
            mean,
            std: var.sqrt(),
        }
    }
}

/// The delta of a frame: f32 subtraction, as LeRobot's f32 cast of its f64
/// difference of two f32 values gives (the same value, bit for bit).
pub fn delta(now: f32, future: f32) -> f32 {
    future - now
}

/// The delta in f64, as LeRobot's statistics see it.
pub fn delta_f64(now: f32, future: f32) -> f64 {
    future as f64 - now as f64
}

/// LeRobot's weight of one delta.
pub fn weight(delta: f32, stats: DeltaStats, params: &RabcParams) -> f32 {
    if delta.is_nan() {
        return FALLBACK_WEIGHT;
    }
    let mu = stats.mean.max(0.0);
    let sigma = stats.std.max(params.epsilon);
    let d = delta as f64;
    if d > params.kappa {
        1.0
    } else if d >= 0.0 {
        ((d - (mu - 2.0 * sigma)) / (4.0 * sigma + params.epsilon)).clamp(0.0, 1.0) as f32
    } else {
        0.0
    }
}

/// Index of the frame a delta looks at: t + H, clamped to the last frame.
pub fn future_index(t: usize, chunk_size: usize, frames: usize) -> usize {
    (t + chunk_size).min(frames.saturating_sub(1))
}

/// Running mean and deviation (Welford), for weights on the robot.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Welford {
    n: u64,
    mean: f64,
    m2: f64,
}

impl Welford {
    pub fn push(&mut self, x: f64) {
        if x.is_nan() {
            return;
        }
        self.n += 1;
        let d = x - self.mean;
        self.mean += d / self.n as f64;
        self.m2 += d * (x - self.mean);
    }

    pub fn count(&self) -> u64 {
        self.n
    }

    /// Population statistics so far (ddof 0, as LeRobot).
    pub fn stats(&self) -> DeltaStats {
        if self.n == 0 {
            return DeltaStats::default();
        }
        DeltaStats {
            mean: self.mean,
            std: (self.m2 / self.n as f64).max(0.0).sqrt(),
        }
    }
}

/// One frame's weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameWeight {
    pub frame_index: usize,
    /// The frame the delta looked at (t + H, or the episode's last frame).
    pub future_index: usize,
    pub delta: f32,
    pub weight: f32,
}

/// RA-BC weights on the robot: a frame's weight is known once the frame H
/// later is scored, or at the episode's end (clamped). The statistics run
/// over every delta since start-up (episodes included), so early weights
/// are rough; the sink recomputes them with the dataset's statistics.
///
/// Holds H + 1 progress values, allocated once.
#[derive(Debug, Clone)]
pub struct OnlineRabc {
    params: RabcParams,
    ring: Vec<f32>,
    /// Frames pushed in this episode.
    frames: usize,
    /// First frame whose weight is not emitted yet.
    next: usize,
    stats: Welford,
}

impl OnlineRabc {
    pub fn new(params: RabcParams) -> Result<Self, RabcParamsError> {
        params.validate()?;
        Ok(OnlineRabc {
            ring: vec![f32::NAN; params.chunk_size + 1],
            params,
            frames: 0,
            next: 0,
            stats: Welford::default(),
        })
    }

    pub fn params(&self) -> &RabcParams {
        &self.params
    }

    pub fn stats(&self) -> DeltaStats {
        self.stats.stats()
    }

    /// The next frame of the episode (frames come in order, from 0).
    pub fn push(&mut self, progress: f32, emit: &mut impl FnMut(FrameWeight)) {
        let t = self.frames;
        let slots = self.ring.len();
        self.ring[t % slots] = progress;
        self.frames += 1;
        let h = self.params.chunk_size;
        if t >= h {
            self.emit_one(t - h, t, emit);
        }
    }

    /// The episode ended: the last frames' deltas look at its last frame.
    /// Resets for the next episode (the statistics carry on).
    pub fn finish(&mut self, emit: &mut impl FnMut(FrameWeight)) {
        if self.frames > 0 {
            let last = self.frames - 1;
            while self.next <= last {
                self.emit_one(self.next, last, emit);
            }
        }
        self.frames = 0;
        self.next = 0;
        self.ring.fill(f32::NAN);
    }

    /// Frames of this episode still waiting for their weight.
    pub fn pending(&self) -> usize {
        self.frames - self.next
    }

    fn emit_one(&mut self, t: usize, future: usize, emit: &mut impl FnMut(FrameWeight)) {
        let slots = self.ring.len();
        let (now, fut) = (self.ring[t % slots], self.ring[future % slots]);
        self.stats.push(delta_f64(now, fut));
        let d = delta(now, fut);
        emit(FrameWeight {
            frame_index: t,
            future_index: future,
            delta: d,
            weight: weight(d, self.stats.stats(), &self.params),
        });
        self.next = t + 1;
    }
}

/// Dataset-wide weights of finished episodes, as LeRobot's `RABCWeights`
/// computes them from `sarm_progress.parquet`: `episodes` holds each
/// episode's progress per frame, frames contiguous from 0.
pub fn dataset_weights(
    episodes: &[&[f32]],
    params: &RabcParams,
) -> (DeltaStats, Vec<Vec<FrameWeight>>) {
    let mut weights = Vec::with_capacity(episodes.len());
    let stats = dataset_weights_streamed::<std::convert::Infallible>(
        |f| {
            episodes.iter().for_each(|p| f(p));
            Ok(())
        },
        params,
        |_, w| {
            weights.push(w.to_vec());
            Ok(())
        },
    )
    .unwrap_or_else(|never| match never {});
    (stats, weights)
}

/// [`dataset_weights`] over a dataset read again for each of its three
/// passes (mean, deviation, weights), so that only one episode need be in
/// memory at a time (`sarm sink` reads its per-episode files). `episodes`
/// must hand every episode's progress to its argument, in the same order,
/// each time it is called; `emit` gets the statistics and each episode's
/// weights in that order. The arithmetic is [`DeltaStats::of`]'s, in the same order, so
/// the result is the same to the bit.
pub fn dataset_weights_streamed<E>(
    mut episodes: impl FnMut(&mut dyn FnMut(&[f32])) -> Result<(), E>,
    params: &RabcParams,
    mut emit: impl FnMut(&DeltaStats, &[FrameWeight]) -> Result<(), E>,
) -> Result<DeltaStats, E> {
    let h = params.chunk_size;
    let deltas = |p: &[f32], f: &mut dyn FnMut(f64)| {
        for t in 0..p.len() {
            let d = delta_f64(p[t], p[future_index(t, h, p.len())]);
            if !d.is_nan() {
                f(d);
            }
        }
    };
    let (mut n, mut sum) = (0usize, 0.0f64);
    episodes(&mut |p| {
        deltas(p, &mut |d| {
            n += 1;
            sum += d;
        })
    })?;
    let stats = if n == 0 {
        DeltaStats::default()
    } else {
        let mean = sum / n as f64;
        let mut sq = 0.0f64;
        episodes(&mut |p| deltas(p, &mut |d| sq += (d - mean) * (d - mean)))?;
        DeltaStats {
            mean,
            std: (sq / n as f64).sqrt(),
        }
    };
    let mut failed = None;
    let mut buf = Vec::new();
    episodes(&mut |p| {
        if failed.is_some() {
            return;
        }
        buf.clear();
        buf.extend((0..p.len()).map(|t| {
            let f = future_index(t, h, p.len());
            let d = delta(p[t], p[f]);
            FrameWeight {
                frame_index: t,
                future_index: f,
                delta: d,
                weight: weight(d, stats, params),
            }
        }));
        if let Err(e) = emit(&stats, &buf) {
            failed = Some(e);
        }
    })?;
    match failed {
        Some(e) => Err(e),
        None => Ok(stats),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(online: &mut OnlineRabc, progress: &[f32]) -> Vec<FrameWeight> {
        let mut out = Vec::new();
        for &p in progress {
            online.push(p, &mut |w| out.push(w));
        }
        online.finish(&mut |w| out.push(w));
        out
    }

    #[test]
    fn online_deltas_equal_the_dataset_rule_for_every_frame() {
        let progress: Vec<f32> = (0..23).map(|i| (i as f32 * 0.37).sin().abs()).collect();
        for h in [1, 5, 22, 23, 50] {
            let params = RabcParams {
                chunk_size: h,
                ..RabcParams::default()
            };
            let mut online = OnlineRabc::new(params).unwrap();
            let got = collect(&mut online, &progress);
            let (_, want) = dataset_weights(&[&progress], &params);
            assert_eq!(got.len(), progress.len(), "H = {h}");
            for (g, w) in got.iter().zip(&want[0]) {
                assert_eq!(
                    (g.frame_index, g.future_index, g.delta.to_bits()),
                    (w.frame_index, w.future_index, w.delta.to_bits()),
                    "H = {h}"
                );
            }
            // Emitted H frames late: nothing for the first H pushes.
            let mut early = 0;
            let mut o = OnlineRabc::new(params).unwrap();
            for &p in progress.iter().take(h.min(progress.len())) {
                o.push(p, &mut |_| early += 1);
            }
            assert_eq!(early, 0, "H = {h}");
        }
    }

    #[test]
    fn streamed_statistics_are_the_two_pass_ones_to_the_bit() {
        let a: Vec<f32> = (0..40).map(|i| (i as f32 * 0.21).sin().abs()).collect();
        let b: Vec<f32> = (0..17).map(|i| 1.0 - i as f32 * 0.05).collect();
        let params = RabcParams {
            chunk_size: 5,
            ..RabcParams::default()
        };
        let (stats, _) = dataset_weights(&[&a, &b], &params);
        let h = params.chunk_size;
        let all = [&a, &b].into_iter().flat_map(|p| {
            (0..p.len()).map(move |t| delta_f64(p[t], p[future_index(t, h, p.len())]))
        });
        let two_pass = DeltaStats::of(all.collect::<Vec<_>>().into_iter());
        assert_eq!(stats.mean.to_bits(), two_pass.mean.to_bits());
        assert_eq!(stats.std.to_bits(), two_pass.std.to_bits());
    }

    #[test]
    fn welford_equals_two_pass_statistics() {
        let xs: Vec<f64> = (0..1000)
            .map(|i| ((i * 7919) % 1013) as f64 / 97.0 - 3.0)
            .collect();
        let mut w = Welford::default();
        xs.iter().for_each(|&x| w.push(x));
        let two_pass = DeltaStats::of(xs.iter().copied());
        assert!((w.stats().mean - two_pass.mean).abs() < 1e-12);
        assert!((w.stats().std - two_pass.std).abs() < 1e-12);
    }

    #[test]
    fn weight_bands() {
        let p = RabcParams::default();
        let s = DeltaStats {
            mean: 0.01,
            std: 0.02,
        };
        assert_eq!(weight(0.5, s, &p), 1.0);
        assert_eq!(weight(-0.001, s, &p), 0.0);
        assert_eq!(weight(f32::NAN, s, &p), FALLBACK_WEIGHT);
        // (0.0 - (0.01 - 0.04)) / (0.08 + 1e-6)
        let soft = weight(0.0, s, &p);
        assert!((soft as f64 - 0.03 / 0.080001).abs() < 1e-6, "{soft}");
    }

    #[test]
    fn bad_params_are_named() {
        let bad = RabcParams {
            chunk_size: 0,
            ..RabcParams::default()
        };
        assert_eq!(
            OnlineRabc::new(bad).unwrap_err().to_string(),
            "rabc.chunk_size must be at least 1 (found 0)"
        );
    }
}
