//! LeRobot's policy goldens (`models/<bundle>/golden/`, format in
//! models/tools/README.md "Policy goldens"): `golden.json` plus raw
//! little-endian arrays, each checked against its recorded SHA-256 and size
//! when read.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use sarm_runtime::policy::{Frame, Observation, PolicyStepper, StepperMode};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub fn act_test_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/act-test")
}

/// One array: values and shape.
#[derive(Debug, Clone)]
pub struct Array<T> {
    pub data: Vec<T>,
    pub shape: Vec<usize>,
}

impl<T: Copy> Array<T> {
    /// Values per leading index.
    pub fn row_len(&self) -> usize {
        self.shape[1..].iter().product()
    }

    pub fn row(&self, i: usize) -> &[T] {
        let n = self.row_len();
        &self.data[i * n..(i + 1) * n]
    }
}

pub struct Golden {
    pub dir: PathBuf,
    pub json: Value,
}

impl Golden {
    pub fn load(bundle_dir: &Path) -> Golden {
        let dir = bundle_dir.join("golden");
        let text = std::fs::read_to_string(dir.join("golden.json"))
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
        Golden {
            json: serde_json::from_str(&text).expect("golden.json parses"),
            dir,
        }
    }

    fn raw(&self, name: &str, dtype: &str) -> (Vec<u8>, Vec<usize>) {
        let meta = &self.json["arrays"][name];
        assert!(meta.is_object(), "golden has no array {name}");
        assert_eq!(meta["dtype"], dtype, "{name}");
        let path = self.dir.join(meta["path"].as_str().unwrap());
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            bytes.len() as u64,
            meta["bytes"].as_u64().unwrap(),
            "{name}"
        );
        let sha: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sha, meta["sha256"].as_str().unwrap(), "{name}: SHA-256");
        let shape = meta["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        (bytes, shape)
    }

    pub fn f32(&self, name: &str) -> Array<f32> {
        let (b, shape) = self.raw(name, "f32");
        let data = b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Array { data, shape }
    }

    pub fn i32(&self, name: &str) -> Array<i32> {
        let (b, shape) = self.raw(name, "i32");
        let data = b
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Array { data, shape }
    }

    pub fn u8(&self, name: &str) -> Array<u8> {
        let (data, shape) = self.raw(name, "u8");
        Array { data, shape }
    }

    pub fn modes(&self) -> &Vec<Value> {
        self.json["modes"].as_array().unwrap()
    }

    pub fn episodes(&self) -> &Vec<Value> {
        self.json["episodes"].as_array().unwrap()
    }

    /// The raw inputs of episode `name`: frames per camera and state.
    pub fn inputs(&self, episode: &str) -> EpisodeInputs {
        let ep = self
            .episodes()
            .iter()
            .find(|e| e["name"] == episode)
            .unwrap_or_else(|| panic!("no episode {episode}"));
        let frames = ep["frames"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(cam, name)| (cam.clone(), self.u8(name.as_str().unwrap())))
            .collect();
        EpisodeInputs {
            steps: ep["steps"].as_u64().unwrap() as usize,
            frames,
            state: self.f32(ep["state"].as_str().unwrap()),
        }
    }
}

pub struct EpisodeInputs {
    pub steps: usize,
    /// (camera, (steps, H, W, 3) u8 RGB).
    pub frames: Vec<(String, Array<u8>)>,
    pub state: Array<f32>,
}

