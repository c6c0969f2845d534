//! Ending an episode on its own progress, as a deployed policy's rollout
//! needs: **success** when progress stays at or above `success_progress`
//! for `success_hold`, **stall** when progress has not risen by
//! `stall_delta` for `stall_time`. Times are the scored frames' stamps, so
//! a replay or a simulator on sim time decides exactly as live.
//!
//! At most one verdict per episode; [`EpisodeJudge::reset`] starts the next.

use std::time::Duration;

/// The success rule: progress >= `progress` for `hold`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SuccessRule {
    pub progress: f32,
    pub hold: Duration,
}

/// The stall rule: no rise of `delta` within `time`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StallRule {
    pub delta: f32,
    pub time: Duration,
}

/// Why an episode ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    Success { progress: f32, held: Duration },
    Stall { progress: f32, flat_for: Duration },
}

impl Verdict {
    /// The `EpisodeEvent.reason` text (starts with `success` or `stall`).
    pub fn reason(&self, success: Option<SuccessRule>, stall: Option<StallRule>) -> String {
        match *self {
            Verdict::Success { progress, held } => format!(
                "success: progress {progress:.3} >= {:.3} for {:.2} s",
                success.map_or(0.0, |r| r.progress),
                held.as_secs_f64()
            ),
            Verdict::Stall { progress, flat_for } => format!(
                "stall: progress rose less than {:.3} in {:.2} s (at {progress:.3})",
                stall.map_or(0.0, |r| r.delta),
                flat_for.as_secs_f64()
            ),
        }
    }
}

/// Watches one episode's progress (see the module docs).
#[derive(Debug, Clone)]
pub struct EpisodeJudge {
    success: Option<SuccessRule>,
    stall: Option<StallRule>,
    /// Stamp of the first frame of the current run at or above the threshold.
    above_since: Option<i64>,
    /// The progress the stall rule measures rises from, and its stamp.
    reference: Option<(f32, i64)>,
    decided: bool,
}

impl EpisodeJudge {
    pub fn new(success: Option<SuccessRule>, stall: Option<StallRule>) -> Self {
        EpisodeJudge {
            success,
            stall,
            above_since: None,
            reference: None,
            decided: false,
        }
    }

    pub fn success_rule(&self) -> Option<SuccessRule> {
        self.success
    }

    pub fn stall_rule(&self) -> Option<StallRule> {
        self.stall
    }

    /// Whether any rule is on.
    pub fn is_active(&self) -> bool {
        self.success.is_some() || self.stall.is_some()
    }

    /// The episode is ending: no verdict for what is still scored (a
    /// verdict now would end the next episode).
    pub fn close(&mut self) {
        self.decided = true;
    }

    /// A new episode.
    pub fn reset(&mut self) {
        self.above_since = None;
        self.reference = None;
        self.decided = false;
    }

    /// One scored frame; a verdict once per episode. Frames must come in
    /// stamp order (a stamp going back restarts both clocks).
    pub fn push(&mut self, stamp_ns: i64, progress: f32) -> Option<Verdict> {
        if self.decided || !progress.is_finite() {
            return None;
        }
        let since = |t0: i64| Duration::from_nanos(stamp_ns.saturating_sub(t0).max(0) as u64);
        if let Some(rule) = self.success {
            if progress >= rule.progress {
                let t0 = *self.above_since.get_or_insert(stamp_ns);
                if t0 > stamp_ns {
                    self.above_since = Some(stamp_ns);
                } else if since(t0) >= rule.hold {
                    self.decided = true;
                    return Some(Verdict::Success {
                        progress,
                        held: since(t0),
                    });
                }
            } else {
                self.above_since = None;
            }
        }
        if let Some(rule) = self.stall {
            let (p0, t0) = *self.reference.get_or_insert((progress, stamp_ns));
            if progress >= p0 + rule.delta || t0 > stamp_ns {
                self.reference = Some((progress, stamp_ns));
            } else if since(t0) >= rule.time {
                self.decided = true;
                return Some(Verdict::Stall {
                    progress,
                    flat_for: since(t0),
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn judge() -> EpisodeJudge {
        EpisodeJudge::new(
            Some(SuccessRule {
                progress: 0.9,
                hold: Duration::from_secs(1),
            }),
            Some(StallRule {
                delta: 0.05,
                time: Duration::from_secs(3),
            }),
        )
    }

    #[test]
    fn success_needs_the_whole_hold_above_the_threshold() {
        let mut j = judge();
        // Above at 0.0 s, dips at 0.5 s, above again from 0.6 s.
        assert_eq!(j.push(0, 0.95), None);
        assert_eq!(j.push(S / 2, 0.85), None);
        assert_eq!(j.push(6 * S / 10, 0.92), None);
        assert_eq!(j.push(15 * S / 10, 0.93), None, "0.9 s above only");
        let v = j.push(16 * S / 10, 0.94);
        assert_eq!(
            v,
            Some(Verdict::Success {
                progress: 0.94,
                held: Duration::from_secs(1)
            })
        );
        assert!(v
            .unwrap()
            .reason(j.success_rule(), None)
            .starts_with("success"));
        assert_eq!(j.push(2 * S, 0.99), None, "one verdict per episode");
        j.reset();
        j.close();
        assert_eq!(j.push(0, 0.95), None);
        assert_eq!(
            j.push(5 * S, 0.95),
            None,
            "a closed episode gets no verdict"
        );
        j.reset();
        assert_eq!(j.push(10 * S, 0.95), None, "a new episode starts over");
    }

    #[test]
    fn stall_is_no_rise_of_delta_for_the_time_and_a_rise_restarts_it() {
        let mut j = judge();
        assert_eq!(j.push(0, 0.30), None);
        assert_eq!(j.push(2 * S, 0.34), None, "rose 0.04 < delta");
        assert_eq!(
            j.push(25 * S / 10, 0.36),
            None,
            "rose 0.06: clock restarts at 2.5 s"
        );
        assert_eq!(j.push(5 * S, 0.40), None, "rose 0.04 in 2.5 s");
        let v = j.push(55 * S / 10, 0.40).unwrap();
        assert_eq!(
            v,
            Verdict::Stall {
                progress: 0.40,
                flat_for: Duration::from_secs(3)
            }
        );
        assert!(v.reason(None, j.stall_rule()).starts_with("stall"));
    }

    #[test]
    fn rules_off_decide_nothing_and_bad_values_are_ignored() {
        let mut j = EpisodeJudge::new(None, None);
        assert!(!j.is_active());
        for k in 0..100 {
            assert_eq!(j.push(k * S, 1.0), None);
        }
        let mut j = judge();
        assert_eq!(j.push(0, f32::NAN), None);
        assert_eq!(j.push(S, 0.2), None, "NaN did not start the stall clock");
        assert_eq!(j.push(4 * S - 1, 0.2), None);
        assert!(j.push(4 * S, 0.2).is_some());
    }
}
