//! One robot's store at the sink: its `records.log`, which sequence
//! numbers are held, what was lost, and the dataset built from the records.
//!
//! A record is checked (it decodes, names this robot and the episode its
//! frame says) before it is written: a bad one takes no sequence number, so
//! the real record can still come. Each episode becomes a parquet part in
//! `parts/` once every record up to its END/ABORT event is held; only the
//! episodes still open stay in memory (rebuilt from `records.log` when the
//! sink starts again). `sarm_progress.parquet` and `sarm_weights.parquet`
//! are streamed from the parts and the open episodes, one episode in memory
//! at a time, every `--parquet-period` and at exit. An episode's end costs
//! only its own part, however many came before.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{Array, Float32Array, Int64Array};
use hdrhistogram::Histogram;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use sarm_runtime::rabc::dataset_weights_streamed;
use sarm_runtime::HeadKind;
use serde::{Deserialize, Serialize};
use zenoh::{Session, Wait};

use super::SinkConfig;
use crate::progress_parquet::{self, ProgressRow, WeightRow};
use crate::trainer::log::LogWriter;
use crate::trainer::protocol::{Ack, Heartbeat};
use crate::trainer::record::{Decoded, Record};
use crate::trainer::TrainerError;
use crate::zenoh_link::{now_ns, TrainerKeys};

/// Per-robot figures, printed at exit and written to `sink_summary.json`.
/// Every count is over the store's whole life (all sink runs on this
/// folder); the `this_run_` figures are this process's.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RobotSummary {
    pub robot_id: String,
    /// Distinct records held (sequence numbers).
    pub records: u64,
    /// Rows of `sarm_progress.parquet`: distinct (episode, frame) pairs.
    pub progress_rows: u64,
    pub weight_records: u64,
    pub episode_events: u64,
    /// sarm_msgs/PolicyEvent records (the policy's safety layer).
    pub policy_events: u64,
    /// Episodes ended (END or ABORT held).
    pub episodes: u64,
    /// Records received again (live and from the spool, or twice from the
    /// spool), and Progress for a frame and head already held: dropped.
    pub duplicates: u64,
    /// Records the robot no longer had when asked (its spool was full, or
    /// another store acknowledged them).
    pub lost: u64,
    /// Records that did not decode, or named another robot or episode:
    /// not kept (the real record can still come).
    pub invalid: u64,
    /// Records that came from the robot's spool rather than live.
    pub recovered: u64,
    /// One past the last sequence number held without a gap.
    pub next_seq: u64,
    /// One past the last sequence number the robot has made, as far as
    /// known (its last heartbeat, or what is held).
    pub robot_next_seq: Option<u64>,
    /// The robot's spool losses since its last start (its heartbeat).
    pub robot_spool_dropped: u64,
    pub robot_spool_rejected: u64,
    /// Outputs the robot dropped before numbering them (its output queue
    /// was full), since its last start.
    pub robot_unrecorded: u64,
    /// Robot made the record -> synced at the sink, ms, for records that
    /// came live to this sink run.
    pub this_run_delay_ms_p50: f64,
    pub this_run_delay_ms_p99: f64,
    pub this_run_delay_ms_max: f64,
    /// The same for records this run got from the robot's spool (after an
    /// outage: includes the outage).
    pub this_run_recovered_delay_ms_p50: f64,
    pub this_run_recovered_delay_ms_p99: f64,
    pub this_run_recovered_delay_ms_max: f64,
}

/// The counts a store cannot rebuild from its records, kept in
/// `counters.json` across sink runs.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
struct Counters {
    duplicates: u64,
    invalid: u64,
    recovered: u64,
}

/// An episode not yet written as a part.
#[derive(Debug, Default)]
struct OpenEpisode {
    /// frame -> [sparse, dense]
    rows: BTreeMap<i64, [f32; 2]>,
    /// Sequence number of its END/ABORT event, once held.
    end_seq: Option<u64>,
}

