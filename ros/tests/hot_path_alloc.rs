//! The node's hot path allocates nothing per scored frame outside the
//! third-party calls it makes.
//!
//! A counting global allocator counts, on the test's thread only, every
//! allocation made while the assembler takes in a camera frame or a joint
//! state and the reward stage scores what is due: clock, pairing, the
//! hand-off between them, decoding into the reused RGB buffer,
//! preprocessing, the embedding cache, window assembly, progress math,
//! RA-BC weights, statistics and the hand-off to the outputs thread. Each allocation
//! is attributed through `sarm_runtime::alloc_scope` to the runtime's own
//! code, tract's `run` (the model call), the JPEG decoder (zune-jpeg) or the
//! resizer (fast_image_resize). The runtime's own share must be zero; the
//! others are reported per frame and must not grow from frame to frame.
//!
//! A second test feeds the same episode's decoded frames straight to the
//! scorer on every backend (tract and onnxruntime) and precision, and
//! reports the allocations per scored frame of each: the runtime's own
//! code must allocate nothing on any backend. (onnxruntime's C++ library
//! allocates through its own arena, not Rust's allocator: only the Rust side
//! of the call, the `ort` crate, is counted under `Model`.)
//!
//! Out of scope, by design: the input threads (deserialising a message
//! allocates its data, and the frame is put in an `Arc` there) and the
//! outputs thread (building and serialising messages for the transports).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sarm_ros::bag::read_bag;
use sarm_ros::image::decode_compressed;
use sarm_ros::msg::EventKind;
use sarm_ros::msg::{CompressedImage, JointState, RosMessage};
use sarm_ros::node::assemble::{Assembled, Assembler, AssemblerConfig};
use sarm_ros::node::inputs::{Arrived, CameraMsg};
use sarm_ros::node::reward::{Output, RewardConfig, RewardStage};
use sarm_ros::node::stats::NodeStats;
use sarm_runtime::alloc_scope::{current, Scope};
use sarm_runtime::rabc::RabcParams;
use sarm_runtime::sync::SyncConfig;
use sarm_runtime::{Bundle, Clock, FrameData, HeadKind, Precision, Scorer, ScorerConfig};

#[path = "../../runtime/tests/common/backends.rs"]
mod backends;

struct Counting;

thread_local! {
    static TRACK: Cell<bool> = const { Cell::new(false) };
}

const SCOPES: usize = Scope::ALL.len();

thread_local! {
    /// Per thread: the tests run in parallel and count only their own thread.
    static COUNTS: Cell<[(u64, u64); SCOPES]> = const { Cell::new([(0, 0); SCOPES]) };
}

