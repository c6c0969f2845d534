//! The committed ALOHA cube-transfer bundle (models/aloha-transfer-cube, a SARM trained with
//! LeRobot on MuJoCo demonstrations) loads, and the engine path of `sarm label`
//! (`sarm_ros::label::label_bag`) on each committed held-out episode gives the progress that
//! LeRobot's own model gives for it: `episodes/<name>/golden.json`, written by
//! models/tools/sim/make_golden.py (PIL JPEG decode, PyTorch EfficientNet-lite0,
//! `SARMRewardModel.calculate_rewards` on centred windows), never by this code.
//!
//! Tolerance (`golden.json` → `tolerance`): the runtime decodes JPEG with zune-jpeg, the golden
//! with PIL (libjpeg-turbo), and their pixels differ by 0 or 1 LSB.
//! - Where LeRobot's top-1 minus top-2 stage probability margin exceeds
//!   `stage_when_margin_above` (0.2), the stage must match.
//! - Where the stage matches, progress must agree within `progress_abs` (0.02). Measured on
//!   the three committed episodes: at most 0.0043 (fp32), and every stage equal.
//! - A frame on a stage tie may flip stage under a 1-LSB change, and its progress then jumps by
//!   a stage prior (`pixel_pm1_sensitivity`). Such frames are counted, not compared, and must
//!   stay under 10% of the frames.
//!
//! Every backend x precision is held to these rules with the extra progress tolerance and the
//! stage-margin threshold of [`TOLERANCES`]. The int8 path (int8 image encoder + int8 stage and
//! subtask graphs) is also compared with fp32 on the same backend: stage agreement over the
//! held-out episodes at least [`INT8_STAGE_AGREEMENT`], progress within [`INT8_PROGRESS_BOUND`]
//! where the stage agrees (the figures are in models/aloha-transfer-cube/EVAL.md).

use std::path::{Path, PathBuf};

use sarm_ros::label::{label_bag, LabelOptions};
use sarm_runtime::backend::{Backend, BackendKind};
use sarm_runtime::{Bundle, HeadKind, Precision, ScorerConfig};
use serde_json::Value;

// In sarm-ros (not sarm-tests) so that it builds without the test build's FFmpeg `video`
// feature: tests/cross/ cross-builds and runs it on ARM64.
#[path = "../../tests/tests/common/mod.rs"]
mod common;

#[path = "../../runtime/tests/common/backends.rs"]
mod backends;

/// Per backend x precision against LeRobot's fp32 golden: extra progress tolerance on top of
/// the golden's `progress_abs`, and the LeRobot stage margin above which the stage must match
/// (the golden's `stage_when_margin_above`, 0.2, unless raised here). Measured maxima are
/// printed by the test. int8 runs the int8 image encoder (feature cosine >= 0.988 vs fp32,
/// bundle.toml provenance.int8.image_encoder); measured in Python with onnxruntime 1.32
/// (models/tools/sim/eval_int8_encoder.py): |progress - LeRobot| at most 0.037 (optimised) and
/// 0.049 (exact QDQ) where the stage matches, and no stage differs where the golden margin
/// exceeds 0.2. The int8 margin is 0.75 because a uniform +-1 LSB pixel shift (the JPEG decoder
/// difference) flips success_ep_0025 sparse frame 40 (golden margin 0.742) in int8.
const TOLERANCES: &[(BackendKind, Precision, f64, f64)] = &[
    (BackendKind::Tract, Precision::Fp32, 0.0, 0.2),
    (BackendKind::Ort, Precision::Fp32, 0.0, 0.2),
    (BackendKind::Tract, Precision::Int8, 0.04, 0.75),
    (BackendKind::Ort, Precision::Int8, 0.04, 0.75),
];

/// int8 vs fp32 on the same backend, over all committed held-out episodes and both heads.
/// Measured with onnxruntime 1.32 in Python (EVAL.md, eval_int8_encoder.py): 99.51% stage
/// agreement (404/406) both optimised and exact QDQ, max |progress diff| 0.037 / 0.049 where
/// the stage agrees. The bounds are the 99% target and the measured maximum plus 0.01.
const INT8_STAGE_AGREEMENT: f64 = 0.99;
const INT8_PROGRESS_BOUND: f64 = 0.06;

fn bundle_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/aloha-transfer-cube")
}

fn episodes() -> Vec<PathBuf> {
    let mut eps: Vec<PathBuf> = std::fs::read_dir(bundle_dir().join("episodes"))
        .expect("models/aloha-transfer-cube/episodes")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("golden.json").exists())
        .collect();
    eps.sort();
    eps
}

#[test]
fn aloha_bundle_loads_with_its_manifest() {
    let bundle = Bundle::load(bundle_dir()).expect("bundle loads");
    assert_eq!(bundle.name(), "aloha-transfer-cube");
    assert_eq!(bundle.window.fps, 10.0);
    let stages: Vec<(HeadKind, usize)> = bundle
        .heads
        .iter()
        .map(|h| (h.kind, h.num_stages()))
        .collect();
    assert_eq!(stages, vec![(HeadKind::Sparse, 3), (HeadKind::Dense, 6)]);
    let want = common::aloha_joint_names();
    assert_eq!(bundle.manifest.state.joint_names, want);
    assert!(
        episodes().len() >= 2,
        "at least two committed held-out episodes"
    );
}

struct Scored {
    frame: usize,
    stamp: i64,
    heads: Vec<(HeadKind, usize, f32)>,
}

