//! The trainer link as a sink: every Progress, SampleWeight, EpisodeEvent
//! and PolicyEvent is numbered, spooled and sent to `sarm sink`. It runs first,
//! so the sequence number it gives is the one every other sink carries.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::{Scored, Sink, SinkError};
use crate::msg::{DiagnosticStatus, EpisodeEvent, KeyValue, PolicyEvent, SampleWeight};
use crate::node::reward::OUTPUT_QUEUE_FULL;
use crate::node::stats::NodeStats;
use crate::trainer::{RobotLink, Sequenced};

pub struct TrainerSink {
    pub link: RobotLink,
    /// For the count of outputs dropped before numbering (reported to the
    /// sink in the heartbeat).
    pub stats: Arc<NodeStats>,
}

impl TrainerSink {
    fn send<T: Sequenced>(&mut self, msg: &mut T) -> Result<(), SinkError> {
        match self.link.send(msg) {
            Ok(_) => Ok(()),
            Err(e) => Err(SinkError::transient(e)),
        }
    }
}

impl Sink for TrainerSink {
    fn name(&self) -> &'static str {
        "trainer_link"
    }

    fn progress(&mut self, scored: &mut Scored<'_>) -> Result<(), SinkError> {
        let mut result = Ok(());
        for msg in scored.messages.iter_mut() {
            result = result.and(self.send(msg));
        }
        result
    }

    fn weight(&mut self, msg: &mut SampleWeight) -> Result<(), SinkError> {
        self.send(msg)
    }

    fn episode(&mut self, msg: &mut EpisodeEvent) -> Result<(), SinkError> {
        self.send(msg)
    }

    fn policy(&mut self, msg: &mut PolicyEvent) -> Result<(), SinkError> {
        self.send(msg)
    }

    /// The link's state; records lost to a full spool raise the level to WARN.
    fn diagnostics(&mut self, status: &mut DiagnosticStatus) {
        let unrecorded = self
            .stats
            .drops()
            .get(OUTPUT_QUEUE_FULL)
            .copied()
            .unwrap_or(0);
        let t = &self.link;
        t.stats().unrecorded.store(unrecorded, Relaxed);
        let st = t.stats();
        let lost = st.spool_dropped.load(Relaxed) + st.spool_rejected.load(Relaxed);
        for (key, value) in [
            ("trainer_session_open", u64::from(t.session_open())),
            ("trainer_zenoh_links", t.zenoh_links()),
            ("trainer_next_seq", t.next_seq()),
            ("trainer_unacknowledged", t.unacked()),
            ("trainer_replayed", st.replayed.load(Relaxed)),
            ("trainer_spool_dropped", st.spool_dropped.load(Relaxed)),
            ("trainer_spool_rejected", st.spool_rejected.load(Relaxed)),
        ] {
            status.values.push(KeyValue {
                key: key.into(),
                value: value.to_string(),
            });
        }
        if lost > 0 && status.level == 0 {
            status.level = 1;
            status.message = format!("{lost} trainer-link records lost to a full spool");
        }
    }

    fn finish(&mut self) -> Result<Vec<std::path::PathBuf>, SinkError> {
        self.link.sync().map_err(SinkError::transient)?;
        Ok(Vec::new())
    }
}
