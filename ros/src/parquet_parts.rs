//! `sarm_progress.parquet` written one episode at a time: each finished
//! episode becomes a part file at once (so a crash loses no finished
//! episode, and no write costs more than its episode), and the parts are
//! streamed into the one file LeRobot reads when the run ends. Memory and
//! write cost stay bounded however long the run.

use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;

use crate::progress_parquet::{self, ParquetError, ProgressRow};

/// Rows per record batch when merging.
const MERGE_BATCH: usize = 65_536;

fn err(path: &Path, e: impl std::fmt::Display) -> ParquetError {
    ParquetError {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// The parts of one `sarm_progress.parquet`.
#[derive(Debug)]
pub struct ProgressParts {
    out: PathBuf,
    dir: PathBuf,
    model: String,
    /// The global `index` of the next row.
    next_index: i64,
    parts: Vec<PathBuf>,
}

impl ProgressParts {
    /// Parts of `out` go in `<out's folder>/.<out's name>.parts/`. Parts an
    /// interrupted run left there are kept aside (renamed to
    /// `<out>.interrupted-<unix seconds>.parts`, with a warning), not lost
    /// and not mixed into this run's file.
    pub fn create(out: &Path, model: &str) -> Result<Self, ParquetError> {
        let dir = parts_dir(out);
        if dir.exists() {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let aside = out.with_extension(format!("interrupted-{secs}.parts"));
            std::fs::rename(&dir, &aside).map_err(|e| err(&dir, e))?;
            tracing::warn!(
                "{} holds episodes of an interrupted run; kept as {}",
                dir.display(),
                aside.display()
            );
        }
        std::fs::create_dir_all(&dir).map_err(|e| err(&dir, e))?;
        Ok(ProgressParts {
            out: out.to_path_buf(),
            dir,
            model: model.to_string(),
            next_index: 0,
            parts: Vec::new(),
        })
    }

    /// Writes one finished episode (its rows' `index` is assigned here).
    pub fn write_episode(&mut self, mut rows: Vec<ProgressRow>) -> Result<(), ParquetError> {
        let Some(first) = rows.first() else {
            return Ok(());
        };
        let path = self.dir.join(format!(
            "episode_{:012}_{:06}.parquet",
            first.episode_index,
            self.parts.len()
        ));
        for (i, r) in rows.iter_mut().enumerate() {
            r.index = self.next_index + i as i64;
        }
        let tmp = path.with_extension("parquet.tmp");
        progress_parquet::write(&tmp, &rows, &self.model)?;
        std::fs::rename(&tmp, &path).map_err(|e| err(&path, e))?;
        self.next_index += rows.len() as i64;
        self.parts.push(path);
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> i64 {
        self.next_index
    }

    /// Streams every part into the final file (written aside, then moved
    /// into place) and removes the parts. Returns the file, or None when no
    /// episode was written.
    pub fn merge(&mut self) -> Result<Option<PathBuf>, ParquetError> {
        if self.parts.is_empty() {
            let _ = std::fs::remove_dir(&self.dir);
            return Ok(None);
        }
        let tmp = self.out.with_extension("parquet.tmp");
        merge_files(&self.parts, &tmp)?;
        std::fs::rename(&tmp, &self.out).map_err(|e| err(&self.out, e))?;
        for p in self.parts.drain(..) {
            let _ = std::fs::remove_file(p);
        }
        let _ = std::fs::remove_dir(&self.dir);
        Ok(Some(self.out.clone()))
    }
}

fn parts_dir(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "sarm_progress.parquet".into());
    out.with_file_name(format!(".{name}.parts"))
}

/// Concatenates parquet files of one schema (the first file's, with its
/// metadata) into `out`, batch by batch.
pub fn merge_files(parts: &[PathBuf], out: &Path) -> Result<(), ParquetError> {
    let mut writer: Option<(ArrowWriter<File>, arrow_schema::SchemaRef)> = None;
    for part in parts {
        let file = File::open(part).map_err(|e| err(part, e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| err(part, e))?;
        // The builder's schema carries the file's metadata (the reader's does not).
        let schema = builder.schema().clone();
        let reader = builder
            .with_batch_size(MERGE_BATCH)
            .build()
            .map_err(|e| err(part, e))?;
        if writer.is_none() {
            let f = File::create(out).map_err(|e| err(out, e))?;
            let w = ArrowWriter::try_new(f, schema.clone(), None).map_err(|e| err(out, e))?;
            writer = Some((w, schema.clone()));
        }
        let Some((w, first)) = writer.as_mut() else {
            break;
        };
        if schema.fields() != first.fields() {
            return Err(err(
                part,
                "its columns differ from the first part's (a bundle with other heads?)",
            ));
        }
        for batch in reader {
            let batch = batch.map_err(|e| err(part, e))?;
            w.write(&batch).map_err(|e| err(out, e))?;
        }
    }
    if let Some((w, _)) = writer {
        w.close().map_err(|e| err(out, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Array, Float32Array, Int64Array};

    fn rows(episode: i64, n: usize) -> Vec<ProgressRow> {
        (0..n)
            .map(|f| ProgressRow {
                index: -1,
                episode_index: episode,
                frame_index: f as i64,
                progress_sparse: f as f32 / n as f32,
                progress_dense: Some(episode as f32),
            })
            .collect()
    }

    fn read(path: &Path) -> (Vec<i64>, Vec<i64>, Vec<f32>, Option<String>) {
        let b = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
        let model = b.schema().metadata().get("reward_model_path").cloned();
        let (mut index, mut episode, mut dense) = (Vec::new(), Vec::new(), Vec::new());
        for batch in b.build().unwrap() {
            let batch = batch.unwrap();
            let col = |name: &str| batch.column_by_name(name).unwrap().clone();
            let i = col("index");
            let i = i.as_any().downcast_ref::<Int64Array>().unwrap();
            index.extend(i.values().iter().copied());
            let e = col("episode_index");
            let e = e.as_any().downcast_ref::<Int64Array>().unwrap();
            episode.extend(e.values().iter().copied());
            let d = col("progress_dense");
            let d = d.as_any().downcast_ref::<Float32Array>().unwrap();
            dense.extend(d.values().iter().copied());
            assert_eq!(d.null_count(), 0);
        }
        (index, episode, dense, model)
    }

    #[test]
    fn episodes_written_as_parts_merge_into_one_indexed_file() {
        let dir = std::env::temp_dir().join(format!("sarm-parts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("sarm_progress.parquet");
        let mut p = ProgressParts::create(&out, "models/x").unwrap();
        p.write_episode(rows(3, 5)).unwrap();
        p.write_episode(Vec::new()).unwrap();
        p.write_episode(rows(4, 2)).unwrap();
        assert_eq!(p.rows(), 7);
        // A crash here leaves readable parts, kept aside by the next run.
        let leftover = parts_dir(&out);
        assert_eq!(std::fs::read_dir(&leftover).unwrap().count(), 2);
        assert_eq!(p.merge().unwrap(), Some(out.clone()));
        assert!(!leftover.exists(), "parts removed after the merge");
        let (index, episode, dense, model) = read(&out);
        assert_eq!(index, (0..7).collect::<Vec<_>>());
        assert_eq!(episode, [3, 3, 3, 3, 3, 4, 4]);
        assert_eq!(dense, [3.0, 3.0, 3.0, 3.0, 3.0, 4.0, 4.0]);
        assert_eq!(model.as_deref(), Some("models/x"));

        // Parts an interrupted run left are kept aside, not merged.
        let mut crashed = ProgressParts::create(&out, "m").unwrap();
        crashed.write_episode(rows(9, 1)).unwrap();
        drop(crashed);
        let mut next = ProgressParts::create(&out, "m").unwrap();
        let aside: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("interrupted"))
            .collect();
        assert_eq!(aside.len(), 1);
        next.write_episode(rows(10, 3)).unwrap();
        next.merge().unwrap();
        assert_eq!(read(&out).1, [10, 10, 10]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
