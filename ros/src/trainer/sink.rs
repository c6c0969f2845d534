//! The trainer's end: `sarm sink`.
//!
//! Subscribes to `sarm/**`. Each robot gets a folder `<out>/<robot_id>/`
//! with `records.log` (every record, appended on arrival), and, rewritten
//! atomically at each episode's end, periodically and at exit,
//! `sarm_progress.parquet` (LeRobot's columns and types) and
//! `sarm_weights.parquet` (RA-BC deltas and weights with the dataset-wide
//! statistics, as LeRobot computes them).
//!
//! Records are kept once by sequence number; the prefix held without gaps
//! is synced to disk and acknowledged to the robot; gaps are filled by
//! querying the robot's spool. Rows are unique on (episode_index,
//! frame_index) per robot, first record wins.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, RecvTimeoutError, Sender};
use hdrhistogram::Histogram;
use sarm_runtime::rabc::{dataset_weights, RabcParams};
use serde::Serialize;
use zenoh::query::ConsolidationMode;
use zenoh::{Session, Wait};

use super::log::LogWriter;
use super::protocol::{Ack, Heartbeat, SpoolQuery, MAX_QUERY_RECORDS};
use super::record::{Decoded, Record, RecordKind};
use super::TrainerError;
use crate::progress_parquet::{self, ProgressRow, WeightRow};
use crate::zenoh_link::rmw::Attachment;
use crate::zenoh_link::{now_ns, TrainerKeys};

/// Settings of the sink.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub out: PathBuf,
    pub rabc: RabcParams,
    /// The progress column the weights use: `sparse` or `dense` (LeRobot's `rabc_head_mode`).
    pub head: String,
    /// How often the held prefix is synced and acknowledged.
    pub flush_period: Duration,
    /// How often dirty parquet files are rewritten besides episode ends.
    pub parquet_period: Duration,
    /// Wait before asking a robot's spool again for a gap that a query did not fill.
    pub retry_period: Duration,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            out: PathBuf::from("sarm_sink"),
            rabc: RabcParams::default(),
            head: "sparse".into(),
            flush_period: Duration::from_millis(100),
            parquet_period: Duration::from_secs(10),
            retry_period: Duration::from_secs(1),
        }
    }
}

/// Per-robot figures, printed at exit and written to `sink_summary.json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RobotSummary {
    pub robot_id: String,
    /// Distinct records held (sequence numbers).
    pub records: u64,
    pub progress_rows: u64,
    pub weight_records: u64,
    pub episode_events: u64,
    pub episodes: u64,
    /// Records received again (live and replayed, or replayed twice), dropped.
    pub duplicates: u64,
    /// Records the robot no longer had when asked (spool full, or acknowledged to another store).
    pub lost: u64,
    /// Records that did not decode or named another robot.
    pub invalid: u64,
    /// Records that came from the robot's spool rather than live.
    pub recovered: u64,
    /// One past the last sequence number held without a gap.
    pub next_seq: u64,
    /// What the robot reported in its last heartbeat.
    pub robot_next_seq: Option<u64>,
    pub robot_spool_dropped: u64,
    pub robot_spool_rejected: u64,
    /// Robot made the record -> synced at the sink, ms, for records that
    /// came live (received by this run).
    pub delay_ms_p50: f64,
    pub delay_ms_p99: f64,
    pub delay_ms_max: f64,
    /// The same for records that came from the robot's spool (after an
    /// outage: includes the outage).
    pub recovered_delay_ms_p50: f64,
    pub recovered_delay_ms_p99: f64,
    pub recovered_delay_ms_max: f64,
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

struct RobotState {
    keys: TrainerKeys,
    dir: PathBuf,
    log: LogWriter,
    lost_log: PathBuf,
    next: u64,
    ahead: BTreeSet<u64>,
    /// (episode, frame) -> [sparse, dense]
    progress: BTreeMap<(i64, i64), [f32; 2]>,
    has_dense: bool,
    model: String,
    head: Option<Heartbeat>,
    summary: RobotSummary,
    unacked: bool,
    /// Source times of records appended since the last sync, and whether
    /// they came live (true) or from the robot's spool.
    unsynced_delays: Vec<(i64, bool)>,
    parquet_dirty: bool,
    episode_ended: bool,
    last_parquet: Instant,
    query_in_flight: bool,
    last_query: Option<Instant>,
    delays: Histogram<u64>,
    delays_recovered: Histogram<u64>,
}

