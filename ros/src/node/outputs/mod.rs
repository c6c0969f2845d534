//! The publishing side of the node: what the reward stage produced, as wire
//! messages, handed to each sink in turn.
//!
//! Sinks are independent: each is one small type implementing [`Sink`]
//! ([`trainer::TrainerSink`] first, since it numbers the records the others
//! then carry; [`ros::RosSink`]; [`recorder::McapRecorder`];
//! [`parquet::ParquetWriter`]; [`live::LiveView`]). A sink that fails is
//! reported (logged once, then at most every few seconds; counted;
//! `/diagnostics` ERROR naming it) and the others carry on; a sink whose
//! failure is fatal (a recorder whose file is broken) is not called again.
//! `/diagnostics` itself is composed here every period from the node's
//! statistics and each sink's own values.

pub mod live;
pub mod parquet;
pub mod recorder;
pub mod ros;
pub mod trainer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use sarm_runtime::{Clock, FrameScore, HeadKind};

use super::reward::{Output, OUTPUT_QUEUE_FULL};
use super::stats::{NodeStats, Stage};
use crate::drops::Drops;
use crate::msg::{
    DiagnosticArray, DiagnosticStatus, EpisodeEvent, Header, KeyValue, PolicyEvent, Progress,
    SampleWeight, Time,
};
use crate::scores::ProgressStamper;
use crate::transport::Publish;

/// Why a sink could not take a message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    pub message: String,
    /// The sink cannot go on (e.g. its file is broken): it is not called again.
    pub fatal: bool,
}

impl SinkError {
    pub fn transient(e: impl std::fmt::Display) -> Self {
        SinkError {
            message: e.to_string(),
            fatal: false,
        }
    }

    pub fn fatal(e: impl std::fmt::Display) -> Self {
        SinkError {
            message: e.to_string(),
            fatal: true,
        }
    }
}

/// A scored frame, as the sinks see it.
pub struct Scored<'a> {
    pub episode_index: i64,
    pub stamp_ns: i64,
    pub score: &'a FrameScore,
    /// One Progress message per head.
    pub messages: &'a mut [Progress],
}

/// Somewhere the node's outputs go. Every method has a default that takes
/// nothing, so a sink implements only what it uses.
pub trait Sink: Send {
    fn name(&self) -> &'static str;

    fn progress(&mut self, _scored: &mut Scored<'_>) -> Result<(), SinkError> {
        Ok(())
    }

    fn weight(&mut self, _msg: &mut SampleWeight) -> Result<(), SinkError> {
        Ok(())
    }

    fn episode(&mut self, _msg: &mut EpisodeEvent) -> Result<(), SinkError> {
        Ok(())
    }

    fn policy(&mut self, _msg: &mut PolicyEvent) -> Result<(), SinkError> {
        Ok(())
    }

    /// Values for `/diagnostics`; may raise `status.level` (never lower it).
    fn diagnostics(&mut self, _status: &mut DiagnosticStatus) {}

    /// The run is over: close files. Returns the files written.
    fn finish(&mut self) -> Result<Vec<PathBuf>, SinkError> {
        Ok(Vec::new())
    }
}

/// A sink and how it has fared.
struct Slot {
    sink: Box<dyn Sink>,
    errors: u64,
    /// `errors` at the last diagnostics.
    reported: u64,
    disabled: bool,
    last_error: Option<String>,
    drops: Drops,
}

impl Slot {
    fn new(sink: Box<dyn Sink>) -> Self {
        let name = sink.name();
        Slot {
            sink,
            errors: 0,
            reported: 0,
            disabled: false,
            last_error: None,
            drops: Drops::new(format!("sink {name}"), Duration::from_secs(5)),
        }
    }

    fn call(&mut self, stats: &NodeStats, f: impl FnOnce(&mut dyn Sink) -> Result<(), SinkError>) {
        if self.disabled {
            return;
        }
        if let Err(e) = f(self.sink.as_mut()) {
            self.errors += 1;
            stats.count_error(self.sink.name());
            if e.fatal {
                self.disabled = true;
                tracing::error!(
                    "sink {} failed and is stopped: {} (the other outputs go on)",
                    self.sink.name(),
                    e.message
                );
            } else {
                self.drops.record("error", &e.message);
            }
            self.last_error = Some(e.message);
        }
    }
}

/// diagnostic_msgs/DiagnosticStatus ERROR.
const DIAGNOSTIC_ERROR: u8 = 2;

