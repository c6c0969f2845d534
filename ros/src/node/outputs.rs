//! The publishing side of the node: Progress, SampleWeight (online RA-BC,
//! H frames late) and EpisodeEvent on ROS 2 and, when on Zenoh, on the
//! trainer link (spooled, numbered, delivered to `sarm sink`);
//! DiagnosticArray every period; and the results folder (MCAP of everything
//! published, LeRobot's sarm_progress.parquet rewritten at each episode's end).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::collections::VecDeque;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use sarm_runtime::rabc::{FrameWeight, OnlineRabc, RabcParams};
use sarm_runtime::HeadKind;

use super::assemble::{Output, OUTPUT_QUEUE_FULL};
use super::stats::{NodeStats, Stage};
use crate::bag::McapOut;
use crate::msg::{DiagnosticArray, EpisodeEvent, Header, Progress, SampleWeight, Time};
use crate::progress_parquet::{self, ProgressRow};
use crate::scores::{EpisodeProgress, ProgressStamper};
use crate::trainer::{RobotLink, Sequenced};
use crate::transport::Publish;

/// Where outputs go.
pub struct Sinks {
    pub progress: Box<dyn Publish<Progress>>,
    pub episode: Box<dyn Publish<EpisodeEvent>>,
    pub weight: Box<dyn Publish<SampleWeight>>,
    pub diagnostics: Box<dyn Publish<DiagnosticArray>>,
    /// The trainer link (`outputs.trainer_link`).
    pub trainer: Option<RobotLink>,
    pub progress_topic: String,
    pub episode_topic: String,
    pub weight_topic: String,
}

impl Sinks {
    /// Sends on the trainer link (which numbers it), then on ROS 2.
    fn send<T: Sequenced>(
        &mut self,
        msg: &mut T,
        ros: impl FnOnce(&mut Self, &T) -> Result<(), crate::transport::TransportError>,
        summary: &mut OutputSummary,
    ) {
        if let Some(t) = self.trainer.as_mut() {
            if let Err(e) = t.send(msg) {
                summary.publish_errors += 1;
                tracing::warn!("trainer link: {e}");
            }
        }
        if let Err(e) = ros(self, msg) {
            summary.publish_errors += 1;
            tracing::warn!("publishing {}: {e}", T::TYPE_NAME);
        }
    }
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
    pub rabc: RabcParams,
    /// The head whose progress the weights use.
    pub rabc_head: HeadKind,
}

/// Online RA-BC over the scored frames of the current episode.
struct Weights {
    rabc: OnlineRabc,
    head: HeadKind,
    /// Frame indices (and stamps) of frames whose weight is pending.
    frames: VecDeque<(i64, i64)>,
    ready: Vec<FrameWeight>,
}

impl Weights {
    fn push(&mut self, score: &sarm_runtime::FrameScore, stamp_ns: i64) {
        let Some(h) = score.head(self.head).or(score.heads.first()) else {
            return;
        };
        self.frames.push_back((score.frame_index as i64, stamp_ns));
        let ready = &mut self.ready;
        self.rabc.push(h.progress, &mut |w| ready.push(w));
    }

    fn finish(&mut self) {
        let ready = &mut self.ready;
        self.rabc.finish(&mut |w| ready.push(w));
    }

