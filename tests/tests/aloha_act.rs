//! The committed trained ALOHA ACT (models/aloha-act: LeRobot ACT trained on joint-space
//! MuJoCo demonstrations of the cube transfer) against LeRobot's own `select_action`.
//!
//! The golden episodes are closed-loop runs of LeRobot's policy in the joint sim, recorded as
//! rosbag2 MCAP exactly as a robot publishes them (640x480 JPEG, `/joint_states`). Here they go
//! through the node's own input path: the bag reader, `sensor_msgs` CDR, the node's JPEG decoder
//! (zune-jpeg) and joint matching by name; then the policy stepper, in both of LeRobot's modes,
//! per backend x precision. The goldens are LeRobot 0.4.4's `predict_action` with PIL's decoder
//! (models/tools/sim/make_act_golden.py), never this code.
//!
//! Two checks per mode x episode:
//! 1. The model alone, fed LeRobot's own normalised input tensors of every recorded model call
//!    (`call_*_normalized`, no JPEG decoder in the way): the chunk in action units within
//!    [`TOLERANCES`] (fp32: the 1e-4; int8: [`INT8_CHUNK_BOUND`] for the whole chunk).
//! 2. End to end as the node runs it: every step's action within that bound plus
//!    [`DECODER_SLACK`], with the refill steps, queue lengths and ensemble counts exactly
//!    LeRobot's. The slack is for the decoder alone: zune-jpeg and PIL's libjpeg-turbo round
//!    differently (each decoded frame's SHA-256 is compared with PIL's, `decoded_sha256`, and the
//!    count printed), so no bit-for-bit bound is possible through it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sarm_ros::bag::read_bag;
use sarm_ros::image::decode_compressed;
use sarm_ros::msg::{CompressedImage, JointState, RosMessage};
use sarm_runtime::backend::BackendKind;
use sarm_runtime::policy::{Frame, Observation, PolicyBundle, PolicyStepper, StepperOptions};
use sarm_runtime::Precision;
use sha2::{Digest, Sha256};

mod common;

#[path = "../../runtime/tests/common/backends.rs"]
mod backends;
#[path = "../../runtime/tests/common/policy_golden.rs"]
mod policy_golden;

use backends::{tolerance, Tolerance};
use policy_golden::{max_abs_diff, mode_of, run_episode, Array, Golden, OwnedFrame};

/// Largest |action - LeRobot's| in action units, the model fed LeRobot's own input tensors.
/// fp32: the 1e-4. int8: the generator measured 0.0263 stepping LeRobot's episodes with
/// onnxruntime and tract in Python (golden.json `int8_action_abs_measured`); the bound is 2x that
/// (`int8_action_abs`). onnxruntime fuses QDQ into integer kernels,
/// tract evaluates it literally: the same bound for both. Measured figures are printed.
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
        value: 0.053,
        agreement: 1.0,
    },
    Tolerance {
        backend: BackendKind::Ort,
        precision: Precision::Int8,
        value: 0.053,
        agreement: 1.0,
    },
];

fn bundle_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/aloha-act")
}

/// One recorded episode as the node would receive it.
struct Recorded {
    jpegs: Vec<CompressedImage>,
    /// Joint positions in the bundle's state order, float32 as the node feeds them.
    state: Array<f32>,
}

fn read_episode(bag: &Path, camera_topic: &str, joint_topic: &str, names: &[String]) -> Recorded {
    let mut jpegs = Vec::new();
    let mut state = Vec::new();
    let mut steps = 0;
    let stats = read_bag(bag, |m| {
        if m.topic == camera_topic {
            jpegs.push(CompressedImage::from_cdr(m.data).expect("CompressedImage CDR"));
        } else if m.topic == joint_topic {
            let js = JointState::from_cdr(m.data).expect("JointState CDR");
            for n in names {
                let i = js
                    .name
                    .iter()
                    .position(|x| x == n)
                    .unwrap_or_else(|| panic!("joint {n} missing"));
                state.push(js.position[i] as f32);
            }
            steps += 1;
        }
    })
    .unwrap_or_else(|e| panic!("{}: {e}", bag.display()));
    assert!(stats.damaged.is_empty(), "{:?}", stats.damaged);
    assert_eq!(jpegs.len(), steps, "one frame per joint state");
    Recorded {
        jpegs,
        state: Array {
            data: state,
            shape: vec![steps, names.len()],
        },
    }
}

