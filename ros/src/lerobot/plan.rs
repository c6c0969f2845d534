//! Which frames of a dataset episode are scored, and which frames each
//! scored frame's window reads, with windows taken in time.
//!
//! A bundle's window is in frames of its own clock (`window.fps`: the
//! ALOHA bundle runs at 10 Hz, frame gap 5 = 0.5 s), while a dataset
//! records at its own rate (30-50 Hz). Offsets are therefore turned into
//! seconds and each window frame is the dataset frame nearest in
//! timestamp (ties to the earlier), clamped to the episode as LeRobot
//! clamps. Frames are scored on the bundle's clock, every `stride`-th
//! tick (each tick: the nearest dataset frame), plus the episode's last
//! frame as LeRobot's `compute_rabc_weights.py` adds it; the frames in
//! between are interpolated (np.interp) like LeRobot's `--stride`.
//!
//! When the dataset runs at the bundle's rate this is exactly LeRobot's
//! rule (`compute_absolute_indices`, frames `0, s, 2s, ..` + last). When it
//! runs `r` times faster (an integer), it is LeRobot's rule with
//! `frame_gap * r` and `--stride s * r`, which is what the parity tests
//! compare against.

use sarm_runtime::window::WindowSpec;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("the episode has no frames")]
    Empty,
    #[error("timestamp of frame {frame} is not a finite number ({value})")]
    NotFinite { frame: usize, value: f64 },
    #[error("timestamps go backwards at frame {frame} ({value} s after {previous} s)")]
    Backwards {
        frame: usize,
        value: f64,
        previous: f64,
    },
}

/// Scored frames and their windows for one episode (local frame positions).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    len: usize,
    /// Frames per window (the model's T).
    pub window_len: usize,
    /// Ascending, unique.
    pub scored: Vec<usize>,
    windows: Vec<usize>,
    /// Every frame some window reads, ascending, unique.
    pub needed: Vec<usize>,
    /// Windows start at the episode's first frame (`window.anchor_first`).
    pub anchored: bool,
}

impl Plan {
    /// `timestamps`: seconds of each frame of the episode, non-decreasing.
    pub fn new(timestamps: &[f64], window: &WindowSpec, stride: usize) -> Result<Plan, PlanError> {
        let n = timestamps.len();
        if n == 0 {
            return Err(PlanError::Empty);
        }
        for (i, &t) in timestamps.iter().enumerate() {
            if !t.is_finite() {
                return Err(PlanError::NotFinite { frame: i, value: t });
            }
            if i > 0 && t < timestamps[i - 1] {
                return Err(PlanError::Backwards {
                    frame: i,
                    value: t,
                    previous: timestamps[i - 1],
                });
            }
        }
        let stride = stride.max(1);
        let tick = stride as f64 / window.fps;
        let (first, last) = (timestamps[0], timestamps[n - 1]);
        let mut scored = Vec::new();
        let mut k = 0u64;
        loop {
            let t = first + k as f64 * tick;
            if t > last + tick / 2.0 {
                break;
            }
            let f = nearest(timestamps, t);
            if scored.last() != Some(&f) {
                scored.push(f);
            }
            k += 1;
        }
        if scored.last() != Some(&(n - 1)) {
            scored.push(n - 1);
        }
        let t_len = window.len();
        let mut windows = Vec::with_capacity(scored.len() * t_len);
        for &f in &scored {
            let start = windows.len();
            for &o in window.offsets() {
                windows.push(nearest(timestamps, timestamps[f] + o as f64 / window.fps));
            }
            if window.anchor_first() {
                windows[start] = 0;
            }
        }
        let mut needed = windows.clone();
        needed.sort_unstable();
        needed.dedup();
        Ok(Plan {
            len: n,
            window_len: t_len,
            scored,
            windows,
            needed,
            anchored: window.anchor_first(),
        })
    }

    /// Frames in the episode.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The window of the `k`-th scored frame.
    pub fn window(&self, k: usize) -> &[usize] {
        &self.windows[k * self.window_len..(k + 1) * self.window_len]
    }
}

/// Index of the timestamp nearest to `t` (sorted input; ties and
/// differences within a nanosecond go to the earlier frame).
pub fn nearest(timestamps: &[f64], t: f64) -> usize {
    let i = timestamps.partition_point(|&x| x < t);
    if i == 0 {
        return 0;
    }
    if i == timestamps.len() {
        return timestamps.len() - 1;
    }
    let (before, after) = (t - timestamps[i - 1], timestamps[i] - t);
    if after < before - 1e-9 {
        i
    } else {
        i - 1
    }
}

#[cfg(test)]
mod tests {
    use sarm_runtime::bundle::manifest::WindowLayout;

    use super::*;

