//! What the terminal view shows: the latest frame's stage and progress.

use std::sync::Arc;

use super::{Scored, Sink, SinkError};
use crate::msg::{EpisodeEvent, EventKind};
use crate::node::stats::NodeStats;

pub struct LiveView {
    pub stats: Arc<NodeStats>,
    /// Stage names of the first head.
    pub stage_names: Vec<String>,
}

impl Sink for LiveView {
    fn name(&self) -> &'static str {
        "live_view"
    }

    fn progress(&mut self, scored: &mut Scored<'_>) -> Result<(), SinkError> {
        if let Some(first) = scored.messages.first() {
            let name = self
                .stage_names
                .get(first.stage as usize)
                .map_or("?", String::as_str);
            let episode_index = scored.episode_index;
            self.stats.set_live(|l| {
                l.frame_index = first.frame_index;
                l.progress = first.progress;
                l.episode_index = episode_index;
                l.stage_name.clear();
                l.stage_name.push_str(name);
            });
        }
        Ok(())
    }

    fn episode(&mut self, ev: &mut EpisodeEvent) -> Result<(), SinkError> {
        let started = ev.kind() == Some(EventKind::Start);
        let index = ev.episode_index;
        self.stats.set_live(|l| {
            l.in_episode = started;
            if started {
                l.episode_index = index;
                l.frame_index = 0;
                l.progress = 0.0;
            }
        });
        Ok(())
    }
}
