//! The trainer's end: `sarm sink`.
//!
//! Subscribes to `sarm/**`. Each robot gets a folder `<out>/<robot_id>/`
//! with `records.log` (every record, appended on arrival), `parts/` (one
//! parquet file per ended episode), and, written atomically every
//! `parquet_period` and at exit, `sarm_progress.parquet` (LeRobot's columns
//! and types) and `sarm_weights.parquet` (RA-BC deltas and weights with the
//! dataset-wide statistics, as LeRobot computes them).
//!
//! Records are kept once by sequence number; the prefix held without gaps
//! is synced to disk and acknowledged to the robot (again whenever its
//! heartbeat shows it does not know); a gap outstanding for `gap_grace` is
//! filled by asking the robot's spool for that gap only. Rows are unique on
//! (episode_index, frame_index) per robot, first record wins.
//!
//! - [`store`]: one robot's store (held sequence numbers, losses, dataset,
//!   parquet files);
//! - this module: the subscription, the event loop, flushing and
//!   acknowledging, and the spool queries that fill gaps.

mod store;

use store::RobotState;
pub use store::RobotSummary;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, RecvTimeoutError, Sender};
use sarm_runtime::rabc::RabcParams;
use sarm_runtime::HeadKind;
use zenoh::query::ConsolidationMode;
use zenoh::{Session, Wait};

use super::protocol::{Heartbeat, SpoolQuery, MAX_QUERY_RECORDS};
use super::record::{Record, RecordKind};
use super::TrainerError;
use crate::zenoh_link::rmw::Attachment;
use crate::zenoh_link::TrainerKeys;

/// Settings of the sink.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub out: PathBuf,
    pub rabc: RabcParams,
    /// The progress column the weights use (LeRobot's `rabc_head_mode`).
    pub head: HeadKind,
    /// How often the held prefix is synced and acknowledged.
    pub flush_period: Duration,
    /// How often the combined parquet files are rewritten while records
    /// come (each rewrite streams the whole dataset; the parts are always
    /// current).
    pub parquet_period: Duration,
    /// Wait before asking a robot's spool again for a gap that a query did not fill.
    pub retry_period: Duration,
    /// How long a gap must be outstanding before it is asked for (records
    /// still in flight are not).
    pub gap_grace: Duration,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            out: PathBuf::from("sarm_sink"),
            rabc: RabcParams::default(),
            head: HeadKind::Sparse,
            flush_period: Duration::from_millis(100),
            parquet_period: Duration::from_secs(60),
            retry_period: Duration::from_secs(1),
            gap_grace: Duration::from_millis(300),
        }
    }
}

#[derive(Debug)]
enum Event {
    Sample {
        robot: String,
        kind: RecordKind,
        attachment: Option<Attachment>,
        payload: Vec<u8>,
    },
    Head {
        robot: String,
        hb: Heartbeat,
    },
    Replayed {
        robot: String,
        frame: Vec<u8>,
    },
    QueryDone {
        robot: String,
        replies: usize,
    },
    Malformed {
        what: String,
    },
}

/// Holds the output folder for one sink at a time (an OS lock: released
/// when the process dies, however it dies).
fn lock_out(out: &Path) -> Result<File, TrainerError> {
    std::fs::create_dir_all(out)
        .map_err(|e| TrainerError::Io(format!("cannot create {}: {e}", out.display())))?;
    let path = out.join(".sink.lock");
    let f = File::create(&path)
        .map_err(|e| TrainerError::Io(format!("cannot create {}: {e}", path.display())))?;
    f.try_lock().map_err(|_| {
        TrainerError::Io(format!(
            "{} is in use by another sarm sink (lock {})",
            out.display(),
            path.display()
        ))
    })?;
    Ok(f)
}

fn parse_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix("sarm/")?;
    let (robot, suffix) = rest.split_once('/')?;
    (!robot.is_empty() && !suffix.contains('/')).then_some((robot, suffix))
}

