//! The robot's bounded on-disk spool: every record goes here before it is
//! published, and stays until the sink acknowledges it.
//!
//! Segments are log files named by their first sequence number. A record is
//! appended with one `write` (a killed process loses nothing); segments
//! whose records are all acknowledged are deleted. A small state file
//! (`state.json`, replaced atomically) keeps what the sink acknowledged
//! and where numbering carries on, so a restart neither counts
//! acknowledged records as pending nor needs a segment kept for it. When
//! the spool is full the configured policy decides, and the loss is
//! counted, logged and announced to the sink (its heartbeat carries the
//! first sequence number still held).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use super::log::{read_log, LogError, LogWriter};
use super::record::Record;

/// What to do with a record when the spool is full of unacknowledged ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Delete the oldest segment (its records are lost; the newest kept).
    DropOldest,
    /// Keep the spool as it is; the new record is only published live.
    DropNewest,
}

impl std::str::FromStr for WhenFull {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "drop_oldest" => Ok(WhenFull::DropOldest),
            "drop_newest" => Ok(WhenFull::DropNewest),
            _ => Err(format!("expected drop_oldest or drop_newest, found {s:?}")),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    /// Upper bound of the spool on disk.
    pub max_bytes: u64,
    pub when_full: WhenFull,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool directory {path}: {message}")]
    Dir { path: PathBuf, message: String },
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("trainer.spool.max_mb must be at least 1 (found {0} bytes)")]
    TooSmall(u64),
}

/// Where a restarted robot carries on.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Recovered {
    /// Next sequence number (one past the last spooled).
    pub next_seq: u64,
    /// One past the highest episode index spooled.
    pub next_episode: i64,
    /// Unacknowledged records found.
    pub records: u64,
    /// The last sequence number the sink acknowledged, as far as known.
    pub acked_through: Option<u64>,
    /// Bytes of torn or damaged tails cut.
    pub damaged_bytes: u64,
}

/// `state.json`: what outlives the segments.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct State {
    acked_through: Option<u64>,
    next_seq: u64,
    next_episode: i64,
}

/// What happened on an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    Stored,
    /// Stored after dropping this many older, unacknowledged records.
    StoredDroppingOldest(u64),
    /// Not stored: the spool is full (`DropNewest`).
    Rejected,
}

#[derive(Debug)]
struct Segment {
    first_seq: u64,
    /// Last sequence number in it (None while empty).
    last_seq: Option<u64>,
    records: u64,
    bytes: u64,
    path: PathBuf,
}

#[derive(Debug)]
pub struct Spool {
    /// Holds the folder for this process (an OS lock, gone when it dies).
    _lock: std::fs::File,
    cfg: SpoolConfig,
    segments: VecDeque<Segment>,
    writer: Option<LogWriter>,
    segment_bytes: u64,
    acked_through: Option<u64>,
    /// Where numbering carries on (kept in `state.json` with the ack).
    next_seq: u64,
    next_episode: i64,
    /// `acked_through` as last written to `state.json`.
    saved_ack: Option<u64>,
    dropped: u64,
    rejected: u64,
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.spool"))
}

