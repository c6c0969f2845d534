//! The robot clock: one time base for the node, its stages and the trainer
//! link, so a simulator can drive the whole node.
//!
//! - [`ClockSource::Wall`]: wall time, kept monotonic (the epoch offset is
//!   read once at start, then a monotonic clock advances it), so a clock
//!   step by NTP cannot make timeouts fire or stall.
//! - [`ClockSource::Sim`]: ROS 2 simulated time (`use_sim_time`): the time
//!   is whatever the latest `/clock` message said; before the first one
//!   arrives it is 0 and nothing time-driven happens.
//!
//! Deadlines, rates, timeouts and latencies are read from this clock. The
//! durations of computation (how long a decode or an inference took) are
//! not: they measure the computer, and use the monotonic clock directly.
//!
//! A [`Clock`] is cheap to clone and shared between threads; a sim clock
//! set by hand is the mock clock of deterministic tests.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where time comes from (the node's `time.source` key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClockSource {
    /// Wall time (monotonic, epoch-aligned).
    #[default]
    Wall,
    /// ROS 2 simulated time from `rosgraph_msgs/Clock` messages.
    Sim,
}

impl ClockSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ClockSource::Wall => "wall",
            ClockSource::Sim => "sim",
        }
    }
}

#[derive(Debug)]
enum Inner {
    Wall {
        epoch_ns: i64,
        started: Instant,
    },
    Sim {
        now_ns: AtomicI64,
        /// Updates that moved the time backwards (a simulator reset).
        backwards: AtomicU64,
        updates: AtomicU64,
    },
}

/// What a `/clock` update did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimUpdate {
    /// The first time received: the clock has started.
    Started,
    Forward,
    /// The same time again.
    Unchanged,
    /// Earlier than the time before (a simulator reset); taken as it is.
    Backwards,
    /// Not a sim clock: ignored.
    Ignored,
}

/// The node's clock.
#[derive(Debug, Clone)]
pub struct Clock {
    inner: Arc<Inner>,
}

impl Clock {
    /// Wall time.
    pub fn wall() -> Self {
        let epoch_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        Clock {
            inner: Arc::new(Inner::Wall {
                epoch_ns,
                started: Instant::now(),
            }),
        }
    }

    /// Simulated time, at 0 until set.
    pub fn sim() -> Self {
        Clock {
            inner: Arc::new(Inner::Sim {
                now_ns: AtomicI64::new(0),
                backwards: AtomicU64::new(0),
                updates: AtomicU64::new(0),
            }),
        }
    }

    pub fn new(source: ClockSource) -> Self {
        match source {
            ClockSource::Wall => Clock::wall(),
            ClockSource::Sim => Clock::sim(),
        }
    }

    pub fn source(&self) -> ClockSource {
        match *self.inner {
            Inner::Wall { .. } => ClockSource::Wall,
            Inner::Sim { .. } => ClockSource::Sim,
        }
    }

    /// Nanoseconds since the UNIX epoch (wall), or the simulation's time.
    pub fn now_ns(&self) -> i64 {
        match &*self.inner {
            Inner::Wall { epoch_ns, started } => {
                epoch_ns.saturating_add(started.elapsed().as_nanos() as i64)
            }
            Inner::Sim { now_ns, .. } => now_ns.load(Ordering::Acquire),
        }
    }

    /// Whether time has started (always, for the wall clock; after the
    /// first `/clock` message for sim time).
    pub fn started(&self) -> bool {
        match &*self.inner {
            Inner::Wall { .. } => true,
            Inner::Sim { updates, .. } => updates.load(Ordering::Acquire) > 0,
        }
    }

    /// Sets simulated time (the `/clock` subscriber, or a test). A wall
    /// clock ignores it.
    pub fn set_sim_ns(&self, ns: i64) -> SimUpdate {
        match &*self.inner {
            Inner::Wall { .. } => SimUpdate::Ignored,
            Inner::Sim {
                now_ns,
                backwards,
                updates,
            } => {
                let before = now_ns.swap(ns, Ordering::AcqRel);
                let n = updates.fetch_add(1, Ordering::AcqRel);
                if n == 0 {
                    SimUpdate::Started
                } else if ns > before {
                    SimUpdate::Forward
                } else if ns == before {
                    SimUpdate::Unchanged
                } else {
                    backwards.fetch_add(1, Ordering::Relaxed);
                    SimUpdate::Backwards
                }
            }
        }
    }

    /// Advances simulated time by `d` (tests).
    pub fn advance(&self, d: Duration) -> SimUpdate {
        self.set_sim_ns(self.now_ns().saturating_add(d.as_nanos() as i64))
    }

    /// Times sim time went backwards.
    pub fn backwards_jumps(&self) -> u64 {
        match &*self.inner {
            Inner::Wall { .. } => 0,
            Inner::Sim { backwards, .. } => backwards.load(Ordering::Relaxed),
        }
    }

    /// Time since `earlier_ns` on this clock, never negative (sim time may
    /// jump back).
    pub fn since(&self, earlier_ns: i64) -> Duration {
        duration_between(earlier_ns, self.now_ns())
    }
}

/// Wall time of this process's shared wall clock (ns since the epoch),
/// for transport-level stamps that must be wall time whatever the node's
/// clock is (rmw_zenoh attachments, the trainer link's delivery delays).
pub fn wall_ns() -> i64 {
    static WALL: std::sync::OnceLock<Clock> = std::sync::OnceLock::new();
    WALL.get_or_init(Clock::wall).now_ns()
}

/// `later - earlier` as a duration, 0 if negative.
pub fn duration_between(earlier_ns: i64, later_ns: i64) -> Duration {
    Duration::from_nanos(later_ns.saturating_sub(earlier_ns).max(0) as u64)
}

/// A duration in nanoseconds, saturating.
pub fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_time_is_epoch_aligned_and_monotonic() {
        let c = Clock::wall();
        let sys = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64;
        let a = c.now_ns();
        assert!((a - sys).abs() < 1_000_000_000, "{a} vs {sys}");
        let b = c.now_ns();
        assert!(b >= a);
        assert!(c.started());
        assert_eq!(c.set_sim_ns(5), SimUpdate::Ignored);
    }

    #[test]
    fn sim_time_follows_its_updates_and_counts_jumps_back() {
        let c = Clock::sim();
        assert!(!c.started());
        assert_eq!(c.now_ns(), 0);
        assert_eq!(c.set_sim_ns(1_000), SimUpdate::Started);
        assert!(c.started());
        let shared = c.clone();
        assert_eq!(
            shared.advance(Duration::from_nanos(500)),
            SimUpdate::Forward
        );
        assert_eq!(c.now_ns(), 1_500);
        assert_eq!(c.set_sim_ns(1_500), SimUpdate::Unchanged);
        assert_eq!(c.set_sim_ns(200), SimUpdate::Backwards);
        assert_eq!(c.now_ns(), 200);
        assert_eq!(c.backwards_jumps(), 1);
        assert_eq!(c.since(1_000), Duration::ZERO);
        assert_eq!(c.since(100), Duration::from_nanos(100));
    }
}
