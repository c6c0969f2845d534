//! One robot's store at the sink: its `records.log`, which sequence
//! numbers are held, what was lost, the dataset built from the records,
//! and the parquet files written from it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use hdrhistogram::Histogram;
use sarm_runtime::rabc::dataset_weights;
use serde::Serialize;
use zenoh::{Session, Wait};

use super::SinkConfig;
use crate::progress_parquet::{self, ProgressRow, WeightRow};
use crate::trainer::log::LogWriter;
use crate::trainer::protocol::{Ack, Heartbeat};
use crate::trainer::record::{Decoded, Record};
use crate::trainer::TrainerError;
use crate::zenoh_link::{now_ns, TrainerKeys};

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
    /// Outputs the robot dropped before numbering them (output queue full).
    pub robot_unrecorded: u64,
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

pub(super) struct RobotState {
    pub(super) keys: TrainerKeys,
    pub(super) dir: PathBuf,
    log: LogWriter,
    lost_log: PathBuf,
    pub(super) next: u64,
    ahead: BTreeSet<u64>,
    /// (episode, frame) -> [sparse, dense]
    progress: BTreeMap<(i64, i64), [f32; 2]>,
    has_dense: bool,
    model: String,
    head: Option<Heartbeat>,
    pub(super) summary: RobotSummary,
    unacked: bool,
    /// Source times of records appended since the last sync, and whether
    /// they came live (true) or from the robot's spool.
    unsynced_delays: Vec<(i64, bool)>,
    pub(super) parquet_dirty: bool,
    pub(super) episode_ended: bool,
    pub(super) last_parquet: Instant,
    pub(super) query_in_flight: bool,
    pub(super) last_query: Option<Instant>,
    delays: Histogram<u64>,
    delays_recovered: Histogram<u64>,
}

impl RobotState {
    /// Opens (or creates) the robot's store and reads back what it holds.
    pub(super) fn open(out: &Path, robot: &str) -> Result<Self, TrainerError> {
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
    pub(super) fn receive(&mut self, r: Record, recovered: bool) -> Result<(), TrainerError> {
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
    pub(super) fn flush(&mut self, session: &Session) -> Result<(), TrainerError> {
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
    pub(super) fn wanted_through(&self) -> Option<u64> {
        let seen = self.ahead.iter().next_back().map(|s| s + 1);
        let told = self.head.as_ref().map(|h| h.next_seq);
        let top = seen.max(told)?;
        (top > self.next).then_some(top)
    }

    /// The robot's heartbeat: records it no longer has are lost.
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
        if hb.unrecorded > self.summary.robot_unrecorded {
            tracing::warn!(
                "sink {}: the robot dropped {} outputs before numbering them (its output queue was full; see its /diagnostics)",
                self.keys.robot_id(),
                hb.unrecorded
            );
        }
        self.summary.robot_unrecorded = hb.unrecorded;
        self.summary.robot_next_seq = Some(hb.next_seq);
        self.head = Some(hb);
        Ok(())
    }

    /// Rewrites the robot's parquet files (atomically).
    pub(super) fn write_parquet(&mut self, cfg: &SinkConfig) -> Result<(), TrainerError> {
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

    pub(super) fn finish_summary(&mut self) -> RobotSummary {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trainer::record::RecordKind;

    fn hb(next_seq: u64, first_seq: Option<u64>) -> Heartbeat {
        Heartbeat {
            next_seq,
            first_seq,
            dropped: 0,
            rejected: 0,
            unrecorded: 0,
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

    #[test]
    fn outputs_the_robot_dropped_before_numbering_show_in_the_summary() {
        let out = std::env::temp_dir().join(format!("sarm-sink-unrec-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
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
}