impl Spool {
    /// Opens the spool, reading back what a previous run left.
    pub fn open(cfg: SpoolConfig) -> Result<(Self, Recovered), SpoolError> {
        if cfg.max_bytes < 1 << 20 {
            return Err(SpoolError::TooSmall(cfg.max_bytes));
        }
        let dir_err = |e: std::io::Error| SpoolError::Dir {
            path: cfg.dir.clone(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(&cfg.dir).map_err(dir_err)?;
        let lock = std::fs::File::create(cfg.dir.join(".lock")).map_err(dir_err)?;
        lock.try_lock().map_err(|_| SpoolError::Dir {
            path: cfg.dir.clone(),
            message: "in use by another sarm process (one spool per robot process)".into(),
        })?;
        let mut firsts: Vec<u64> = std::fs::read_dir(&cfg.dir)
            .map_err(dir_err)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".spool")?.parse::<u64>().ok()
            })
            .collect();
        firsts.sort_unstable();
        let state_path = cfg.dir.join("state.json");
        let state: State = match std::fs::read(&state_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(
                    "spool {}: unreadable ({e}); carrying on from the segments",
                    state_path.display()
                );
                State::default()
            }),
            Err(_) => State::default(),
        };
        let mut rec = Recovered {
            next_seq: state.next_seq,
            next_episode: state.next_episode,
            ..Recovered::default()
        };
        // Segments are only deleted once acknowledged (or dropped when
        // full and reported): what precedes the first one is done.
        let mut acked_through = state.acked_through;
        if let Some(&first) = firsts.first() {
            if first > 0 && acked_through.is_none_or(|a| a + 1 < first) {
                acked_through = Some(first - 1);
            }
        }
        let mut segments = VecDeque::new();
        let n = firsts.len();
        let mut writer = None;
        for (i, first) in firsts.into_iter().enumerate() {
            let path = segment_path(&cfg.dir, first);
            let contents = if i + 1 == n {
                // The newest is appended to: open it (cuts a torn tail).
                let (w, c) = LogWriter::open(&path)?;
                writer = Some(w);
                c
            } else {
                read_log(&path)?
            };
            if let Some((bytes, why)) = &contents.damaged_tail {
                tracing::warn!(
                    "spool {}: cut {bytes} damaged bytes at its end ({why})",
                    path.display()
                );
                rec.damaged_bytes += bytes;
            }
            let last_seq = contents.records.iter().map(|r| r.seq).max();
            for r in &contents.records {
                rec.next_seq = rec.next_seq.max(r.seq + 1);
                rec.next_episode = rec.next_episode.max(r.episode_index + 1);
                if acked_through.is_none_or(|a| r.seq > a) {
                    rec.records += 1;
                }
            }
            segments.push_back(Segment {
                first_seq: first,
                last_seq,
                records: contents.records.len() as u64,
                bytes: contents.valid_bytes,
                path,
            });
        }
        rec.acked_through = acked_through;
        let segment_bytes = (cfg.max_bytes / 8).max(64 << 10);
        let mut spool = Spool {
            _lock: lock,
            cfg,
            segments,
            writer,
            segment_bytes,
            acked_through,
            next_seq: rec.next_seq,
            next_episode: rec.next_episode,
            saved_ack: state.acked_through,
            dropped: 0,
            rejected: 0,
        };
        // Segments acknowledged before a crash go now.
        if let Some(a) = acked_through {
            spool.ack(a);
        }
        Ok((spool, rec))
    }

    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Records held (acknowledged ones in the newest segment included).
    pub fn records(&self) -> u64 {
        self.segments.iter().map(|s| s.records).sum()
    }

    /// The first sequence number the spool can still replay.
    pub fn first_seq(&self) -> Option<u64> {
        self.segments
            .iter()
            .find(|s| s.last_seq.is_some())
            .map(|s| s.first_seq)
    }

    /// Records lost to a full spool (dropped oldest, or rejected newest).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    pub fn append(&mut self, record: &Record) -> Result<Appended, SpoolError> {
        let size = record.to_frame().len() as u64;
        let mut result = Appended::Stored;
        while self.bytes() + size > self.cfg.max_bytes && self.segments.len() > 1 {
            match self.cfg.when_full {
                WhenFull::DropNewest => {
                    self.rejected += 1;
                    return Ok(Appended::Rejected);
                }
                WhenFull::DropOldest => {
                    if let Some(s) = self.segments.pop_front() {
                        let lost = self.unacked_in(&s);
                        self.dropped += lost;
                        if let Appended::StoredDroppingOldest(n) = &mut result {
                            *n += lost;
                        } else {
                            result = Appended::StoredDroppingOldest(lost);
                        }
                        let _ = std::fs::remove_file(&s.path);
                    }
                }
            }
        }
        let rotate = match self.segments.back() {
            None => true,
            Some(s) => s.bytes + size > self.segment_bytes && s.records > 0,
        };
        if rotate {
            let path = segment_path(&self.cfg.dir, record.seq);
            let (w, _) = LogWriter::open(&path)?;
            self.writer = Some(w);
            self.segments.push_back(Segment {
                first_seq: record.seq,
                last_seq: None,
                records: 0,
                bytes: 0,
                path,
            });
        }
        let (Some(w), Some(seg)) = (self.writer.as_mut(), self.segments.back_mut()) else {
            return Err(SpoolError::Dir {
                path: self.cfg.dir.clone(),
                message: "no open segment".into(),
            });
        };
        seg.bytes += w.append(record)?;
        seg.records += 1;
        seg.last_seq = Some(record.seq);
        self.next_seq = self.next_seq.max(record.seq + 1);
        self.next_episode = self.next_episode.max(record.episode_index + 1);
        Ok(result)
    }

    fn unacked_in(&self, s: &Segment) -> u64 {
        match (self.acked_through, s.last_seq) {
            (_, None) => 0,
            (Some(a), Some(last)) if a >= last => 0,
            (Some(a), Some(_)) if a >= s.first_seq => s.records.saturating_sub(a - s.first_seq + 1),
            _ => s.records,
        }
    }

    /// Flushes appended records to stable storage.
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        if let Some(w) = self.writer.as_mut() {
            w.sync()?;
        }
        Ok(())
    }

    /// The sink holds every record up to `seq`: the segments holding only
    /// such records go (the newest too: `state.json` keeps where
    /// numbering carries on).
    pub fn ack(&mut self, seq: u64) {
        let seq = seq.min(self.next_seq.saturating_sub(1));
        self.acked_through = Some(self.acked_through.map_or(seq, |a| a.max(seq)));
        if self.saved_ack != self.acked_through {
            match self.save_state() {
                Ok(()) => self.saved_ack = self.acked_through,
                // Segments stay until the state is safe: the next ack tries again.
                Err(e) => {
                    tracing::warn!("spool: {e}");
                    return;
                }
            }
        }
        while let Some(s) = self.segments.front() {
            if s.last_seq.is_some_and(|l| l > seq) {
                break;
            }
            if self.segments.len() == 1 {
                // The open segment: the next record starts a new one.
                self.writer = None;
            }
            if let Some(s) = self.segments.pop_front() {
                let _ = std::fs::remove_file(&s.path);
            }
        }
    }

    fn save_state(&self) -> Result<(), SpoolError> {
        let state = State {
            acked_through: self.acked_through,
            next_seq: self.next_seq,
            next_episode: self.next_episode,
        };
        let path = self.cfg.dir.join("state.json");
        let tmp = self.cfg.dir.join(".state.json.tmp");
        let err = |e: std::io::Error| SpoolError::Dir {
            path: path.clone(),
            message: e.to_string(),
        };
        let bytes = serde_json::to_vec(&state).map_err(|e| SpoolError::Dir {
            path: path.clone(),
            message: e.to_string(),
        })?;
        std::fs::write(&tmp, bytes).map_err(err)?;
        std::fs::rename(&tmp, &path).map_err(err)
    }

    pub fn acked_through(&self) -> Option<u64> {
        self.acked_through
    }

    /// Up to `limit` records from `from` on (before `until`, if given), in order.
    pub fn read_range(
        &self,
        from: u64,
        until: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Record>, SpoolError> {
        let mut out = Vec::new();
        for s in &self.segments {
            if s.last_seq.is_none_or(|l| l < from) {
                continue;
            }
            if until.is_some_and(|u| s.first_seq >= u) {
                break;
            }
            let c = read_log(&s.path)?;
            for r in c.records {
                if r.seq >= from && until.is_none_or(|u| r.seq < u) {
                    out.push(r);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trainer::record::RecordKind;

    fn rec(seq: u64, episode: i64) -> Record {
        Record {
            seq,
            kind: RecordKind::Progress,
            episode_index: episode,
            source_ns: 0,
            cdr: vec![0u8; 1000],
        }
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sarm-spool-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn recovers_seq_and_episode_and_trims_on_ack() {
        let dir = tmp("recover");
        let cfg = SpoolConfig {
            dir: dir.clone(),
            max_bytes: 1 << 20,
            when_full: WhenFull::DropOldest,
        };
        let (mut s, r) = Spool::open(cfg.clone()).unwrap();
        assert_eq!(r, Recovered::default());
        for seq in 0..300 {
            assert_eq!(
                s.append(&rec(seq, seq as i64 / 100)).unwrap(),
                Appended::Stored
            );
        }
        assert!(s.segments.len() > 1);
        let got = s.read_range(250, None, 10).unwrap();
        assert_eq!(
            got.iter().map(|r| r.seq).collect::<Vec<_>>(),
            (250..260).collect::<Vec<_>>()
        );
        // Only the gap is read back.
        let got = s.read_range(100, Some(103), 10).unwrap();
        assert_eq!(
            got.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [100, 101, 102]
        );
        s.ack(149);
        drop(s);
        // A restart carries on, counting only what is not acknowledged.
        let (mut s, r) = Spool::open(cfg.clone()).unwrap();
        assert_eq!((r.next_seq, r.next_episode), (300, 3));
        assert_eq!((r.records, r.acked_through), (150, Some(149)));
        assert!(s.bytes() <= 1 << 20);
        s.ack(299);
        assert_eq!(s.segments.len(), 0, "every acknowledged segment deleted");
        assert_eq!(s.first_seq(), None);
        drop(s);
        let (mut s, r) = Spool::open(cfg.clone()).unwrap();
        assert_eq!((r.next_seq, r.next_episode, r.records), (300, 3, 0));
        assert_eq!(s.append(&rec(300, 3)).unwrap(), Appended::Stored);
        assert_eq!(s.first_seq(), Some(300));
        drop(s);
        let (_, r) = Spool::open(cfg).unwrap();
        assert_eq!((r.next_seq, r.records), (301, 1));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn full_spool_follows_the_policy_and_counts() {
        for policy in [WhenFull::DropOldest, WhenFull::DropNewest] {
            let dir = tmp(&format!("{policy:?}"));
            let cfg = SpoolConfig {
                dir: dir.clone(),
                max_bytes: 1 << 20,
                when_full: policy,
            };
            let (mut s, _) = Spool::open(cfg).unwrap();
            let mut lost = 0;
            for seq in 0..3000 {
                match s.append(&rec(seq, 0)).unwrap() {
                    Appended::Stored => {}
                    Appended::StoredDroppingOldest(n) => lost += n,
                    Appended::Rejected => lost += 1,
                }
                assert!(s.bytes() <= 1 << 20, "{policy:?}: spool over its bound");
            }
            assert!(lost > 0);
            assert_eq!(lost, s.dropped() + s.rejected(), "{policy:?}");
            assert_eq!(
                s.records() + lost,
                3000,
                "{policy:?}: every record stored or counted"
            );
            match policy {
                WhenFull::DropOldest => assert!(s.first_seq() > Some(0)),
                WhenFull::DropNewest => assert_eq!(s.first_seq(), Some(0)),
            }
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}
