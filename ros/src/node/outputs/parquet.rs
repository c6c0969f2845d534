//! The results folder's `sarm_progress.parquet` (LeRobot's columns): each
//! finished episode is written as a part at its end (its frames at the
//! model's rate, interpolated between scored frames as LeRobot's
//! `--stride`), and the parts become the one file when the run ends.
//!
//! A part that cannot be written (a full disk) is reported; the episode's
//! rows are kept for the next try at the next episode's end or the run's
//! end, up to `MAX_PENDING_EPISODES` (older ones are dropped and counted).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use sarm_runtime::HeadKind;

use super::{Scored, Sink, SinkError};
use crate::msg::EpisodeEvent;
use crate::parquet_parts::ProgressParts;
use crate::progress_parquet::ProgressRow;
use crate::scores::EpisodeProgress;

/// Finished episodes kept in memory while their part cannot be written.
const MAX_PENDING_EPISODES: usize = 16;

pub struct ParquetWriter {
    parts: ProgressParts,
    episode: EpisodeProgress,
    /// Finished episodes whose part is not written yet.
    pending: VecDeque<Vec<ProgressRow>>,
    dropped_episodes: u64,
}

impl ParquetWriter {
    pub fn create(dir: &Path, heads: Vec<HeadKind>, model: &str) -> Result<Self, SinkError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| SinkError::fatal(format!("cannot create {}: {e}", dir.display())))?;
        let parts = ProgressParts::create(&dir.join("sarm_progress.parquet"), model)
            .map_err(SinkError::fatal)?;
        Ok(ParquetWriter {
            parts,
            episode: EpisodeProgress::new(heads),
            pending: VecDeque::new(),
            dropped_episodes: 0,
        })
    }

    /// Writes the finished episodes waiting, oldest first.
    fn write_pending(&mut self) -> Result<(), SinkError> {
        while let Some(rows) = self.pending.front() {
            self.parts
                .write_episode(rows.clone())
                .map_err(SinkError::transient)?;
            self.pending.pop_front();
        }
        Ok(())
    }
}

impl Sink for ParquetWriter {
    fn name(&self) -> &'static str {
        "parquet_writer"
    }

    fn progress(&mut self, scored: &mut Scored<'_>) -> Result<(), SinkError> {
        self.episode.push(scored.score);
        Ok(())
    }

    fn episode(&mut self, ev: &mut EpisodeEvent) -> Result<(), SinkError> {
        if !ev.closes() {
            self.episode.clear();
            return Ok(());
        }
        let rows = self.episode.rows(ev.frames as i64, ev.episode_index, 0);
        self.episode.clear();
        if self.pending.len() == MAX_PENDING_EPISODES {
            self.pending.pop_front();
            self.dropped_episodes += 1;
            tracing::error!(
                "parquet writer: {} finished episodes could not be written and were dropped",
                self.dropped_episodes
            );
        }
        self.pending.push_back(rows);
        self.write_pending()
    }

    fn finish(&mut self) -> Result<Vec<PathBuf>, SinkError> {
        self.write_pending()?;
        match self.parts.merge().map_err(SinkError::transient)? {
            Some(path) => Ok(vec![path]),
            None => Ok(Vec::new()),
        }
    }
}
