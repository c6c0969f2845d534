//! `sarm_progress.parquet` exactly as LeRobot's `compute_rabc_weights.py`
//! writes it: index, episode_index, frame_index (int64), progress_sparse and
//! progress_dense (float32), sorted by index, with the reward model's path in
//! the schema metadata under `reward_model_path`.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, Float32Array, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;

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
    let mut fields = vec![
        Field::new("index", DataType::Int64, true),
        Field::new("episode_index", DataType::Int64, true),
        Field::new("frame_index", DataType::Int64, true),
        Field::new("progress_sparse", DataType::Float32, true),
    ];
    if dense {
        fields.push(Field::new("progress_dense", DataType::Float32, true));
    }
    let metadata = HashMap::from([(
        "reward_model_path".to_string(),
        reward_model_path.to_string(),
    )]);
    Arc::new(Schema::new_with_metadata(fields, metadata))
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

/// LeRobot's `interpolate_progress` (`np.interp`), from the engine.
pub use sarm_runtime::episode::interpolate;
