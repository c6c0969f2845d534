//! The safety layer, tick by tick on a simulated clock: every trip and
//! transition (table tests), and properties over random operation
//! sequences: no command ever leaves the joint bounds or moves more than
//! `max_step` per tick, and nothing is emitted while disarmed or faulted.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use sarm_runtime::policy::limits::JointLimitOverride;
use sarm_runtime::policy::safety::ArmRefusal;
use sarm_runtime::policy::{
    ActionInput, Control, Decision, FaultCause, InputStatus, JointLimits, Nanos, SafetyConfig,
    SafetyConfigError, SafetyEventKind, SafetyLayer, SafetyState, Tick, TripCause, TripKind,
};

const MS: Nanos = 1_000_000;
/// The control period of these tests (50 Hz).
const PERIOD: Nanos = 20 * MS;

fn limits() -> JointLimits {
    JointLimits::new(
        vec!["shoulder".into(), "gripper".into()],
        vec![-1.0, 0.0],
        vec![1.0, 1.0],
        vec![0.1, 0.25],
    )
    .unwrap()
}

fn config() -> SafetyConfig {
    SafetyConfig {
        max_obs_age_ms: 100,
        max_silence_ms: 250,
        hold_timeout_ms: 500,
        auto_arm: false,
        limits: BTreeMap::new(),
    }
}

fn layer(config: &SafetyConfig) -> SafetyLayer {
    SafetyLayer::new(
        limits(),
        config,
        vec!["camera top".into(), "joint_states".into()],
    )
    .unwrap()
}

/// One tick's inputs, fresh unless changed.
#[derive(Clone)]
struct In {
    action: Option<Vec<f32>>,
    missing: ActionInput<'static>,
    measured: Option<Vec<f32>>,
    inputs: [InputStatus; 2],
}

fn fresh(now: Nanos) -> InputStatus {
    InputStatus {
        newest_stamp: Some(now),
        last_arrival: Some(now),
    }
}

impl In {
    fn at(now: Nanos) -> In {
        In {
            action: Some(vec![0.0, 0.5]),
            missing: ActionInput::DeadlineMissed,
            measured: Some(vec![0.0, 0.5]),
            inputs: [fresh(now), fresh(now)],
        }
    }
    fn action(mut self, a: &[f32]) -> In {
        self.action = Some(a.to_vec());
        self
    }
    fn no_action(mut self, why: ActionInput<'static>) -> In {
        self.action = None;
        self.missing = why;
        self
    }
    fn measured(mut self, m: Option<&[f32]>) -> In {
        self.measured = m.map(<[f32]>::to_vec);
        self
    }
    fn input(mut self, i: usize, s: InputStatus) -> In {
        self.inputs[i] = s;
        self
    }
}

/// Drives a layer on a clock advancing one period per tick.
struct Sim {
    layer: SafetyLayer,
    now: Nanos,
}

#[derive(Debug, Clone, PartialEq)]
enum Out {
    Command(Vec<f64>),
    Hold(Vec<f64>),
    Silent,
}

impl Sim {
    fn new(config: &SafetyConfig) -> Sim {
        Sim {
            layer: layer(config),
            now: 1_000 * MS,
        }
    }

    fn tick_with(&mut self, f: impl FnOnce(In) -> In) -> Out {
        self.now += PERIOD;
        let i = f(In::at(self.now));
        let action = match &i.action {
            Some(a) => ActionInput::Action(a),
            None => i.missing,
        };
        let d = self.layer.tick(&Tick {
            now: self.now,
            action,
            measured: i.measured.as_deref(),
            inputs: &i.inputs,
        });
        match d {
            Decision::Command(c) => Out::Command(c.to_vec()),
            Decision::Hold(c) => Out::Hold(c.to_vec()),
            Decision::Silent => Out::Silent,
        }
    }

    fn tick(&mut self) -> Out {
        self.tick_with(|i| i)
    }

    fn events(&self) -> Vec<SafetyEventKind> {
        self.layer.events().iter().map(|e| e.kind).collect()
    }

