//! The safety layer: the last step before a command is published, and the
//! only way to a command. Pure and clock-driven: every [`SafetyLayer::tick`]
//! is given the time on the node's clock (ns; wall or ROS sim time) and
//! what the node knows at that tick; nothing here reads a clock, so the
//! behaviour is deterministic and testable tick by tick.
//!
//! Rules:
//! - it starts **disarmed** and emits nothing until armed by
//!   [`Control::Arm`] (or `auto_arm`, once, at the first tick with
//!   measured joint positions); the first command after arming moves from
//!   the measured positions (clamped into the bounds), never from an older
//!   command;
//! - every command is step-limited (at most `max_step` per joint per tick)
//!   and clamped into the joint bounds ([`super::limits`]);
//! - a NaN/Inf in an action (or one of the wrong length) holds the last
//!   safe command for that tick and latches a fault at once: nothing
//!   further is emitted until a reset;
//! - a stale observation (newest camera or joint stamp older than
//!   `max_obs_age_ms`), a silent input (nothing received for
//!   `max_silence_ms`), a missed inference deadline or a failed policy step
//!   **holds**: the last safe command is emitted again; a hold lasting
//!   `hold_timeout_ms` latches a fault;
//! - [`Control::Disarm`] and [`Control::EStop`] take effect at the next tick;
//!   an e-stop latches a fault; a latched fault needs [`Control::Reset`]
//!   (back to disarmed) before arming again;
//! - disarmed or faulted, nothing is emitted.
//!
//! Each trip is counted per cause ([`SafetyCounters`]), and each change of
//! state is an event ([`SafetyEvent`]: armed, disarmed, fault with cause,
//! reset, arm refused) that the node turns into `sarm_msgs/PolicyEvent`.
//! A tick allocates nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::limits::{JointLimitOverride, JointLimits, LimitsError};

/// Times on the node's clock, in nanoseconds (as ROS `Time::as_nanos`).
pub type Nanos = i64;

/// The node config's `[policy.safety]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SafetyConfig {
    /// Hold when the newest camera frame or joint state (by header stamp)
    /// is older than this.
    pub max_obs_age_ms: u64,
    /// Hold when an input topic has delivered nothing for this long.
    pub max_silence_ms: u64,
    /// Latch a fault when a hold lasts this long.
    pub hold_timeout_ms: u64,
    /// Arm by itself at the first tick with measured joint positions (for
    /// simulation); once only, never after a disarm or a fault.
    pub auto_arm: bool,
    /// Stricter limits per joint (action name -> lower/upper/max_step);
    /// looser than the bundle's is an error.
    pub limits: BTreeMap<String, JointLimitOverride>,
}

impl Default for SafetyConfig {
    fn default() -> Self {
        SafetyConfig {
            max_obs_age_ms: 100,
            max_silence_ms: 250,
            hold_timeout_ms: 500,
            auto_arm: false,
            limits: BTreeMap::new(),
        }
    }
}

/// Why a safety layer could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SafetyConfigError {
    #[error("policy.safety.{key}: {message}")]
    Key { key: &'static str, message: String },
    #[error("policy.safety.{0}")]
    Limits(#[from] LimitsError),
}

/// An operator's command (`sarm_msgs/PolicyControl`), applied at the next
/// tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Control {
    Arm,
    Disarm,
    EStop,
    Reset,
}

/// What the policy offers at a tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ActionInput<'a> {
    /// An action in action units, `action.names` order.
    Action(&'a [f32]),
    /// No action: the model call this tick needed had not delivered by the
    /// deadline.
    DeadlineMissed,
    /// No action: the policy step failed (bad observation, inference error).
    Failed,
}

/// One input topic's freshness at a tick, on the node's clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InputStatus {
    /// Header stamp of the newest message used (none yet: stale).
    pub newest_stamp: Option<Nanos>,
    /// When the newest message arrived (none yet: silent).
    pub last_arrival: Option<Nanos>,
}

/// Everything the layer is told at one control tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tick<'a> {
    pub now: Nanos,
    pub action: ActionInput<'a>,
    /// Measured joint positions in `action.names` order, when known (needed
    /// to arm).
    pub measured: Option<&'a [f32]>,
    /// One status per input declared at construction, in that order.
    pub inputs: &'a [InputStatus],
}