/// Runs the sink until `stop`; returns each robot's figures.
pub fn run_sink(
    session: &Session,
    cfg: &SinkConfig,
    stop: &AtomicBool,
) -> Result<Vec<RobotSummary>, TrainerError> {
    cfg.rabc
        .validate()
        .map_err(|e| TrainerError::Io(e.to_string()))?;
    let _lock = lock_out(&cfg.out)?;
    let mut robots: BTreeMap<String, RobotState> = BTreeMap::new();
    // What earlier runs kept.
    if let Ok(dir) = std::fs::read_dir(&cfg.out) {
        for entry in dir.flatten() {
            if entry.path().join("records.log").exists() {
                if let Some(name) = entry.file_name().to_str() {
                    let state = RobotState::open(&cfg.out, name)?;
                    tracing::info!(
                        "sink: {name}: {} records held from earlier runs (next seq {})",
                        state.summary.records,
                        state.next
                    );
                    robots.insert(name.to_string(), state);
                }
            }
        }
    }

    let (tx, rx) = bounded::<Event>(65_536);
    let sub_tx = tx.clone();
    let _subscriber = session
        .declare_subscriber("sarm/**")
        .callback(move |sample| {
            let key = sample.key_expr().as_str();
            let event = match parse_key(key) {
                None => Event::Malformed {
                    what: format!("key {key}"),
                },
                Some((robot, suffix)) => match (RecordKind::from_key_suffix(suffix), suffix) {
                    (Some(kind), _) => Event::Sample {
                        robot: robot.to_string(),
                        kind,
                        attachment: sample.attachment().and_then(Attachment::from_bytes),
                        payload: sample.payload().to_bytes().into_owned(),
                    },
                    (None, "head") => match Heartbeat::from_bytes(&sample.payload().to_bytes()) {
                        Ok(hb) => Event::Head {
                            robot: robot.to_string(),
                            hb,
                        },
                        Err(e) => Event::Malformed {
                            what: format!("{key}: {e}"),
                        },
                    },
                    // Our own acknowledgements, and anything else.
                    _ => return,
                },
            };
            // Blocking: backpressure on the link; what is dropped upstream is
            // recovered from the spool.
            let _ = sub_tx.send(event);
        })
        .wait()
        .map_err(|e| TrainerError::zenoh("subscriber", "sarm/**", e))?;

    let mut last_flush = Instant::now();
    let mut malformed = 0u64;
    while !stop.load(Ordering::Relaxed) {
        match rx.recv_timeout(cfg.flush_period) {
            Ok(ev) => {
                handle(ev, &mut robots, cfg, &mut malformed)?;
                // Take what is queued before the next flush.
                while let Ok(ev) = rx.try_recv() {
                    handle(ev, &mut robots, cfg, &mut malformed)?;
                    if last_flush.elapsed() >= cfg.flush_period {
                        break;
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if last_flush.elapsed() >= cfg.flush_period {
            last_flush = Instant::now();
            for state in robots.values_mut() {
                state.flush(session)?;
                maybe_query(session, state, cfg, &tx);
                let due = state.dirty && state.last_parquet.elapsed() >= cfg.parquet_period;
                if due {
                    state.write_parquet(cfg)?;
                }
            }
        }
    }
    // Drain what already arrived, then write everything.
    while let Ok(ev) = rx.try_recv() {
        handle(ev, &mut robots, cfg, &mut malformed)?;
    }
    if malformed > 0 {
        tracing::warn!("sink: {malformed} malformed messages ignored");
    }
    let mut out = Vec::new();
    for state in robots.values_mut() {
        state.flush(session)?;
        state.write_parquet(cfg)?;
        let summary = state.finish_summary();
        let path = state.dir.join("sink_summary.json");
        let text = serde_json::to_string_pretty(&summary).unwrap_or_default();
        std::fs::write(&path, text)
            .map_err(|e| TrainerError::Io(format!("cannot write {}: {e}", path.display())))?;
        out.push(summary);
    }
    Ok(out)
}

fn state_for<'a>(
    robots: &'a mut BTreeMap<String, RobotState>,
    cfg: &SinkConfig,
    robot: &str,
) -> Result<Option<&'a mut RobotState>, TrainerError> {
    if !robots.contains_key(robot) {
        if TrainerKeys::new(robot).is_err() {
            return Ok(None);
        }
        tracing::info!("sink: new robot {robot}");
        robots.insert(robot.to_string(), RobotState::open(&cfg.out, robot)?);
    }
    Ok(robots.get_mut(robot))
}

fn handle(
    ev: Event,
    robots: &mut BTreeMap<String, RobotState>,
    cfg: &SinkConfig,
    malformed: &mut u64,
) -> Result<(), TrainerError> {
    match ev {
        Event::Sample {
            robot,
            kind,
            attachment,
            payload,
        } => {
            let Some(att) = attachment.filter(|a| a.sequence_number >= 0) else {
                *malformed += 1;
                tracing::debug!("sink: sample from {robot} without a valid attachment");
                return Ok(());
            };
            let Some(state) = state_for(robots, cfg, &robot)? else {
                return Ok(());
            };
            let mut record = Record {
                seq: att.sequence_number as u64,
                kind,
                episode_index: 0,
                source_ns: att.source_timestamp_ns,
                cdr: payload,
            };
            match record.decode() {
                Ok(d) => record.episode_index = d.episode_index(),
                Err(e) => {
                    // Not stored: the spool copy is asked for instead.
                    *malformed += 1;
                    tracing::debug!("sink: {robot}: {e}");
                    return Ok(());
                }
            }
            state.receive(record, false)?;
        }
        Event::Replayed { robot, frame } => {
            let Some(state) = state_for(robots, cfg, &robot)? else {
                return Ok(());
            };
            match Record::from_frame(&frame) {
                Ok((r, _)) => state.receive(r, true)?,
                Err(e) => {
                    *malformed += 1;
                    tracing::warn!("sink: bad spool reply from {robot}: {e}");
                }
            }
        }
        Event::Head { robot, hb } => {
            if let Some(state) = state_for(robots, cfg, &robot)? {
                state.on_head(hb)?;
            }
        }
        Event::QueryDone { robot, replies } => {
            if let Some(state) = robots.get_mut(&robot) {
                state.query_in_flight = false;
                // A full answer: ask for the next batch straight away.
                if replies >= MAX_QUERY_RECORDS {
                    state.last_query = None;
                }
            }
        }
        Event::Malformed { what } => {
            *malformed += 1;
            tracing::debug!("sink: malformed {what}");
        }
    }
    Ok(())
}

/// Asks the robot's spool for the first gap, if it has been outstanding
/// long enough.
fn maybe_query(session: &Session, state: &mut RobotState, cfg: &SinkConfig, tx: &Sender<Event>) {
    let Some((from, until)) = state.gap(cfg.gap_grace) else {
        return;
    };
    if state.query_in_flight {
        return;
    }
    if state
        .last_query
        .is_some_and(|t| t.elapsed() < cfg.retry_period)
    {
        return;
    }
    state.query_in_flight = true;
    state.last_query = Some(Instant::now());
    let q = SpoolQuery {
        from,
        until: Some(until),
        limit: MAX_QUERY_RECORDS,
    };
    let selector = format!("{}?{}", state.keys.spool(), q.to_parameters());
    let robot = state.keys.robot_id().to_string();
    let (session, tx) = (session.clone(), tx.clone());
    let spawned = std::thread::Builder::new()
        .name("sarm-sink-query".into())
        .spawn(move || {
            let mut replies = 0;
            match session
                .get(selector.as_str())
                // Every reply shares the spool's key: no consolidation, or
                // Zenoh would keep only the last one.
                .consolidation(ConsolidationMode::None)
                .timeout(Duration::from_secs(10))
                .wait()
            {
                Ok(rx) => {
                    while let Ok(reply) = rx.recv() {
                        if let Ok(sample) = reply.result() {
                            replies += 1;
                            let frame = sample.payload().to_bytes().into_owned();
                            if tx
                                .send(Event::Replayed {
                                    robot: robot.clone(),
                                    frame,
                                })
                                .is_err()
                            {
                                return;
                            }
                        }
                    }
                }
                Err(e) => tracing::debug!("sink: query {selector}: {e}"),
            }
            let _ = tx.send(Event::QueryDone { robot, replies });
        });
    if spawned.is_err() {
        state.query_in_flight = false;
    }
}