impl RobotState {
    /// Opens (or creates) the robot's store and reads back what it holds.
    fn open(out: &Path, robot: &str) -> Result<Self, TrainerError> {
        let keys = TrainerKeys::new(robot)?;
        let dir = out.join(robot);
        std::fs::create_dir_all(&dir)
            .map_err(|e| TrainerError::Io(format!("cannot create {}: {e}", dir.display())))?;
        let (log, contents) = LogWriter::open(&dir.join("records.log"))?;
        if let Some((bytes, why)) = &contents.damaged_tail {
            tracing::warn!(
                "sink {robot}: cut {bytes} damaged bytes at the end of records.log ({why}); those records are asked for again"
            );
        }
        let mut state = RobotState {
            keys,
            lost_log: dir.join("lost.log"),
            dir,
            log,
            next: 0,
            ahead: BTreeSet::new(),
            progress: BTreeMap::new(),
            has_dense: false,
            model: String::new(),
            head: None,
            summary: RobotSummary {
                robot_id: robot.to_string(),
                ..Default::default()
            },
            unacked: false,
            unsynced_delays: Vec::new(),
            parquet_dirty: false,
            episode_ended: false,
            last_parquet: Instant::now(),
            query_in_flight: false,
            last_query: None,
            delays: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .map_err(|e| TrainerError::Io(e.to_string()))?,
            delays_recovered: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .map_err(|e| TrainerError::Io(e.to_string()))?,
        };
        // Ranges given up on by an earlier run: `next` jumps over them.
        let mut lost_ranges = Vec::new();
        if let Ok(text) = std::fs::read_to_string(&state.lost_log) {
            for line in text.lines() {
                if let Some((a, b)) = line.split_once(' ') {
                    if let (Ok(a), Ok(b)) = (a.parse::<u64>(), b.parse::<u64>()) {
                        lost_ranges.push((a, b));
                    }
                }
            }
        }
        lost_ranges.sort_unstable();
        for r in contents.records {
            if state.ahead.contains(&r.seq) || r.seq < state.next {
                continue;
            }
            state.ahead.insert(r.seq);
            state.apply(&r);
            state.advance();
        }
        for (a, b) in lost_ranges {
            if state.next >= a && state.next < b {
                state.summary.lost += state.skip_to(b);
            }
        }
        state.summary.duplicates = 0;
        state.unacked = state.next > 0;
        state.parquet_dirty = !state.progress.is_empty();
        Ok(state)
    }

    /// Gives up on every sequence number below `first`; returns how many
    /// of them were not held.
    fn skip_to(&mut self, first: u64) -> u64 {
        if first <= self.next {
            return 0;
        }
        let held = self.ahead.range(self.next..first).count() as u64;
        let missing = first - self.next - held;
        self.ahead = self.ahead.split_off(&first);
        self.next = first;
        self.advance();
        missing
    }

    fn advance(&mut self) {
        while self.ahead.remove(&self.next) {
            self.next += 1;
        }
    }

    /// Applies a held record to the dataset.
    fn apply(&mut self, r: &Record) -> bool {
        let decoded = match r.decode() {
            Ok(d) => d,
            Err(e) => {
                self.summary.invalid += 1;
                tracing::warn!("sink {}: record {}: {e}", self.keys.robot_id(), r.seq);
                return false;
            }
        };
        if decoded.robot_id() != self.keys.robot_id() || decoded.episode_index() != r.episode_index
        {
            self.summary.invalid += 1;
            tracing::warn!(
                "sink {}: record {} names robot {:?}, episode {}: dropped",
                self.keys.robot_id(),
                r.seq,
                decoded.robot_id(),
                decoded.episode_index()
            );
            return false;
        }
        self.summary.records += 1;
        match decoded {
            Decoded::Progress(p) => {
                let column = match p.head.as_str() {
                    "sparse" => 0,
                    "dense" => 1,
                    other => {
                        self.summary.invalid += 1;
                        tracing::warn!("sink {}: unknown head {other:?}", self.keys.robot_id());
                        return false;
                    }
                };
                self.has_dense |= column == 1;
                let row = self
                    .progress
                    .entry((p.episode_index, p.frame_index))
                    .or_insert([f32::NAN; 2]);
                if row[column].is_nan() {
                    row[column] = p.progress;
                } else {
                    // Another record for the same frame and head: first wins.
                    self.summary.duplicates += 1;
                }
                self.summary.progress_rows = self.progress.len() as u64;
                self.parquet_dirty = true;
            }
            Decoded::Weight(_) => self.summary.weight_records += 1,
            Decoded::Episode(ev) => {
                self.summary.episode_events += 1;
                if ev.event != 0 {
                    self.summary.episodes += 1;
                    self.episode_ended = true;
                }
            }
        }
        true
    }