    fn armed(config: &SafetyConfig) -> Sim {
        let mut s = Sim::new(config);
        s.layer.control(Control::Arm);
        s.tick_with(|i| i.action(&[0.0, 0.5]));
        assert_eq!(s.events(), [SafetyEventKind::Armed]);
        s
    }
}

/// Equal up to the f32 rounding of the measured positions and actions.
fn close(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6)
}

fn cmd(o: &Out) -> &[f64] {
    match o {
        Out::Command(c) => c,
        other => panic!("expected a command, got {other:?}"),
    }
}

#[test]
fn starts_disarmed_and_emits_nothing_until_armed() {
    let mut s = Sim::new(&config());
    for _ in 0..10 {
        assert_eq!(s.tick_with(|i| i.action(&[0.5, 0.5])), Out::Silent);
        assert!(s.events().is_empty());
    }
    assert_eq!(s.layer.state(), SafetyState::Disarmed);
    assert_eq!(s.layer.counters().commands, 0);
    assert_eq!(s.layer.counters().silent_ticks, 10);
}

#[test]
fn first_command_after_arming_moves_from_the_measured_positions() {
    let mut s = Sim::new(&config());
    s.layer.control(Control::Arm);
    let o = s.tick_with(|i| i.measured(Some(&[0.5, 0.2])).action(&[0.9, 0.9]));
    assert_eq!(s.events(), [SafetyEventKind::Armed]);
    assert!(close(cmd(&o), &[0.6, 0.45]), "{o:?}");
    // Disarm, the robot is moved by hand, re-arm: from the new measurement,
    // not from the last command.
    s.layer.control(Control::Disarm);
    assert_eq!(s.tick(), Out::Silent);
    assert_eq!(s.events(), [SafetyEventKind::Disarmed]);
    s.layer.control(Control::Arm);
    let o = s.tick_with(|i| i.measured(Some(&[-0.5, 0.0])).action(&[0.9, 0.9]));
    assert!(close(cmd(&o), &[-0.4, 0.25]), "{o:?}");
    // Measured outside the bounds: the reference is clamped into them.
    s.layer.control(Control::Disarm);
    s.tick();
    s.layer.control(Control::Arm);
    let o = s.tick_with(|i| i.measured(Some(&[1.5, -0.2])).action(&[1.0, 0.0]));
    assert!(close(cmd(&o), &[1.0, 0.0]), "{o:?}");
}

#[test]
fn arming_needs_measured_positions() {
    let mut s = Sim::new(&config());
    for (measured, why) in [
        (None, ArmRefusal::NoMeasuredPositions),
        (
            Some(vec![0.0]),
            ArmRefusal::MeasuredLength {
                expected: 2,
                found: 1,
            },
        ),
        (
            Some(vec![0.0, f32::NAN]),
            ArmRefusal::MeasuredNotFinite { joint: 1 },
        ),
    ] {
        s.layer.control(Control::Arm);
        assert_eq!(
            s.tick_with(|i| i.measured(measured.as_deref())),
            Out::Silent
        );
        assert_eq!(s.events(), [SafetyEventKind::ArmRefused(why)]);
        assert_eq!(s.layer.state(), SafetyState::Disarmed);
    }
    assert_eq!(s.layer.counters().arm_refused, 3);
    let text = s.layer.describe_event(&SafetyEventKind::ArmRefused(
        ArmRefusal::MeasuredNotFinite { joint: 1 },
    ));
    assert!(text.contains("gripper"), "{text}");
}

#[test]
fn commands_are_step_limited_and_clamped() {
    let mut s = Sim::armed(&config());
    let mut prev = vec![0.0, 0.5];
    for _ in 0..30 {
        let o = s.tick_with(|i| i.action(&[5.0, -5.0]));
        let c = cmd(&o).to_vec();
        assert!((c[0] - prev[0]).abs() <= 0.1 + 1e-12 && (c[1] - prev[1]).abs() <= 0.25 + 1e-12);
        assert!((-1.0..=1.0).contains(&c[0]) && (0.0..=1.0).contains(&c[1]));
        prev = c;
    }
    assert_eq!(prev, [1.0, 0.0]);
    let c = s.layer.counters();
    // 31 commands with the arming tick's; the target is out of reach on
    // every tick, so every one of the 30 is step-limited and clamped.
    assert_eq!(
        (c.commands, c.step_limited, c.position_clamped),
        (31, 30, 30)
    );
}

