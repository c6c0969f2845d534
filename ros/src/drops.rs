//! Counting and rate-limited logging of what was skipped, by reason.
//!
//! Bad input from the network or a bag is never fatal: each message that
//! cannot be used is counted under a short reason (`"cdr"`, `"jpeg"`,
//! `"joint_names"`, …) and logged, the first time at once and then at most
//! once per interval per reason with the count since, so a flood of bad
//! frames cannot flood the log.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::time::{Duration, Instant};

/// Skip counters with rate-limited warnings.
#[derive(Debug)]
pub struct Drops {
    what: String,
    interval: Duration,
    counts: BTreeMap<&'static str, u64>,
    /// Per reason: when it was last logged and how many came since.
    pending: BTreeMap<&'static str, (Instant, u64)>,
}

impl Drops {
    /// `what` names the stream in log lines (e.g. a topic).
    pub fn new(what: impl Into<String>, interval: Duration) -> Self {
        Drops {
            what: what.into(),
            interval,
            counts: BTreeMap::new(),
            pending: BTreeMap::new(),
        }
    }

    /// Counts one skipped message; logs if this reason has not been logged
    /// within the interval. Returns whether it logged.
    pub fn record(&mut self, reason: &'static str, detail: impl Display) -> bool {
        self.record_at(reason, detail, Instant::now())
    }

    fn record_at(&mut self, reason: &'static str, detail: impl Display, now: Instant) -> bool {
        *self.counts.entry(reason).or_default() += 1;
        match self.pending.get_mut(reason) {
            Some((last, since)) if now.saturating_duration_since(*last) < self.interval => {
                *since += 1;
                false
            }
            Some((last, since)) => {
                tracing::warn!(
                    "{}: skipped ({reason}): {detail} [{} more since the last report]",
                    self.what,
                    *since
                );
                *last = now;
                *since = 0;
                true
            }
            None => {
                tracing::warn!("{}: skipped ({reason}): {detail}", self.what);
                self.pending.insert(reason, (now, 0));
                true
            }
        }
    }

    /// Total skipped per reason.
    pub fn counts(&self) -> &BTreeMap<&'static str, u64> {
        &self.counts
    }

    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_everything_logs_once_per_interval_per_reason() {
        let mut d = Drops::new("/camera", Duration::from_secs(5));
        let t0 = Instant::now();
        assert!(d.record_at("jpeg", "truncated", t0));
        assert!(!d.record_at("jpeg", "truncated", t0 + Duration::from_secs(1)));
        assert!(d.record_at("cdr", "too short", t0 + Duration::from_secs(1)));
        assert!(!d.record_at("jpeg", "truncated", t0 + Duration::from_secs(4)));
        assert!(d.record_at("jpeg", "truncated", t0 + Duration::from_secs(6)));
        assert_eq!(d.counts()["jpeg"], 4);
        assert_eq!(d.counts()["cdr"], 1);
        assert_eq!(d.total(), 5);
    }
}