    /// Persists a record unless it is held already.
    fn receive(&mut self, r: Record, recovered: bool) -> Result<(), TrainerError> {
        if r.seq < self.next || self.ahead.contains(&r.seq) {
            self.summary.duplicates += 1;
            return Ok(());
        }
        self.log.append(&r)?;
        self.ahead.insert(r.seq);
        self.advance();
        if recovered {
            self.summary.recovered += 1;
        }
        self.unsynced_delays.push((r.source_ns, !recovered));
        self.unacked = true;
        self.apply(&r);
        Ok(())
    }

    /// Syncs and acknowledges the gap-free prefix.
    fn flush(&mut self, session: &Session) -> Result<(), TrainerError> {
        if !self.unacked {
            return Ok(());
        }
        self.log.sync()?;
        let now = now_ns();
        for (source, live) in self.unsynced_delays.drain(..) {
            let us = ((now - source).max(1) / 1000) as u64;
            let h = if live {
                &mut self.delays
            } else {
                &mut self.delays_recovered
            };
            let _ = h.record(us.clamp(1, 3_600_000_000));
        }
        if self.next > 0 {
            let ack = Ack {
                through: self.next - 1,
            };
            if let Err(e) = session.put(self.keys.ack(), ack.to_bytes()).wait() {
                tracing::debug!(
                    "sink {}: acknowledgement not sent: {e}",
                    self.keys.robot_id()
                );
                return Ok(());
            }
        }
        self.unacked = false;
        Ok(())
    }

    /// The sequence numbers known to exist beyond what is held.
    fn wanted_through(&self) -> Option<u64> {
        let seen = self.ahead.iter().next_back().map(|s| s + 1);
        let told = self.head.as_ref().map(|h| h.next_seq);
        let top = seen.max(told)?;
        (top > self.next).then_some(top)
    }

    /// The robot's heartbeat: records it no longer has are lost.
    fn on_head(&mut self, hb: Heartbeat) -> Result<(), TrainerError> {
        if let Some(first) = hb.first_seq {
            if first > self.next {
                let from = self.next;
                let missing = self.skip_to(first);
                if missing > 0 {
                    tracing::error!(
                        "sink {}: records {from}..{first} are no longer in the robot's spool: {missing} lost",
                        self.keys.robot_id(),
                    );
                    self.summary.lost += missing;
                    let mut f = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&self.lost_log)
                        .map_err(|e| TrainerError::Io(e.to_string()))?;
                    writeln!(f, "{from} {first}").map_err(|e| TrainerError::Io(e.to_string()))?;
                    let _ = f.sync_data();
                }
                self.unacked = true;
            }
        }
        if self.model.is_empty() || self.model != hb.model {
            self.model = hb.model.clone();
        }
        self.summary.robot_spool_dropped = hb.dropped;
        self.summary.robot_spool_rejected = hb.rejected;
        self.summary.robot_next_seq = Some(hb.next_seq);
        self.head = Some(hb);
        Ok(())
    }

    /// Rewrites the robot's parquet files (atomically).
    fn write_parquet(&mut self, cfg: &SinkConfig) -> Result<(), TrainerError> {
        if self.progress.is_empty() {
            return Ok(());
        }
        let mut rows = Vec::with_capacity(self.progress.len());
        let mut episodes: BTreeMap<i64, Vec<f32>> = BTreeMap::new();
        let column = usize::from(cfg.head == "dense");
        for (i, (&(e, f), v)) in self.progress.iter().enumerate() {
            rows.push(ProgressRow {
                index: i as i64,
                episode_index: e,
                frame_index: f,
                progress_sparse: v[0],
                progress_dense: self.has_dense.then_some(v[1]),
            });
            let series = episodes.entry(e).or_default();
            let f = f.max(0) as usize;
            if series.len() <= f {
                series.resize(f + 1, f32::NAN);
            }
            series[f] = v[column];
        }
        let model = if self.model.is_empty() {
            "unknown"
        } else {
            &self.model
        };
        let path = self.dir.join("sarm_progress.parquet");
        let tmp = self.dir.join(".sarm_progress.parquet.tmp");
        progress_parquet::write(&tmp, &rows, model)?;
        rename(&tmp, &path)?;

        let views: Vec<&[f32]> = episodes.values().map(|v| v.as_slice()).collect();
        let (stats, weights) = dataset_weights(&views, &cfg.rabc);
        let mut wrows = Vec::with_capacity(rows.len());
        for r in &rows {
            let Some(pos) = episodes.keys().position(|k| *k == r.episode_index) else {
                continue;
            };
            if let Some(w) = weights[pos].get(r.frame_index as usize) {
                wrows.push(WeightRow {
                    index: r.index,
                    episode_index: r.episode_index,
                    frame_index: r.frame_index,
                    delta: w.delta,
                    weight: w.weight,
                });
            }
        }
        let meta = HashMap::from([
            ("reward_model_path".to_string(), model.to_string()),
            ("rabc_head_mode".to_string(), cfg.head.clone()),
            (
                "rabc_chunk_size".to_string(),
                cfg.rabc.chunk_size.to_string(),
            ),
            ("rabc_kappa".to_string(), cfg.rabc.kappa.to_string()),
            ("rabc_epsilon".to_string(), cfg.rabc.epsilon.to_string()),
            ("delta_mean".to_string(), stats.mean.max(0.0).to_string()),
            (
                "delta_std".to_string(),
                stats.std.max(cfg.rabc.epsilon).to_string(),
            ),
        ]);
        let wpath = self.dir.join("sarm_weights.parquet");
        let wtmp = self.dir.join(".sarm_weights.parquet.tmp");
        progress_parquet::write_weights(&wtmp, &wrows, meta)?;
        rename(&wtmp, &wpath)?;
        self.parquet_dirty = false;
        self.episode_ended = false;
        self.last_parquet = Instant::now();
        Ok(())
    }

    fn finish_summary(&mut self) -> RobotSummary {
        let ms = |h: &Histogram<u64>| {
            if h.is_empty() {
                return (0.0, 0.0, 0.0);
            }
            let q = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
            (q(0.5), q(0.99), h.max() as f64 / 1000.0)
        };
        self.summary.next_seq = self.next;
        let s = &mut self.summary;
        (s.delay_ms_p50, s.delay_ms_p99, s.delay_ms_max) = ms(&self.delays);
        (
            s.recovered_delay_ms_p50,
            s.recovered_delay_ms_p99,
            s.recovered_delay_ms_max,
        ) = ms(&self.delays_recovered);
        self.summary.clone()
    }
}

