//! The publishing side of the node: Progress and EpisodeEvent on ROS 2 (and
//! on the trainer link's native keys when on Zenoh), DiagnosticArray every
//! period, and the results folder (MCAP of everything published, LeRobot's
//! sarm_progress.parquet rewritten at each episode's end).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use sarm_runtime::HeadKind;

use super::assemble::Output;
use super::stats::{NodeStats, Stage};
use crate::bag::McapOut;
use crate::msg::{DiagnosticArray, EpisodeEvent, Progress};
use crate::progress_parquet::{self, ProgressRow};
use crate::scores::{EpisodeProgress, ProgressStamper};
use crate::transport::Publish;
use crate::zenoh_link::NativePublisher;

/// Where outputs go.
pub struct Sinks {
    pub progress: Box<dyn Publish<Progress>>,
    pub episode: Box<dyn Publish<EpisodeEvent>>,
    pub diagnostics: Box<dyn Publish<DiagnosticArray>>,
    pub trainer_progress: Option<NativePublisher<Progress>>,
    pub trainer_episode: Option<NativePublisher<EpisodeEvent>>,
    pub progress_topic: String,
    pub episode_topic: String,
}

/// What the run produced, for the closing summary.
#[derive(Debug, Clone, Default)]
pub struct OutputSummary {
    pub episodes: Vec<EpisodeEvent>,
    pub progress_published: u64,
    pub publish_errors: u64,
    pub files: Vec<PathBuf>,
}

pub struct OutputSettings {
    pub robot_id: String,
    pub node_name: String,
    pub heads: Vec<HeadKind>,
    /// Stage names per head (for the live view).
    pub stage_names: Vec<Vec<String>>,
    pub output_dir: Option<PathBuf>,
    pub bundle_dir: PathBuf,
    pub diagnostics_period: Duration,
}

/// Runs until `rx` is closed and drained.
pub fn run_outputs(
    rx: Receiver<Output>,
    mut sinks: Sinks,
    settings: OutputSettings,
    stats: Arc<NodeStats>,
) -> anyhow::Result<OutputSummary> {
    let mut summary = OutputSummary::default();
    let mut stamper = ProgressStamper::new(&settings.robot_id, "sarm", settings.heads.len());
    let mut episode = EpisodeProgress::new(settings.heads.clone());
    let mut rows: Vec<ProgressRow> = Vec::new();
    let mut mcap = match &settings.output_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
            let path = dir.join("progress.mcap");
            summary.files.push(path.clone());
            Some(McapOut::create(&path)?)
        }
        None => None,
    };
    let mut next_diag = Instant::now() + settings.diagnostics_period;
    loop {
        let timeout = next_diag.saturating_duration_since(Instant::now());
        match rx.recv_timeout(timeout) {
            Ok(Output::Score {
                episode_index,
                stamp_ns,
                arrived,
                score,
            }) => {
                let started = Instant::now();
                episode.push(&score);
                let msgs = stamper.messages(&score, episode_index, stamp_ns);
                for msg in &msgs {
                    if let Err(e) = sinks.progress.publish(msg) {
                        summary.publish_errors += 1;
                        tracing::warn!("publishing progress: {e}");
                    }
                    if let Some(t) = sinks.trainer_progress.as_mut() {
                        if let Err(e) = t.publish(msg) {
                            summary.publish_errors += 1;
                            tracing::warn!("trainer link: {e}");
                        }
                    }
                    summary.progress_published += 1;
                }
                let now = Instant::now();
                stats.record(Stage::Publish, now - started);
                stats.record(Stage::EndToEnd, now.saturating_duration_since(arrived));
                let wall = crate::zenoh_link::now_ns();
                // Only for live stamps: a replayed or simulated clock is not wall time.
                let age = wall - stamp_ns;
                if stamp_ns > 0 && (0..60_000_000_000).contains(&age) {
                    stats.record(Stage::StampToPublish, Duration::from_nanos(age as u64));
                }
                if let Some(first) = msgs.first() {
                    let name = settings
                        .stage_names
                        .first()
                        .and_then(|n| n.get(first.stage as usize))
                        .map_or("?", String::as_str);
                    stats.set_live(|l| {
                        l.frame_index = first.frame_index;
                        l.progress = first.progress;
                        l.episode_index = episode_index;
                        l.stage_name.clear();
                        l.stage_name.push_str(name);
                    });
                }
                if let Some(m) = mcap.as_mut() {
                    for msg in &msgs {
                        m.write(&sinks.progress_topic, stamp_ns.max(0) as u64, msg)?;
                    }
                }
            }
            Ok(Output::Event(ev)) => {
                if let Err(e) = sinks.episode.publish(&ev) {
                    summary.publish_errors += 1;
                    tracing::warn!("publishing episode event: {e}");
                }
                if let Some(t) = sinks.trainer_episode.as_mut() {
                    if let Err(e) = t.publish(&ev) {
                        summary.publish_errors += 1;
                        tracing::warn!("trainer link: {e}");
                    }
                }
                if let Some(m) = mcap.as_mut() {
                    m.write(
                        &sinks.episode_topic,
                        ev.header.stamp.as_nanos().max(0) as u64,
                        &ev,
                    )?;
                }
                match ev.event {
                    0 => {
                        stamper.reset_episode();
                        episode.clear();
                        stats.set_live(|l| {
                            l.in_episode = true;
                            l.episode_index = ev.episode_index;
                            l.frame_index = 0;
                            l.progress = 0.0;
                        });
                    }
                    _ => {
                        let index_offset = rows.len() as i64;
                        rows.extend(episode.rows(ev.frames as i64, ev.episode_index, index_offset));
                        episode.clear();
                        if let Some(dir) = &settings.output_dir {
                            let path = dir.join("sarm_progress.parquet");
                            write_parquet(&path, &rows, &settings.bundle_dir)?;
                            if !summary.files.contains(&path) {
                                summary.files.push(path);
                            }
                        }
                        stats.set_live(|l| l.in_episode = false);
                        summary.episodes.push(ev.clone());
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if Instant::now() >= next_diag {
            next_diag = Instant::now() + settings.diagnostics_period;
            let diag = stats.diagnostics(
                &settings.node_name,
                &settings.robot_id,
                crate::zenoh_link::now_ns(),
            );
            if let Err(e) = sinks.diagnostics.publish(&diag) {
                tracing::warn!("publishing diagnostics: {e}");
            }
        }
    }
    if let Some(m) = mcap {
        m.finish()?;
    }
    Ok(summary)
}

fn write_parquet(path: &Path, rows: &[ProgressRow], bundle_dir: &Path) -> anyhow::Result<()> {
    let tmp = path.with_extension("parquet.tmp");
    progress_parquet::write(&tmp, rows, &bundle_dir.display().to_string())?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
