//! Parity with LeRobot's ACT: every step of both golden episodes of
//! models/act-test, in both of LeRobot's modes (the action queue and
//! temporal ensembling), stepped by this runtime from the committed raw
//! inputs (camera frames at the robot's 56x42, joint positions), for every
//! backend x precision. The goldens are LeRobot 0.4.4's own
//! `predict_action` -> `ACTPolicy.select_action`
//! (models/tools/policy_export/goldens.py).
//!
//! Checked per step: the action in action units within the table's bound;
//! the steps where the model runs and the queue length exactly LeRobot's;
//! with ensembling, the ensemble counts per future tick exactly LeRobot's
//! and the weights and their cumulative sums bit for bit. Separately, the
//! observation preparation (resize + normalisation) against LeRobot's
//! normalised tensors.

use crate::common;

use common::backends::{self, tolerance, Tolerance};
use common::policy_golden::{
    act_test_dir, max_abs_diff, mode_of, run_episode, EpisodeInputs, Golden, OwnedFrame,
};
use sarm_runtime::backend::{Backend, BackendKind};
use sarm_runtime::policy::ensemble::{ensemble_weights, ensemble_weights_cumsum};
use sarm_runtime::policy::{
    Frame, Observation, PolicyBundle, PolicyModel, PolicyStepper, StepperMode, StepperOptions,
};
use sarm_runtime::Precision;
use serde_json::Value;

/// Largest |action - LeRobot's action| per step, in action units (rad and
/// the normalised gripper opening), per backend x precision. fp32: the
/// issue's 1e-4. int8 (measured by this test, printed, on this bundle's
/// random untrained model): tract evaluates QDQ literally and measured
/// 0.0190 (queue) / 0.0087 (ensembling), as the exporter's reference; the
/// bound is the exporter's stated 2x (golden.json `tolerance.int8_action_abs`).
/// onnxruntime fuses QDQ into integer kernels (graph optimisations on, as
/// the node runs it) and measured 0.0177 / 0.0089: the same bound.
/// The `agreement` column is unused here (no argmax).
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
        value: 0.038,
        agreement: 1.0,
    },
    Tolerance {
        backend: BackendKind::Ort,
        precision: Precision::Int8,
        value: 0.038,
        agreement: 1.0,
    },
];

fn bundle() -> PolicyBundle {
    PolicyBundle::load(act_test_dir()).expect("act-test loads")
}

struct Frames<'a> {
    inputs: &'a EpisodeInputs,
    cameras: Vec<String>,
}

impl<'a> Frames<'a> {
    fn at(&self, t: usize) -> Vec<Frame<'a>> {
        self.cameras
            .iter()
            .map(|c| {
                let (width, height, rgb) = self.inputs.frame(c, t);
                Frame { width, height, rgb }
            })
            .collect()
    }

    /// Owned copies, as [`run_episode`] takes them.
    fn owned(&self, t: usize) -> Vec<OwnedFrame> {
        self.at(t).iter().map(OwnedFrame::from).collect()
    }
}

