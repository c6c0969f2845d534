//! Policy bundles (`kind = "policy"`) are validated per the documented
//! schema (models/tools/README.md, "Policy bundles"): a manifest or file
//! that breaks it is refused with the field, the expected and the found
//! value; a reward bundle is not a policy and the reverse, each said
//! clearly; reward bundles load as before.

use crate::common;

use std::path::PathBuf;

use common::policy_golden::act_test_dir;
use common::{bundle_dir, expect_mismatch};
use sarm_runtime::bundle::BundleKind;
use sarm_runtime::policy::{PolicyBundle, StepperMode};
use sarm_runtime::Bundle;

/// An ONNX file to damage and how.
type Alteration<'a> = (&'a str, fn(&mut Vec<u8>));

/// A copy of act-test in a temp dir: the manifest edited by `edit`, the
/// ONNX files linked, or copied and altered by `alter`.
fn variant(
    name: &str,
    edit: impl FnOnce(&mut toml::Table),
    alter: Option<Alteration<'_>>,
) -> PathBuf {
    let src = act_test_dir();
    let dir = std::env::temp_dir().join(format!("sarm-policy-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["model.fp32.onnx", "model.int8.onnx"] {
        let from = src.join(file).canonicalize().unwrap();
        match alter {
            Some((which, f)) if which == file => {
                let mut bytes = std::fs::read(&from).unwrap();
                f(&mut bytes);
                std::fs::write(dir.join(file), bytes).unwrap();
            }
            _ => std::os::unix::fs::symlink(from, dir.join(file)).unwrap(),
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

fn at<'a>(t: &'a mut toml::Table, path: &[&str]) -> &'a mut toml::Table {
    path.iter()
        .fold(t, |t, k| t.get_mut(*k).unwrap().as_table_mut().unwrap())
}

fn first_image(t: &mut toml::Table) -> &mut toml::Table {
    at(t, &["observation"])["images"].as_array_mut().unwrap()[0]
        .as_table_mut()
        .unwrap()
}

/// Loads the variant and checks the refusal names `field`, `expected`, `found`.
fn refused(
    name: &str,
    edit: impl FnOnce(&mut toml::Table),
    field: &str,
    expected: &str,
    found: &str,
) {
    let dir = variant(name, edit, None);
    let err = PolicyBundle::load(&dir).unwrap_err();
    let _ = std::fs::remove_dir_all(&dir);
    expect_mismatch(err, field, expected, found);
}

#[test]
fn act_test_loads_with_its_schema() {
    let b = PolicyBundle::load(act_test_dir()).unwrap();
    assert_eq!(b.name(), "act-test");
    assert_eq!(b.chunk_size, 20);
    assert_eq!(b.mode, StepperMode::Queue { n_action_steps: 10 });
    assert_eq!(b.fps(), 50.0);
    assert_eq!(b.action_dim(), 14);
    let s = b.state.as_ref().unwrap();
    assert_eq!(s.names.len(), 14);
    assert_eq!(s.names[0], "left_waist");
    assert_eq!(b.cameras.len(), 1);
    let c = &b.cameras[0];
    assert_eq!((c.camera.as_str(), c.width, c.height), ("top", 48, 36));
    assert_eq!((c.source_width, c.source_height), (56, 42));
    assert_eq!(b.precisions().len(), 2);
    assert_eq!(
        BundleKind::of_dir(act_test_dir()).unwrap(),
        BundleKind::Policy
    );
    assert_eq!(
        BundleKind::of_dir(bundle_dir()).unwrap(),
        BundleKind::Reward
    );
}

#[test]
fn a_reward_bundle_is_not_a_policy_and_the_reverse() {
    let err = PolicyBundle::load(bundle_dir()).unwrap_err();
    expect_mismatch(err, "kind", "a policy bundle", "a reward bundle");
    let err = Bundle::load(act_test_dir()).unwrap_err();
    let msg = err.to_string();
    expect_mismatch(err, "kind", "a reward bundle", "a policy bundle");
    assert!(msg.contains("act-test"), "names the bundle: {msg}");
    // Reward bundles still load.
    Bundle::load(bundle_dir()).unwrap();
}

#[test]
fn file_hash_and_size_mismatches_name_the_field() {
    // The hash the manifest states (act-test is rebuilt by the exporter).
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(act_test_dir().join("bundle.toml")).unwrap())
            .unwrap();
    let stated = manifest["precision"]["int8"]["sha256"].as_str().unwrap();
    assert_eq!(stated.len(), 64);
    let dir = variant("sha", |_| {}, Some(("model.int8.onnx", |b| b[100] ^= 1)));
    let err = PolicyBundle::load(&dir).unwrap_err();
    let _ = std::fs::remove_dir_all(&dir);
    expect_mismatch(err, "precision.int8.sha256", stated, "model.int8.onnx");
    let dir = variant("bytes", |_| {}, Some(("model.fp32.onnx", |b| b.push(0))));
    let err = PolicyBundle::load(&dir).unwrap_err();
    let _ = std::fs::remove_dir_all(&dir);
    expect_mismatch(err, "precision.fp32.bytes", "468420", "468421 bytes");
    refused(
        "path",
        |t| {
            at(t, &["precision", "fp32"]).insert("path".into(), "../x.onnx".into());
        },
        "precision.fp32.path",
        "inside the bundle",
        "../x.onnx",
    );
}

#[test]
fn schema_rules_name_the_key() {
    refused(
        "schema",
        |t| {
            t.insert("schema_version".into(), 2.into());
        },
        "schema_version",
        "1",
        "2",
    );
    refused(
        "type",
        |t| {
            at(t, &["policy"]).insert("type".into(), "diffusion".into());
        },
        "policy.type",
        "act",
        "diffusion",
    );
    refused(
        "nsteps",
        |t| {
            at(t, &["policy"]).insert("n_action_steps".into(), 21.into());
        },
        "policy.n_action_steps",
        "1..=20",
        "21",
    );
    refused(
        "ensemble",
        |t| {
            at(t, &["policy"]).insert("temporal_ensemble_coeff".into(), 0.01.into());
        },
        "policy.n_action_steps",
        "1 with temporal_ensemble_coeff",
        "10",
    );
    refused(
        "fps",
        |t| {
            at(t, &["policy"]).insert("fps".into(), 0.0.into());
        },
        "policy.fps",
        "> 0",
        "0",
    );
    refused(
        "space",
        |t| {
            at(t, &["policy"]).insert("stepper_space".into(), "action".into());
        },
        "policy.stepper_space",
        "normalized",
        "action",
    );
    refused(
        "inputs",
        |t| {
            at(t, &["graph"]).insert(
                "inputs".into(),
                toml::Value::Array(vec![
                    "observation.images.top".into(),
                    "observation.state".into(),
                ]),
            );
        },
        "graph.inputs",
        "state, environment state, images",
        "observation.images.top",
    );
    refused(
        "outshape",
        |t| {
            at(t, &["graph"]).insert(
                "output_shape".into(),
                toml::Value::Array(vec![1.into(), 20.into(), 13.into()]),
            );
        },
        "graph.output_shape",
        "[1, 20, 14]",
        "[1, 20, 13]",
    );
    refused(
        "output",
        |t| {
            at(t, &["graph"]).insert("output".into(), "actions".into());
        },
        "graph.output",
        "action",
        "actions",
    );
    refused(
        "batch",
        |t| {
            at(t, &["graph"]).insert("batch".into(), 2.into());
        },
        "graph.batch",
        "1",
        "2",
    );
    refused(
        "lower",
        |t| {
            let l = at(t, &["action", "limits"]);
            let upper = l["upper"].as_array().unwrap()[3].clone();
            l["lower"].as_array_mut().unwrap()[3] = upper;
        },
        "action.limits.upper[3] (left_forearm_roll)",
        "> lower",
        "0.267",
    );
    refused(
        "maxstep",
        |t| {
            at(t, &["action", "limits"])["max_step"]
                .as_array_mut()
                .unwrap()[13] = 0.0.into();
        },
        "action.limits.max_step[13] (right_gripper)",
        "> 0",
        "0",
    );
    refused(
        "units",
        |t| {
            at(t, &["action"])["units"].as_array_mut().unwrap().pop();
        },
        "action.units",
        "14 values",
        "13 values",
    );
    refused(
        "dupname",
        |t| {
            at(t, &["action"])["names"].as_array_mut().unwrap()[1] = "left_waist".into();
        },
        "action.names",
        "unique",
        "left_waist",
    );
    refused(
        "statestat",
        |t| {
            at(t, &["observation", "state", "normalization"]).remove("max");
        },
        "observation.state.normalization.max",
        "14 values",
        "no such key",
    );
    refused(
        "straystat",
        |t| {
            at(t, &["observation", "state", "normalization"])
                .insert("mean".into(), toml::Value::Array(vec![0.0.into(); 14]));
        },
        "observation.state.normalization.mean",
        "only the stats of mode MIN_MAX",
        "mean",
    );
    refused(
        "statelen",
        |t| {
            at(t, &["action", "normalization"])["std"]
                .as_array_mut()
                .unwrap()
                .push(1.0.into());
        },
        "action.normalization.std",
        "14 values",
        "15 values",
    );
    refused(
        "imgnorm",
        |t| {
            at(first_image(t), &["normalization"])["mean"]
                .as_array_mut()
                .unwrap()
                .pop();
        },
        "observation.images[0].normalization.mean",
        "3 values",
        "2 values",
    );
    refused(
        "resize",
        |t| {
            first_image(t).insert("resize".into(), "shorter-side-center-crop".into());
        },
        "observation.images[0].resize",
        "stretch",
        "shorter-side-center-crop",
    );
    refused(
        "antialias",
        |t| {
            first_image(t).insert("antialias".into(), false.into());
        },
        "observation.images[0].antialias",
        "true",
        "false",
    );
    refused(
        "divisor",
        |t| {
            first_image(t).insert("pixel_divisor".into(), 0.0.into());
        },
        "observation.images[0].pixel_divisor",
        "> 0",
        "0",
    );
    refused(
        "stateshape",
        |t| {
            at(t, &["observation", "state"]).insert(
                "shape".into(),
                toml::Value::Array(vec![1.into(), 13.into()]),
            );
        },
        "observation.state.shape",
        "[1, 14]",
        "[1, 13]",
    );
    refused(
        "noimage",
        |t| {
            at(t, &["observation"]).remove("images");
            at(t, &["graph"]).insert(
                "inputs".into(),
                toml::Value::Array(vec!["observation.state".into()]),
            );
        },
        "observation.images",
        "at least one image or an environment state",
        "neither",
    );
    refused(
        "provenance",
        |t| {
            at(t, &["provenance"]).remove("export_command");
        },
        "provenance.export_command",
        "a string",
        "no such key",
    );
    refused(
        "nofp32",
        |t| {
            at(t, &["precision"]).remove("fp32");
        },
        "precision.fp32",
        "a [precision.fp32] table",
        "none",
    );
    refused(
        "badprec",
        |t| {
            let int8 = at(t, &["precision"])["int8"].clone();
            at(t, &["precision"]).insert("fp16".into(), int8);
        },
        "precision.fp16",
        "fp32 or int8",
        "fp16",
    );
    refused(
        "kind",
        |t| {
            t.insert("kind".into(), "planner".into());
        },
        "kind",
        "\"policy\", \"reward\"",
        "planner",
    );
}

#[test]
fn unknown_keys_and_wrong_types_are_refused_with_the_path() {
    let dir = variant(
        "unknown",
        |t| {
            at(t, &["policy"]).insert("n_obs_steps".into(), 1.into());
        },
        None,
    );
    let err = PolicyBundle::load(&dir).unwrap_err().to_string();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        err.contains("n_obs_steps") && err.contains("bundle.toml"),
        "{err}"
    );
    let dir = variant(
        "type",
        |t| {
            at(t, &["policy"]).insert("chunk_size".into(), "20".into());
        },
        None,
    );
    let err = PolicyBundle::load(&dir).unwrap_err().to_string();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(err.contains("chunk_size"), "{err}");
}
