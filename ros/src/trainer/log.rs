//! An append-only file of record frames: the robot's spool segments and the
//! sink's store are both made of it.
//!
//! Appends are written straight to the file (a killed process loses
//! nothing it appended); `sync` makes them durable across a power cut.
//! Opening a log reads it back and cuts a torn or damaged tail, saying how
//! many bytes went.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::record::Record;

#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct LogError {
    pub path: PathBuf,
    pub message: String,
}

impl LogError {
    fn io(path: &Path, what: &str, e: std::io::Error) -> Self {
        LogError {
            path: path.to_path_buf(),
            message: format!("{what}: {e}"),
        }
    }
}

/// What reading a log found.
#[derive(Debug, Default)]
pub struct LogContents {
    pub records: Vec<Record>,
    /// Length of the valid prefix.
    pub valid_bytes: u64,
    /// Bytes after it that did not read as a record (torn or damaged), and why.
    pub damaged_tail: Option<(u64, String)>,
}

/// Reads every record of a log file.
pub fn read_log(path: &Path) -> Result<LogContents, LogError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| LogError::io(path, "reading", e))?;
    let mut out = LogContents::default();
    let mut at = 0usize;
    while at < bytes.len() {
        match Record::from_frame(&bytes[at..]) {
            Ok((r, used)) => {
                out.records.push(r);
                at += used;
            }
            Err(e) => {
                out.damaged_tail = Some(((bytes.len() - at) as u64, e.to_string()));
                break;
            }
        }
    }
    out.valid_bytes = at as u64;
    Ok(out)
}

/// An open log, appended to.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    file: File,
    bytes: u64,
    unsynced: bool,
}

impl LogWriter {
    /// Opens (or creates) a log; a damaged tail is cut off and reported in
    /// the returned contents.
    pub fn open(path: &Path) -> Result<(Self, LogContents), LogError> {
        let contents = if path.exists() {
            read_log(path)?
        } else {
            LogContents::default()
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| LogError::io(path, "opening", e))?;
        if contents.damaged_tail.is_some() {
            file.set_len(contents.valid_bytes)
                .map_err(|e| LogError::io(path, "cutting the damaged tail", e))?;
        }
        Ok((
            LogWriter {
                path: path.to_path_buf(),
                file,
                bytes: contents.valid_bytes,
                unsynced: false,
            },
            contents,
        ))
    }

    pub fn append(&mut self, record: &Record) -> Result<u64, LogError> {
        let frame = record.to_frame();
        self.file
            .write_all(&frame)
            .map_err(|e| LogError::io(&self.path, "appending", e))?;
        self.bytes += frame.len() as u64;
        self.unsynced = true;
        Ok(frame.len() as u64)
    }

    /// Makes what was appended durable (fdatasync).
    pub fn sync(&mut self) -> Result<(), LogError> {
        if self.unsynced {
            self.file
                .sync_data()
                .map_err(|e| LogError::io(&self.path, "syncing", e))?;
            self.unsynced = false;
        }
        Ok(())
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trainer::record::RecordKind;

    #[test]
    fn a_torn_tail_is_cut_and_appends_go_on() {
        let dir = std::env::temp_dir().join(format!("sarm-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.log");
        let _ = std::fs::remove_file(&path);
        let rec = |seq| Record {
            seq,
            kind: RecordKind::Progress,
            episode_index: 0,
            source_ns: 0,
            cdr: vec![0, 1, 0, 0, seq as u8],
        };
        let (mut w, c) = LogWriter::open(&path).unwrap();
        assert!(c.records.is_empty());
        w.append(&rec(0)).unwrap();
        w.append(&rec(1)).unwrap();
        drop(w);
        // A write torn in the middle of the third record.
        let half = &rec(2).to_frame()[..10];
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(half)
            .unwrap();
        let (mut w, c) = LogWriter::open(&path).unwrap();
        assert_eq!(c.records.len(), 2);
        assert_eq!(c.damaged_tail.as_ref().map(|d| d.0), Some(10));
        w.append(&rec(2)).unwrap();
        drop(w);
        let c = read_log(&path).unwrap();
        let seqs: Vec<u64> = c.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![0, 1, 2]);
        assert!(c.damaged_tail.is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
