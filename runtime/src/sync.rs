//! Approximate-time pairing of camera streams with the joint stream by
//! header stamp.
//!
//! The first camera is the reference: each of its frames, in stamp order,
//! is matched with the nearest-stamped message of every other stream (other
//! cameras, joints). A match is decided as soon as a stream has delivered a
//! message stamped at or after the reference (nothing later can be nearer,
//! since stamps only move forward), or when the reference frame has waited
//! `max_wait` since it arrived; then a stream with nothing within `slop` is
//! reported missing for that frame instead of being waited on. Stamps that
//! go backwards are counted and dropped. Every queue has a fixed capacity;
//! overflow drops the oldest message and is counted.
//!
//! Arrival times and `now` are on the node's clock ([`crate::clock`]), so
//! under simulated time a frame waits `max_wait` of simulated time.

use std::collections::VecDeque;
use std::time::Duration;

use crate::clock::duration_between;

/// Most cameras one synchroniser pairs.
pub const MAX_CAMERAS: usize = 8;

/// Configuration, validated by [`Synchronizer::new`].
#[derive(Debug, Clone, PartialEq)]
pub struct SyncConfig {
    /// Number of camera streams (1..=MAX_CAMERAS); camera 0 is the reference.
    pub cameras: usize,
    /// Largest stamp difference for a pair, in ns.
    pub slop_ns: i64,
    /// How long a reference frame waits for the other streams (node clock).
    pub max_wait: Duration,
    /// Capacity of each stream's queue.
    pub queue: usize,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            cameras: 1,
            slop_ns: 20_000_000,
            max_wait: Duration::from_millis(100),
            queue: 64,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SyncConfigError {
    #[error("sync.cameras must be 1..={MAX_CAMERAS}, found {0}")]
    Cameras(usize),
    #[error("sync.slop must be >= 0, found {0} ns")]
    Slop(i64),
    #[error("sync.queue must be >= 2, found {0}")]
    Queue(usize),
}

/// What happened to a pushed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// Queued after dropping the stream's oldest message (queue full).
    QueuedDroppedOldest,
    /// Dropped: its stamp is older than the stream's previous one.
    StampWentBackwards,
}

/// Counters, for diagnostics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncStats {
    pub backwards: u64,
    pub overflow: u64,
    /// Reference frames emitted without joints within slop.
    pub missing_joints: u64,
    /// Reference frames emitted without a secondary camera within slop.
    pub missing_camera: u64,
    pub emitted: u64,
}

/// One reference frame and what was paired with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Synced<I, J> {
    pub stamp_ns: i64,
    /// One entry per camera; entry 0 (the reference) is always `Some`.
    pub cameras: heapless::Vec<Option<I>, MAX_CAMERAS>,
    pub joints: Option<J>,
    /// Joint stamp minus the reference stamp, when joints were paired.
    pub joint_offset_ns: Option<i64>,
}

impl<I, J> Synced<I, J> {
    /// Every stream paired within slop.
    pub fn complete(&self) -> bool {
        self.joints.is_some() && self.cameras.iter().all(Option::is_some)
    }
}

struct Entry<T> {
    stamp_ns: i64,
    /// Node-clock time of arrival.
    arrival: i64,
    value: T,
}

struct Stream<T> {
    queue: VecDeque<Entry<T>>,
    capacity: usize,
    last_stamp: Option<i64>,
    last_arrival: Option<i64>,
}

impl<T> Stream<T> {
    fn new(capacity: usize) -> Self {
        Stream {
            queue: VecDeque::with_capacity(capacity),
            capacity,
            last_stamp: None,
            last_arrival: None,
        }
    }

    fn push(&mut self, stamp_ns: i64, arrival: i64, value: T, stats: &mut SyncStats) -> Pushed {
        if self.last_stamp.is_some_and(|last| stamp_ns < last) {
            stats.backwards += 1;
            return Pushed::StampWentBackwards;
        }
        self.last_stamp = Some(stamp_ns);
        self.last_arrival = Some(arrival);
        let mut outcome = Pushed::Queued;
        if self.queue.len() == self.capacity {
            self.queue.pop_front();
            stats.overflow += 1;
            outcome = Pushed::QueuedDroppedOldest;
        }
        self.queue.push_back(Entry {
            stamp_ns,
            arrival,
            value,
        });
        outcome
    }

    /// Whether the nearest message to `t` is known.
    fn decided(&self, t: i64) -> bool {
        self.last_stamp.is_some_and(|last| last >= t)
    }