/// What the run produced, for the closing summary.
#[derive(Debug, Clone, Default)]
pub struct OutputSummary {
    pub episodes: Vec<EpisodeEvent>,
    pub progress_published: u64,
    /// Errors per sink (only sinks that had any).
    pub sink_errors: Vec<(&'static str, u64)>,
    pub files: Vec<PathBuf>,
}

pub struct OutputSettings {
    pub robot_id: String,
    pub node_name: String,
    pub heads: Vec<HeadKind>,
    pub diagnostics_period: Duration,
}

/// Runs until `rx` is closed and drained.
pub fn run_outputs(
    rx: Receiver<Output>,
    sinks: Vec<Box<dyn Sink>>,
    mut diagnostics: Box<dyn Publish<DiagnosticArray>>,
    settings: OutputSettings,
    clock: Clock,
    stats: Arc<NodeStats>,
) -> OutputSummary {
    let mut summary = OutputSummary::default();
    let mut slots: Vec<Slot> = sinks.into_iter().map(Slot::new).collect();
    let mut stamper = ProgressStamper::new(&settings.robot_id, "sarm", settings.heads.len());
    let mut diag_drops = Drops::new("/diagnostics", Duration::from_secs(30));
    let mut next_diag = Instant::now() + settings.diagnostics_period;
    loop {
        let timeout = next_diag.saturating_duration_since(Instant::now());
        match rx.recv_timeout(timeout) {
            Ok(Output::Score {
                episode_index,
                stamp_ns,
                arrived_ns,
                triggered_ns,
                score,
            }) => {
                let started = Instant::now();
                let mut msgs = stamper.messages(&score, episode_index, stamp_ns);
                let mut scored = Scored {
                    episode_index,
                    stamp_ns,
                    score: &score,
                    messages: &mut msgs,
                };
                for slot in slots.iter_mut() {
                    slot.call(&stats, |s| s.progress(&mut scored));
                }
                summary.progress_published += msgs.len() as u64;
                stats.record(Stage::Publish, started.elapsed());
                let now = clock.now_ns();
                stats.record_between(Stage::EndToEnd, arrived_ns, now);
                if let Some(t) = triggered_ns {
                    stats.record_between(Stage::Trigger, t, now);
                }
                // Only for live stamps: a replayed clock is not the node's.
                let age = now - stamp_ns;
                if stamp_ns > 0 && (0..60_000_000_000).contains(&age) {
                    stats.record(Stage::StampToPublish, Duration::from_nanos(age as u64));
                }
            }
            Ok(Output::Weight {
                episode_index,
                chunk_size,
                weight,
            }) => {
                let mut msg = SampleWeight {
                    header: Header {
                        stamp: Time::from_nanos(weight.stamp_ns),
                        frame_id: String::new(),
                    },
                    robot_id: settings.robot_id.clone(),
                    episode_index,
                    frame_index: weight.frame_index as i64,
                    seq: 0,
                    chunk_size,
                    delta: weight.weight.delta,
                    weight: weight.weight.weight,
                };
                for slot in slots.iter_mut() {
                    slot.call(&stats, |s| s.weight(&mut msg));
                }
            }
            Ok(Output::Event(mut ev)) => {
                if ev.kind() == Some(crate::msg::EventKind::Start) {
                    stamper.reset_episode();
                }
                for slot in slots.iter_mut() {
                    slot.call(&stats, |s| s.episode(&mut ev));
                }
                if ev.closes() {
                    summary.episodes.push(ev);
                }
            }
            Ok(Output::Policy(mut ev)) => {
                for slot in slots.iter_mut() {
                    slot.call(&stats, |s| s.policy(&mut ev));
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if Instant::now() >= next_diag {
            next_diag = Instant::now() + settings.diagnostics_period;
            let diag = compose_diagnostics(&settings, &clock, &stats, &mut slots);
            if let Err(e) = diagnostics.publish(&diag) {
                stats.count_error("diagnostics");
                diag_drops.record("error", e);
            }
        }
    }
    for slot in slots.iter_mut() {
        if slot.disabled {
            continue;
        }
        match slot.sink.finish() {
            Ok(files) => summary.files.extend(files),
            Err(e) => {
                slot.errors += 1;
                tracing::error!("sink {}: {}", slot.sink.name(), e.message);
            }
        }
    }
    summary.sink_errors = slots
        .iter()
        .filter(|s| s.errors > 0)
        .map(|s| (s.sink.name(), s.errors))
        .collect();
    summary
}

/// The node's status: its statistics, each sink's values, and ERROR while
/// a sink is stopped or has failed since the last report.
fn compose_diagnostics(
    settings: &OutputSettings,
    clock: &Clock,
    stats: &NodeStats,
    slots: &mut [Slot],
) -> DiagnosticArray {
    let unrecorded = stats.drops().get(OUTPUT_QUEUE_FULL).copied().unwrap_or(0);
    let mut diag = stats.diagnostics(&settings.node_name, &settings.robot_id, clock.now_ns());
    if let Some(status) = diag.status.first_mut() {
        status.values.push(KeyValue {
            key: "clock".into(),
            value: clock.source().as_str().into(),
        });
        status.values.push(KeyValue {
            key: "outputs_unrecorded".into(),
            value: unrecorded.to_string(),
        });
        let mut failed = Vec::new();
        for slot in slots.iter_mut() {
            slot.sink.diagnostics(status);
            status.values.push(KeyValue {
                key: format!("sink_{}_errors", slot.sink.name()),
                value: slot.errors.to_string(),
            });
            let failing = slot.disabled || slot.errors > slot.reported;
            slot.reported = slot.errors;
            if failing {
                failed.push(format!(
                    "sink {}{}: {}",
                    slot.sink.name(),
                    if slot.disabled { " stopped" } else { "" },
                    slot.last_error.as_deref().unwrap_or("failed")
                ));
            }
        }
        if !failed.is_empty() {
            status.level = DIAGNOSTIC_ERROR;
            status.message = failed.join("; ");
        }
    }
    diag
}