#[test]
fn every_step_of_both_episodes_in_both_modes_per_backend_and_precision() {
    let bundle = bundle();
    let golden = Golden::load(&act_test_dir());
    let episodes: Vec<(String, EpisodeInputs)> = golden
        .episodes()
        .iter()
        .map(|e| {
            let n = e["name"].as_str().unwrap().to_string();
            let inputs = golden.inputs(&n);
            (n, inputs)
        })
        .collect();
    assert_eq!(episodes.len(), 2);
    let modes: Vec<&Value> = golden.modes().iter().collect();
    assert_eq!(
        modes
            .iter()
            .map(|m| m["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["queue", "temporal_ensemble"]
    );
    let mut report = Vec::new();
    for (backend, precision) in backends::pairs() {
        let tol = tolerance(TOLERANCES, &backend, precision);
        for mode in &modes {
            let options = StepperOptions {
                mode: Some(mode_of(mode)),
            };
            let mut stepper = PolicyStepper::load(&bundle, &backend, precision, options).unwrap();
            for ep in mode["episodes"].as_array().unwrap() {
                let inputs = &episodes
                    .iter()
                    .find(|(n, _)| ep["episode"] == n.as_str())
                    .unwrap()
                    .1;
                let frames = Frames {
                    inputs,
                    cameras: stepper.cameras().to_vec(),
                };
                let a = run_episode(&mut stepper, &golden, mode, ep, &inputs.state, &mut |t| {
                    frames.owned(t)
                });
                report.push(format!(
                    "{:<5} {precision} {:<18} {}: {} steps, {} model calls, max |action diff| {:.3e}, max |chunk diff| (normalised) {:.3e}",
                    backend.kind(),
                    mode["name"].as_str().unwrap(),
                    ep["episode"].as_str().unwrap(),
                    a.steps,
                    a.calls,
                    a.action,
                    a.chunk
                ));
                assert!(
                    a.action <= tol.value,
                    "{} {precision} {} {}: max |action - LeRobot| = {} > {}",
                    backend.kind(),
                    mode["name"],
                    ep["episode"],
                    a.action,
                    tol.value
                );
            }
        }
    }
    eprintln!("policy goldens (act-test) vs LeRobot's select_action:");
    for r in &report {
        eprintln!("  {r}");
    }
}

/// The observation preparation against LeRobot's normalised tensors, as the
/// model received them: the state of every model call (bit for bit: the same
/// float32 operations) and the image of the first calls (the resize is a
/// different implementation of torchvision's antialiased bilinear filter:
/// float rounding only).
#[test]
fn observation_preparation_matches_lerobots_normalised_tensors() {
    let bundle = bundle();
    let golden = Golden::load(&act_test_dir());
    let mut model = PolicyModel::load(&bundle, &Backend::tract(), Precision::Fp32).unwrap();
    let cameras: Vec<String> = bundle.cameras.iter().map(|c| c.camera.clone()).collect();
    let mut worst_image = 0f32;
    let mut images_checked = 0;
    let mut states_checked = 0;
    for mode in golden.modes() {
        for ep in mode["episodes"].as_array().unwrap() {
            let inputs = golden.inputs(ep["episode"].as_str().unwrap());
            let arrays = &ep["arrays"];
            let steps = golden.i32(arrays["call_step"].as_str().unwrap());
            let states = golden.f32(arrays["call_state_normalized"].as_str().unwrap());
            let images: Vec<_> = cameras
                .iter()
                .map(|c| {
                    golden.f32(
                        arrays[format!("call_image_normalized_{c}")]
                            .as_str()
                            .unwrap(),
                    )
                })
                .collect();
            let frames = Frames {
                inputs: &inputs,
                cameras: cameras.clone(),
            };
            for (call, &t) in steps.data.iter().enumerate() {
                let t = t as usize;
                let f = frames.at(t);
                model
                    .prepare(&Observation {
                        frames: &f,
                        state: inputs.state.row(t),
                        environment_state: &[],
                    })
                    .unwrap();
                assert_eq!(
                    model.input(0),
                    states.row(call),
                    "state of call {call} (step {t})"
                );
                states_checked += 1;
                for (cam, img) in images.iter().enumerate() {
                    if call < img.shape[0] {
                        let d = max_abs_diff(model.input(1 + cam), img.row(call));
                        worst_image = worst_image.max(d);
                        images_checked += 1;
                    }
                }
            }
        }
    }
    eprintln!(
        "observation preparation vs LeRobot: {states_checked} states bit for bit, \
         {images_checked} images within {worst_image:.3e} (normalised units)"
    );
    assert!(states_checked >= 440 && images_checked >= 16);
    assert!(
        worst_image <= 2e-5,
        "image preparation differs by {worst_image}"
    );
}

/// The weights are LeRobot's for any coefficient the goldens used, and the
/// mode a node sets is checked against the chunk size.
#[test]
fn ensemble_weights_and_mode_checks() {
    let golden = Golden::load(&act_test_dir());
    for mode in golden.modes() {
        if let StepperMode::TemporalEnsemble { coeff } = mode_of(mode) {
            let ep = &mode["episodes"][0]["arrays"];
            let w = golden.f32(ep["ensemble_weights"].as_str().unwrap());
            let cs = golden.f32(ep["ensemble_weights_cumsum"].as_str().unwrap());
            let ours = ensemble_weights(coeff, w.data.len());
            assert_eq!(ours, w.data);
            assert_eq!(ensemble_weights_cumsum(&ours), cs.data);
            // ensemble_weights_used[t] = w[:n] / cumsum[n-1] with n = count[t, 0].
            let used = golden.f32(ep["ensemble_weights_used"].as_str().unwrap());
            let counts = golden.i32(ep["ensemble_count"].as_str().unwrap());
            for t in 0..counts.shape[0] {
                let n = counts.row(t)[0] as usize;
                for i in 0..used.row_len() {
                    let want = if i < n {
                        ours[i] / ensemble_weights_cumsum(&ours)[n - 1]
                    } else {
                        0.0
                    };
                    assert_eq!(used.row(t)[i], want, "weights used at step {t}, entry {i}");
                }
            }
        }
    }
    let bundle = bundle();
    let e = PolicyStepper::load(
        &bundle,
        &Backend::tract(),
        Precision::Fp32,
        StepperOptions {
            mode: Some(StepperMode::Queue { n_action_steps: 21 }),
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("n_action_steps") && e.contains("1..=20") && e.contains("21"),
        "{e}"
    );
}

/// A bad observation is refused with what is wrong, and a failed step
/// leaves the queue as it was (nothing served, nothing lost).
#[test]
fn bad_observations_are_refused_naming_what_is_wrong() {
    let bundle = bundle();
    let mut stepper = PolicyStepper::load(
        &bundle,
        &Backend::tract(),
        Precision::Fp32,
        StepperOptions::default(),
    )
    .unwrap();
    let rgb = vec![0u8; 56 * 42 * 3];
    let good = [Frame {
        width: 56,
        height: 42,
        rgb: &rgb,
    }];
    let state = [0.1f32; 14];
    let err = |frames: &[Frame<'_>], state: &[f32], stepper: &mut PolicyStepper| {
        stepper
            .step(&Observation {
                frames,
                state,
                environment_state: &[],
            })
            .unwrap_err()
            .to_string()
    };
    let e = err(&[], &state, &mut stepper);
    assert!(e.contains("0 camera frames") && e.contains("top"), "{e}");
    let e = err(&good, &state[..13], &mut stepper);
    assert!(
        e.contains("joint state") && e.contains("13") && e.contains("14"),
        "{e}"
    );
    let mut nan = state;
    nan[6] = f32::NAN;
    let e = err(&good, &nan, &mut stepper);
    assert!(e.contains("left_gripper") && e.contains("NaN"), "{e}");
    let short = [Frame {
        width: 56,
        height: 42,
        rgb: &rgb[..100],
    }];
    let e = err(&short, &state, &mut stepper);
    assert!(e.contains("camera top") && e.contains("7056 bytes"), "{e}");
    let empty = [Frame {
        width: 0,
        height: 42,
        rgb: &[],
    }];
    let e = err(&empty, &state, &mut stepper);
    assert!(e.contains("empty"), "{e}");
    // Nothing was consumed by the failures: the next good step runs the model.
    assert!(stepper.needs_inference());
    let s = stepper
        .step(&Observation {
            frames: &good,
            state: &state,
            environment_state: &[],
        })
        .unwrap();
    assert!(s.model_ran);
    assert_eq!(stepper.buffered(), 9);
}