fn label(bundle: &Bundle, bag: &Path, backend: &Backend, precision: Precision) -> Vec<Scored> {
    let opts = LabelOptions {
        scorer: ScorerConfig {
            precision,
            ..ScorerConfig::default()
        },
        backend: backend.clone(),
        ..LabelOptions::default()
    };
    let mut out = Vec::new();
    let report = label_bag(bag, bundle, &opts, |s, stamp| {
        out.push(Scored {
            frame: s.frame_index,
            stamp,
            heads: s
                .heads
                .iter()
                .map(|h| (h.kind, h.stage, h.progress))
                .collect(),
        })
    })
    .unwrap_or_else(|e| panic!("label {}: {e}", bag.display()));
    assert!(
        report.counts.is_empty(),
        "{}: dropped or flagged inputs {:?}",
        bag.display(),
        report.counts
    );
    out
}

fn check(backend: &Backend, precision: Precision) {
    let bundle = Bundle::load(bundle_dir()).unwrap();
    let &(_, _, extra, margin) = TOLERANCES
        .iter()
        .find(|t| t.0 == backend.kind() && t.1 == precision)
        .expect("a tolerance row");
    for ep in episodes() {
        let golden: Value =
            serde_json::from_str(&std::fs::read_to_string(ep.join("golden.json")).unwrap())
                .unwrap();
        let tol = golden["tolerance"]["progress_abs"].as_f64().unwrap() + extra;
        let margin_min = golden["tolerance"]["stage_when_margin_above"]
            .as_f64()
            .unwrap()
            .max(margin);
        let stamps = golden["stamps_ns"].as_array().unwrap();
        let scored = label(&bundle, &ep.join("bag"), backend, precision);
        assert_eq!(scored.len(), stamps.len(), "{}: frames", ep.display());
        let mut max_diff = 0.0f64;
        let mut stage_checked = 0;
        let mut near_ties_flipped = 0;
        for (f, s) in scored.iter().enumerate() {
            assert_eq!(s.frame, f);
            assert_eq!(s.stamp, stamps[f].as_i64().unwrap(), "frame {f} stamp");
            for &(kind, stage, progress) in &s.heads {
                let g = &golden[kind.as_str()];
                let gold_stage = g["stage"][f].as_u64().unwrap();
                if g["stage_margin"][f].as_f64().unwrap() > margin_min {
                    stage_checked += 1;
                    assert_eq!(
                        stage as u64,
                        gold_stage,
                        "{} {} {precision} {} frame {f}: stage",
                        ep.display(),
                        backend.kind(),
                        kind.as_str()
                    );
                } else if stage as u64 != gold_stage {
                    // a stage tie that a 1-LSB decoder difference may tip: counted, not compared
                    near_ties_flipped += 1;
                    continue;
                }
                let gold = g["progress"][f].as_f64().unwrap();
                let diff = (progress as f64 - gold).abs();
                max_diff = max_diff.max(diff);
                assert!(
                    diff <= tol,
                    "{} {} {precision} {} frame {f}: progress {progress} vs LeRobot {gold} (tolerance {tol})",
                    ep.display(),
                    backend.kind(),
                    kind.as_str()
                );
            }
        }
        // near-tie flips must stay rare
        assert!(
            near_ties_flipped * 20 <= 2 * scored.len(),
            "{}: {near_ties_flipped} stage flips at near-ties",
            ep.display()
        );
        println!(
            "{} ({} {precision}): {} frames, max |progress - LeRobot| {max_diff:.2e} (tolerance {tol}), \
             {stage_checked} stage checks, {near_ties_flipped} near-tie flips",
            ep.file_name().unwrap().to_string_lossy(),
            backend.kind(),
            scored.len()
        );
    }
}

#[test]
fn label_matches_lerobot_on_committed_episodes_per_backend_and_precision() {
    for (backend, precision) in backends::pairs() {
        check(&backend, precision);
    }
}

/// The int8 path against fp32 on the same backend, frame by frame over the held-out episodes.
#[test]
fn int8_agrees_with_fp32_on_held_out_episodes() {
    let bundle = Bundle::load(bundle_dir()).unwrap();
    assert!(
        bundle.manifest.precision["int8"].image_encoder.is_some(),
        "the bundle declares an int8 image encoder"
    );
    for backend in backends::all() {
        let (mut agree, mut total, mut max_diff, mut sum_diff) = (0usize, 0usize, 0.0f64, 0.0f64);
        for ep in episodes() {
            let bag = ep.join("bag");
            let a = label(&bundle, &bag, &backend, Precision::Fp32);
            let b = label(&bundle, &bag, &backend, Precision::Int8);
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(&b) {
                for (&(k, s32, p32), &(_, s8, p8)) in x.heads.iter().zip(&y.heads) {
                    total += 1;
                    let d = (p32 as f64 - p8 as f64).abs();
                    sum_diff += d;
                    if s32 == s8 {
                        agree += 1;
                        max_diff = max_diff.max(d);
                    } else {
                        println!(
                            "  {} {}: frame {} {k} stage {s32} (fp32) vs {s8} (int8)",
                            backend.kind(),
                            ep.file_name().unwrap().to_string_lossy(),
                            x.frame
                        );
                    }
                }
            }
        }
        let rate = agree as f64 / total as f64;
        println!(
            "{}: int8 vs fp32 on {} held-out episodes: stage agrees on {agree}/{total} ({:.2}%), \
             |progress diff| max {max_diff:.4} where the stage agrees, mean {:.4} over all",
            backend.kind(),
            episodes().len(),
            rate * 100.0,
            sum_diff / total as f64
        );
        assert!(
            rate >= INT8_STAGE_AGREEMENT,
            "{}: stage agreement {rate}",
            backend.kind()
        );
        assert!(
            max_diff <= INT8_PROGRESS_BOUND,
            "{}: progress diff {max_diff}",
            backend.kind()
        );
    }
}
