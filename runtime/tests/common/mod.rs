//! Shared loading of the committed test bundle and LeRobot's golden vectors.
#![allow(dead_code)]

pub mod backends;
pub mod policy_golden;

use std::collections::BTreeMap;
use std::path::PathBuf;

use sarm_runtime::{FrameData, FrameScore, Scorer};
use serde::Deserialize;

pub fn bundle_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/sarm-test")
}

#[derive(Debug, Deserialize)]
pub struct RewardGolden {
    pub task: String,
    pub episodes: Vec<Episode>,
}

#[derive(Debug, Deserialize)]
pub struct Episode {
    pub episode_index: usize,
    pub length: usize,
    pub frame_features: Vec<Vec<f32>>,
    pub joint_positions: Vec<Vec<f32>>,
    pub windows: Vec<Window>,
}

#[derive(Debug, Deserialize)]
pub struct Window {
    pub layout: String,
    pub scored_frame: usize,
    pub frame_indices: Vec<usize>,
    pub readout: usize,
    pub heads: BTreeMap<String, HeadGolden>,
}

#[derive(Debug, Deserialize)]
pub struct HeadGolden {
    pub stage_probs: Vec<Vec<f32>>,
    pub confidence: Vec<f32>,
    pub progress: Vec<f32>,
}

impl HeadGolden {
    pub fn argmax(&self, t: usize) -> usize {
        let p = &self.stage_probs[t];
        let mut best = 0;
        for i in 1..p.len() {
            if p[i] > p[best] {
                best = i;
            }
        }
        best
    }
}

pub fn reward_golden() -> RewardGolden {
    let path = bundle_dir().join("golden/reward.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// Streams an episode's features through the scorer; returns every score.
pub fn stream(scorer: &mut Scorer, ep: &Episode) -> Vec<FrameScore> {
    let mut out = Vec::new();
    for f in 0..ep.length {
        scorer
            .push(
                FrameData::Features(&ep.frame_features[f]),
                &ep.joint_positions[f],
                &mut |s| out.push(s.clone()),
            )
            .unwrap();
    }
    scorer.finish(&mut |s| out.push(s.clone())).unwrap();
    out
}

/// Asserts `err` is a field mismatch naming `field`, with `expected` and
/// `found` in its values (the bundle loaders' error for a wrong field).
pub fn expect_mismatch(err: sarm_runtime::BundleError, field: &str, expected: &str, found: &str) {
    let msg = err.to_string();
    match err {
        sarm_runtime::BundleError::Mismatch {
            field: f,
            expected: e,
            found: fo,
        } => {
            assert!(
                f.contains(field),
                "field {f:?} should name {field:?}: {msg}"
            );
            assert!(
                e.contains(expected),
                "expected {e:?} should contain {expected:?}: {msg}"
            );
            assert!(
                fo.contains(found),
                "found {fo:?} should contain {found:?}: {msg}"
            );
        }
        other => panic!("expected a field mismatch for {field}, got: {other}"),
    }
}