#[test]
fn nan_or_inf_latches_a_fault_and_needs_a_reset() {
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut s = Sim::armed(&config());
        let Out::Command(last) = s.tick_with(|i| i.action(&[0.05, 0.5])) else {
            panic!("armed: a command")
        };
        // The last safe command is held for this tick, and the fault latched.
        assert_eq!(s.tick_with(|i| i.action(&[0.1, bad])), Out::Hold(last));
        let fault = FaultCause {
            cause: TripCause::NonFiniteAction { joint: 1 },
            held: None,
        };
        assert_eq!(s.events(), [SafetyEventKind::Fault(fault)]);
        assert_eq!(s.layer.state(), SafetyState::Faulted(fault));
        assert!(s.layer.describe(&fault.cause).contains("gripper"));
        // Latched: good actions do not clear it, arming is refused.
        assert_eq!(s.tick_with(|i| i.action(&[0.0, 0.5])), Out::Silent);
        s.layer.control(Control::Arm);
        assert_eq!(s.tick(), Out::Silent);
        assert_eq!(
            s.events(),
            [SafetyEventKind::ArmRefused(ArmRefusal::Faulted)]
        );
        s.layer.control(Control::Reset);
        assert_eq!(s.tick(), Out::Silent);
        assert_eq!(s.events(), [SafetyEventKind::Reset]);
        assert_eq!(s.layer.state(), SafetyState::Disarmed);
        s.layer.control(Control::Arm);
        assert!(matches!(s.tick(), Out::Command(_)));
        assert_eq!(s.layer.counters().trips(TripKind::NonFiniteAction), 1);
        assert_eq!(s.layer.counters().faults, 1);
    }
    // A wrong-length action is refused the same way.
    let mut s = Sim::armed(&config());
    assert!(matches!(s.tick_with(|i| i.action(&[0.0])), Out::Hold(_)));
    assert!(matches!(s.layer.state(), SafetyState::Faulted(_)));
    assert_eq!(s.tick_with(|i| i.action(&[0.0, 0.5])), Out::Silent);
}

/// Each hold cause: the last safe command is held, then a fault is latched
/// once the hold has lasted hold_timeout (500 ms = 25 ticks).
#[test]
fn hold_causes_hold_then_latch_after_the_timeout() {
    type Make = fn(In, Nanos) -> In;
    let cases: [(&str, Make, TripKind); 6] = [
        (
            "stale camera",
            |i, now| {
                i.input(
                    0,
                    InputStatus {
                        newest_stamp: Some(now - 150 * MS),
                        last_arrival: Some(now),
                    },
                )
            },
            TripKind::StaleObservation,
        ),
        (
            "stale joints",
            |i, now| {
                i.input(
                    1,
                    InputStatus {
                        newest_stamp: Some(now - 101 * MS),
                        last_arrival: Some(now),
                    },
                )
            },
            TripKind::StaleObservation,
        ),
        (
            "silent camera",
            |i, now| {
                i.input(
                    0,
                    InputStatus {
                        newest_stamp: Some(now),
                        last_arrival: Some(now - 300 * MS),
                    },
                )
            },
            TripKind::InputSilent,
        ),
        (
            "joints never received",
            |i, _| i.input(1, InputStatus::default()),
            TripKind::InputSilent,
        ),
        (
            "deadline missed",
            |i, _| i.no_action(ActionInput::DeadlineMissed),
            TripKind::DeadlineMissed,
        ),
        (
            "policy failed",
            |i, _| i.no_action(ActionInput::Failed),
            TripKind::PolicyFailed,
        ),
    ];
    for (name, make, kind) in cases {
        let mut s = Sim::armed(&config());
        let last = cmd(&s.tick_with(|i| i.action(&[0.3, 0.5]))).to_vec();
        let start = s.now + PERIOD;
        let mut held = 0;
        loop {
            let now = s.now + PERIOD;
            let o = s.tick_with(|i| make(i.action(&[0.9, 0.9]), now));
            match o {
                Out::Hold(c) => {
                    assert_eq!(c, last, "{name}: the last safe command");
                    held += 1;
                }
                Out::Silent => break,
                Out::Command(c) => panic!("{name}: commanded {c:?} while it should hold"),
            }
        }
        assert_eq!(held, 25, "{name}: ticks held before the fault");
        let events = s.events();
        let [SafetyEventKind::Fault(f)] = events.as_slice() else {
            panic!("{name}: {events:?}");
        };
        assert_eq!(f.cause.kind(), kind, "{name}");
        assert_eq!(
            f.held,
            Some(Duration::from_nanos((s.now - start) as u64)),
            "{name}"
        );
        assert!(
            s.layer.describe_event(&events[0]).contains("held 500.0 ms"),
            "{name}"
        );
        assert_eq!(s.layer.counters().trips(kind), 1, "{name}");
        assert_eq!(s.layer.counters().hold_ticks, 25, "{name}");
        // Latched: fresh inputs do not clear it.
        assert_eq!(s.tick(), Out::Silent, "{name}");
    }
}

