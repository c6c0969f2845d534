//! Which frames a window reads: offsets around the scored frame, clamped at
//! the episode's edges, optionally anchored to the episode's first frame.
//!
//! LeRobot's centred window (`compute_absolute_indices`) is offsets
//! `-4g..=4g` read at the centre, so a frame's score is known `4g` frames
//! later; the causal window `-8g..=0` is read at the last index, with no
//! delay.

use heapless::Vec as HVec;

use crate::bundle::manifest::{WindowLayout, WindowSpecToml};
use crate::bundle::BundleError;

/// The longest window the runtime accepts (LeRobot uses 9 frames).
pub const MAX_WINDOW: usize = 32;

#[derive(Debug, Clone, PartialEq)]
pub struct WindowSpec {
    pub layout: WindowLayout,
    pub fps: f64,
    offsets: HVec<i64, MAX_WINDOW>,
    readout: usize,
    anchor_first: bool,
}

impl WindowSpec {
    /// Validates the manifest's `[window]` table.
    pub fn from_manifest(w: &WindowSpecToml) -> Result<Self, BundleError> {
        let n = w.offsets.len();
        if n != w.n_obs_steps + 1 {
            return Err(BundleError::mismatch(
                "window.offsets",
                format!("n_obs_steps + 1 = {} offsets", w.n_obs_steps + 1),
                format!("{n} offsets"),
            ));
        }
        if n == 0 || n > MAX_WINDOW {
            return Err(BundleError::mismatch(
                "window.offsets",
                format!("1..={MAX_WINDOW} offsets"),
                n,
            ));
        }
        if w.offsets.windows(2).any(|p| p[0] >= p[1]) {
            return Err(BundleError::mismatch(
                "window.offsets",
                "strictly increasing offsets",
                format!("{:?}", w.offsets),
            ));
        }
        if w.readout >= n {
            return Err(BundleError::mismatch(
                "window.readout",
                format!("an index below {n}"),
                w.readout,
            ));
        }
        if w.offsets[w.readout] != 0 {
            return Err(BundleError::mismatch(
                "window.readout",
                "the index of offset 0 (the scored frame)",
                format!("index {} with offset {}", w.readout, w.offsets[w.readout]),
            ));
        }
        let expected_readout = match w.layout {
            WindowLayout::Centered => n / 2,
            WindowLayout::Causal => n - 1,
        };
        if w.readout != expected_readout {
            return Err(BundleError::mismatch(
                "window.readout",
                format!("{expected_readout} for a {:?} window", w.layout),
                w.readout,
            ));
        }
        if !(w.fps.is_finite() && w.fps > 0.0) {
            return Err(BundleError::mismatch("window.fps", "a rate > 0", w.fps));
        }
        let mut offsets = HVec::new();
        for o in &w.offsets {
            // Cannot fail: n <= MAX_WINDOW was checked above.
            let _ = offsets.push(*o);
        }
        Ok(WindowSpec {
            layout: w.layout,
            fps: w.fps,
            offsets,
            readout: w.readout,
            anchor_first: w.anchor_first,
        })
    }

    /// Builds a spec directly (tests, tools). Same rules as the manifest path.
    pub fn new(
        layout: WindowLayout,
        offsets: &[i64],
        readout: usize,
        anchor_first: bool,
    ) -> Result<Self, BundleError> {
        Self::from_manifest(&WindowSpecToml {
            fps: 30.0,
            n_obs_steps: offsets.len().saturating_sub(1),
            frame_gap: 1,
            layout,
            offsets: offsets.to_vec(),
            readout,
            anchor_first,
            clamp: crate::bundle::manifest::ClampRule::Edge,
        })
    }

    /// Number of frames in a window (the model's T).
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    pub fn offsets(&self) -> &[i64] {
        &self.offsets
    }

    /// Index of the window position whose output is the scored frame's.
    pub fn readout(&self) -> usize {
        self.readout
    }

    pub fn anchor_first(&self) -> bool {
        self.anchor_first
    }

    /// Frames that must arrive after the scored frame before it can be scored.
    pub fn delay(&self) -> usize {
        self.offsets.last().copied().unwrap_or(0).max(0) as usize
    }