    /// The weights that became known, as messages.
    fn drain(&mut self, robot_id: &str, episode_index: i64) -> Vec<SampleWeight> {
        let chunk = self.rabc.params().chunk_size as u32;
        let mut out = Vec::with_capacity(self.ready.len());
        for w in self.ready.drain(..) {
            let (frame_index, stamp) = self.frames.pop_front().unwrap_or((w.frame_index as i64, 0));
            out.push(SampleWeight {
                header: Header {
                    stamp: Time::from_nanos(stamp),
                    frame_id: String::new(),
                },
                robot_id: robot_id.to_string(),
                episode_index,
                frame_index,
                seq: 0,
                chunk_size: chunk,
                delta: w.delta,
                weight: w.weight,
            });
        }
        out
    }
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
    let mut weights = Weights {
        rabc: OnlineRabc::new(settings.rabc)?,
        head: settings.rabc_head,
        frames: VecDeque::with_capacity(settings.rabc.chunk_size + 2),
        ready: Vec::with_capacity(settings.rabc.chunk_size + 1),
    };
    let mut current_episode = 0i64;
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
                triggered,
                score,
            }) => {
                let started = Instant::now();
                episode.push(&score);
                let mut msgs = stamper.messages(&score, episode_index, stamp_ns);
                for msg in msgs.iter_mut() {
                    sinks.send(msg, |s, m| s.progress.publish(m), &mut summary);
                    summary.progress_published += 1;
                }
                weights.push(&score, stamp_ns);
                let ready = weights.drain(&settings.robot_id, episode_index);
                publish_weights(ready, Some(stamp_ns), &mut sinks, &mut mcap, &mut summary)?;
                let now = Instant::now();
                stats.record(Stage::Publish, now - started);
                stats.record(Stage::EndToEnd, now.saturating_duration_since(arrived));
                if let Some(t) = triggered {
                    stats.record(Stage::Trigger, now.saturating_duration_since(t));
                }
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
            Ok(Output::Event(mut ev)) => {
                if ev.event != 0 {
                    // The episode's last weights (clamped to its last frame) go before its end.
                    weights.finish();
                    let ready = weights.drain(&settings.robot_id, current_episode);
                    publish_weights(ready, None, &mut sinks, &mut mcap, &mut summary)?;
                } else {
                    current_episode = ev.episode_index;
                }
                sinks.send(&mut ev, |s, m| s.episode.publish(m), &mut summary);
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
            let mut diag = stats.diagnostics(
                &settings.node_name,
                &settings.robot_id,
                crate::zenoh_link::now_ns(),
            );
            if let Some(t) = sinks.trainer.as_ref() {
                let unrecorded = stats.drops().get(OUTPUT_QUEUE_FULL).copied().unwrap_or(0);
                t.stats()
                    .unrecorded
                    .store(unrecorded, std::sync::atomic::Ordering::Relaxed);
                if let Some(status) = diag.status.first_mut() {
                    trainer_diagnostics(t, status);
                }
            }
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

/// Publishes weights that became known (ROS 2, trainer link, results MCAP).
/// The MCAP log time is `log_ns` (the frame being scored), else each
/// weight's own stamp (the tail flushed at an episode's end).
fn publish_weights(
    ready: Vec<SampleWeight>,
    log_ns: Option<i64>,
    sinks: &mut Sinks,
    mcap: &mut Option<McapOut>,
    summary: &mut OutputSummary,
) -> anyhow::Result<()> {
    for mut w in ready {
        sinks.send(&mut w, |s, m| s.weight.publish(m), summary);
        if let Some(m) = mcap.as_mut() {
            let at = log_ns.unwrap_or_else(|| w.header.stamp.as_nanos());
            m.write(&sinks.weight_topic, at.max(0) as u64, &w)?;
        }
    }
    Ok(())
}

/// The trainer link's state in the node's diagnostics; records lost to a
/// full spool raise the level to WARN.
fn trainer_diagnostics(t: &RobotLink, status: &mut crate::msg::DiagnosticStatus) {
    use std::sync::atomic::Ordering::Relaxed;
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
        status.values.push(crate::msg::KeyValue {
            key: key.into(),
            value: value.to_string(),
        });
    }
    if lost > 0 && status.level == 0 {
        status.level = 1;
        status.message = format!("{lost} trainer-link records lost to a full spool");
    }
}

fn write_parquet(path: &Path, rows: &[ProgressRow], bundle_dir: &Path) -> anyhow::Result<()> {
    let tmp = path.with_extension("parquet.tmp");
    progress_parquet::write(&tmp, rows, &bundle_dir.display().to_string())?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