#[test]
fn a_short_hold_recovers_without_a_fault() {
    let mut s = Sim::armed(&config());
    let last = cmd(&s.tick_with(|i| i.action(&[0.1, 0.5]))).to_vec();
    for _ in 0..10 {
        let o = s.tick_with(|i| i.no_action(ActionInput::DeadlineMissed));
        assert_eq!(o, Out::Hold(last.clone()));
    }
    // The next command moves from the held one.
    let o = s.tick_with(|i| i.action(&[1.0, 0.5]));
    assert!(close(cmd(&o), &[0.2, 0.5]), "{o:?}");
    assert_eq!(s.layer.state(), SafetyState::Armed);
    assert_eq!(s.layer.counters().trips(TripKind::DeadlineMissed), 1);
    assert_eq!(s.layer.counters().faults, 0);
    // A hold whose cause changes keeps its start and counts both causes.
    for k in 0..25 {
        let now = s.now + PERIOD;
        let o = if k < 12 {
            s.tick_with(|i| i.no_action(ActionInput::Failed))
        } else {
            s.tick_with(|i| {
                i.input(
                    0,
                    InputStatus {
                        newest_stamp: Some(now - 200 * MS),
                        last_arrival: Some(now),
                    },
                )
            })
        };
        assert!(matches!(o, Out::Hold(_)), "tick {k}: {o:?}");
    }
    assert_eq!(
        s.tick_with(|i| i.no_action(ActionInput::Failed)),
        Out::Silent
    );
    assert_eq!(s.layer.counters().trips(TripKind::PolicyFailed), 2);
    assert_eq!(s.layer.counters().trips(TripKind::StaleObservation), 1);
}