pub(super) struct RobotState {
    pub(super) keys: TrainerKeys,
    pub(super) dir: PathBuf,
    log: LogWriter,
    lost_log: PathBuf,
    parts: PathBuf,
    pub(super) next: u64,
    ahead: BTreeSet<u64>,
    open: BTreeMap<i64, OpenEpisode>,
    /// Episodes written as parts, and their rows.
    written: BTreeMap<i64, u64>,
    has_dense: bool,
    model: String,
    head: Option<Heartbeat>,
    pub(super) summary: RobotSummary,
    counters: Counters,
    saved_counters: Counters,
    unacked: bool,
    /// Source times of records appended since the last sync, and whether
    /// they came live (true) or from the robot's spool.
    unsynced_delays: Vec<(i64, bool)>,
    /// Something new since the combined files were last written.
    pub(super) dirty: bool,
    pub(super) last_parquet: Instant,
    pub(super) query_in_flight: bool,
    pub(super) last_query: Option<Instant>,
    /// The current gap's first sequence number, and since when it has
    /// been outstanding.
    gap_since: Option<(u64, Instant)>,
    delays: Histogram<u64>,
    delays_recovered: Histogram<u64>,
}

fn io(what: impl std::fmt::Display, e: impl std::fmt::Display) -> TrainerError {
    TrainerError::Io(format!("{what}: {e}"))
}

