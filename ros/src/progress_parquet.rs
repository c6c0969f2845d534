//! `sarm_progress.parquet` exactly as LeRobot's `compute_rabc_weights.py`
//! writes it: index, episode_index, frame_index (int64), progress_sparse and
//! progress_dense (float32), sorted by index, with the reward model's path in
//! the schema metadata under `reward_model_path`.
//!
//! Besides the one-shot [`write`], [`ProgressWriter`] streams episodes (one
//! row group each, written to a temporary file renamed into place at the
//! end, so a killed run never leaves a half-written file under the final
//! name), and [`merge`] joins files by row group in `index` order, so
//! memory stays at one episode whatever the dataset's size.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Float32Array, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};

/// The schema metadata key LeRobot reads the reward model from.
pub const REWARD_MODEL_PATH: &str = "reward_model_path";

#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {message}")]
pub struct ParquetError {
    pub path: PathBuf,
    pub message: String,
}

/// One row per frame.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressRow {
    pub index: i64,
    pub episode_index: i64,
    pub frame_index: i64,
    pub progress_sparse: f32,
    /// `None` for single-head bundles (the column is then left out, as in LeRobot).
    pub progress_dense: Option<f32>,
}

/// The schema of `sarm_progress.parquet` (the dense column only for bundles
/// with both heads, as LeRobot writes it).
pub fn progress_schema(dense: bool, reward_model_path: &str) -> Arc<Schema> {
    let metadata = HashMap::from([(REWARD_MODEL_PATH.to_string(), reward_model_path.to_string())]);
    Arc::new(Schema::new_with_metadata(progress_fields(dense), metadata))
}

/// LeRobot's columns: sparse always, dense for dual-head models.
fn progress_fields(dense: bool) -> Vec<Field> {
    let mut fields = vec![
        Field::new("index", DataType::Int64, true),
        Field::new("episode_index", DataType::Int64, true),
        Field::new("frame_index", DataType::Int64, true),
        Field::new("progress_sparse", DataType::Float32, true),
    ];
    if dense {
        fields.push(Field::new("progress_dense", DataType::Float32, true));
    }
    fields
}

/// `rows` as a batch of [`progress_schema`].
pub fn progress_batch(
    schema: &Arc<Schema>,
    rows: &[ProgressRow],
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.index))),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.episode_index),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.frame_index),
        )),
        Arc::new(Float32Array::from_iter_values(
            rows.iter().map(|r| r.progress_sparse),
        )),
    ];
    if schema.fields().len() > 4 {
        columns.push(Arc::new(Float32Array::from_iter_values(
            rows.iter().map(|r| r.progress_dense.unwrap_or(f32::NAN)),
        )));
    }
    RecordBatch::try_new(schema.clone(), columns)
}

pub fn write(
    path: &Path,
    rows: &[ProgressRow],
    reward_model_path: &str,
) -> Result<(), ParquetError> {
    let mut rows = rows.to_vec();
    rows.sort_by_key(|r| r.index);
    let dense = rows.iter().all(|r| r.progress_dense.is_some()) && !rows.is_empty();
    let schema = progress_schema(dense, reward_model_path);
    let batch = progress_batch(&schema, &rows).map_err(|e| ParquetError {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    write_one(path, schema, batch)
}

fn write_one(path: &Path, schema: Arc<Schema>, batch: RecordBatch) -> Result<(), ParquetError> {
    let err = |m: String| ParquetError {
        path: path.to_path_buf(),
        message: m,
    };
    let file = File::create(path).map_err(|e| err(e.to_string()))?;
    let mut writer = ArrowWriter::try_new(file, schema, None).map_err(|e| err(e.to_string()))?;
    writer.write(&batch).map_err(|e| err(e.to_string()))?;
    writer.close().map_err(|e| err(e.to_string()))?;
    Ok(())
}

/// One row of `sarm_weights.parquet`: a frame's RA-BC delta and weight.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightRow {
    pub index: i64,
    pub episode_index: i64,
    pub frame_index: i64,
    pub delta: f32,
    pub weight: f32,
}

/// Writes the RA-BC weights next to `sarm_progress.parquet` (LeRobot
/// computes them at training time; this file is for inspection and for
/// trainers that take weights directly). The statistics go in the metadata.
pub fn write_weights(
    path: &Path,
    rows: &[WeightRow],
    metadata: HashMap<String, String>,
) -> Result<(), ParquetError> {
    let schema = weights_schema(metadata);
    let batch = weights_batch(&schema, rows).map_err(|e| ParquetError {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    write_one(path, schema, batch)
}

/// The schema of `sarm_weights.parquet`, the statistics in its metadata.
pub fn weights_schema(metadata: HashMap<String, String>) -> Arc<Schema> {
    let fields = vec![
        Field::new("index", DataType::Int64, true),
        Field::new("episode_index", DataType::Int64, true),
        Field::new("frame_index", DataType::Int64, true),
        Field::new("delta", DataType::Float32, true),
        Field::new("weight", DataType::Float32, true),
    ];
    Arc::new(Schema::new_with_metadata(fields, metadata))
}

/// `rows` as a batch of [`weights_schema`].
pub fn weights_batch(
    schema: &Arc<Schema>,
    rows: &[WeightRow],
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.index))),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.episode_index),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.frame_index),
        )),
        Arc::new(Float32Array::from_iter_values(rows.iter().map(|r| r.delta))),
        Arc::new(Float32Array::from_iter_values(
            rows.iter().map(|r| r.weight),
        )),
    ];
    RecordBatch::try_new(schema.clone(), columns)
}

