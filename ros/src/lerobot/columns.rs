//! Arrow columns as LeRobot's writers produce them (pandas, HF datasets,
//! pyarrow): integers and floats of any width, strings, and fixed or
//! variable lists of floats, read into plain Rust vectors with an error
//! that names the column and the type found.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;

/// Why a column could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ColumnError {
    #[error("no column {0:?}")]
    Missing(String),
    #[error("column {name:?} is {found}, expected {expected}")]
    Type {
        name: String,
        found: String,
        expected: &'static str,
    },
    #[error("column {name:?} has a null in row {row}")]
    Null { name: String, row: usize },
    #[error("column {name:?} row {row} has {found} values, expected {expected}")]
    Width {
        name: String,
        row: usize,
        found: usize,
        expected: usize,
    },
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, ColumnError> {
    batch
        .column_by_name(name)
        .ok_or_else(|| ColumnError::Missing(name.to_string()))
}

fn type_error(name: &str, a: &dyn Array, expected: &'static str) -> ColumnError {
    ColumnError::Type {
        name: name.to_string(),
        found: a.data_type().to_string(),
        expected,
    }
}

fn no_nulls(name: &str, a: &dyn Array) -> Result<(), ColumnError> {
    if a.null_count() > 0 {
        let row = (0..a.len()).find(|&i| a.is_null(i)).unwrap_or(0);
        return Err(ColumnError::Null {
            name: name.to_string(),
            row,
        });
    }
    Ok(())
}

/// An integer column, any width, as i64.
pub fn i64s(batch: &RecordBatch, name: &str) -> Result<Vec<i64>, ColumnError> {
    let a = column(batch, name)?;
    no_nulls(name, a)?;
    let out: Vec<i64> = match a.data_type() {
        DataType::Int64 => a.as_primitive::<Int64Type>().values().to_vec(),
        DataType::Int32 => a
            .as_primitive::<Int32Type>()
            .values()
            .iter()
            .map(|&v| v as i64)
            .collect(),
        DataType::Int16 => a
            .as_primitive::<Int16Type>()
            .values()
            .iter()
            .map(|&v| v as i64)
            .collect(),
        DataType::Int8 => a
            .as_primitive::<Int8Type>()
            .values()
            .iter()
            .map(|&v| v as i64)
            .collect(),
        DataType::UInt32 => a
            .as_primitive::<UInt32Type>()
            .values()
            .iter()
            .map(|&v| v as i64)
            .collect(),
        DataType::UInt16 => a
            .as_primitive::<UInt16Type>()
            .values()
            .iter()
            .map(|&v| v as i64)
            .collect(),
        DataType::UInt8 => a
            .as_primitive::<UInt8Type>()
            .values()
            .iter()
            .map(|&v| v as i64)
            .collect(),
        DataType::UInt64 => {
            let v = a.as_primitive::<UInt64Type>().values();
            if v.iter().any(|&x| x > i64::MAX as u64) {
                return Err(type_error(name, a, "integers that fit in i64"));
            }
            v.iter().map(|&x| x as i64).collect()
        }
        _ => return Err(type_error(name, a, "an integer column")),
    };
    Ok(out)
}

/// A float column (f32 or f64) as f64. LeRobot's timestamps are float32:
/// the f64 here is the float32 value exactly, as Python sees it.
pub fn f64s(batch: &RecordBatch, name: &str) -> Result<Vec<f64>, ColumnError> {
    let a = column(batch, name)?;
    no_nulls(name, a)?;
    match a.data_type() {
        DataType::Float64 => Ok(a.as_primitive::<Float64Type>().values().to_vec()),
        DataType::Float32 => Ok(a
            .as_primitive::<Float32Type>()
            .values()
            .iter()
            .map(|&v| v as f64)
            .collect()),
        _ => Err(type_error(name, a, "a float column")),
    }
}

/// A string column.
pub fn strings(batch: &RecordBatch, name: &str) -> Result<Vec<String>, ColumnError> {
    let a = column(batch, name)?;
    strings_of(name, a.as_ref())
}

fn strings_of(name: &str, a: &dyn Array) -> Result<Vec<String>, ColumnError> {
    no_nulls(name, a)?;
    let out = match a.data_type() {
        DataType::Utf8 => a
            .as_string::<i32>()
            .iter()
            .flatten()
            .map(String::from)
            .collect(),
        DataType::LargeUtf8 => a
            .as_string::<i64>()
            .iter()
            .flatten()
            .map(String::from)
            .collect(),
        DataType::Utf8View => a
            .as_string_view()
            .iter()
            .flatten()
            .map(String::from)
            .collect(),
        _ => return Err(type_error(name, a, "a string column")),
    };
    Ok(out)
}

/// A list-of-strings column (e.g. `tasks` in meta/episodes).
pub fn string_lists(batch: &RecordBatch, name: &str) -> Result<Vec<Vec<String>>, ColumnError> {
    let a = column(batch, name)?;
    no_nulls(name, a)?;
    let mut out = Vec::with_capacity(a.len());
    match a.data_type() {
        DataType::List(_) => {
            let l = a.as_list::<i32>();
            for row in 0..l.len() {
                out.push(strings_of(name, l.value(row).as_ref())?);
            }
        }
        DataType::LargeList(_) => {
            let l = a.as_list::<i64>();
            for row in 0..l.len() {
                out.push(strings_of(name, l.value(row).as_ref())?);
            }
        }
        _ => return Err(type_error(name, a, "a list of strings")),
    }
    Ok(out)
}