    /// Index of the nearest message to `t` within `slop`.
    fn nearest(&self, t: i64, slop: i64) -> Option<usize> {
        self.queue
            .iter()
            .enumerate()
            .map(|(i, e)| (i, (e.stamp_ns - t).abs()))
            .filter(|&(_, d)| d <= slop)
            .min_by_key(|&(_, d)| d)
            .map(|(i, _)| i)
    }

    /// Drops messages too old to pair with any reference at or after `t`.
    fn prune(&mut self, t: i64, slop: i64) {
        while self.queue.front().is_some_and(|e| e.stamp_ns < t - slop) {
            self.queue.pop_front();
        }
    }
}

/// The synchroniser: camera payloads `I`, joint payloads `J`.
pub struct Synchronizer<I, J> {
    cfg: SyncConfig,
    cameras: Vec<Stream<I>>,
    joints: Stream<J>,
    stats: SyncStats,
}

impl<I: Clone, J: Clone> Synchronizer<I, J> {
    pub fn new(cfg: SyncConfig) -> Result<Self, SyncConfigError> {
        if cfg.cameras == 0 || cfg.cameras > MAX_CAMERAS {
            return Err(SyncConfigError::Cameras(cfg.cameras));
        }
        if cfg.slop_ns < 0 {
            return Err(SyncConfigError::Slop(cfg.slop_ns));
        }
        if cfg.queue < 2 {
            return Err(SyncConfigError::Queue(cfg.queue));
        }
        Ok(Synchronizer {
            cameras: (0..cfg.cameras).map(|_| Stream::new(cfg.queue)).collect(),
            joints: Stream::new(cfg.queue),
            stats: SyncStats::default(),
            cfg,
        })
    }

    /// Adds a frame of camera `index` (panics never: an index out of range
    /// is a configuration bug and is reported as `None`).
    pub fn push_camera(
        &mut self,
        index: usize,
        stamp_ns: i64,
        arrival: i64,
        frame: I,
    ) -> Option<Pushed> {
        let stream = self.cameras.get_mut(index)?;
        Some(stream.push(stamp_ns, arrival, frame, &mut self.stats))
    }

    pub fn push_joints(&mut self, stamp_ns: i64, arrival: i64, joints: J) -> Pushed {
        self.joints.push(stamp_ns, arrival, joints, &mut self.stats)
    }

    /// The next reference frame whose pairing is decided at `now`, if any.
    pub fn poll(&mut self, now: i64) -> Option<Synced<I, J>> {
        let (t, arrival) = {
            let r = self.cameras[0].queue.front()?;
            (r.stamp_ns, r.arrival)
        };
        let timed_out = duration_between(arrival, now) >= self.cfg.max_wait;
        let all_decided = self.joints.decided(t) && self.cameras[1..].iter().all(|c| c.decided(t));
        if !(all_decided || timed_out) {
            return None;
        }
        let slop = self.cfg.slop_ns;
        let reference = self.cameras[0].queue.pop_front()?;
        let mut cameras: heapless::Vec<Option<I>, MAX_CAMERAS> = heapless::Vec::new();
        let _ = cameras.push(Some(reference.value));
        for cam in self.cameras[1..].iter_mut() {
            let paired = cam.nearest(t, slop).map(|i| cam.queue[i].value.clone());
            if paired.is_none() {
                self.stats.missing_camera += 1;
            }
            let _ = cameras.push(paired);
            cam.prune(t, slop);
        }
        let (joints, joint_offset_ns) = match self.joints.nearest(t, slop) {
            Some(i) => {
                let e = &self.joints.queue[i];
                (Some(e.value.clone()), Some(e.stamp_ns - t))
            }
            None => {
                self.stats.missing_joints += 1;
                (None, None)
            }
        };
        self.joints.prune(t, slop);
        self.stats.emitted += 1;
        Some(Synced {
            stamp_ns: t,
            cameras,
            joints,
            joint_offset_ns,
        })
    }

    pub fn stats(&self) -> &SyncStats {
        &self.stats
    }

    /// Seconds since each stream last delivered (cameras, then joints);
    /// `None` for a stream that never did.
    pub fn silence(&self, now: i64) -> (Vec<Option<Duration>>, Option<Duration>) {
        let since = |a: Option<i64>| a.map(|a| duration_between(a, now));
        (
            self.cameras.iter().map(|c| since(c.last_arrival)).collect(),
            since(self.joints.last_arrival),
        )
    }