impl RobotState {
    /// Opens (or creates) the robot's store and reads back what it holds.
    pub(super) fn open(out: &Path, robot: &str) -> Result<Self, TrainerError> {
        let keys = TrainerKeys::new(robot)?;
        let dir = out.join(robot);
        std::fs::create_dir_all(&dir)
            .map_err(|e| io(format!("cannot create {}", dir.display()), e))?;
        let parts = dir.join("parts");
        std::fs::create_dir_all(&parts)
            .map_err(|e| io(format!("cannot create {}", parts.display()), e))?;
        let (log, contents) = LogWriter::open(&dir.join("records.log"))?;
        if let Some((bytes, why)) = &contents.damaged_tail {
            tracing::warn!(
                "sink {robot}: cut {bytes} damaged bytes at the end of records.log ({why}); those records are asked for again"
            );
        }
        let counters: Counters = std::fs::read(dir.join("counters.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        // Episodes already written as parts (their rows counted from the files).
        let mut written = BTreeMap::new();
        for entry in std::fs::read_dir(&parts)
            .map_err(|e| io(parts.display(), e))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(index) = name
                .strip_prefix("episode_")
                .and_then(|n| n.strip_suffix(".parquet"))
                .and_then(|n| n.parse::<i64>().ok())
            else {
                // A part whose write did not finish.
                if name.ends_with(".tmp") {
                    let _ = std::fs::remove_file(entry.path());
                }
                continue;
            };
            written.insert(index, part_rows(&entry.path())?);
        }
        let mut state = RobotState {
            keys,
            lost_log: dir.join("lost.log"),
            parts,
            dir,
            log,
            next: 0,
            ahead: BTreeSet::new(),
            open: BTreeMap::new(),
            written,
            has_dense: false,
            model: String::new(),
            head: None,
            summary: RobotSummary {
                robot_id: robot.to_string(),
                ..Default::default()
            },
            counters,
            saved_counters: counters,
            unacked: false,
            unsynced_delays: Vec::new(),
            dirty: false,
            last_parquet: Instant::now(),
            query_in_flight: false,
            last_query: None,
            gap_since: None,
            delays: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .map_err(|e| io("histogram", e))?,
            delays_recovered: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .map_err(|e| io("histogram", e))?,
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
            // Only valid records are ever written.
            let Ok(decoded) = state.validate(&r) else {
                continue;
            };
            state.ahead.insert(r.seq);
            state.apply(&r, decoded);
            state.advance();
        }
        for (a, b) in lost_ranges {
            if state.next >= a && state.next < b {
                state.summary.lost += state.skip_to(b);
            }
        }
        state.close_complete_episodes()?;
        state.unacked = state.next > 0;
        state.dirty = state.next > 0;
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

    /// Whether a record can be kept: it decodes, names this robot and the
    /// episode its frame header says, and a Progress names a known head.
    fn validate(&self, r: &Record) -> Result<Decoded, String> {
        let decoded = r.decode().map_err(|e| e.to_string())?;
        if decoded.robot_id() != self.keys.robot_id() || decoded.episode_index() != r.episode_index
        {
            return Err(format!(
                "names robot {:?}, episode {} (its frame says episode {})",
                decoded.robot_id(),
                decoded.episode_index(),
                r.episode_index
            ));
        }
        if let Decoded::Progress(p) = &decoded {
            p.head.parse::<HeadKind>()?;
        }
        Ok(decoded)
    }

    /// Applies a held, valid record to the dataset.
    fn apply(&mut self, r: &Record, decoded: Decoded) {
        self.summary.records += 1;
        self.dirty = true;
        match decoded {
            Decoded::Progress(p) => {
                let column = match p.head.parse::<HeadKind>() {
                    Ok(HeadKind::Dense) => 1,
                    _ => 0,
                };
                self.has_dense |= column == 1;
                if self.written.contains_key(&p.episode_index) {
                    // Already in its part (a store opened again).
                    return;
                }
                let row = self
                    .open
                    .entry(p.episode_index)
                    .or_default()
                    .rows
                    .entry(p.frame_index)
                    .or_insert([f32::NAN; 2]);
                if row[column].is_nan() {
                    row[column] = p.progress;
                } else {
                    // Another record for the same frame and head: first wins.
                    self.counters.duplicates += 1;
                }
            }
            Decoded::Weight(_) => self.summary.weight_records += 1,
            Decoded::Policy(_) => self.summary.policy_events += 1,
            Decoded::Episode(ev) => {
                self.summary.episode_events += 1;
                if ev.closes() {
                    self.summary.episodes += 1;
                    if !self.written.contains_key(&ev.episode_index) {
                        self.open.entry(ev.episode_index).or_default().end_seq = Some(r.seq);
                    }
                }
            }
        }
    }

    /// Persists a record unless it is held already or is not valid.
    pub(super) fn receive(&mut self, r: Record, recovered: bool) -> Result<(), TrainerError> {
        if r.seq < self.next || self.ahead.contains(&r.seq) {
            self.counters.duplicates += 1;
            return Ok(());
        }
        let decoded = match self.validate(&r) {
            Ok(d) => d,
            Err(why) => {
                self.counters.invalid += 1;
                tracing::warn!(
                    "sink {}: record {} not kept: {why}",
                    self.keys.robot_id(),
                    r.seq
                );
                return Ok(());
            }
        };
        self.log.append(&r)?;
        self.ahead.insert(r.seq);
        self.advance();
        if recovered {
            self.counters.recovered += 1;
        }
        self.unsynced_delays.push((r.source_ns, !recovered));
        self.unacked = true;
        self.apply(&r, decoded);
        self.close_complete_episodes()
    }

    /// Writes a part for every episode whose records are all held (every
    /// sequence number up to its end event).
    fn close_complete_episodes(&mut self) -> Result<(), TrainerError> {
        let done: Vec<i64> = self
            .open
            .iter()
            .filter(|(_, e)| e.end_seq.is_some_and(|s| s < self.next))
            .map(|(k, _)| *k)
            .collect();
        for index in done {
            if let Some(ep) = self.open.remove(&index) {
                let rows = ep.rows.len() as u64;
                self.write_part(index, &ep)?;
                self.written.insert(index, rows);
            }
        }
        Ok(())
    }

    fn write_part(&self, index: i64, ep: &OpenEpisode) -> Result<(), TrainerError> {
        let path = self.parts.join(format!("episode_{index:012}.parquet"));
        let tmp = path.with_extension("parquet.tmp");
        progress_parquet::write(&tmp, &episode_rows(index, ep), "part")?;
        std::fs::rename(&tmp, &path).map_err(|e| io(path.display(), e))
    }

    /// Saves the counters a store cannot rebuild from its records.
    fn flush_counters(&mut self) -> Result<(), TrainerError> {
        if self.counters != self.saved_counters {
            let path = self.dir.join("counters.json");
            let tmp = self.dir.join(".counters.json.tmp");
            let bytes = serde_json::to_vec(&self.counters).map_err(|e| io("counters", e))?;
            std::fs::write(&tmp, bytes)
                .and_then(|_| std::fs::rename(&tmp, &path))
                .map_err(|e| io(path.display(), e))?;
            self.saved_counters = self.counters;
        }
        Ok(())
    }

    /// Syncs and acknowledges the gap-free prefix; saves the counters.
    pub(super) fn flush(&mut self, session: &Session) -> Result<(), TrainerError> {
        self.flush_counters()?;
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

    /// The gap to ask the robot's spool for, `[next, until)`, once it has
    /// been outstanding for `grace` (records in flight are not asked for):
    /// up to the first record held beyond it, or up to what the robot's
    /// heartbeat says it has made.
    pub(super) fn gap(&mut self, grace: std::time::Duration) -> Option<(u64, u64)> {
        let until = match self.ahead.iter().next() {
            Some(&held) => held,
            None => self.head.as_ref().map(|h| h.next_seq)?,
        };
        if until <= self.next {
            self.gap_since = None;
            return None;
        }
        let since = match self.gap_since {
            Some((from, since)) if from == self.next => since,
            _ => {
                let now = Instant::now();
                self.gap_since = Some((self.next, now));
                now
            }
        };
        (since.elapsed() >= grace).then_some((self.next, until))
    }

    /// The robot's heartbeat: records it no longer has are lost; a robot
    /// that does not know all that is held is acknowledged again.
    pub(super) fn on_head(&mut self, hb: Heartbeat) -> Result<(), TrainerError> {
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
                        .map_err(|e| io(self.lost_log.display(), e))?;
                    writeln!(f, "{from} {first}").map_err(|e| io(self.lost_log.display(), e))?;
                    let _ = f.sync_data();
                }
                self.unacked = true;
                self.close_complete_episodes()?;
            }
        }
        if self.next > 0 && hb.acked_through.is_none_or(|a| a + 1 < self.next) {
            self.unacked = true;
        }
        if self.model.is_empty() || self.model != hb.model {
            self.model = hb.model.clone();
        }
        self.summary.robot_spool_dropped = hb.dropped;
        self.summary.robot_spool_rejected = hb.rejected;
        if hb.unrecorded > self.summary.robot_unrecorded {
            tracing::warn!(
                "sink {}: the robot dropped {} outputs before numbering them (its output queue was full; see its /diagnostics)",
                self.keys.robot_id(),
                hb.unrecorded
            );
        }
        self.summary.robot_unrecorded = hb.unrecorded;
        self.head = Some(hb);
        Ok(())
    }