fn decode(msg: &CompressedImage) -> OwnedFrame {
    let mut img = image::RgbImage::new(1, 1);
    decode_compressed(msg, &mut img).expect("JPEG decodes");
    OwnedFrame {
        width: img.width(),
        height: img.height(),
        rgb: img.into_raw(),
    }
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn aloha_act_loads_within_its_size_budget() {
    let bundle = PolicyBundle::load(bundle_dir()).expect("aloha-act loads");
    assert_eq!(bundle.name(), "aloha-act");
    assert_eq!(bundle.fps(), 50.0);
    assert_eq!(bundle.chunk_size, 50);
    let joints = common::aloha_joint_names();
    assert_eq!(bundle.action.names, joints, "joint-position commands");
    assert_eq!(bundle.state.as_ref().expect("a state input").names, joints);
    let size: u64 = bundle
        .precisions()
        .into_iter()
        .map(|p| {
            let (path, _) = bundle.model_file(p).expect("model file");
            std::fs::metadata(&path).unwrap().len()
        })
        .sum();
    assert_eq!(bundle.precisions().len(), 2, "fp32 and int8");
    assert!(size <= 80_000_000, "fp32 + int8 = {size} bytes > 80 MB");
    let (lower, upper, step) = bundle.limits();
    assert_eq!(lower.len(), 14);
    assert!(lower.iter().zip(upper).all(|(l, u)| l < u));
    assert!(step.iter().all(|s| *s > 0.0));
}

/// Largest |action - LeRobot's| added end to end for the JPEG decoder: the node decodes with
/// zune-jpeg, the goldens with PIL (libjpeg-turbo), and no frame of the golden episodes decodes
/// bit for bit alike (their IDCT and chroma upsampling round differently; the test prints how
/// many match). The model itself is held to [`TOLERANCES`] on LeRobot's own input tensors; this
/// slack covers only the different pixels (measured at most 7.8e-4 in fp32, printed; the
/// decoder is pinned, so the figure moves only when it does).
const DECODER_SLACK: f32 = 1e-3;

/// int8 on LeRobot's tensors, the whole chunk (all 50 future ticks, of which the served actions
/// are held to [`TOLERANCES`] end to end): measured at most 0.054 (onnxruntime, a far-future
/// tick of an early call), bound 1.5x that. fp32 chunks are held to the fp32 tolerance.
const INT8_CHUNK_BOUND: f32 = 0.08;

/// The prepared image may differ from LeRobot's by this much (normalised units) where the
/// decoders differ: a few grey levels after the antialiased resize, divided by the dataset std.
const IMAGE_PREPARATION_BOUND: f32 = 0.25;

fn check(backend_kind: BackendKind, precision: Precision) -> Vec<String> {
    let Some(backend) = backends::all()
        .into_iter()
        .find(|b| b.kind() == backend_kind)
    else {
        return vec![format!(
            "{backend_kind} {precision}: backend NOT tested in this run"
        )];
    };
    let tol = tolerance(TOLERANCES, &backend, precision).value;
    let chunk_tol = match precision {
        Precision::Int8 => INT8_CHUNK_BOUND,
        _ => tol,
    };
    let bundle = PolicyBundle::load(bundle_dir()).unwrap();
    let golden = Golden::load(&bundle_dir());
    let state_names = bundle.state.as_ref().unwrap().names.clone();
    let unnormalise = |chunk: &[f32]| -> Vec<f32> {
        let dim = bundle.action_dim();
        chunk
            .iter()
            .enumerate()
            .map(|(i, &x)| bundle.action.normalization.unnormalize(i % dim, x))
            .collect()
    };
    let mut report = Vec::new();
    let mut recorded = BTreeMap::new();
    for ep in golden.episodes() {
        let name = ep["name"].as_str().unwrap().to_string();
        let rec = read_episode(
            &bundle_dir().join(ep["bag"].as_str().unwrap()),
            ep["camera_topic"].as_str().unwrap(),
            ep["joint_topic"].as_str().unwrap(),
            &state_names,
        );
        let golden_state = golden.f32(ep["state"].as_str().unwrap());
        assert_eq!(
            &rec.state.data[..golden_state.data.len()],
            golden_state.data.as_slice(),
            "{name}: joint states as LeRobot got them"
        );
        let want_sha: Vec<&str> = ep["decoded_sha256"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let identical = rec
            .jpegs
            .iter()
            .zip(&want_sha)
            .filter(|(m, want)| sha256(&decode(m).rgb) == **want)
            .count();
        recorded.insert(name, (rec, identical, want_sha.len()));
    }
    for mode in golden.modes() {
        let mode_name = mode["name"].as_str().unwrap();
        let options = StepperOptions {
            mode: Some(mode_of(mode)),
        };
        let mut stepper = PolicyStepper::load(&bundle, &backend, precision, options).unwrap();
        for ep in mode["episodes"].as_array().unwrap() {
            let name = ep["episode"].as_str().unwrap();
            let (rec, identical, frames) = &recorded[name];
            let arrays = &ep["arrays"];
            let arr = |k: &str| arrays[k].as_str().unwrap_or_else(|| panic!("no array {k}"));

            // 1. The model on LeRobot's own input tensors: no decoder, no resize.
            let steps = golden.i32(arr("call_step"));
            let states = golden.f32(arr("call_state_normalized"));
            let images = golden.f32(arr("call_image_normalized_top"));
            let chunks = golden.f32(arr("chunk"));
            assert!(
                images.shape[0] >= 8,
                "the golden keeps {} image calls",
                images.shape[0]
            );
            let model = stepper.model_mut();
            let mut model_worst = 0f32;
            let mut image_worst = 0f32;
            for call in 0..images.shape[0] {
                let t = steps.data[call] as usize;
                model.input_mut(0).copy_from_slice(states.row(call));
                model.input_mut(1).copy_from_slice(images.row(call));
                let ours = unnormalise(model.run().unwrap());
                let d = max_abs_diff(&ours, &unnormalise(chunks.row(call)));
                model_worst = model_worst.max(d);
                assert!(
                    d <= chunk_tol,
                    "{} {precision} {mode_name} {name} call {call} (step {t}) on LeRobot's inputs: \
                     |chunk - LeRobot| {d} action units > {chunk_tol}",
                    backend.kind()
                );
                // our preparation of the node's decoded frame vs LeRobot's tensor
                let frame = decode(&rec.jpegs[t]);
                model
                    .prepare(&Observation {
                        frames: &[Frame {
                            width: frame.width,
                            height: frame.height,
                            rgb: &frame.rgb,
                        }],
                        state: rec.state.row(t),
                        environment_state: &[],
                    })
                    .unwrap();
                assert_eq!(model.input(0), states.row(call), "normalised state");
                image_worst = image_worst.max(max_abs_diff(model.input(1), images.row(call)));
            }
            assert!(
                image_worst <= IMAGE_PREPARATION_BOUND,
                "{name}: prepared image differs from LeRobot's by {image_worst}"
            );

            // 2. End to end as the node runs it: bag, CDR, zune-jpeg, resize, stepper.
            let a = run_episode(&mut stepper, &golden, mode, ep, &rec.state, &mut |t| {
                vec![decode(&rec.jpegs[t])]
            });
            assert!(
                a.action <= tol + DECODER_SLACK,
                "{} {precision} {mode_name} {name}: end to end |action - LeRobot| {} > {}",
                backend.kind(),
                a.action,
                tol + DECODER_SLACK
            );
            report.push(format!(
                "{:<5} {precision} {mode_name:<17} {name}: model on LeRobot's tensors ({} calls) \
                 max |chunk diff| {model_worst:.3e}; end to end {} steps, {} calls, max |action diff| \
                 {:.3e} (frames decoded as PIL's: {identical}/{frames}; prepared image max diff \
                 {image_worst:.3e} normalised)",
                backend.kind(),
                images.shape[0],
                a.steps,
                a.calls,
                a.action,
            ));
        }
    }
    report
}

fn check_and_print(backend: BackendKind, precision: Precision) {
    for line in check(backend, precision) {
        eprintln!("aloha-act vs LeRobot: {line}");
    }
}

#[test]
fn tract_fp32_follows_lerobot_on_recorded_rollouts() {
    check_and_print(BackendKind::Tract, Precision::Fp32);
}

#[test]
fn tract_int8_follows_lerobot_on_recorded_rollouts() {
    check_and_print(BackendKind::Tract, Precision::Int8);
}

#[test]
fn ort_fp32_follows_lerobot_on_recorded_rollouts() {
    check_and_print(BackendKind::Ort, Precision::Fp32);
}

#[test]
fn ort_int8_follows_lerobot_on_recorded_rollouts() {
    check_and_print(BackendKind::Ort, Precision::Int8);
}