/// Writes progress rows episode by episode (one row group each) to
/// `<path>.tmp`, renamed to `path` by [`ProgressWriter::finish`].
pub struct ProgressWriter {
    path: PathBuf,
    tmp: PathBuf,
    dense: bool,
    schema: SchemaRef,
    writer: ArrowWriter<File>,
    rows: u64,
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

impl ProgressWriter {
    pub fn create(
        path: &Path,
        dense: bool,
        metadata: HashMap<String, String>,
    ) -> Result<Self, ParquetError> {
        let err = |m: String| ParquetError {
            path: path.to_path_buf(),
            message: m,
        };
        let schema = Arc::new(Schema::new_with_metadata(progress_fields(dense), metadata));
        let tmp = tmp_path(path);
        let file = File::create(&tmp).map_err(|e| err(e.to_string()))?;
        let writer =
            ArrowWriter::try_new(file, schema.clone(), None).map_err(|e| err(e.to_string()))?;
        Ok(ProgressWriter {
            path: path.to_path_buf(),
            tmp,
            dense,
            schema,
            writer,
            rows: 0,
        })
    }

    fn err(&self, m: impl std::fmt::Display) -> ParquetError {
        ParquetError {
            path: self.path.clone(),
            message: m.to_string(),
        }
    }

    /// One episode's rows (sorted by index), as one row group.
    pub fn write_episode(&mut self, rows: &[ProgressRow]) -> Result<(), ParquetError> {
        if rows.is_empty() {
            return Ok(());
        }
        if self.dense && rows.iter().any(|r| r.progress_dense.is_none()) {
            return Err(self.err("a row without progress_dense in a dual-head file"));
        }
        let batch = progress_batch(&self.schema, rows).map_err(|e| self.err(e))?;
        self.write_group(&batch)
    }