/// A per-row vector of `width` floats (fixed-size or variable list of
/// float32/float64), flattened row-major into f32.
pub fn float_rows(batch: &RecordBatch, name: &str, width: usize) -> Result<Vec<f32>, ColumnError> {
    let a = column(batch, name)?;
    no_nulls(name, a)?;
    let mut out = Vec::with_capacity(a.len() * width);
    let mut push_row = |row: usize, v: &dyn Array| -> Result<(), ColumnError> {
        if v.len() != width {
            return Err(ColumnError::Width {
                name: name.to_string(),
                row,
                found: v.len(),
                expected: width,
            });
        }
        no_nulls(name, v)?;
        match v.data_type() {
            DataType::Float32 => out.extend_from_slice(v.as_primitive::<Float32Type>().values()),
            DataType::Float64 => out.extend(
                v.as_primitive::<Float64Type>()
                    .values()
                    .iter()
                    .map(|&x| x as f32),
            ),
            _ => return Err(type_error(name, v, "a list of floats")),
        }
        Ok(())
    };
    match a.data_type() {
        DataType::FixedSizeList(_, _) => {
            let l = a.as_fixed_size_list();
            for row in 0..l.len() {
                push_row(row, l.value(row).as_ref())?;
            }
        }
        DataType::List(_) => {
            let l = a.as_list::<i32>();
            for row in 0..l.len() {
                push_row(row, l.value(row).as_ref())?;
            }
        }
        DataType::LargeList(_) => {
            let l = a.as_list::<i64>();
            for row in 0..l.len() {
                push_row(row, l.value(row).as_ref())?;
            }
        }
        // A one-dimensional state stored as a plain column.
        DataType::Float32 | DataType::Float64 if width == 1 => {
            out.extend(f64s(batch, name)?.into_iter().map(|v| v as f32));
        }
        _ => return Err(type_error(name, a, "a list of floats per row")),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::builder::{FixedSizeListBuilder, Float32Builder, ListBuilder, StringBuilder};
    use arrow_array::{Float32Array, Int32Array};
    use arrow_schema::{Field, Schema};

    use super::*;

    fn batch(cols: Vec<(&str, ArrayRef)>) -> RecordBatch {
        let fields: Vec<Field> = cols
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            cols.into_iter().map(|(_, a)| a).collect(),
        )
        .unwrap()
    }

    #[test]
    fn reads_ints_floats_and_lists() {
        let mut fixed = FixedSizeListBuilder::new(Float32Builder::new(), 2);
        fixed.values().append_slice(&[1.0, 2.0]);
        fixed.append(true);
        fixed.values().append_slice(&[3.0, 4.0]);
        fixed.append(true);
        let mut var = ListBuilder::new(Float32Builder::new());
        var.values().append_slice(&[5.0, 6.0]);
        var.append(true);
        var.values().append_slice(&[7.0]);
        var.append(true);
        let mut tasks = ListBuilder::new(StringBuilder::new());
        tasks.values().append_value("a");
        tasks.append(true);
        tasks.values().append_value("b");
        tasks.values().append_value("c");
        tasks.append(true);
        let b = batch(vec![
            ("i", Arc::new(Int32Array::from(vec![3, 4]))),
            ("t", Arc::new(Float32Array::from(vec![0.02f32, 0.04]))),
            ("fixed", Arc::new(fixed.finish())),
            ("var", Arc::new(var.finish())),
            ("tasks", Arc::new(tasks.finish())),
        ]);
        assert_eq!(i64s(&b, "i").unwrap(), vec![3, 4]);
        assert_eq!(f64s(&b, "t").unwrap(), vec![0.02f32 as f64, 0.04f32 as f64]);
        assert_eq!(
            float_rows(&b, "fixed", 2).unwrap(),
            vec![1.0, 2.0, 3.0, 4.0]
        );
        assert_eq!(
            float_rows(&b, "var", 2).unwrap_err(),
            ColumnError::Width {
                name: "var".into(),
                row: 1,
                found: 1,
                expected: 2
            }
        );
        assert_eq!(
            string_lists(&b, "tasks").unwrap(),
            vec![vec!["a".to_string()], vec!["b".into(), "c".into()]]
        );
        assert_eq!(
            i64s(&b, "nope").unwrap_err(),
            ColumnError::Missing("nope".into())
        );
        assert!(matches!(i64s(&b, "t"), Err(ColumnError::Type { .. })));
    }

    #[test]
    fn nulls_are_refused() {
        let b = batch(vec![(
            "i",
            Arc::new(Int32Array::from(vec![Some(1), None])) as ArrayRef,
        )]);
        assert_eq!(
            i64s(&b, "i").unwrap_err(),
            ColumnError::Null {
                name: "i".into(),
                row: 1
            }
        );
    }
}