/// What to publish at this tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision<'a> {
    /// A new command, limited (action units, `action.names` order).
    Command(&'a [f64]),
    /// The last safe command again (holding).
    Hold(&'a [f64]),
    /// Nothing (disarmed or faulted).
    Silent,
}

impl<'a> Decision<'a> {
    /// The command to publish, if any.
    pub fn command(&self) -> Option<&'a [f64]> {
        match *self {
            Decision::Command(c) | Decision::Hold(c) => Some(c),
            Decision::Silent => None,
        }
    }
}

/// The kinds of trip, for counters and `PolicyEvent.cause`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum TripKind {
    EStop = 1,
    NonFiniteAction = 2,
    StaleObservation = 3,
    InputSilent = 4,
    DeadlineMissed = 5,
    PolicyFailed = 6,
}

impl TripKind {
    pub const ALL: [TripKind; 6] = [
        TripKind::EStop,
        TripKind::NonFiniteAction,
        TripKind::StaleObservation,
        TripKind::InputSilent,
        TripKind::DeadlineMissed,
        TripKind::PolicyFailed,
    ];

    /// The `PolicyEvent.CAUSE_*` value.
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TripKind::EStop => "estop",
            TripKind::NonFiniteAction => "non_finite_action",
            TripKind::StaleObservation => "stale_observation",
            TripKind::InputSilent => "input_silent",
            TripKind::DeadlineMissed => "deadline_missed",
            TripKind::PolicyFailed => "policy_failed",
        }
    }

    fn index(self) -> usize {
        self as usize - 1
    }
}

/// Why the layer held or faulted, with what it saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TripCause {
    EStop,
    /// The action's value for joint `joint` (index) was NaN or infinite.
    NonFiniteAction {
        joint: usize,
    },
    /// Input `input`'s newest stamp was `age` old (`None`: nothing yet).
    StaleObservation {
        input: usize,
        age: Option<Duration>,
    },
    /// Input `input` had delivered nothing for `silent` (`None`: ever).
    InputSilent {
        input: usize,
        silent: Option<Duration>,
    },
    DeadlineMissed,
    PolicyFailed,
}

impl TripCause {
    pub fn kind(&self) -> TripKind {
        match self {
            TripCause::EStop => TripKind::EStop,
            TripCause::NonFiniteAction { .. } => TripKind::NonFiniteAction,
            TripCause::StaleObservation { .. } => TripKind::StaleObservation,
            TripCause::InputSilent { .. } => TripKind::InputSilent,
            TripCause::DeadlineMissed => TripKind::DeadlineMissed,
            TripCause::PolicyFailed => TripKind::PolicyFailed,
        }
    }
}

/// A latched fault: its cause, and how long the layer had held first
/// (`None`: latched at once: e-stop, NaN/Inf).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultCause {
    pub cause: TripCause,
    pub held: Option<Duration>,
}

/// Why an arm request was not obeyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArmRefusal {
    /// A fault is latched: reset first.
    Faulted,
    /// No measured joint positions at that tick.
    NoMeasuredPositions,
    /// Measured positions of the wrong length.
    MeasuredLength { expected: usize, found: usize },
    /// A measured position (joint index) is NaN or infinite.
    MeasuredNotFinite { joint: usize },
}

/// The layer's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SafetyState {
    Disarmed,
    Armed,
    /// Emitting the last safe command since `since`.
    Holding {
        since: Nanos,
        cause: TripCause,
    },
    Faulted(FaultCause),
}

/// A change of state, stamped with the tick's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SafetyEvent {
    pub stamp: Nanos,
    pub kind: SafetyEventKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SafetyEventKind {
    Armed,
    Disarmed,
    Fault(FaultCause),
    Reset,
    ArmRefused(ArmRefusal),
}

impl SafetyEventKind {
    /// The `PolicyEvent.event` value (ARMED 0, DISARMED 1, FAULT 2, RESET 3,
    /// ARM_REFUSED 4).
    pub fn code(&self) -> u8 {
        match self {
            SafetyEventKind::Armed => 0,
            SafetyEventKind::Disarmed => 1,
            SafetyEventKind::Fault(_) => 2,
            SafetyEventKind::Reset => 3,
            SafetyEventKind::ArmRefused(_) => 4,
        }
    }
}

