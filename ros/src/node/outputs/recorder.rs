//! The results folder's MCAP: every Progress, SampleWeight and EpisodeEvent
//! the node published, on their topics, for Foxglove and `ros2 bag`.
//!
//! A write that fails (a full disk) leaves the file without its summary;
//! the recorder then stops, and the other outputs go on.

use std::path::{Path, PathBuf};

use super::{Scored, Sink, SinkError};
use crate::bag::McapOut;
use crate::msg::{EpisodeEvent, SampleWeight};

pub struct McapRecorder {
    out: Option<McapOut>,
    path: PathBuf,
    progress_topic: String,
    weight_topic: String,
    episode_topic: String,
    /// Log time of the frame being scored: the weights its score makes
    /// known, and the tail an episode's end flushes, are logged with it.
    last_frame_ns: Option<i64>,
}

impl McapRecorder {
    pub fn create(
        dir: &Path,
        progress_topic: &str,
        weight_topic: &str,
        episode_topic: &str,
    ) -> Result<Self, SinkError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| SinkError::fatal(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join("progress.mcap");
        let out = McapOut::create(&path).map_err(SinkError::fatal)?;
        Ok(McapRecorder {
            out: Some(out),
            path,
            progress_topic: progress_topic.to_string(),
            weight_topic: weight_topic.to_string(),
            episode_topic: episode_topic.to_string(),
            last_frame_ns: None,
        })
    }
}

fn closed() -> SinkError {
    SinkError::fatal("the recorder is closed")
}

impl Sink for McapRecorder {
    fn name(&self) -> &'static str {
        "mcap_recorder"
    }

    fn progress(&mut self, scored: &mut Scored<'_>) -> Result<(), SinkError> {
        let at = scored.stamp_ns.max(0) as u64;
        self.last_frame_ns = Some(scored.stamp_ns);
        let out = self.out.as_mut().ok_or_else(closed)?;
        for msg in scored.messages.iter() {
            out.write(&self.progress_topic, at, msg)
                .map_err(SinkError::fatal)?;
        }
        Ok(())
    }

    fn weight(&mut self, msg: &mut SampleWeight) -> Result<(), SinkError> {
        let at = self
            .last_frame_ns
            .unwrap_or_else(|| msg.header.stamp.as_nanos())
            .max(0) as u64;
        let out = self.out.as_mut().ok_or_else(closed)?;
        out.write(&self.weight_topic, at, msg)
            .map_err(SinkError::fatal)
    }

    fn episode(&mut self, msg: &mut EpisodeEvent) -> Result<(), SinkError> {
        self.last_frame_ns = None;
        let at = msg.header.stamp.as_nanos().max(0) as u64;
        let out = self.out.as_mut().ok_or_else(closed)?;
        out.write(&self.episode_topic, at, msg)
            .map_err(SinkError::fatal)
    }

    fn finish(&mut self) -> Result<Vec<PathBuf>, SinkError> {
        match self.out.take() {
            Some(out) => {
                out.finish().map_err(SinkError::fatal)?;
                Ok(vec![self.path.clone()])
            }
            None => Ok(Vec::new()),
        }
    }
}
