//! The `sarm` binary on the committed test bundle.

use std::path::PathBuf;
use std::process::Command;

fn sarm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sarm"))
}

fn bundle() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/sarm-test")
}

#[test]
fn inspect_prints_manifest_and_signatures() {
    let out = sarm().arg("inspect").arg(bundle()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "bundle      sarm-test",
        "head sparse (3 stages)",
        "head dense (5 stages)",
        "output delay 12 frames",
        "in  image_features",
        "out sparse_logits",
        "out dense_tau",
        "stage.int8.onnx",
        "lerobot",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
}

#[test]
fn inspect_of_a_missing_bundle_says_what_is_wrong() {
    let out = sarm()
        .args(["inspect", "/nonexistent/bundle"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/bundle"), "{stderr}");
}

#[test]
fn bench_reports_every_step_for_both_precisions() {
    let out = sarm()
        .arg("bench")
        .arg(bundle())
        .args(["--iterations", "3", "--warmup", "1", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let has = |step: &str, prec: &str| {
        rows.iter().any(|r| {
            r["step"] == step
                && r["precision"] == prec
                && r["iterations"] == 3
                && r["p50_ms"].as_f64().unwrap() > 0.0
        })
    };
    assert!(has("encoder model", "fp32"));
    for p in ["fp32", "int8"] {
        assert!(has("stage model", p), "{rows:?}");
        assert!(has("subtask model (sparse)", p));
        assert!(has("subtask model (dense)", p));
    }
}

#[test]
fn bench_rejects_bad_arguments() {
    let out = sarm()
        .arg("bench")
        .arg(bundle())
        .args(["--image-size", "640by480"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("WIDTHxHEIGHT"));
}

fn policy_bundle() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/act-test")
}

#[test]
fn inspect_shows_a_policy_bundle() {
    let out = sarm().arg("inspect").arg(policy_bundle()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "bundle      act-test (policy",
        "policy  act at 50 Hz, chunk_size 20, n_action_steps 10",
        "action queue (model every 10 ticks",
        "camera \"top\" -> \"observation.images.top\" NCHW 3x36x48 RGB; from 56x42 by stretch",
        "right_gripper",
        "model.int8.onnx",
        "in  observation.state",
        "out action",
        "f32 [1, 20, 14]",
        "lerobot_config.dim_model",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
}

#[test]
fn bench_measures_the_policy_step() {
    let out = sarm()
        .arg("bench")
        .arg(policy_bundle())
        .args(["--iterations", "3", "--warmup", "1", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    for p in ["fp32", "int8"] {
        for step in [
            "policy observation prep",
            "policy model",
            "policy step (model runs)",
            "policy step (from queue)",
            "policy step (ensembling)",
        ] {
            assert!(
                rows.iter().any(|r| r["step"] == step
                    && r["precision"] == p
                    && r["iterations"] == 3
                    && r["p50_ms"].as_f64().unwrap() > 0.0),
                "{step} {p}: {rows:?}"
            );
        }
    }
}
