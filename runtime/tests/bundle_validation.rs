//! A bundle that does not match its manifest is refused at load, with an
//! error naming the field, the expected and the found value.

mod common;

use std::path::{Path, PathBuf};

use common::{bundle_dir, expect_mismatch};
use sarm_runtime::reward::RewardModel;
use sarm_runtime::{Bundle, BundleError, Precision};

/// A copy of the test bundle in a temp dir: the manifest edited by `edit`,
/// the ONNX files linked (or left out when `drop` names them).
fn variant(name: &str, drop: &[&str], edit: impl FnOnce(&mut toml::Table)) -> PathBuf {
    let src = bundle_dir();
    let dir = std::env::temp_dir().join(format!("sarm-bundle-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_str().unwrap().to_string();
        if path.extension().is_some_and(|e| e == "onnx") && !drop.contains(&file.as_str()) {
            std::os::unix::fs::symlink(path.canonicalize().unwrap(), dir.join(&file)).unwrap();
        }
    }
    let mut table: toml::Table = std::fs::read_to_string(src.join("bundle.toml"))
        .unwrap()
        .parse()
        .unwrap();
    edit(&mut table);
    std::fs::write(dir.join("bundle.toml"), toml::to_string(&table).unwrap()).unwrap();
    dir
}

fn table<'a>(t: &'a mut toml::Table, path: &[&str]) -> &'a mut toml::Table {
    path.iter()
        .fold(t, |t, k| t.get_mut(*k).unwrap().as_table_mut().unwrap())
}

fn load(dir: &Path) -> BundleError {
    Bundle::load(dir).expect_err("bundle should be refused")
}

#[test]
fn committed_bundle_loads_with_both_precisions() {
    let bundle = Bundle::load(bundle_dir()).unwrap();
    assert_eq!(bundle.precisions(), vec![Precision::Fp32, Precision::Int8]);
    for p in bundle.precisions() {
        RewardModel::load(&bundle, p).unwrap();
    }
}

#[test]
fn missing_file_is_named() {
    let dir = variant("missing", &["stage.int8.onnx"], |_| {});
    expect_mismatch(
        load(&dir),
        "precision.int8.stage.path",
        "an existing file",
        "stage.int8.onnx",
    );
}

#[test]
fn wrong_hash_is_named() {
    let dir = variant("hash", &[], |t| {
        table(t, &["precision", "fp32", "subtask"]).insert("sha256".into(), "ab".repeat(32).into());
    });
    expect_mismatch(
        load(&dir),
        "precision.fp32.subtask.sha256",
        &"ab".repeat(32),
        "",
    );
}

#[test]
fn wrong_size_is_named() {
    let dir = variant("bytes", &[], |t| {
        table(t, &["image_encoder", "file"]).insert("bytes".into(), 12i64.into());
    });
    expect_mismatch(load(&dir), "image_encoder.file.bytes", "12", "bytes in");
}

#[test]
fn wrong_tensor_name_is_named() {
    let dir = variant("tensor", &[], |t| {
        table(t, &["tensors"]).insert("image_features".into(), "frames".into());
    });
    let bundle = Bundle::load(&dir).unwrap();
    let err = RewardModel::load(&bundle, Precision::Fp32).unwrap_err();
    expect_mismatch(
        err,
        "precision.fp32.stage input",
        "\"frames\"",
        "image_features",
    );
}

#[test]
fn wrong_tensor_shape_is_named() {
    let dir = variant("shape", &[], |t| {
        table(t, &["model"]).insert("state_dim".into(), 16i64.into());
        table(t, &["state"]).insert("model_dim".into(), 16i64.into());
    });
    let bundle = Bundle::load(&dir).unwrap();
    let err = RewardModel::load(&bundle, Precision::Fp32).unwrap_err();
    expect_mismatch(err, "tensor \"state\"", "[B, T, 16]", "32");
}

#[test]
fn inconsistent_manifest_fields_are_named() {
    let dir = variant("props", &[], |t| {
        let sparse = table(t, &["heads", "sparse"]);
        sparse.insert(
            "temporal_proportions".into(),
            toml::Value::Array(vec![0.5.into(), 0.5.into()]),
        );
    });
    expect_mismatch(
        load(&dir),
        "heads.sparse.temporal_proportions",
        "3 values",
        "2 values",
    );

    let dir = variant("offsets", &[], |t| {
        table(t, &["window"]).insert("readout".into(), 3i64.into());
    });
    expect_mismatch(load(&dir), "window.readout", "offset 0", "index 3");

    let dir = variant("text", &[], |t| {
        table(t, &["text"]).insert("dim".into(), 512i64.into());
    });
    expect_mismatch(load(&dir), "text.dim", "384", "512");

    let dir = variant("state", &[], |t| {
        table(t, &["state"]).insert("mean".into(), toml::Value::Array(vec![0.0.into()]));
    });
    expect_mismatch(load(&dir), "state.mean", "14 values", "1 values");

    let dir = variant("schema", &[], |t| {
        t.insert("schema_version".into(), 2i64.into());
    });
    expect_mismatch(load(&dir), "schema_version", "1", "2");

    let dir = variant("encoder-dim", &[], |t| {
        table(t, &["image_encoder"]).insert("output_dim".into(), 512i64.into());
    });
    expect_mismatch(load(&dir), "image_encoder.output_dim", "1280", "512");
}

#[test]
fn unknown_keys_and_bad_types_are_parse_errors() {
    let dir = variant("unknown", &[], |t| {
        table(t, &["window"]).insert("stride".into(), 3i64.into());
    });
    let msg = load(&dir).to_string();
    assert!(
        msg.contains("bundle.toml") && msg.contains("stride"),
        "{msg}"
    );
}

#[test]
fn unknown_task_is_named() {
    let bundle = Bundle::load(bundle_dir()).unwrap();
    let err = bundle.task_embedding(Some("fold the shirt")).unwrap_err();
    expect_mismatch(err, "text.tasks", "fold the shirt", "tasks");
}
