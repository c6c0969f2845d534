//! `sarm label` on a bag written by rosbags (fixtures/make_label_bag.py)
//! against LeRobot's progress for the same frames
//! (models/tools/make_label_fixture.py), read back with pyarrow and
//! mcap-ros2-support, on every backend x precision ([`TOLERANCES`]).

use std::path::PathBuf;
use std::process::Command;

use sarm_runtime::backend::{Backend, BackendKind};
use sarm_runtime::Precision;
use serde_json::Value;

mod common;
use common::run_python;

#[path = "../../runtime/tests/common/backends.rs"]
mod backends;
use backends::{tolerance, Tolerance};

/// `sarm label` against LeRobot fp32 per backend x precision: |progress|
/// within `value` where the stage agrees, and the stage agreeing on at
/// least `agreement` of the frames (fp32: all). int8 runs the int8 image
/// encoder (features within cosine 0.98 of fp32 on these synthetic
/// frames, stem and blocks 0-2 float): bounds measured with the previous
/// all-int8 encoder (cosine 0.89), kept as they are.
const TOLERANCES: &[Tolerance] = &[
    Tolerance {
        backend: BackendKind::Tract,
        precision: Precision::Fp32,
        value: 1e-4,
        agreement: 1.0,
    },
    Tolerance {
        backend: BackendKind::Ort,
        precision: Precision::Fp32,
        value: 1e-4,
        agreement: 1.0,
    },
    Tolerance {
        backend: BackendKind::Tract,
        precision: Precision::Int8,
        value: 0.1,
        agreement: 0.9,
    },
    Tolerance {
        backend: BackendKind::Ort,
        precision: Precision::Int8,
        value: 0.1,
        agreement: 0.9,
    },
];

/// The `sarm label` flags that select `backend` and `precision`.
fn backend_args(backend: &Backend, precision: Precision) -> Vec<String> {
    let mut v = vec![
        "--backend".to_string(),
        backend.kind().to_string(),
        "--precision".to_string(),
        precision.to_string(),
    ];
    if let Some(lib) = &backend.describe().library {
        v.push("--ort-library".into());
        v.push(lib.display().to_string());
    }
    v
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/label")
}

fn label(extra: &[&str], tag: &str) -> (PathBuf, PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("sarm-label-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (parquet, mcap) = (dir.join("sarm_progress.parquet"), dir.join("progress.mcap"));
    let out = Command::new(env!("CARGO_BIN_EXE_sarm"))
        .arg("label")
        .arg(fixture().join("bag"))
        .arg("--bundle")
        .arg(root().join("models/sarm-test"))
        .arg("--out")
        .arg(&parquet)
        .arg("--mcap")
        .arg(&mcap)
        .args(["--episode-index", "3", "--index-offset", "1000"])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (parquet, mcap, stdout)
}

fn reference() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture().join("reference.json")).unwrap())
        .unwrap()
}

#[test]
fn label_matches_lerobot_per_backend_and_precision() {
    for (backend, precision) in backends::pairs() {
        let tol = tolerance(TOLERANCES, &backend, precision);
        let args = backend_args(&backend, precision);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (parquet, _, _) = label(&args, &format!("{}-{precision}", backend.kind()));
        let reference = reference();
        let n = reference["frames"].as_u64().unwrap() as usize;
        let table: Value = serde_json::from_str(&run_python("read_parquet.py", &parquet)).unwrap();
        let mut worst = 0.0f64;
        for f in 0..n {
            for head in ["sparse", "dense"] {
                let ours = table["data"][format!("progress_{head}")][f]
                    .as_f64()
                    .unwrap();
                let gold = reference["progress"][head][f].as_f64().unwrap();
                worst = worst.max((ours - gold).abs());
            }
        }
        // A stage flip moves progress by a stage prior: such values fall outside the bound.
        let within = (0..n)
            .flat_map(|f| ["sparse", "dense"].map(|h| (f, h)))
            .filter(|&(f, h)| {
                let ours = table["data"][format!("progress_{h}")][f].as_f64().unwrap();
                let gold = reference["progress"][h][f].as_f64().unwrap();
                (ours - gold).abs() <= tol.value as f64
            })
            .count();
        let rate = within as f64 / (2 * n) as f64;
        println!(
            "sarm label {} {precision} vs LeRobot on {n} frames: {:.1}% of progress values within \
             {}, max |diff| {worst:.2e}",
            backend.kind(),
            rate * 100.0,
            tol.value
        );
        assert!(
            rate >= tol.agreement,
            "{} {precision}: only {:.1}% of progress values within {}",
            backend.kind(),
            rate * 100.0,
            tol.value
        );
    }
}