    fn centred(gap: i64, fps: f64) -> WindowSpec {
        let offsets: Vec<i64> = (-4..=4).map(|i| i * gap).collect();
        let mut w = WindowSpec::new(WindowLayout::Centered, &offsets, 4, false).unwrap();
        w.fps = fps;
        w
    }

    fn stamps(n: usize, fps: f64) -> Vec<f64> {
        // as LeRobot stores them: float32 frame_index / fps
        (0..n).map(|i| ((i as f64 / fps) as f32) as f64).collect()
    }

    /// LeRobot's rule at the dataset's rate, written out independently:
    /// compute indices (idx % stride == 0) + last, windows f + o*gap clamped.
    fn lerobot(n: usize, gap: i64, stride: usize) -> (Vec<usize>, Vec<Vec<usize>>) {
        let mut scored: Vec<usize> = (0..n).filter(|i| i % stride == 0).collect();
        if !scored.contains(&(n - 1)) {
            scored.push(n - 1);
        }
        let windows = scored
            .iter()
            .map(|&f| {
                (-4..=4)
                    .map(|i| (f as i64 + i * gap).clamp(0, n as i64 - 1) as usize)
                    .collect()
            })
            .collect();
        (scored, windows)
    }

    fn check(plan: &Plan, want: (Vec<usize>, Vec<Vec<usize>>)) {
        assert_eq!(plan.scored, want.0);
        for (k, w) in want.1.iter().enumerate() {
            assert_eq!(
                plan.window(k),
                w.as_slice(),
                "window of frame {}",
                plan.scored[k]
            );
        }
    }

    #[test]
    fn same_rate_is_lerobots_rule() {
        for (n, stride) in [(40, 1), (40, 3), (41, 5), (1, 1), (2, 4)] {
            let plan = Plan::new(&stamps(n, 30.0), &centred(3, 30.0), stride).unwrap();
            check(&plan, lerobot(n, 3, stride));
        }
    }

    #[test]
    fn a_faster_dataset_is_lerobots_rule_scaled() {
        // 50 Hz dataset, 10 Hz bundle with gap 5: LeRobot with gap 25, stride 5 (x stride).
        for (n, stride) in [(316, 1), (331, 1), (300, 2), (7, 1)] {
            let plan = Plan::new(&stamps(n, 50.0), &centred(5, 10.0), stride).unwrap();
            check(&plan, lerobot(n, 25, 5 * stride));
        }
    }

    #[test]
    fn needed_frames_are_the_union_of_windows() {
        let plan = Plan::new(&stamps(316, 50.0), &centred(5, 10.0), 1).unwrap();
        let mut all: Vec<usize> = (0..plan.scored.len())
            .flat_map(|k| plan.window(k).to_vec())
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(plan.needed, all);
        // every 5th frame plus the last frame's window (315 - 25k)
        assert!(plan.needed.len() < 316 / 5 + 10, "{}", plan.needed.len());
    }

    #[test]
    fn a_non_integer_ratio_takes_the_nearest_frames() {
        // 50 Hz dataset, 30 Hz bundle, gap 3 (0.1 s = 5 dataset frames).
        let plan = Plan::new(&stamps(100, 50.0), &centred(3, 30.0), 1).unwrap();
        // ticks at k/30 s -> nearest of i/50: 0, 2 (0.0333 -> 0.04), 3 (0.0667 -> 0.06), 5, ...
        assert_eq!(&plan.scored[..6], &[0, 2, 3, 5, 7, 8]);
        assert_eq!(*plan.scored.last().unwrap(), 99);
        let k = plan.scored.iter().position(|&f| f == 50).unwrap();
        assert_eq!(plan.window(k), &[30, 35, 40, 45, 50, 55, 60, 65, 70]);
    }

    #[test]
    fn anchored_windows_read_the_first_frame() {
        let offsets: Vec<i64> = (-8..=0).collect();
        let w = WindowSpec::new(WindowLayout::Causal, &offsets, 8, true).unwrap();
        let plan = Plan::new(&stamps(20, 30.0), &w, 1).unwrap();
        assert_eq!(plan.window(15), &[0, 8, 9, 10, 11, 12, 13, 14, 15]);
    }

    #[test]
    fn bad_timestamps_are_refused() {
        let w = centred(3, 30.0);
        assert_eq!(Plan::new(&[], &w, 1).unwrap_err(), PlanError::Empty);
        assert!(matches!(
            Plan::new(&[0.0, 0.1, 0.05], &w, 1),
            Err(PlanError::Backwards { frame: 2, .. })
        ));
        assert!(matches!(
            Plan::new(&[0.0, f64::NAN], &w, 1),
            Err(PlanError::NotFinite { frame: 1, .. })
        ));
    }
}