    fn progress_rows(&self) -> u64 {
        self.written.values().sum::<u64>()
            + self.open.values().map(|e| e.rows.len() as u64).sum::<u64>()
    }

    /// Writes `sarm_progress.parquet` and `sarm_weights.parquet` (each
    /// aside, then moved into place) from the parts and the open episodes,
    /// in episode order, streaming one episode at a time.
    pub(super) fn write_parquet(&mut self, cfg: &SinkConfig) -> Result<(), TrainerError> {
        let mut episodes: Vec<(i64, EpisodeSource)> = self
            .written
            .keys()
            .map(|&i| (i, EpisodeSource::Part))
            .chain(self.open.keys().map(|&i| (i, EpisodeSource::Open)))
            .collect();
        episodes.sort_by_key(|e| e.0);
        if self.progress_rows() == 0 {
            return Ok(());
        }
        let model = if self.model.is_empty() {
            "unknown".to_string()
        } else {
            self.model.clone()
        };
        let read = |index: i64, source: EpisodeSource| -> Result<Vec<ProgressRow>, TrainerError> {
            match source {
                EpisodeSource::Part => {
                    read_part(&self.parts.join(format!("episode_{index:012}.parquet")))
                }
                EpisodeSource::Open => Ok(self
                    .open
                    .get(&index)
                    .map(|e| episode_rows(index, e))
                    .unwrap_or_default()),
            }
        };

        // sarm_progress.parquet, the global index in episode order.
        let path = self.dir.join("sarm_progress.parquet");
        let tmp = self.dir.join(".sarm_progress.parquet.tmp");
        let schema = progress_parquet::progress_schema(self.has_dense, &model);
        let mut writer = parquet_writer(&tmp, schema.clone())?;
        let mut index = 0i64;
        for &(e, source) in &episodes {
            let mut rows = read(e, source)?;
            for r in rows.iter_mut() {
                r.index = index;
                index += 1;
            }
            let batch = progress_parquet::progress_batch(&schema, &rows)
                .map_err(|e| io(tmp.display(), e))?;
            writer.write(&batch).map_err(|e| io(tmp.display(), e))?;
        }
        writer.close().map_err(|e| io(tmp.display(), e))?;
        rename(&tmp, &path)?;

        // sarm_weights.parquet: LeRobot's dataset-wide rule over the chosen
        // head; the statistics (known once the first passes are done) go in
        // its metadata.
        let column = usize::from(cfg.head == HeadKind::Dense);
        let wtmp = self.dir.join(".sarm_weights.parquet.tmp");
        let wpath = self.dir.join("sarm_weights.parquet");
        // The episode being weighted (rows, first global index), shared by
        // the reader and the writer of the streamed weights.
        let current: RefCell<(Vec<ProgressRow>, i64)> = RefCell::new((Vec::new(), 0));
        let mut wwriter: Option<(ArrowWriter<File>, Arc<arrow_schema::Schema>)> = None;
        let mut wrows = Vec::new();
        dataset_weights_streamed(
            |f| {
                let mut first = 0i64;
                for &(e, source) in &episodes {
                    let rows = read(e, source)?;
                    let len = rows
                        .iter()
                        .map(|r| r.frame_index.max(0) + 1)
                        .max()
                        .unwrap_or(0);
                    let mut series = vec![f32::NAN; len as usize];
                    for r in &rows {
                        series[r.frame_index.max(0) as usize] = if column == 1 {
                            r.progress_dense.unwrap_or(f32::NAN)
                        } else {
                            r.progress_sparse
                        };
                    }
                    let n = rows.len() as i64;
                    *current.borrow_mut() = (rows, first);
                    f(&series);
                    first += n;
                }
                Ok::<(), TrainerError>(())
            },
            &cfg.rabc,
            |stats, weights| {
                let cur = current.borrow();
                let (rows, first) = (&cur.0, cur.1);
                wrows.clear();
                for (k, r) in rows.iter().enumerate() {
                    if let Some(w) = weights.get(r.frame_index.max(0) as usize) {
                        wrows.push(WeightRow {
                            index: first + k as i64,
                            episode_index: r.episode_index,
                            frame_index: r.frame_index,
                            delta: w.delta,
                            weight: w.weight,
                        });
                    }
                }
                if wwriter.is_none() {
                    let meta = weights_metadata(&model, cfg, stats);
                    let schema = progress_parquet::weights_schema(meta);
                    wwriter = Some((parquet_writer(&wtmp, schema.clone())?, schema));
                }
                if let Some((w, schema)) = wwriter.as_mut() {
                    let batch = progress_parquet::weights_batch(schema, &wrows)
                        .map_err(|e| io(wtmp.display(), e))?;
                    w.write(&batch).map_err(|e| io(wtmp.display(), e))?;
                }
                Ok(())
            },
        )?;
        if let Some((w, _)) = wwriter {
            w.close().map_err(|e| io(wtmp.display(), e))?;
            rename(&wtmp, &wpath)?;
        }
        self.dirty = false;
        self.last_parquet = Instant::now();
        Ok(())
    }

