//! A steady-state policy step allocates nothing on the runtime's side of
//! the inference call, on every backend and in both modes; a safety tick
//! allocates nothing at all.
//!
//! A counting global allocator (as ros/tests/hot_path_alloc.rs) counts, on
//! this thread only, every allocation made during the steps, attributed
//! through `sarm_runtime::alloc_scope` to the runtime's own code, the model
//! call (tract's `run`, or the `ort` crate's side of onnxruntime's; the
//! C++ library allocates through its own arena, not counted) and the
//! resizer (fast_image_resize computes its filter coefficients per call).
//! The runtime's own share must be zero; with frames already at the model's
//! size (no resampling) only the model call may allocate.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use common::backends;
use common::policy_golden::{act_test_dir, Golden};
use sarm_runtime::alloc_scope::{current, Scope};
use sarm_runtime::policy::{
    ActionInput, Frame, InputStatus, JointLimits, Observation, PolicyBundle, PolicyStepper,
    SafetyConfig, SafetyLayer, StepperMode, StepperOptions, Tick,
};
use sarm_runtime::Precision;

struct Counting;

thread_local! {
    static TRACK: Cell<bool> = const { Cell::new(false) };
}

const SCOPES: usize = Scope::ALL.len();
static COUNT: [AtomicU64; SCOPES] = [const { AtomicU64::new(0) }; SCOPES];

fn note() {
    // `try_with`: the allocator may run while thread-locals are torn down.
    if TRACK.try_with(|t| t.get()).unwrap_or(false) {
        COUNT[current() as usize].fetch_add(1, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations per scope made by `f` on this thread.
fn counted(f: impl FnOnce()) -> [u64; SCOPES] {
    let before: Vec<u64> = COUNT.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    TRACK.with(|t| t.set(true));
    f();
    TRACK.with(|t| t.set(false));
    let mut d = [0; SCOPES];
    for i in 0..SCOPES {
        d[i] = COUNT[i].load(Ordering::Relaxed) - before[i];
    }
    d
}

#[test]
fn steady_state_policy_steps_allocate_nothing_outside_the_model_call() {
    let bundle = PolicyBundle::load(act_test_dir()).unwrap();
    let golden = Golden::load(&act_test_dir());
    let inputs = golden.inputs("ep0");
    let cam = &bundle.cameras[0];
    // The same scene at the model's size: no resampling.
    let small = vec![90u8; 3 * cam.width as usize * cam.height as usize];
    let modes = [bundle.mode, StepperMode::TemporalEnsemble { coeff: 0.01 }];
    let mut report = Vec::new();
    for backend in backends::all() {
        for mode in modes {
            for resample in [true, false] {
                let mut stepper = PolicyStepper::load(
                    &bundle,
                    &backend,
                    Precision::Fp32,
                    StepperOptions { mode: Some(mode) },
                )
                .unwrap();
                let mut run = |t: usize| {
                    let frame = if resample {
                        let (width, height, rgb) = inputs.frame("top", t);
                        Frame { width, height, rgb }
                    } else {
                        Frame {
                            width: cam.width,
                            height: cam.height,
                            rgb: &small,
                        }
                    };
                    let frames = [frame];
                    let obs = Observation {
                        frames: &frames,
                        state: inputs.state.row(t),
                        environment_state: &[],
                    };
                    let step = stepper.step(&obs).unwrap();
                    std::hint::black_box(step.action[0]);
                };
                // Warm-up: two queue cycles (lazy initialisation in the
                // backends and the resizer).
                for t in 0..20 {
                    run(t);
                }
                let counts = counted(|| {
                    for t in 20..60 {
                        run(t);
                    }
                });
                let label = format!(
                    "{} {mode:?} {}",
                    backend.kind(),
                    if resample {
                        "56x42 frames (resampled)"
                    } else {
                        "48x36 frames (model size)"
                    }
                );
                report.push(format!(
                    "{label}: per 40 steps runtime {} model {} resize {} decode {}",
                    counts[Scope::Runtime as usize],
                    counts[Scope::Model as usize],
                    counts[Scope::Resize as usize],
                    counts[Scope::ImageDecode as usize]
                ));
                assert_eq!(
                    counts[Scope::Runtime as usize],
                    0,
                    "{label}: the runtime's own code allocated"
                );
                assert_eq!(counts[Scope::ImageDecode as usize], 0, "{label}");
                if !resample {
                    assert_eq!(
                        counts[Scope::Resize as usize],
                        0,
                        "{label}: resampled a model-size frame"
                    );
                }
            }
        }
    }
    eprintln!("allocations per 40 steady-state policy steps:");
    for r in &report {
        eprintln!("  {r}");
    }
}

#[test]
fn a_safety_tick_allocates_nothing() {
    let bundle = PolicyBundle::load(act_test_dir()).unwrap();
    let mut layer = SafetyLayer::new(
        JointLimits::from_bundle(&bundle),
        &SafetyConfig {
            auto_arm: true,
            ..SafetyConfig::default()
        },
        vec!["camera top".into(), "joint_states".into()],
    )
    .unwrap();
    let measured = vec![0.0f32; 14];
    let action = vec![0.01f32; 14];
    let mut now = 0i64;
    let tick = |layer: &mut SafetyLayer, now: i64, action: ActionInput<'_>| {
        let fresh = InputStatus {
            newest_stamp: Some(now),
            last_arrival: Some(now),
        };
        let d = layer.tick(&Tick {
            now,
            action,
            measured: Some(&measured),
            inputs: &[fresh, fresh],
        });
        std::hint::black_box(d.command().map(|c| c[0]));
    };
    tick(&mut layer, now, ActionInput::Action(&action));
    let counts = counted(|| {
        for k in 0..200 {
            now += 20_000_000;
            let a = if k % 7 == 3 {
                ActionInput::DeadlineMissed
            } else {
                ActionInput::Action(&action)
            };
            tick(&mut layer, now, a);
        }
    });
    assert_eq!(counts.iter().sum::<u64>(), 0, "{counts:?}");
    assert!(layer.counters().commands > 100 && layer.counters().hold_ticks > 10);
}
