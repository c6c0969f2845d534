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
//! int8 is held to the same rules, with `progress_abs` + `INT8_EXTRA`.

use std::path::{Path, PathBuf};

use sarm_ros::label::{label_bag, LabelOptions};
use sarm_runtime::{Bundle, HeadKind, Precision, ScorerConfig};
use serde_json::Value;

/// Extra progress tolerance for int8 against LeRobot's fp32 golden. Measured on the three
/// committed episodes: int8 is at most 0.013 from the golden (fp32 at most 0.0043), so the
/// int8 bound of 0.05 is about 4x that. The int8 vs fp32 difference on all held-out episodes
/// is in models/aloha-transfer-cube/EVAL.md.
const INT8_EXTRA: f64 = 0.03;

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
    let sides = ["left", "right"];
    let joints = [
        "waist",
        "shoulder",
        "elbow",
        "forearm_roll",
        "wrist_angle",
        "wrist_rotate",
        "gripper",
    ];
    let want: Vec<String> = sides
        .iter()
        .flat_map(|s| joints.iter().map(move |j| format!("{s}_{j}")))
        .collect();
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

fn label(bundle: &Bundle, bag: &Path, precision: Precision) -> Vec<Scored> {
    let opts = LabelOptions {
        scorer: ScorerConfig {
            precision,
            ..ScorerConfig::default()
        },
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

fn check(precision: Precision, extra: f64) {
    let bundle = Bundle::load(bundle_dir()).unwrap();
    for ep in episodes() {
        let golden: Value =
            serde_json::from_str(&std::fs::read_to_string(ep.join("golden.json")).unwrap())
                .unwrap();
        let tol = golden["tolerance"]["progress_abs"].as_f64().unwrap() + extra;
        let margin_min = golden["tolerance"]["stage_when_margin_above"]
            .as_f64()
            .unwrap();
        let stamps = golden["stamps_ns"].as_array().unwrap();
        let scored = label(&bundle, &ep.join("bag"), precision);
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
                        "{} {precision} {} frame {f}: stage",
                        ep.display(),
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
                    "{} {precision} {} frame {f}: progress {progress} vs LeRobot {gold} (tolerance {tol})",
                    ep.display(),
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
            "{} ({precision}): {} frames, max |progress - LeRobot| {max_diff:.2e} (tolerance {tol}), \
             {stage_checked} stage checks, {near_ties_flipped} near-tie flips",
            ep.file_name().unwrap().to_string_lossy(),
            scored.len()
        );
    }
}

#[test]
fn label_fp32_matches_lerobot_on_committed_episodes() {
    check(Precision::Fp32, 0.0);
}

#[test]
fn label_int8_stays_near_lerobot_on_committed_episodes() {
    check(Precision::Int8, INT8_EXTRA);
}