    /// The store's figures (see [`RobotSummary`]).
    pub(super) fn finish_summary(&mut self) -> RobotSummary {
        let ms = |h: &Histogram<u64>| {
            if h.is_empty() {
                return (0.0, 0.0, 0.0);
            }
            let q = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
            (q(0.5), q(0.99), h.max() as f64 / 1000.0)
        };
        let rows = self.progress_rows();
        let s = &mut self.summary;
        s.next_seq = self.next;
        s.progress_rows = rows;
        s.duplicates = self.counters.duplicates;
        s.invalid = self.counters.invalid;
        s.recovered = self.counters.recovered;
        let held = self.ahead.iter().next_back().map_or(self.next, |&s| s + 1);
        s.robot_next_seq = Some(self.head.as_ref().map_or(held, |h| h.next_seq.max(held)));
        (
            s.this_run_delay_ms_p50,
            s.this_run_delay_ms_p99,
            s.this_run_delay_ms_max,
        ) = ms(&self.delays);
        (
            s.this_run_recovered_delay_ms_p50,
            s.this_run_recovered_delay_ms_p99,
            s.this_run_recovered_delay_ms_max,
        ) = ms(&self.delays_recovered);
        self.summary.clone()
    }
}

fn weights_metadata(
    model: &str,
    cfg: &SinkConfig,
    stats: &sarm_runtime::rabc::DeltaStats,
) -> HashMap<String, String> {
    HashMap::from([
        ("reward_model_path".to_string(), model.to_string()),
        ("rabc_head_mode".to_string(), cfg.head.to_string()),
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
    ])
}