    /// Frames before the scored frame that a window reaches back to.
    pub fn reach_back(&self) -> usize {
        (-self.offsets.first().copied().unwrap_or(0)).max(0) as usize
    }

    /// Frame indices of the window for `scored`, clamped to `[0, last]`.
    ///
    /// While streaming, `last` is the newest frame received; at the end of an
    /// episode it is the episode's last frame, which gives LeRobot's clamp.
    pub fn indices(&self, scored: usize, last: usize, out: &mut [usize]) {
        debug_assert_eq!(out.len(), self.len());
        for (slot, o) in out.iter_mut().zip(self.offsets.iter()) {
            let target = scored as i64 + o;
            *slot = target.clamp(0, last as i64) as usize;
        }
        if self.anchor_first {
            out[0] = 0;
        }
    }

    /// Whether some frame scored under `stride` (frames `0, s, 2s, ...`)
    /// reads frame `j`, before any clamping at the episode's end.
    pub fn needed(&self, j: usize, stride: usize) -> bool {
        if j == 0 {
            // Clamping at the start and the anchor both read frame 0.
            return true;
        }
        self.offsets.iter().any(|o| {
            let f = j as i64 - o;
            f >= 0 && (f as usize).is_multiple_of(stride)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn centered(g: i64) -> WindowSpec {
        let offsets: Vec<i64> = (-4..=4).map(|i| i * g).collect();
        WindowSpec::new(WindowLayout::Centered, &offsets, 4, false).unwrap()
    }

    /// LeRobot's `compute_absolute_indices`, written out by hand for one case:
    /// frame 5 of a 40-frame episode, gap 3 -> [-7,-4,-1,2,5,8,11,14,17] clamped.
    #[test]
    fn centered_window_clamps_at_start() {
        let w = centered(3);
        let mut out = [0; 9];
        w.indices(5, 39, &mut out);
        assert_eq!(out, [0, 0, 0, 2, 5, 8, 11, 14, 17]);
        assert_eq!(w.delay(), 12);
        assert_eq!(w.reach_back(), 12);
    }

    #[test]
    fn centered_window_clamps_at_end() {
        let w = centered(3);
        let mut out = [0; 9];
        w.indices(37, 39, &mut out);
        assert_eq!(out, [25, 28, 31, 34, 37, 39, 39, 39, 39]);
    }

    #[test]
    fn causal_and_anchored() {
        let offsets: Vec<i64> = (-8..=0).map(|i| i * 2).collect();
        let w = WindowSpec::new(WindowLayout::Causal, &offsets, 8, false).unwrap();
        let mut out = [0; 9];
        w.indices(20, 20, &mut out);
        assert_eq!(out, [4, 6, 8, 10, 12, 14, 16, 18, 20]);
        assert_eq!(w.delay(), 0);
        let a = WindowSpec::new(WindowLayout::Causal, &offsets, 8, true).unwrap();
        a.indices(20, 20, &mut out);
        assert_eq!(out, [0, 6, 8, 10, 12, 14, 16, 18, 20]);
    }

    #[test]
    fn stride_needs_only_window_frames() {
        let w = centered(3);
        // Scored frames 0, 10, 20, ...: frame 10 +- multiples of 3.
        assert!(w.needed(0, 10));
        assert!(w.needed(10, 10));
        assert!(w.needed(13, 10));
        assert!(w.needed(7, 10));
        assert!(w.needed(11, 10)); // 20 - 9
        assert!(!w.needed(5, 10));
        assert!(!w.needed(15, 10));
        // Stride 1 needs every frame.
        assert!((0..50).all(|j| w.needed(j, 1)));
    }

    #[test]
    fn bad_windows_name_the_field() {
        let e = WindowSpec::new(WindowLayout::Centered, &[-3, 0, 0], 1, false).unwrap_err();
        assert!(e.to_string().contains("window.offsets"), "{e}");
        let e = WindowSpec::new(WindowLayout::Centered, &[-3, 0, 3], 2, false).unwrap_err();
        assert!(e.to_string().contains("window.readout"), "{e}");
        let e = WindowSpec::new(WindowLayout::Causal, &[-6, -3, 0], 1, false).unwrap_err();
        assert!(e.to_string().contains("window.readout"), "{e}");
    }
}