#[test]
fn label_matches_lerobot_and_writes_lerobot_parquet() {
    let reference = reference();
    let n = reference["frames"].as_u64().unwrap() as usize;
    let (parquet, mcap, stdout) = label(&[], "fp32");
    assert!(
        stdout.contains(&format!("labelled {n} frames ({n} scored)")),
        "{stdout}"
    );
    // The decoy joint states 17 ms after each frame are never chosen.
    assert!(!stdout.contains("joints_outside_slop"), "{stdout}");

    let table: Value = serde_json::from_str(&run_python("read_parquet.py", &parquet)).unwrap();
    let columns: Vec<(String, String)> = table["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c[0].as_str().unwrap().into(), c[1].as_str().unwrap().into()))
        .collect();
    let want: Vec<(String, String)> = [
        ("index", "int64"),
        ("episode_index", "int64"),
        ("frame_index", "int64"),
        ("progress_sparse", "float"),
        ("progress_dense", "float"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(columns, want);
    assert!(table["metadata"]["reward_model_path"]
        .as_str()
        .unwrap()
        .ends_with("sarm-test"));
    let data = &table["data"];
    let mut max_diff = 0.0f64;
    for f in 0..n {
        assert_eq!(data["index"][f], 1000 + f as i64);
        assert_eq!(data["episode_index"][f], 3);
        assert_eq!(data["frame_index"][f], f as i64);
        for head in ["sparse", "dense"] {
            let ours = data[format!("progress_{head}")][f].as_f64().unwrap();
            let gold = reference["progress"][head][f].as_f64().unwrap();
            max_diff = max_diff.max((ours - gold).abs());
            assert!(
                (ours - gold).abs() <= 1e-4,
                "{head} frame {f}: {ours} vs LeRobot {gold}"
            );
        }
    }
    println!("sarm label vs LeRobot on {n} frames: max |progress diff| {max_diff:.2e}");

    // The MCAP of Progress messages decodes with mcap-ros2-support.
    let lines: Vec<Value> = run_python("read_mcap.py", &mcap)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2 * n);
    let stamps = reference["stamps_ns"].as_array().unwrap();
    for l in &lines {
        let m = &l["msg"];
        let f = m["frame_index"].as_u64().unwrap() as usize;
        let head = m["head"].as_str().unwrap();
        let gold = reference["stage"][head][f].as_u64().unwrap();
        assert_eq!(
            m["stage"].as_u64().unwrap(),
            gold,
            "{head} stage at frame {f}"
        );
        let stamp = m["header"]["stamp"]["sec"].as_i64().unwrap() * 1_000_000_000
            + m["header"]["stamp"]["nanosec"].as_i64().unwrap();
        assert_eq!(stamp, stamps[f].as_i64().unwrap());
        assert_eq!(m["episode_index"], 3);
    }
}

#[test]
fn label_with_stride_interpolates_like_lerobot() {
    let reference = reference();
    let n = reference["frames"].as_u64().unwrap() as usize;
    let (parquet, _, stdout) = label(&["--stride", "3"], "stride");
    assert!(
        stdout.contains(&format!("labelled {n} frames (12 scored)")),
        "{stdout}"
    );
    let table: Value = serde_json::from_str(&run_python("read_parquet.py", &parquet)).unwrap();
    let p = &table["data"]["progress_sparse"];
    let gold = &reference["progress"]["sparse"];
    for f in (0..n).step_by(3) {
        assert!((p[f].as_f64().unwrap() - gold[f].as_f64().unwrap()).abs() <= 1e-4);
    }
    // In between: linear between the scored neighbours (np.interp).
    for f in [1usize, 2, 4, 32] {
        let (a, b) = (f / 3 * 3, f / 3 * 3 + 3);
        let (ya, yb) = (gold[a].as_f64().unwrap(), gold[b].as_f64().unwrap());
        let want = ya + (yb - ya) * (f - a) as f64 / 3.0;
        assert!((p[f].as_f64().unwrap() - want).abs() <= 2e-4, "frame {f}");
    }
    // Past the last scored frame (33), the value is held, as np.interp does.
    assert!((p[n - 1].as_f64().unwrap() - gold[33].as_f64().unwrap()).abs() <= 1e-4);
}

#[test]
fn label_reports_a_wrong_topic_clearly() {
    let out = Command::new(env!("CARGO_BIN_EXE_sarm"))
        .arg("label")
        .arg(fixture().join("bag"))
        .arg("--bundle")
        .arg(root().join("models/sarm-test"))
        .args([
            "--out",
            "/tmp/never-written.parquet",
            "--camera-topic",
            "/camera/front",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/camera/front") && stderr.contains("/camera/top/image_raw/compressed"),
        "{stderr}"
    );
}

/// Several bags in one call (`--jobs 2`): one episode each, numbered from
/// `--episode-index`, their `index` ranges following on from
/// `--index-offset` in the order the bags were given, each episode's
/// progress LeRobot's, whichever worker labelled it.
#[test]
fn several_bags_label_in_parallel_in_the_order_given() {
    let reference = reference();
    let n = reference["frames"].as_u64().unwrap() as usize;
    let bag = fixture().join("bag");
    let bag = bag.to_str().unwrap();
    let (parquet, mcap, stdout) = label(&[bag, bag, "--jobs", "2"], "jobs");
    assert!(
        stdout.contains(&format!(
            "labelled {} frames ({} scored) from 3 bags",
            3 * n,
            3 * n
        )),
        "{stdout}"
    );
    let table: Value = serde_json::from_str(&run_python("read_parquet.py", &parquet)).unwrap();
    let data = &table["data"];
    assert_eq!(data["index"].as_array().unwrap().len(), 3 * n);
    for e in 0..3 {
        for f in 0..n {
            let row = e * n + f;
            assert_eq!(data["index"][row], (1000 + row) as i64);
            assert_eq!(data["episode_index"][row], (3 + e) as i64);
            assert_eq!(data["frame_index"][row], f as i64);
            for head in ["sparse", "dense"] {
                let ours = data[format!("progress_{head}")][row].as_f64().unwrap();
                let gold = reference["progress"][head][f].as_f64().unwrap();
                assert!(
                    (ours - gold).abs() <= 1e-4,
                    "episode {e} {head} frame {f}: {ours} vs LeRobot {gold}"
                );
            }
        }
    }
    // Every episode's Progress messages reach the MCAP, with its episode index.
    let mut per_episode = [0usize; 3];
    for l in run_python("read_mcap.py", &mcap).lines() {
        let l: Value = serde_json::from_str(l).unwrap();
        let e = l["msg"]["episode_index"].as_u64().unwrap() as usize;
        per_episode[e - 3] += 1;
    }
    assert_eq!(per_episode, [2 * n; 3]);
}

/// A bag that cannot be labelled fails the call, naming it; nothing is written.
#[test]
fn a_bad_bag_among_several_fails_the_call_and_writes_nothing() {
    let dir = std::env::temp_dir().join(format!("sarm-label-{}-badbag", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("sarm_progress.parquet");
    let missing = dir.join("no-such-bag");
    let o = Command::new(env!("CARGO_BIN_EXE_sarm"))
        .arg("label")
        .arg(fixture().join("bag"))
        .arg(&missing)
        .arg("--bundle")
        .arg(root().join("models/sarm-test"))
        .arg("--out")
        .arg(&out)
        .args(["--jobs", "2"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("no-such-bag") && stderr.contains("1 of 2 bags"),
        "{stderr}"
    );
    assert!(!out.exists());
}
