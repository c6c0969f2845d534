//! Which frames a window reads: offsets around the scored frame, clamped at
//! the episode's edges, optionally anchored to the episode's first frame.
//!
//! LeRobot's centred window (`compute_absolute_indices`) is offsets
//! `-4g..=4g` read at the centre, so a frame's score is known `4g` frames
//! later; the causal window `-8g..=0` is read at the last index, with no
//! delay.

use heapless::Vec as HVec;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WindowLayout {
    /// LeRobot's bidirectional window, read at the centre; output is delayed.
    Centered,
    /// Past frames only, read at the last index; no delay.
    Causal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClampRule {
    /// Out-of-range indices repeat the episode's first or last frame (LeRobot).
    Edge,
}

/// A window that breaks a rule; `key` is its `[window]` key in a manifest.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("window.{key}: expected {expected}, found {found}")]
pub struct WindowError {
    pub key: &'static str,
    pub expected: String,
    pub found: String,
}

fn bad(key: &'static str, expected: impl ToString, found: impl ToString) -> WindowError {
    WindowError {
        key,
        expected: expected.to_string(),
        found: found.to_string(),
    }
}

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
    /// A window of `offsets` (relative to the scored frame) read at
    /// `readout`, at 30 fps (see [`Self::with_fps`]).
    pub fn new(
        layout: WindowLayout,
        offsets: &[i64],
        readout: usize,
        anchor_first: bool,
    ) -> Result<Self, WindowError> {
        let n = offsets.len();
        if n == 0 || n > MAX_WINDOW {
            return Err(bad("offsets", format!("1..={MAX_WINDOW} offsets"), n));
        }
        if offsets.windows(2).any(|p| p[0] >= p[1]) {
            return Err(bad(
                "offsets",
                "strictly increasing offsets",
                format!("{offsets:?}"),
            ));
        }
        if readout >= n {
            return Err(bad("readout", format!("an index below {n}"), readout));
        }
        if offsets[readout] != 0 {
            return Err(bad(
                "readout",
                "the index of offset 0 (the scored frame)",
                format!("index {readout} with offset {}", offsets[readout]),
            ));
        }
        let expected_readout = match layout {
            WindowLayout::Centered => n / 2,
            WindowLayout::Causal => n - 1,
        };
        if readout != expected_readout {
            return Err(bad(
                "readout",
                format!("{expected_readout} for a {layout:?} window"),
                readout,
            ));
        }
        let mut v = HVec::new();
        for o in offsets {
            // Cannot fail: n <= MAX_WINDOW was checked above.
            let _ = v.push(*o);
        }
        Ok(WindowSpec {
            layout,
            fps: 30.0,
            offsets: v,
            readout,
            anchor_first,
        })
    }

    /// The same window at `fps` frames per second.
    pub fn with_fps(mut self, fps: f64) -> Result<Self, WindowError> {
        if !(fps.is_finite() && fps > 0.0) {
            return Err(bad("fps", "a rate > 0", fps));
        }
        self.fps = fps;
        Ok(self)
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