impl EpisodeInputs {
    /// Frame `t` of `camera` as (width, height, rgb).
    pub fn frame(&self, camera: &str, t: usize) -> (u32, u32, &[u8]) {
        let (_, a) = self
            .frames
            .iter()
            .find(|(c, _)| c == camera)
            .unwrap_or_else(|| panic!("no frames for camera {camera}"));
        (a.shape[2] as u32, a.shape[1] as u32, a.row(t))
    }
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// LeRobot's settings of a golden mode.
pub fn mode_of(m: &Value) -> StepperMode {
    match m["temporal_ensemble_coeff"].as_f64() {
        Some(coeff) => StepperMode::TemporalEnsemble {
            coeff: coeff as f32,
        },
        None => StepperMode::Queue {
            n_action_steps: m["n_action_steps"].as_u64().unwrap() as usize,
        },
    }
}

/// A camera frame owned by the test (raw golden inputs are copied, bag
/// frames decoded), lent to the stepper as a [`Frame`].
pub struct OwnedFrame {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

impl From<&Frame<'_>> for OwnedFrame {
    fn from(f: &Frame<'_>) -> Self {
        OwnedFrame {
            width: f.width,
            height: f.height,
            rgb: f.rgb.to_vec(),
        }
    }
}

/// Measured differences of one run (a mode x episode).
#[derive(Debug, Default, Clone)]
pub struct Agreement {
    /// Largest |action - LeRobot's| over the steps, in action units.
    pub action: f32,
    /// Largest |chunk - LeRobot's| over the model calls, normalised units.
    pub chunk: f32,
    /// (step, |chunk - LeRobot's|) of every model call.
    pub chunk_per_call: Vec<(usize, f32)>,
    /// |action - LeRobot's| of every step.
    pub action_per_step: Vec<f32>,
    pub steps: usize,
    pub calls: usize,
}

/// Steps one golden episode from its inputs (`state` rows and `frames_at(t)`,
/// one frame per camera in the stepper's order); asserts what must be exact
/// (when the model runs, queue lengths, ensemble counts and weights) and
/// returns the measured differences.
pub fn run_episode(
    stepper: &mut PolicyStepper,
    golden: &Golden,
    mode: &Value,
    episode: &Value,
    state: &Array<f32>,
    frames_at: &mut dyn FnMut(usize) -> Vec<OwnedFrame>,
) -> Agreement {
    let arrays = &episode["arrays"];
    let name = |k: &str| arrays[k].as_str().unwrap_or_else(|| panic!("no array {k}"));
    let want_action = golden.f32(name("action"));
    let want_ran = golden.u8(name("model_ran"));
    let want_chunk = golden.f32(name("chunk"));
    let steps = want_action.shape[0];
    assert!(state.shape[0] >= steps, "fewer inputs than golden steps");
    let queue_len = arrays
        .get("queue_len_before")
        .map(|_| golden.i32(name("queue_len_before")));
    let counts = arrays
        .get("ensemble_count")
        .map(|_| golden.i32(name("ensemble_count")));
    if let Some(w) = arrays.get("ensemble_weights") {
        let w = golden.f32(w.as_str().unwrap());
        let cs = golden.f32(name("ensemble_weights_cumsum"));
        let e = stepper.selector().ensemble().expect("ensembling mode");
        assert_eq!(
            e.weights(),
            w.data.as_slice(),
            "ensemble weights bit for bit"
        );
        assert_eq!(e.weights_cumsum(), cs.data.as_slice(), "cumsum bit for bit");
    }
    let label = format!("{} {}", mode["name"], episode["episode"]);
    stepper.reset();
    let mut agreement = Agreement::default();
    for t in 0..steps {
        if let Some(q) = &queue_len {
            let before = stepper.selector().queue_len().unwrap();
            assert_eq!(
                before as i32, q.data[t],
                "{label} step {t}: queue length before"
            );
        }
        let expect_run = want_ran.data[t] == 1;
        assert_eq!(
            stepper.needs_inference(),
            expect_run,
            "{label} step {t}: needs_inference"
        );
        let owned = frames_at(t);
        let frames: Vec<Frame<'_>> = owned
            .iter()
            .map(|f| Frame {
                width: f.width,
                height: f.height,
                rgb: &f.rgb,
            })
            .collect();
        let obs = Observation {
            frames: &frames,
            state: state.row(t),
            environment_state: &[],
        };
        let step = stepper.step(&obs).unwrap();
        assert_eq!(step.model_ran, expect_run, "{label} step {t}: model ran");
        let d = max_abs_diff(step.action, want_action.row(t));
        agreement.action = agreement.action.max(d);
        agreement.action_per_step.push(d);
        if step.model_ran {
            let call = agreement.chunk_per_call.len();
            let c = max_abs_diff(stepper.model().chunk(), want_chunk.row(call));
            agreement.chunk = agreement.chunk.max(c);
            agreement.chunk_per_call.push((t, c));
        }
        if let Some(c) = &counts {
            let ours: Vec<i32> = stepper
                .selector()
                .ensemble()
                .unwrap()
                .before_consume()
                .map(|(n, _)| n as i32)
                .collect();
            assert_eq!(ours, c.row(t), "{label} step {t}: ensemble counts");
        }
    }
    agreement.calls = agreement.chunk_per_call.len();
    assert_eq!(agreement.calls, want_chunk.shape[0], "{label}: model calls");
    agreement.steps = steps;
    agreement
}