fn note(size: usize) {
    if TRACK.with(|t| t.get()) {
        let i = current() as usize;
        COUNTS.with(|c| {
            let mut v = c.get();
            v[i].0 += 1;
            v[i].1 += size as u64;
            c.set(v);
        });
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations (count, bytes) per scope.
#[derive(Clone, Copy, Default, Debug, PartialEq)]
struct Counts([(u64, u64); SCOPES]);

impl Counts {
    fn of(&self, s: Scope) -> (u64, u64) {
        self.0[s as usize]
    }
    fn add(&mut self, o: &Counts) {
        for (a, b) in self.0.iter_mut().zip(o.0) {
            a.0 += b.0;
            a.1 += b.1;
        }
    }
}

fn snapshot() -> Counts {
    Counts(COUNTS.with(|c| c.get()))
}

/// Runs `f` with counting on for this thread; returns what it allocated.
fn counted(f: impl FnOnce()) -> Counts {
    let before = snapshot();
    TRACK.with(|t| t.set(true));
    f();
    TRACK.with(|t| t.set(false));
    let after = snapshot();
    let mut d = Counts::default();
    for i in 0..SCOPES {
        d.0[i] = (after.0[i].0 - before.0[i].0, after.0[i].1 - before.0[i].1);
    }
    d
}

enum Input {
    Camera(CompressedImage),
    Joints(JointState),
}

fn aloha() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/aloha-transfer-cube")
}

fn recorded_inputs() -> Vec<Input> {
    let bag = aloha().join("episodes/success_ep_0025/bag");
    let mut inputs = Vec::new();
    read_bag(&bag, |m| match m.topic {
        "/camera/top/image_raw/compressed" => inputs.push(Input::Camera(
            CompressedImage::from_cdr(m.data).expect("the bag's images decode"),
        )),
        "/joint_states" => inputs.push(Input::Joints(
            JointState::from_cdr(m.data).expect("the bag's joint states decode"),
        )),
        _ => {}
    })
    .expect("the held-out episode reads");
    inputs
}

struct Run {
    /// Totals over the steady state.
    steady: Counts,
    steady_scored: u64,
    scored: u64,
    /// Per steady-state input that decoded or resized: that input's counts.
    per_image: Vec<Counts>,
}

/// Feeds the episode through an assembler and a reward stage, both on this
/// thread (in the node they are two threads joined by the same channel).
fn run_episode(bundle: &Bundle, precision: Precision, inputs: &[Input]) -> Run {
    let clock = Clock::wall();
    let stats = Arc::new(NodeStats::new(clock.clone()));
    let (tx, rx) = crossbeam_channel::bounded::<Output>(4096);
    let (atx, arx) = crossbeam_channel::bounded::<Assembled>(4096);
    let cfg = AssemblerConfig {
        sync: SyncConfig {
            cameras: 1,
            slop_ns: 20_000_000,
            max_wait: Duration::from_millis(100),
            queue: 64,
        },
        auto_start: true,
        inactivity: None,
        max_frames: 1 << 20,
    };
    let mut asm = Assembler::new(bundle, cfg, stats.clone(), atx).expect("the assembler builds");
    let mut reward = RewardStage::new(
        bundle,
        RewardConfig {
            robot_id: "alloc-test".into(),
            scorer: ScorerConfig {
                precision,
                ..ScorerConfig::default()
            },
            rabc: RabcParams {
                chunk_size: 5,
                ..RabcParams::default()
            },
            rabc_head: HeadKind::Sparse,
            // Fed as fast as it scores: nothing is late.
            max_lag: Duration::from_secs(3600),
            success: None,
            stall: None,
        },
        &sarm_runtime::Backend::new(&sarm_runtime::BackendConfig::default())
            .expect("tract needs no library"),
        clock.clone(),
        stats,
        tx,
    )
    .expect("the reward stage builds");
    let stage = |reward: &mut RewardStage| {
        while let Ok(a) = arx.try_recv() {
            reward.on(a);
        }
    };
    // Steady state: the windows are full and every statistic and drop
    // counter in use has its entry.
    const WARM_UP_FRAMES: u64 = 8;
    let mut scored = 0u64;
    let mut steady_scored = 0u64;
    let mut steady = Counts::default();
    let mut per_image = Vec::new();
    for input in inputs {
        let c = match input {
            Input::Camera(m) => {
                // What the camera input thread does: message and Arc.
                let tick = Arc::new(Arrived {
                    msg: CameraMsg::Compressed(m.clone()),
                    at_ns: clock.now_ns(),
                });
                counted(|| {
                    asm.on_camera(tick, clock.now_ns());
                    stage(&mut reward);
                })
            }
            Input::Joints(m) => {
                let js = Arrived {
                    msg: m.clone(),
                    at_ns: clock.now_ns(),
                };
                counted(|| {
                    asm.on_joints(js, clock.now_ns());
                    stage(&mut reward);
                })
            }
        };
        let mut new_scores = 0;
        while let Ok(out) = rx.try_recv() {
            if matches!(out, Output::Score { .. }) {
                new_scores += 1;
            }
        }
        if scored >= WARM_UP_FRAMES {
            steady.add(&c);
            steady_scored += new_scores;
            if c.of(Scope::ImageDecode).0 > 0 || c.of(Scope::Resize).0 > 0 {
                per_image.push(c);
            }
        }
        scored += new_scores;
    }
    asm.end_episode(EventKind::End, "end of the test episode", clock.now_ns());
    stage(&mut reward);
    while let Ok(out) = rx.try_recv() {
        if matches!(out, Output::Score { .. }) {
            scored += 1;
        }
    }
    Run {
        steady,
        steady_scored,
        scored,
        per_image,
    }
}

#[test]
fn steady_state_scored_frame_allocates_nothing_outside_the_model_call() {
    let bundle = Bundle::load(aloha()).expect("the ALOHA bundle loads");
    let inputs = recorded_inputs();
    for precision in [Precision::Fp32, Precision::Int8] {
        let run = run_episode(&bundle, precision, &inputs);
        let n = run.steady_scored.max(1) as f64;
        println!(
            "{precision:?}: {} frames scored, {} in steady state; per scored frame:",
            run.scored, run.steady_scored
        );
        for scope in Scope::ALL {
            let (count, bytes) = run.steady.of(scope);
            println!(
                "  {scope:?}: {:.1} allocations, {:.1} KiB",
                count as f64 / n,
                bytes as f64 / 1024.0 / n
            );
        }
        assert!(
            run.steady_scored >= 30,
            "{precision:?}: only {} frames scored in steady state",
            run.steady_scored
        );
        assert!(
            run.steady.of(Scope::Model).0 > 0 && run.steady.of(Scope::ImageDecode).0 > 0,
            "{precision:?}: the scope probes are not wired"
        );
        assert_eq!(
            run.steady.of(Scope::Runtime),
            (0, 0),
            "{precision:?}: the runtime's own code allocated (count, bytes) over {} scored frames",
            run.steady_scored
        );
        // The third-party calls allocate the same for every image: nothing grows.
        for scope in [Scope::ImageDecode, Scope::Resize] {
            let per: Vec<(u64, u64)> = run
                .per_image
                .iter()
                .map(|c| c.of(scope))
                .filter(|c| c.0 > 0)
                .collect();
            let (lo, hi) = (per.iter().min(), per.iter().max());
            assert!(
                !per.is_empty() && lo.map(|l| l.0) == hi.map(|h| h.0),
                "{precision:?}: {scope:?} allocations vary per image: {lo:?} .. {hi:?}"
            );
        }
    }
}

/// The scorer alone, per backend and precision: the episode's camera
/// frames at the model's rate (every 5th of 50 Hz), decoded before
/// counting, each with the newest joint state.
#[test]
fn scored_frame_allocations_per_backend() {
    let bundle = Bundle::load(aloha()).expect("the ALOHA bundle loads");
    let inputs = recorded_inputs();
    let step = (50.0 / bundle.window.fps).round().max(1.0) as usize;
    let mut frames = Vec::new();
    let mut joints: Option<Vec<f32>> = None;
    let mut camera_seen = 0usize;
    for input in &inputs {
        match input {
            Input::Joints(j) => joints = Some(j.position.iter().map(|v| *v as f32).collect()),
            Input::Camera(m) => {
                camera_seen += 1;
                if !(camera_seen - 1).is_multiple_of(step) {
                    continue;
                }
                if let Some(j) = &joints {
                    let mut rgb = image::RgbImage::new(1, 1);
                    decode_compressed(m, &mut rgb).expect("the bag's images decode");
                    frames.push((rgb, j.clone()));
                }
            }
        }
    }
    assert!(frames.len() >= 50, "{} frames", frames.len());
    const WARM_UP: usize = 8;
    for (backend, precision) in backends::pairs() {
        let config = ScorerConfig {
            precision,
            ..ScorerConfig::default()
        };
        let mut scorer =
            Scorer::with_backend(&bundle, &config, &backend).expect("the scorer loads");
        let mut scored = 0u64;
        let mut steady = Counts::default();
        let mut steady_scored = 0u64;
        for (i, (rgb, j)) in frames.iter().enumerate() {
            let mut n = 0u64;
            let c = counted(|| {
                scorer
                    .push(FrameData::Image(rgb), j, &mut |_| n += 1)
                    .expect("the frame scores")
            });
            if i >= WARM_UP {
                steady.add(&c);
                steady_scored += n;
            }
            scored += n;
        }
        scorer
            .finish(&mut |_| scored += 1)
            .expect("the episode ends");
        let per = steady_scored.max(1) as f64;
        println!(
            "{} {precision} ({}): {scored} frames scored, {steady_scored} in steady state; per scored frame:",
            backend.kind(),
            scorer.backend_info()
        );
        for scope in Scope::ALL {
            let (count, bytes) = steady.of(scope);
            println!(
                "  {scope:?}: {:.1} allocations, {:.1} KiB",
                count as f64 / per,
                bytes as f64 / 1024.0 / per
            );
        }
        assert!(
            steady_scored >= 30,
            "only {steady_scored} scored in steady state"
        );
        assert_eq!(
            steady.of(Scope::Runtime),
            (0, 0),
            "{} {precision}: the runtime's own code allocated (count, bytes) over {steady_scored} scored frames",
            backend.kind()
        );
    }
}