    /// Forgets everything queued (e.g. at an episode boundary); counters stay.
    pub fn reset(&mut self) {
        for c in &mut self.cameras {
            c.queue.clear();
            c.last_stamp = None;
        }
        self.joints.queue.clear();
        self.joints.last_stamp = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    fn sync(cameras: usize) -> Synchronizer<i64, i64> {
        Synchronizer::new(SyncConfig {
            cameras,
            slop_ns: 5 * MS,
            max_wait: Duration::from_millis(100),
            queue: 8,
        })
        .unwrap()
    }

    #[test]
    fn pairs_each_frame_with_the_nearest_joint_state() {
        let mut s = sync(1);
        let t0 = 0i64;
        // joints at 200 Hz, camera at 50 Hz with a 1 ms offset, interleaved
        // as they arrive
        for k in 0..6 {
            s.push_joints(k * 5 * MS, t0, k * 5 * MS);
        }
        s.push_camera(0, 21 * MS, t0, 21 * MS);
        for k in 6..9 {
            s.push_joints(k * 5 * MS, t0, k * 5 * MS);
        }
        s.push_camera(0, 41 * MS, t0, 41 * MS);
        // camera 41 is not decided yet (no joint state at or after 41 ms)
        let a = s.poll(t0).unwrap();
        assert!(s.poll(t0).is_none());
        s.push_joints(45 * MS, t0, 45 * MS);
        assert_eq!(
            (a.stamp_ns, a.joints, a.joint_offset_ns),
            (21 * MS, Some(20 * MS), Some(-MS))
        );
        let b = s.poll(t0).unwrap();
        assert_eq!(b.joints, Some(40 * MS));
        assert!(a.complete() && b.complete());
        assert!(s.poll(t0).is_none());
    }

    #[test]
    fn waits_for_a_later_joint_state_then_gives_up_after_max_wait() {
        let mut s = sync(1);
        let t0 = 0i64;
        s.push_joints(0, t0, 0);
        s.push_camera(0, 3 * MS, t0, 3 * MS);
        // a joint state stamped after the frame may still come and be nearer
        assert!(s.poll(t0 + 10 * MS).is_none());
        // it never does: after max_wait the frame goes out with what there is
        let f = s.poll(t0 + 100 * MS).unwrap();
        assert_eq!(f.joints, Some(0));
        // joints stop: the frame is flagged, not held
        s.push_camera(0, 50 * MS, t0, 50 * MS);
        let f = s.poll(t0 + 200 * MS).unwrap();
        assert_eq!(f.joints, None);
        assert!(!f.complete());
        assert_eq!(s.stats().missing_joints, 1);
    }

    #[test]
    fn second_camera_outside_slop_is_reported_missing() {
        let mut s = sync(2);
        let t0 = 0i64;
        s.push_joints(100 * MS, t0, 0);
        s.push_camera(1, 90 * MS, t0, 1);
        s.push_camera(1, 120 * MS, t0, 2);
        s.push_camera(0, 100 * MS, t0, 0);
        let f = s.poll(t0).unwrap();
        assert_eq!(f.cameras.as_slice(), &[Some(0), None]);
        assert_eq!(s.stats().missing_camera, 1);
    }

    #[test]
    fn backwards_stamps_and_overflow_are_counted() {
        let mut s = sync(1);
        let t0 = 0i64;
        assert_eq!(s.push_joints(10 * MS, t0, 0), Pushed::Queued);
        assert_eq!(s.push_joints(9 * MS, t0, 0), Pushed::StampWentBackwards);
        for k in 0..8 {
            s.push_camera(0, (20 + k) * MS, t0, 0);
        }
        assert_eq!(
            s.push_camera(0, 30 * MS, t0, 0),
            Some(Pushed::QueuedDroppedOldest)
        );
        assert_eq!(s.push_camera(5, 30 * MS, t0, 0), None);
        assert_eq!(s.stats().backwards, 1);
        assert_eq!(s.stats().overflow, 1);
    }

    #[test]
    fn config_is_validated() {
        let bad = |c: SyncConfig| Synchronizer::<u8, u8>::new(c).err();
        assert_eq!(
            bad(SyncConfig {
                cameras: 0,
                ..Default::default()
            }),
            Some(SyncConfigError::Cameras(0))
        );
        assert_eq!(
            bad(SyncConfig {
                slop_ns: -1,
                ..Default::default()
            }),
            Some(SyncConfigError::Slop(-1))
        );
        assert_eq!(
            bad(SyncConfig {
                queue: 1,
                ..Default::default()
            }),
            Some(SyncConfigError::Queue(1))
        );
    }
}
