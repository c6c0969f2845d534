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

pub fn write(
    path: &Path,
    rows: &[ProgressRow],
    reward_model_path: &str,
) -> Result<(), ParquetError> {
    let mut rows = rows.to_vec();
    rows.sort_by_key(|r| r.index);
    let dense = rows.iter().all(|r| r.progress_dense.is_some()) && !rows.is_empty();
    let mut fields = vec![
        Field::new("index", DataType::Int64, true),
        Field::new("episode_index", DataType::Int64, true),
        Field::new("frame_index", DataType::Int64, true),
        Field::new("progress_sparse", DataType::Float32, true),
    ];
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
    if dense {
        fields.push(Field::new("progress_dense", DataType::Float32, true));
        columns.push(Arc::new(Float32Array::from_iter_values(
            rows.iter().map(|r| r.progress_dense.unwrap_or(f32::NAN)),
        )));
    }
    let metadata = HashMap::from([(
        "reward_model_path".to_string(),
        reward_model_path.to_string(),
    )]);
    write_batch(path, fields, columns, metadata)
}

/// Writes one record batch with its schema metadata.
fn write_batch(
    path: &Path,
    fields: Vec<Field>,
    columns: Vec<ArrayRef>,
    metadata: HashMap<String, String>,
) -> Result<(), ParquetError> {
    let err = |m: String| ParquetError {
        path: path.to_path_buf(),
        message: m,
    };
    let schema = Arc::new(Schema::new_with_metadata(fields, metadata));
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| err(e.to_string()))?;
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
    let fields = vec![
        Field::new("index", DataType::Int64, true),
        Field::new("episode_index", DataType::Int64, true),
        Field::new("frame_index", DataType::Int64, true),
        Field::new("delta", DataType::Float32, true),
        Field::new("weight", DataType::Float32, true),
    ];
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
    write_batch(path, fields, columns, metadata)
}

/// LeRobot's `interpolate_progress` (np.interp): values at `all` from the
/// scored frames `xs` (sorted), holding the end values beyond them.
pub fn interpolate(xs: &[i64], ys: &[f32], all: impl Iterator<Item = i64>) -> Vec<f32> {
    all.map(|x| {
        if xs.is_empty() {
            return f32::NAN;
        }
        let i = xs.partition_point(|&v| v < x);
        if i == 0 {
            ys[0]
        } else if i == xs.len() {
            ys[xs.len() - 1]
        } else if xs[i] == x {
            ys[i]
        } else {
            let (x0, x1) = (xs[i - 1] as f64, xs[i] as f64);
            let (y0, y1) = (ys[i - 1] as f64, ys[i] as f64);
            (y0 + (y1 - y0) * (x as f64 - x0) / (x1 - x0)) as f32
        }
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