#[test]
fn disarm_and_estop_take_effect_at_the_next_tick() {
    let mut s = Sim::armed(&config());
    assert!(matches!(s.tick(), Out::Command(_)));
    s.layer.control(Control::Disarm);
    assert_eq!(s.tick(), Out::Silent);
    assert_eq!(s.events(), [SafetyEventKind::Disarmed]);
    let mut s = Sim::armed(&config());
    s.layer.control(Control::EStop);
    assert_eq!(s.tick(), Out::Silent);
    let estop = FaultCause {
        cause: TripCause::EStop,
        held: None,
    };
    assert_eq!(s.events(), [SafetyEventKind::Fault(estop)]);
    // An e-stop while disarmed latches too.
    let mut s = Sim::new(&config());
    s.layer.control(Control::EStop);
    s.tick();
    assert_eq!(s.layer.state(), SafetyState::Faulted(estop));
    // Reset in the same tick as an e-stop does not clear it.
    s.layer.control(Control::Reset);
    s.layer.control(Control::EStop);
    s.tick();
    assert_eq!(s.layer.state(), SafetyState::Faulted(estop));
    assert_eq!(s.layer.counters().trips(TripKind::EStop), 2);
    // Disarm wins over arm in the same tick; reset then arm works.
    s.layer.control(Control::Reset);
    s.layer.control(Control::Arm);
    assert!(matches!(s.tick(), Out::Command(_)));
    assert_eq!(s.events(), [SafetyEventKind::Reset, SafetyEventKind::Armed]);
    s.layer.control(Control::Disarm);
    s.layer.control(Control::Arm);
    assert_eq!(s.tick(), Out::Silent);
    assert_eq!(s.layer.state(), SafetyState::Disarmed);
}

#[test]
fn auto_arm_arms_once_at_the_first_measurement() {
    let mut s = Sim::new(&SafetyConfig {
        auto_arm: true,
        ..config()
    });
    assert_eq!(s.tick_with(|i| i.measured(None)), Out::Silent);
    assert!(
        s.events().is_empty(),
        "no refusal events for automatic arming"
    );
    let o = s.tick_with(|i| i.measured(Some(&[0.0, 0.5])).action(&[0.5, 0.5]));
    assert!(close(cmd(&o), &[0.1, 0.5]));
    assert_eq!(s.events(), [SafetyEventKind::Armed]);
    s.layer.control(Control::Disarm);
    for _ in 0..5 {
        assert_eq!(s.tick(), Out::Silent);
    }
    assert_eq!(s.layer.state(), SafetyState::Disarmed);
}

#[test]
fn config_may_only_tighten_the_bundles_limits() {
    let loose = SafetyConfig {
        limits: BTreeMap::from([(
            "gripper".to_string(),
            JointLimitOverride {
                upper: Some(1.2),
                ..Default::default()
            },
        )]),
        ..config()
    };
    let e = SafetyLayer::new(limits(), &loose, vec![]).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, SafetyConfigError::Limits(_)), "{text}");
    assert!(
        text.contains("gripper") && text.contains("1.2") && text.contains("upper"),
        "{text}"
    );
    let strict = SafetyConfig {
        limits: BTreeMap::from([(
            "shoulder".to_string(),
            JointLimitOverride {
                max_step: Some(0.05),
                lower: Some(-0.5),
                upper: None,
            },
        )]),
        ..config()
    };
    let l = SafetyLayer::new(limits(), &strict, vec![]).unwrap();
    assert_eq!(l.limits().max_step(), [0.05, 0.25]);
    assert_eq!(l.limits().lower(), [-0.5, 0.0]);
    let e = SafetyLayer::new(
        limits(),
        &SafetyConfig {
            hold_timeout_ms: 0,
            ..config()
        },
        vec![],
    )
    .unwrap_err();
    assert!(e.to_string().contains("hold_timeout_ms"), "{e}");
    let parsed: SafetyConfig =
        toml::from_str("max_obs_age_ms = 80\nauto_arm = true\n[limits.gripper]\nmax_step = 0.1\n")
            .unwrap();
    assert_eq!(parsed.max_obs_age_ms, 80);
    assert_eq!(
        parsed.hold_timeout_ms,
        SafetyConfig::default().hold_timeout_ms
    );
    assert!(toml::from_str::<SafetyConfig>("max_age = 1").is_err());
}

// ---- properties ----

#[derive(Debug, Clone)]
enum Op {
    Control(Control),
    Tick {
        dt_ms: i64,
        action: Option<Vec<f32>>,
        missing_failed: bool,
        measured: Option<Vec<f32>>,
        camera_age_ms: i64,
        joints_silent_ms: i64,
    },
}

fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        8 => -3.0f32..3.0,
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        1 => Just(-1e30f32),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => prop_oneof![
            Just(Control::Arm),
            Just(Control::Disarm),
            Just(Control::EStop),
            Just(Control::Reset)
        ]
        .prop_map(Op::Control),
        6 => (
            1i64..60,
            proptest::option::weighted(0.9, proptest::collection::vec(value(), 2)),
            any::<bool>(),
            proptest::option::weighted(0.9, proptest::collection::vec(-2.0f32..2.0, 2)),
            0i64..150,
            0i64..300,
        )
            .prop_map(|(dt_ms, action, missing_failed, measured, camera_age_ms, joints_silent_ms)| {
                Op::Tick { dt_ms, action, missing_failed, measured, camera_age_ms, joints_silent_ms }
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn no_output_violates_limits_or_is_emitted_while_disarmed_or_faulted(
        ops in proptest::collection::vec(op(), 1..120),
        auto_arm in any::<bool>(),
    ) {
        let cfg = SafetyConfig { auto_arm, ..config() };
        let mut l = layer(&cfg);
        let (lower, upper, max_step) =
            (l.limits().lower().to_vec(), l.limits().upper().to_vec(), l.limits().max_step().to_vec());
        let mut now: Nanos = 0;
        // The reference a command may move from: the last emitted command,
        // or the clamped measurement at arming.
        let mut reference: Option<Vec<f64>> = None;
        for op in ops {
            let Op::Tick { dt_ms, action, missing_failed, measured, camera_age_ms, joints_silent_ms } = op else {
                if let Op::Control(c) = op { l.control(c); }
                continue;
            };
            now += dt_ms * MS;
            let inputs = [
                InputStatus { newest_stamp: Some(now - camera_age_ms * MS), last_arrival: Some(now) },
                InputStatus { newest_stamp: Some(now), last_arrival: Some(now - joints_silent_ms * MS) },
            ];
            let act = match &action {
                Some(a) => ActionInput::Action(a),
                None if missing_failed => ActionInput::Failed,
                None => ActionInput::DeadlineMissed,
            };
            let d = l.tick(&Tick { now, action: act, measured: measured.as_deref(), inputs: &inputs });
            let out = d.command().map(<[f64]>::to_vec);
            let hold = matches!(d, Decision::Hold(_));
            let events: Vec<SafetyEventKind> = l.events().iter().map(|e| e.kind).collect();
            if events.contains(&SafetyEventKind::Armed) {
                let m = measured.as_ref().expect("armed without a measurement");
                reference = Some((0..2).map(|i| (m[i] as f64).clamp(lower[i], upper[i])).collect());
            }
            let state = l.state();
            let silent = out.is_none();
            // The one emission a faulted layer makes: the hold on the tick
            // a NaN/Inf (or wrong-length) action latched its fault.
            let nan_hold = hold && events.iter().any(|e| matches!(e,
                SafetyEventKind::Fault(f) if f.cause.kind() == TripKind::NonFiniteAction));
            match out {
                None => prop_assert!(
                    matches!(state, SafetyState::Disarmed | SafetyState::Faulted(_)),
                    "silent while {state:?}"
                ),
                Some(c) => {
                    prop_assert!(
                        matches!(state, SafetyState::Armed | SafetyState::Holding { .. }) || nan_hold,
                        "emitted {c:?} while {state:?}"
                    );
                    let r = reference.clone().expect("emitted before ever arming");
                    for i in 0..2 {
                        prop_assert!(c[i].is_finite());
                        prop_assert!(lower[i] <= c[i] && c[i] <= upper[i], "joint {i}: {} outside bounds", c[i]);
                        prop_assert!((c[i] - r[i]).abs() <= max_step[i] + 1e-12,
                            "joint {i}: step {} > {}", (c[i] - r[i]).abs(), max_step[i]);
                    }
                    if hold {
                        prop_assert_eq!(&c, &r, "a hold repeats the last safe command");
                    }
                    reference = Some(c);
                }
            }
            if matches!(state, SafetyState::Disarmed | SafetyState::Faulted(_)) {
                prop_assert!(silent || nan_hold);
            }
        }
    }
}