fn rename(from: &Path, to: &Path) -> Result<(), TrainerError> {
    std::fs::rename(from, to).map_err(|e| {
        TrainerError::Io(format!(
            "cannot move {} to {}: {e}",
            from.display(),
            to.display()
        ))
    })
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
    if cfg.head != "sparse" && cfg.head != "dense" {
        return Err(TrainerError::Io(format!(
            "the weights' head must be sparse or dense, not {:?}",
            cfg.head
        )));
    }
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
                let due = state.parquet_dirty
                    && (state.episode_ended || state.last_parquet.elapsed() >= cfg.parquet_period);
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

/// Asks the robot's spool for the first gap, if there is one.
fn maybe_query(session: &Session, state: &mut RobotState, cfg: &SinkConfig, tx: &Sender<Event>) {
    if state.query_in_flight || state.wanted_through().is_none() {
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
        from: state.next,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(next_seq: u64, first_seq: Option<u64>) -> Heartbeat {
        Heartbeat {
            next_seq,
            first_seq,
            dropped: 0,
            rejected: 0,
            spool_bytes: 0,
            model: "m".into(),
        }
    }

    #[test]
    fn records_the_robot_no_longer_has_are_counted_lost_once_across_restarts() {
        let out = std::env::temp_dir().join(format!("sarm-sink-lost-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let rec = |seq: u64| Record {
            seq,
            kind: RecordKind::Episode,
            episode_index: 0,
            source_ns: 0,
            cdr: crate::msg::RosMessage::to_cdr(&crate::msg::EpisodeEvent {
                robot_id: "r".into(),
                ..Default::default()
            })
            .unwrap(),
        };
        let mut s = RobotState::open(&out, "r").unwrap();
        s.receive(rec(0), false).unwrap();
        s.receive(rec(12), false).unwrap();
        assert_eq!((s.next, s.wanted_through()), (1, Some(13)));
        // The robot's spool starts at 10: 1..10 are gone, 10 and 11 can come.
        s.on_head(hb(13, Some(10))).unwrap();
        assert_eq!((s.next, s.summary.lost), (10, 9));
        s.receive(rec(10), true).unwrap();
        s.receive(rec(11), true).unwrap();
        assert_eq!(s.next, 13);
        s.receive(rec(11), true).unwrap();
        assert_eq!(s.summary.duplicates, 1);
        drop(s);
        let s = RobotState::open(&out, "r").unwrap();
        assert_eq!((s.next, s.summary.lost, s.summary.records), (13, 9, 4));
        std::fs::remove_dir_all(&out).unwrap();
    }
}