    fn write_group(&mut self, batch: &RecordBatch) -> Result<(), ParquetError> {
        self.writer.write(batch).map_err(|e| self.err(e))?;
        self.writer.flush().map_err(|e| self.err(e))?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Closes the file, syncs it and moves it into place.
    pub fn finish(self) -> Result<u64, ParquetError> {
        let (path, tmp, rows) = (self.path.clone(), self.tmp.clone(), self.rows);
        let err = |m: String| ParquetError {
            path: path.clone(),
            message: m,
        };
        let file = self.writer.into_inner().map_err(|e| err(e.to_string()))?;
        file.sync_all().map_err(|e| err(e.to_string()))?;
        drop(file);
        std::fs::rename(&tmp, &path).map_err(|e| err(e.to_string()))?;
        Ok(rows)
    }
}

/// A progress parquet's schema metadata and columns, checked against
/// LeRobot's layout.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressFileInfo {
    pub metadata: HashMap<String, String>,
    pub dense: bool,
    pub rows: u64,
    /// Per row group: (first index, last index, first episode index).
    pub groups: Vec<(i64, i64, i64)>,
}

fn open_reader(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>, ParquetError> {
    let err = |m: String| ParquetError {
        path: path.to_path_buf(),
        message: m,
    };
    let file = File::open(path).map_err(|e| err(e.to_string()))?;
    ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| err(e.to_string()))
}

/// Reads a progress file's layout (metadata, columns, index range of each
/// row group) without reading the progress values.
pub fn inspect(path: &Path) -> Result<ProgressFileInfo, ParquetError> {
    let err = |m: String| ParquetError {
        path: path.to_path_buf(),
        message: m,
    };
    let builder = open_reader(path)?;
    let schema = builder.schema().clone();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let dense = match names.as_slice() {
        ["index", "episode_index", "frame_index", "progress_sparse"] => false,
        ["index", "episode_index", "frame_index", "progress_sparse", "progress_dense"] => true,
        _ => {
            return Err(err(format!(
                "columns {names:?} are not sarm_progress.parquet's \
                 (index, episode_index, frame_index, progress_sparse[, progress_dense])"
            )))
        }
    };
    for f in schema.fields() {
        let want = if f.name().starts_with("progress_") {
            DataType::Float32
        } else {
            DataType::Int64
        };
        if f.data_type() != &want {
            return Err(err(format!(
                "column {} is {}, expected {want}",
                f.name(),
                f.data_type()
            )));
        }
    }
    let metadata = schema.metadata().clone();
    let groups_n = builder.metadata().num_row_groups();
    let mask = ProjectionMask::roots(builder.parquet_schema(), [0, 1]);
    let mut groups = Vec::with_capacity(groups_n);
    let mut rows = 0u64;
    for g in 0..groups_n {
        let reader = open_reader(path)?
            .with_projection(mask.clone())
            .with_row_groups(vec![g])
            .build()
            .map_err(|e| err(e.to_string()))?;
        let (mut first, mut last, mut episode) = (None, i64::MIN, 0);
        for batch in reader {
            let batch = batch.map_err(|e| err(e.to_string()))?;
            let index = int64_column(&batch, 0).ok_or_else(|| err("index is not int64".into()))?;
            let eps =
                int64_column(&batch, 1).ok_or_else(|| err("episode_index is not int64".into()))?;
            if index.null_count() > 0 {
                return Err(err("null in the index column".into()));
            }
            for (i, v) in index.values().iter().enumerate() {
                if *v <= last {
                    return Err(err(format!("index not increasing at {v} (row group {g})")));
                }
                if first.is_none() {
                    first = Some(*v);
                    episode = eps.value(i);
                }
                last = *v;
            }
            rows += batch.num_rows() as u64;
        }
        if let Some(first) = first {
            groups.push((first, last, episode));
        }
    }
    Ok(ProgressFileInfo {
        metadata: metadata.into(),
        dense,
        rows,
        groups,
    })
}

fn int64_column(batch: &RecordBatch, i: usize) -> Option<&Int64Array> {
    batch.column(i).as_any().downcast_ref::<Int64Array>()
}

/// Reads every row of a progress file (tests, small files).
pub fn read(path: &Path) -> Result<(Vec<ProgressRow>, HashMap<String, String>), ParquetError> {
    let err = |m: String| ParquetError {
        path: path.to_path_buf(),
        message: m,
    };
    let info = inspect(path)?;
    let reader = open_reader(path)?.build().map_err(|e| err(e.to_string()))?;
    let mut rows = Vec::new();
    for batch in reader {
        let b = batch.map_err(|e| err(e.to_string()))?;
        let i64c = |i: usize| b.column(i).as_any().downcast_ref::<Int64Array>().cloned();
        let f32c = |i: usize| b.column(i).as_any().downcast_ref::<Float32Array>().cloned();
        let (Some(index), Some(ep), Some(frame), Some(sparse)) =
            (i64c(0), i64c(1), i64c(2), f32c(3))
        else {
            return Err(err("unexpected column types".into()));
        };
        let dense = if info.dense { f32c(4) } else { None };
        for r in 0..b.num_rows() {
            rows.push(ProgressRow {
                index: index.value(r),
                episode_index: ep.value(r),
                frame_index: frame.value(r),
                progress_sparse: sparse.value(r),
                progress_dense: dense.as_ref().map(|d| d.value(r)),
            });
        }
    }
    Ok((rows, info.metadata))
}

/// What [`merge`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeStats {
    pub rows: u64,
    pub groups: usize,
}