/// Where an episode's rows are.
#[derive(Debug, Clone, Copy)]
enum EpisodeSource {
    Part,
    Open,
}

fn episode_rows(index: i64, ep: &OpenEpisode) -> Vec<ProgressRow> {
    ep.rows
        .iter()
        .map(|(&frame, v)| ProgressRow {
            index: 0,
            episode_index: index,
            frame_index: frame,
            progress_sparse: v[0],
            progress_dense: Some(v[1]),
        })
        .collect()
}

fn parquet_writer(
    path: &Path,
    schema: Arc<arrow_schema::Schema>,
) -> Result<ArrowWriter<File>, TrainerError> {
    let f = File::create(path).map_err(|e| io(path.display(), e))?;
    ArrowWriter::try_new(f, schema, None).map_err(|e| io(path.display(), e))
}

/// Rows in a part file (from its footer).
fn part_rows(path: &Path) -> Result<u64, TrainerError> {
    let f = File::open(path).map_err(|e| io(path.display(), e))?;
    let b = ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| io(path.display(), e))?;
    Ok(b.metadata().file_metadata().num_rows().max(0) as u64)
}

/// A part's rows.
fn read_part(path: &Path) -> Result<Vec<ProgressRow>, TrainerError> {
    let f = File::open(path).map_err(|e| io(path.display(), e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(f)
        .and_then(|b| b.build())
        .map_err(|e| io(path.display(), e))?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| io(path.display(), e))?;
        let ints = |name: &str| -> Result<Int64Array, TrainerError> {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned())
                .ok_or_else(|| io(path.display(), format!("no int64 column {name}")))
        };
        let floats = |name: &str| -> Option<Float32Array> {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<Float32Array>().cloned())
        };
        let (episode, frame) = (ints("episode_index")?, ints("frame_index")?);
        let sparse = floats("progress_sparse")
            .ok_or_else(|| io(path.display(), "no float column progress_sparse"))?;
        let dense = floats("progress_dense");
        for i in 0..batch.num_rows() {
            rows.push(ProgressRow {
                index: 0,
                episode_index: episode.value(i),
                frame_index: frame.value(i),
                progress_sparse: sparse.value(i),
                progress_dense: dense.as_ref().map(|d| d.value(i)),
            });
        }
    }
    Ok(rows)
}