/// What the layer has done since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SafetyCounters {
    pub ticks: u64,
    /// Ticks with a new command.
    pub commands: u64,
    /// Ticks that emitted the last safe command again.
    pub hold_ticks: u64,
    /// Ticks that emitted nothing (disarmed or faulted).
    pub silent_ticks: u64,
    /// Commands whose change was cut to `max_step` on some joint.
    pub step_limited: u64,
    /// Commands whose target was outside the bounds on some joint.
    pub position_clamped: u64,
    pub arms: u64,
    pub disarms: u64,
    pub resets: u64,
    pub arm_refused: u64,
    pub faults: u64,
    /// Trips per cause (index: [`TripKind`] order): holds entered and
    /// faults latched at once.
    trips: [u64; 6],
}

impl SafetyCounters {
    /// Trips of `kind` so far.
    pub fn trips(&self, kind: TripKind) -> u64 {
        self.trips[kind.index()]
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Pending {
    arm: bool,
    disarm: bool,
    estop: bool,
    reset: bool,
}

/// Events one tick can produce at most (estop/disarm, reset, arm, fault).
const MAX_EVENTS: usize = 8;

/// The safety state machine (see the module docs).
#[derive(Debug, Clone)]
pub struct SafetyLayer {
    limits: JointLimits,
    inputs: Vec<String>,
    max_obs_age: Nanos,
    max_silence: Nanos,
    hold_timeout: Nanos,
    auto_arm: bool,
    auto_armed: bool,
    state: SafetyState,
    pending: Pending,
    /// The last command emitted, or the arming reference; inside the bounds.
    last_safe: Vec<f64>,
    scratch: Vec<f64>,
    counters: SafetyCounters,
    events: heapless::Vec<SafetyEvent, MAX_EVENTS>,
}

fn ms(key: &'static str, v: u64) -> Result<Nanos, SafetyConfigError> {
    if v == 0 || v > 3_600_000 {
        return Err(SafetyConfigError::Key {
            key,
            message: format!("a time in ms, 1..=3600000, found {v}"),
        });
    }
    Ok(v as Nanos * 1_000_000)
}

impl SafetyLayer {
    /// Limits: the bundle's (`limits`) tightened by `config.limits`.
    /// `inputs`: names of the input topics whose freshness each tick
    /// reports, in [`Tick::inputs`] order (for events and logs).
    pub fn new(
        limits: JointLimits,
        config: &SafetyConfig,
        inputs: Vec<String>,
    ) -> Result<Self, SafetyConfigError> {
        let limits = limits.stricter(&config.limits)?;
        let n = limits.len();
        Ok(SafetyLayer {
            max_obs_age: ms("max_obs_age_ms", config.max_obs_age_ms)?,
            max_silence: ms("max_silence_ms", config.max_silence_ms)?,
            hold_timeout: ms("hold_timeout_ms", config.hold_timeout_ms)?,
            auto_arm: config.auto_arm,
            auto_armed: false,
            limits,
            inputs,
            state: SafetyState::Disarmed,
            pending: Pending::default(),
            last_safe: vec![0.0; n],
            scratch: vec![0.0; n],
            counters: SafetyCounters::default(),
            events: heapless::Vec::new(),
        })
    }

    pub fn limits(&self) -> &JointLimits {
        &self.limits
    }

    /// Input topic names, in [`Tick::inputs`] order.
    pub fn inputs(&self) -> &[String] {
        &self.inputs
    }

    pub fn state(&self) -> SafetyState {
        self.state
    }

    pub fn counters(&self) -> &SafetyCounters {
        &self.counters
    }

    /// The events of the last tick, in order.
    pub fn events(&self) -> &[SafetyEvent] {
        &self.events
    }

    /// Requests a state change, applied at the next tick. Requests between
    /// two ticks combine: e-stop wins over everything, disarm over arm;
    /// reset and arm in the same tick reset, then arm.
    pub fn control(&mut self, c: Control) {
        match c {
            Control::Arm => self.pending.arm = true,
            Control::Disarm => self.pending.disarm = true,
            Control::EStop => self.pending.estop = true,
            Control::Reset => self.pending.reset = true,
        }
    }

    fn event(&mut self, stamp: Nanos, kind: SafetyEventKind) {
        // Cannot overflow: a tick makes at most four events.
        let _ = self.events.push(SafetyEvent { stamp, kind });
    }

    fn trip(&mut self, kind: TripKind) {
        self.counters.trips[kind.index()] += 1;
    }

    fn fault(&mut self, now: Nanos, cause: TripCause, held: Option<Duration>) {
        let f = FaultCause { cause, held };
        if held.is_none() {
            self.trip(cause.kind());
        }
        self.state = SafetyState::Faulted(f);
        self.counters.faults += 1;
        self.event(now, SafetyEventKind::Fault(f));
    }

    /// Arms from the measured positions, or says why not (`None`: armed or
    /// already armed).
    fn arm(&mut self, now: Nanos, measured: Option<&[f32]>) -> Option<ArmRefusal> {
        match self.state {
            SafetyState::Faulted(_) => return Some(ArmRefusal::Faulted),
            SafetyState::Armed | SafetyState::Holding { .. } => return None,
            SafetyState::Disarmed => {}
        }
        let Some(m) = measured else {
            return Some(ArmRefusal::NoMeasuredPositions);
        };
        if m.len() != self.limits.len() {
            return Some(ArmRefusal::MeasuredLength {
                expected: self.limits.len(),
                found: m.len(),
            });
        }
        if let Some(joint) = m.iter().position(|v| !v.is_finite()) {
            return Some(ArmRefusal::MeasuredNotFinite { joint });
        }
        for (i, (s, v)) in self.last_safe.iter_mut().zip(m).enumerate() {
            *s = self.limits.clamp_position(i, *v as f64);
        }
        self.state = SafetyState::Armed;
        self.counters.arms += 1;
        self.event(now, SafetyEventKind::Armed);
        None
    }

    fn apply_controls(&mut self, t: &Tick<'_>) {
        let p = std::mem::take(&mut self.pending);
        if p.estop {
            if !matches!(
                self.state,
                SafetyState::Faulted(FaultCause {
                    cause: TripCause::EStop,
                    ..
                })
            ) {
                self.fault(t.now, TripCause::EStop, None);
            } else {
                self.trip(TripKind::EStop);
            }
        }
        if p.disarm && matches!(self.state, SafetyState::Armed | SafetyState::Holding { .. }) {
            self.state = SafetyState::Disarmed;
            self.counters.disarms += 1;
            self.event(t.now, SafetyEventKind::Disarmed);
        }
        if p.reset && matches!(self.state, SafetyState::Faulted(_)) && !p.estop {
            self.state = SafetyState::Disarmed;
            self.counters.resets += 1;
            self.event(t.now, SafetyEventKind::Reset);
        }
        if p.arm && !p.disarm && !p.estop {
            if let Some(why) = self.arm(t.now, t.measured) {
                self.counters.arm_refused += 1;
                self.event(t.now, SafetyEventKind::ArmRefused(why));
            }
        }
        if self.auto_arm && !self.auto_armed {
            let armed = self.state == SafetyState::Armed
                || (self.state == SafetyState::Disarmed && self.arm(t.now, t.measured).is_none());
            if armed {
                self.auto_armed = true;
            }
        }
    }

    /// The first reason to hold at this tick, if any: a silent input, a
    /// stale input, then a missing action.
    fn hold_cause(&self, t: &Tick<'_>) -> Option<TripCause> {
        let status = |i: usize| t.inputs.get(i).copied().unwrap_or_default();
        let age = |stamp: Option<Nanos>| stamp.map(|s| t.now.saturating_sub(s));
        let dur = |ns: Option<Nanos>| ns.map(|n| Duration::from_nanos(n.max(0) as u64));
        for input in 0..self.inputs.len() {
            let silent = age(status(input).last_arrival);
            if silent.is_none_or(|s| s > self.max_silence) {
                return Some(TripCause::InputSilent {
                    input,
                    silent: dur(silent),
                });
            }
        }
        for input in 0..self.inputs.len() {
            let a = age(status(input).newest_stamp);
            if a.is_none_or(|a| a > self.max_obs_age) {
                return Some(TripCause::StaleObservation { input, age: dur(a) });
            }
        }
        match t.action {
            ActionInput::Action(_) => None,
            ActionInput::DeadlineMissed => Some(TripCause::DeadlineMissed),
            ActionInput::Failed => Some(TripCause::PolicyFailed),
        }
    }

    /// One control tick at `t.now`: applies pending controls, then decides
    /// what to publish.
    pub fn tick(&mut self, t: &Tick<'_>) -> Decision<'_> {
        self.events.clear();
        self.counters.ticks += 1;
        self.apply_controls(t);
        if matches!(self.state, SafetyState::Disarmed | SafetyState::Faulted(_)) {
            self.counters.silent_ticks += 1;
            return Decision::Silent;
        }
        if let ActionInput::Action(a) = t.action {
            let bad = if a.len() != self.limits.len() {
                Some(a.len().min(self.limits.len()))
            } else {
                a.iter().position(|v| !v.is_finite())
            };
            if let Some(joint) = bad {
                self.fault(t.now, TripCause::NonFiniteAction { joint }, None);
                self.counters.hold_ticks += 1;
                return Decision::Hold(&self.last_safe);
            }
        }
        let action = match (self.hold_cause(t), t.action) {
            (None, ActionInput::Action(a)) => a,
            // hold_cause names a cause for every input but an action.
            (cause, _) => return self.hold(t.now, cause.unwrap_or(TripCause::PolicyFailed)),
        };
        let clipped = self
            .limits
            .apply(&self.last_safe, action, &mut self.scratch);
        std::mem::swap(&mut self.last_safe, &mut self.scratch);
        self.counters.step_limited += (clipped.step > 0) as u64;
        self.counters.position_clamped += (clipped.position > 0) as u64;
        self.counters.commands += 1;
        self.state = SafetyState::Armed;
        Decision::Command(&self.last_safe)
    }

    /// Holds for `cause`; latches a fault once the hold has lasted
    /// `hold_timeout`.
    fn hold(&mut self, now: Nanos, cause: TripCause) -> Decision<'_> {
        let since = match self.state {
            SafetyState::Holding { since, cause: prev } => {
                if prev.kind() != cause.kind() {
                    self.trip(cause.kind());
                }
                since
            }
            _ => {
                self.trip(cause.kind());
                now
            }
        };
        let held = now.saturating_sub(since);
        if held >= self.hold_timeout {
            self.fault(now, cause, Some(Duration::from_nanos(held as u64)));
            self.counters.silent_ticks += 1;
            return Decision::Silent;
        }
        self.state = SafetyState::Holding { since, cause };
        self.counters.hold_ticks += 1;
        Decision::Hold(&self.last_safe)
    }

    /// A readable account of `cause` (names the input or joint), for
    /// `PolicyEvent.detail` and logs.
    pub fn describe(&self, cause: &TripCause) -> String {
        let input = |i: usize| self.inputs.get(i).map_or("?", String::as_str).to_string();
        let joint = |i: usize| {
            self.limits
                .names()
                .get(i)
                .map_or("?", String::as_str)
                .to_string()
        };
        let ms = |d: Option<Duration>| match d {
            Some(d) => format!("{:.1} ms", d.as_secs_f64() * 1e3),
            None => "never received".to_string(),
        };
        match *cause {
            TripCause::EStop => "e-stop".into(),
            TripCause::NonFiniteAction { joint: j } => {
                format!("action for joint {} is NaN/Inf (or missing)", joint(j))
            }
            TripCause::StaleObservation { input: i, age } => format!(
                "{} stale: newest stamp {} old (max_obs_age {} ms)",
                input(i),
                ms(age),
                self.max_obs_age / 1_000_000
            ),
            TripCause::InputSilent { input: i, silent } => format!(
                "{} silent for {} (max_silence {} ms)",
                input(i),
                ms(silent),
                self.max_silence / 1_000_000
            ),
            TripCause::DeadlineMissed => "inference missed its deadline".into(),
            TripCause::PolicyFailed => "policy step failed".into(),
        }
    }

    /// [`Self::describe`] for an event (empty for events without a cause).
    pub fn describe_event(&self, e: &SafetyEventKind) -> String {
        match e {
            SafetyEventKind::Fault(f) => match f.held {
                Some(h) => format!(
                    "held {:.1} ms (hold_timeout {} ms): {}",
                    h.as_secs_f64() * 1e3,
                    self.hold_timeout / 1_000_000,
                    self.describe(&f.cause)
                ),
                None => self.describe(&f.cause),
            },
            SafetyEventKind::ArmRefused(r) => match r {
                ArmRefusal::Faulted => "a fault is latched: reset first".into(),
                ArmRefusal::NoMeasuredPositions => "no measured joint positions yet".into(),
                ArmRefusal::MeasuredLength { expected, found } => {
                    format!("measured {found} joint positions, {expected} needed")
                }
                ArmRefusal::MeasuredNotFinite { joint } => format!(
                    "measured position of {} is NaN/Inf",
                    self.limits.names().get(*joint).map_or("?", String::as_str)
                ),
            },
            _ => String::new(),
        }
    }
}

impl fmt::Display for TripKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