/// Joins progress files into `out`, row group by row group in `index`
/// order (each input sorted, index ranges disjoint), with `metadata` as the
/// output's schema metadata. All inputs must have the same columns.
pub fn merge(
    inputs: &[PathBuf],
    out: &Path,
    metadata: HashMap<String, String>,
) -> Result<MergeStats, ParquetError> {
    let out_err = |m: String| ParquetError {
        path: out.to_path_buf(),
        message: m,
    };
    let mut groups: Vec<(i64, i64, i64, usize, usize)> = Vec::new();
    let mut dense = None;
    for (fi, path) in inputs.iter().enumerate() {
        let info = inspect(path)?;
        match dense {
            None => dense = Some(info.dense),
            Some(d) if d != info.dense => {
                return Err(out_err(format!(
                    "{} has {} progress_dense column, {} {}",
                    path.display(),
                    if info.dense { "a" } else { "no" },
                    inputs[0].display(),
                    if d { "has one" } else { "has none" }
                )))
            }
            Some(_) => {}
        }
        for (gi, (first, last, ep)) in info.groups.iter().enumerate() {
            groups.push((*first, *last, *ep, fi, gi));
        }
    }
    groups.sort();
    for w in groups.windows(2) {
        if w[1].0 <= w[0].1 {
            return Err(out_err(format!(
                "index ranges overlap: {}..={} (episode {}, {}) and {}..={} (episode {}, {})",
                w[0].0,
                w[0].1,
                w[0].2,
                inputs[w[0].3].display(),
                w[1].0,
                w[1].1,
                w[1].2,
                inputs[w[1].3].display()
            )));
        }
    }
    let mut writer = ProgressWriter::create(out, dense.unwrap_or(false), metadata)?;
    let mut count = 0;
    for &(_, _, _, fi, gi) in &groups {
        let path = &inputs[fi];
        let err = |m: String| ParquetError {
            path: path.clone(),
            message: m,
        };
        let reader = open_reader(path)?
            .with_row_groups(vec![gi])
            .build()
            .map_err(|e| err(e.to_string()))?;
        for batch in reader {
            let batch = batch.map_err(|e| err(e.to_string()))?;
            // Re-wrap the columns in the output's schema (its metadata).
            let batch = RecordBatch::try_new(writer.schema.clone(), batch.columns().to_vec())
                .map_err(|e| err(e.to_string()))?;
            writer
                .writer
                .write(&batch)
                .map_err(|e| out_err(e.to_string()))?;
            writer.rows += batch.num_rows() as u64;
        }
        writer.writer.flush().map_err(|e| out_err(e.to_string()))?;
        count += 1;
    }
    let rows = writer.finish()?;
    Ok(MergeStats {
        rows,
        groups: count,
    })
}

/// LeRobot's `interpolate_progress` (`np.interp`), from the engine.
pub use sarm_runtime::episode::interpolate;

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(episode: i64, first_index: i64, n: usize, dense: bool) -> Vec<ProgressRow> {
        (0..n)
            .map(|f| ProgressRow {
                index: first_index + f as i64,
                episode_index: episode,
                frame_index: f as i64,
                progress_sparse: f as f32 / n as f32,
                progress_dense: dense.then_some(0.5),
            })
            .collect()
    }

    fn meta(path: &str) -> HashMap<String, String> {
        HashMap::from([(REWARD_MODEL_PATH.to_string(), path.to_string())])
    }

    #[test]
    fn streamed_episodes_merge_in_index_order() {
        let dir = std::env::temp_dir().join(format!("sarm-pq-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b, out) = (
            dir.join("a.parquet"),
            dir.join("b.parquet"),
            dir.join("out.parquet"),
        );
        let mut w = ProgressWriter::create(&a, true, meta("m")).unwrap();
        w.write_episode(&rows(2, 20, 5, true)).unwrap();
        w.write_episode(&rows(0, 0, 10, true)).unwrap();
        assert_eq!(w.finish().unwrap(), 15);
        assert!(!tmp_path(&a).exists());
        let mut w = ProgressWriter::create(&b, true, meta("m")).unwrap();
        w.write_episode(&rows(1, 10, 10, true)).unwrap();
        w.finish().unwrap();
        let info = inspect(&a).unwrap();
        assert_eq!(info.groups, vec![(20, 24, 2), (0, 9, 0)]);
        let stats = merge(&[a.clone(), b.clone()], &out, meta("m")).unwrap();
        assert_eq!(
            stats,
            MergeStats {
                rows: 25,
                groups: 3
            }
        );
        let (got, md) = read(&out).unwrap();
        assert_eq!(md.get(REWARD_MODEL_PATH).map(String::as_str), Some("m"));
        let mut want = rows(0, 0, 10, true);
        want.extend(rows(1, 10, 10, true));
        want.extend(rows(2, 20, 5, true));
        assert_eq!(got, want);
        // Overlapping inputs are refused, naming both.
        let e = merge(&[a.clone(), a.clone()], &dir.join("x.parquet"), meta("m")).unwrap_err();
        assert!(e.message.contains("overlap"), "{e}");
        // A single-head file and a dual-head one do not mix.
        let c = dir.join("c.parquet");
        write(&c, &rows(5, 50, 3, false), "m").unwrap();
        let e = merge(&[a, c], &dir.join("y.parquet"), meta("m")).unwrap_err();
        assert!(e.message.contains("progress_dense"), "{e}");
    }

    #[test]
    fn interpolation_matches_np_interp() {
        // np.interp([0,1,2,5,7,9], [1,4,7], [0.1,0.4,0.7]) = [.1,.1,.2,.5,.7,.7]
        let v = interpolate(&[1, 4, 7], &[0.1, 0.4, 0.7], [0, 1, 2, 5, 7, 9].into_iter());
        let want = [0.1, 0.1, 0.2, 0.5, 0.7, 0.7];
        for (a, b) in v.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{v:?}");
        }
    }
}