fn rename(from: &Path, to: &Path) -> Result<(), TrainerError> {
    std::fs::rename(from, to).map_err(|e| {
        io(
            format!("cannot move {} to {}", from.display(), to.display()),
            e,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{EpisodeEvent, EventKind, Progress, RosMessage};
    use crate::trainer::record::RecordKind;

    fn hb(next_seq: u64, first_seq: Option<u64>) -> Heartbeat {
        Heartbeat {
            next_seq,
            first_seq,
            acked_through: None,
            dropped: 0,
            rejected: 0,
            unrecorded: 0,
            spool_bytes: 0,
            model: "m".into(),
        }
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sarm-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn event(seq: u64, episode: i64, kind: EventKind) -> Record {
        Record {
            seq,
            kind: RecordKind::Episode,
            episode_index: episode,
            source_ns: 0,
            cdr: EpisodeEvent {
                robot_id: "r".into(),
                episode_index: episode,
                event: kind.code(),
                ..Default::default()
            }
            .to_cdr()
            .unwrap(),
        }
    }

    fn progress(seq: u64, episode: i64, frame: i64, value: f32) -> Record {
        Record {
            seq,
            kind: RecordKind::Progress,
            episode_index: episode,
            source_ns: 0,
            cdr: Progress {
                robot_id: "r".into(),
                episode_index: episode,
                frame_index: frame,
                head: "sparse".into(),
                progress: value,
                ..Default::default()
            }
            .to_cdr()
            .unwrap(),
        }
    }

    #[test]
    fn records_the_robot_no_longer_has_are_counted_lost_once_across_restarts() {
        let out = tmp("lost");
        let rec = |seq| event(seq, 0, EventKind::Start);
        let mut s = RobotState::open(&out, "r").unwrap();
        s.receive(rec(0), false).unwrap();
        s.receive(rec(12), false).unwrap();
        assert_eq!(s.next, 1);
        // The robot's spool starts at 10: 1..10 are gone, 10 and 11 can come.
        s.on_head(hb(13, Some(10))).unwrap();
        assert_eq!((s.next, s.summary.lost), (10, 9));
        s.receive(rec(10), true).unwrap();
        s.receive(rec(11), true).unwrap();
        assert_eq!(s.next, 13);
        s.receive(rec(11), true).unwrap();
        assert_eq!(s.counters.duplicates, 1);
        s.flush_counters().unwrap();
        drop(s);
        let mut s = RobotState::open(&out, "r").unwrap();
        assert_eq!((s.next, s.summary.lost, s.summary.records), (13, 9, 4));
        // Every count is cumulative across sink runs.
        let summary = s.finish_summary();
        assert_eq!((summary.duplicates, summary.recovered), (1, 2));
        std::fs::remove_dir_all(&out).unwrap();
    }

    #[test]
    fn outputs_the_robot_dropped_before_numbering_show_in_the_summary() {
        let out = tmp("unrec");
        let mut s = RobotState::open(&out, "r").unwrap();
        // An older robot's heartbeat has no such field.
        let old = br#"{"next_seq":0,"first_seq":null,"dropped":0,"rejected":0,"spool_bytes":0,"model":"m"}"#;
        s.on_head(Heartbeat::from_bytes(old).unwrap()).unwrap();
        assert_eq!(s.summary.robot_unrecorded, 0);
        s.on_head(Heartbeat {
            unrecorded: 7,
            ..hb(0, None)
        })
        .unwrap();
        assert_eq!((s.summary.robot_unrecorded, s.summary.lost), (7, 0));
        std::fs::remove_dir_all(&out).unwrap();
    }

    /// Fault found by reading the code: a spool reply whose frame checksum
    /// was right but whose message did not decode was stored first, took
    /// its sequence number, and the real record was then dropped as a
    /// duplicate.
    #[test]
    fn a_record_that_does_not_decode_takes_no_sequence_number() {
        let out = tmp("invalid");
        let mut s = RobotState::open(&out, "r").unwrap();
        s.receive(event(0, 0, EventKind::Start), false).unwrap();
        let mut bad = progress(1, 0, 0, 0.5);
        bad.cdr.truncate(6);
        s.receive(bad, true).unwrap();
        let mut other_robot = progress(1, 0, 0, 0.5);
        other_robot.cdr = Progress {
            robot_id: "someone-else".into(),
            ..Default::default()
        }
        .to_cdr()
        .unwrap();
        s.receive(other_robot, true).unwrap();
        assert_eq!((s.next, s.counters.invalid), (1, 2));
        s.receive(progress(1, 0, 0, 0.5), false).unwrap();
        assert_eq!((s.next, s.counters.duplicates), (2, 0));
        drop(s);
        // Nothing bad was written.
        let log = crate::trainer::log::read_log(&out.join("r/records.log")).unwrap();
        assert_eq!(log.records.len(), 2);
        std::fs::remove_dir_all(&out).unwrap();
    }

    /// Fault found by testing: the sink acknowledged only when it stored
    /// something new, so a lost final acknowledgement (or a restarted
    /// robot) was never acknowledged again.
    #[test]
    fn a_robot_that_does_not_know_what_is_held_is_acknowledged_again() {
        let out = tmp("reack");
        let mut s = RobotState::open(&out, "r").unwrap();
        s.receive(event(0, 0, EventKind::Start), false).unwrap();
        s.unacked = false; // as after a flush whose put was lost
        s.on_head(Heartbeat {
            acked_through: Some(0),
            ..hb(1, Some(0))
        })
        .unwrap();
        assert!(!s.unacked, "the robot knows");
        s.on_head(hb(1, Some(0))).unwrap();
        assert!(
            s.unacked,
            "a restarted robot knows nothing: acknowledged again"
        );
        std::fs::remove_dir_all(&out).unwrap();
    }

    /// Fault found by testing: gaps were asked for from the first missing
    /// record to the end, re-sending records that also came live.
    #[test]
    fn only_a_gap_outstanding_for_the_grace_period_is_asked_for() {
        let out = tmp("gap");
        let mut s = RobotState::open(&out, "r").unwrap();
        let grace = std::time::Duration::from_millis(30);
        s.receive(event(0, 0, EventKind::Start), false).unwrap();
        assert_eq!(s.gap(grace), None);
        s.receive(progress(5, 0, 4, 0.1), false).unwrap();
        s.receive(progress(6, 0, 5, 0.1), false).unwrap();
        assert_eq!(s.gap(grace), None, "not yet: records 1..5 may be in flight");
        std::thread::sleep(grace);
        assert_eq!(
            s.gap(grace),
            Some((1, 5)),
            "the hole only, not what is held"
        );
        for seq in 1..5 {
            s.receive(progress(seq, 0, seq as i64 - 1, 0.1), true)
                .unwrap();
        }
        s.on_head(hb(9, Some(0))).unwrap();
        assert_eq!(s.gap(grace), None, "a new gap waits again");
        std::thread::sleep(grace);
        assert_eq!(s.gap(grace), Some((7, 9)));
        std::fs::remove_dir_all(&out).unwrap();
    }

    /// An episode becomes a part once every record up to its end is held;
    /// the combined files are streamed from the parts and what is open.
    #[test]
    fn ended_episodes_become_parts_and_stay_parts_across_restarts() {
        let out = tmp("parts");
        let mut s = RobotState::open(&out, "r").unwrap();
        s.receive(event(0, 0, EventKind::Start), false).unwrap();
        s.receive(progress(1, 0, 0, 0.25), false).unwrap();
        // The end arrives before record 2: not complete yet.
        s.receive(event(3, 0, EventKind::End), false).unwrap();
        assert!(s.written.is_empty());
        s.receive(progress(2, 0, 1, 0.5), true).unwrap();
        assert_eq!(s.written.get(&0), Some(&2), "two rows in the part");
        assert!(s.open.is_empty(), "nothing of a written episode in memory");
        s.receive(event(4, 1, EventKind::Start), false).unwrap();
        s.receive(progress(5, 1, 0, 0.75), false).unwrap();
        s.write_parquet(&SinkConfig::default()).unwrap();
        drop(s);
        let s = RobotState::open(&out, "r").unwrap();
        assert_eq!(s.written.get(&0), Some(&2));
        assert_eq!(s.open.get(&1).map(|e| e.rows.len()), Some(1));
        let rows = read_part(&out.join("r/sarm_progress.parquet")).unwrap();
        let got: Vec<(i64, i64, f32)> = rows
            .iter()
            .map(|r| (r.episode_index, r.frame_index, r.progress_sparse))
            .collect();
        assert_eq!(got, [(0, 0, 0.25), (0, 1, 0.5), (1, 0, 0.75)]);
        std::fs::remove_dir_all(&out).unwrap();
    }
}
