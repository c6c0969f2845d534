//! The policy stage: LeRobot's `select_action` at the control rate on the
//! node's clock, then the safety layer, then the command publisher.
//!
//! It runs on its own thread beside the reward stage and reads the newest
//! camera frame and joint state the inputs hold ([`Latest`]), so inference
//! never blocks the inputs or the reward stage. Every control tick:
//!
//! 1. operator controls (`sarm_msgs/PolicyControl`) received since the last
//!    tick are handed to the safety layer;
//! 2. the policy steps (the model runs when its queue needs a chunk) on the
//!    newest frame (decoded once per frame) and joint state;
//! 3. the [`SafetyLayer`] decides: a limited command, the last safe command
//!    again (holding), or nothing (disarmed, faulted);
//! 4. the command is published in the configured form, and each change of
//!    the layer's state is published as `sarm_msgs/PolicyEvent`, logged and
//!    counted.
//!
//! There is no other path to the command publisher: it is owned here and
//! only written with a [`sarm_runtime::policy::Decision`].
//!
//! The model runs on its own thread ([`InferenceThread`]): a tick that needs
//! a chunk hands over its observation and waits for it until the inference
//! deadline (`policy.inference_deadline_ms`, half a control period unless
//! set, so that a late call leaves the tick time to publish). In time, the
//! chunk serves at that tick, as LeRobot's `select_action` does. Late, the
//! call is counted (`policy_inference_late`) and its chunk serves from the
//! tick it arrives at, the rows for the ticks it missed skipped; meanwhile
//! the queue serves what it still holds (with temporal ensembling, the
//! ensemble's averages), and an empty queue leaves the tick without an
//! action: the safety layer holds the last safe command (a deadline trip)
//! and latches a fault if the hold lasts. The policy steps while disarmed too (its timings
//! stay visible); arming resets its queue, so the first command comes from
//! a fresh chunk.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::Receiver;
use image::RgbImage;
use sarm_runtime::policy::{
    ActionInput, ActionSelector, Control, Decision, InputStatus, JointLimits, PolicyBundle,
    PolicyStepper, SafetyCounters, SafetyEventKind, SafetyLayer, SafetyState, Tick, TripKind,
};
use sarm_runtime::{Backend, Clock, ClockSource};

use super::config::{CommandForm, PolicySection};
use super::inputs::{Arrived, Frame};
use super::policy_infer::{InferenceThread, Job};
use super::reward::Output;
use super::stats::{NodeStats, Stage};
use crate::drops::Drops;
use crate::msg::{
    Duration as RosDuration, Float64MultiArray, Header, JointState, JointTrajectory,
    JointTrajectoryPoint, MultiArrayDimension, MultiArrayLayout, PolicyControl, PolicyEvent, Time,
};
use crate::transport::{Publish, Subscribe, Transport};

/// The newest camera frame and joint state the inputs received, for the
/// policy stage (latest wins; reading does not take them away). A frame is
/// shared (an `Arc` clone); a joint state is copied once per message
/// (a few small allocations at the joint rate, on the input thread).
#[derive(Default)]
pub struct Latest {
    camera: Mutex<Option<Frame>>,
    joints: Mutex<Option<Arc<Arrived<JointState>>>>,
}

impl Latest {
    pub fn set_camera(&self, f: &Frame) {
        if let Ok(mut g) = self.camera.lock() {
            *g = Some(f.clone());
        }
    }

    pub fn set_joints(&self, j: &Arrived<JointState>) {
        if let Ok(mut g) = self.joints.lock() {
            *g = Some(Arc::new(j.clone()));
        }
    }

    fn camera(&self) -> Option<Frame> {
        self.camera.lock().ok().and_then(|g| g.clone())
    }

    fn joints(&self) -> Option<Arc<Arrived<JointState>>> {
        self.joints.lock().ok().and_then(|g| g.clone())
    }
}

/// Where the commands go, in the configured form; the message is built once
/// and its values overwritten each tick.
enum CommandPublisher {
    Multi(Box<dyn Publish<Float64MultiArray>>, Float64MultiArray),
    Trajectory(Box<dyn Publish<JointTrajectory>>, JointTrajectory),
    State(Box<dyn Publish<JointState>>, JointState),
}

impl CommandPublisher {
    fn open(
        transport: &mut Transport,
        cfg: &PolicySection,
        names: &[String],
        period: Duration,
    ) -> anyhow::Result<Self> {
        use crate::qos::TopicQos;
        let qos = TopicQos::Reliable { depth: 10 };
        let n = names.len();
        Ok(match cfg.command {
            CommandForm::Float64MultiArray => CommandPublisher::Multi(
                transport.publisher(&cfg.command_topic, qos)?,
                Float64MultiArray {
                    layout: MultiArrayLayout {
                        dim: vec![MultiArrayDimension {
                            label: "joints".into(),
                            size: n as u32,
                            stride: n as u32,
                        }],
                        data_offset: 0,
                    },
                    data: vec![0.0; n],
                },
            ),
            CommandForm::JointTrajectory => CommandPublisher::Trajectory(
                transport.publisher(&cfg.command_topic, qos)?,
                JointTrajectory {
                    header: Header::default(),
                    joint_names: names.to_vec(),
                    points: vec![JointTrajectoryPoint {
                        positions: vec![0.0; n],
                        velocities: Vec::new(),
                        accelerations: Vec::new(),
                        effort: Vec::new(),
                        time_from_start: RosDuration::from_nanos(period.as_nanos() as i64),
                    }],
                },
            ),
            CommandForm::JointState => CommandPublisher::State(
                transport.publisher(&cfg.command_topic, qos)?,
                JointState {
                    header: Header::default(),
                    name: names.to_vec(),
                    position: vec![0.0; n],
                    velocity: Vec::new(),
                    effort: Vec::new(),
                },
            ),
        })
    }

    fn publish(&mut self, now_ns: i64, command: &[f64]) -> Result<(), String> {
        let stamp = Time::from_nanos(now_ns);
        match self {
            CommandPublisher::Multi(p, m) => {
                m.data.copy_from_slice(command);
                p.publish(m).map_err(|e| e.to_string())
            }
            CommandPublisher::Trajectory(p, m) => {
                m.header.stamp = stamp;
                if let Some(pt) = m.points.first_mut() {
                    pt.positions.copy_from_slice(command);
                }
                p.publish(m).map_err(|e| e.to_string())
            }
            CommandPublisher::State(p, m) => {
                m.header.stamp = stamp;
                m.position.copy_from_slice(command);
                p.publish(m).map_err(|e| e.to_string())
            }
        }
    }
}

/// Indices of `wanted` names in a JointState's `name` list, remembered
/// while the message's names stay the same.
#[derive(Default)]
struct NameMap {
    names: Vec<String>,
    index: Vec<usize>,
}

impl NameMap {
    /// Fills `out` (one value per wanted name) from `msg`; false when a
    /// wanted joint is missing or a position is not given.
    fn fill(&mut self, wanted: &[String], msg: &JointState, out: &mut [f32]) -> bool {
        if self.names != msg.name {
            self.names.clone_from(&msg.name);
            self.index.clear();
            for w in wanted {
                match msg.name.iter().position(|n| n == w) {
                    Some(i) => self.index.push(i),
                    None => {
                        self.index.clear();
                        break;
                    }
                }
            }
        }
        if self.index.len() != wanted.len() {
            return false;
        }
        for (o, &i) in out.iter_mut().zip(&self.index) {
            match msg.position.get(i) {
                Some(v) => *o = *v as f32,
                None => return false,
            }
        }
        true
    }
}

/// What the node gives the policy stage.
pub struct PolicyIo {
    pub latest: Arc<Latest>,
    pub controls: Box<dyn Subscribe<PolicyControl> + Send>,
    /// The stage's control queue: the subscription's messages and the
    /// reward stage's verdicts go in, each tick takes them out.
    pub control: (
        crossbeam_channel::Sender<PolicyControl>,
        Receiver<PolicyControl>,
    ),
    pub stop: Arc<AtomicBool>,
    /// Header stamps are the recording's (a bag source): observation age is
    /// measured from arrival instead.
    pub age_from_arrival: bool,
}

pub struct PolicyStage {
    /// The action queue or temporal ensemble, on this thread.
    selector: ActionSelector,
    /// The model, on its own thread.
    infer: InferenceThread,
    state_names: Vec<String>,
    /// How long a tick waits for the chunk it asked for.
    deadline: Duration,
    /// Control ticks so far (a chunk's age is counted in them).
    tick_index: u64,
    /// Bumped by every reset of the selector; older chunks are dropped.
    generation: u64,
    safety: SafetyLayer,
    clock: Clock,
    stats: Arc<NodeStats>,
    command: CommandPublisher,
    /// PolicyEvents go to the outputs (ROS 2 topic, trainer link).
    out: crossbeam_channel::Sender<Output>,
    robot_id: String,
    period_ns: i64,
    /// The frame `rgb` holds, so each frame is decoded once.
    decoded: Option<Frame>,
    rgb: RgbImage,
    state: Vec<f32>,
    state_map: NameMap,
    measured: Vec<f32>,
    measured_map: NameMap,
    /// This tick's action (action units) and command.
    action: Vec<f32>,
    command_buf: Vec<f64>,
    counters: SafetyCounters,
    drops: Drops,
}

/// The command topic's and the control topic's type, for logs.
pub fn describe(cfg: &PolicySection) -> String {
    format!(
        "commands {} on {}, control on {}, events on {}",
        cfg.command.type_name(),
        cfg.command_topic,
        cfg.control_topic,
        cfg.event_topic
    )
}

impl PolicyStage {
    /// Loads the policy bundle on `backend` and opens the publishers.
    pub fn new(
        cfg: &PolicySection,
        robot_id: &str,
        backend: &Backend,
        transport: &mut Transport,
        clock: Clock,
        stats: Arc<NodeStats>,
        out: crossbeam_channel::Sender<Output>,
    ) -> anyhow::Result<Self> {
        use anyhow::Context;
        let dir = cfg
            .bundle
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("config key `policy.bundle`: not set"))?;
        let bundle = PolicyBundle::load(dir)
            .with_context(|| format!("loading policy bundle {}", dir.display()))?;
        if bundle.cameras.len() != 1 {
            anyhow::bail!(
                "policy bundle {}: the node feeds one camera (inputs.camera), the policy takes {} ({:?})",
                dir.display(),
                bundle.cameras.len(),
                bundle.cameras.iter().map(|c| &c.camera).collect::<Vec<_>>()
            );
        }
        let stepper = PolicyStepper::load(&bundle, backend, cfg.precision, Default::default())
            .with_context(|| format!("loading policy bundle {}", dir.display()))?;
        let safety = SafetyLayer::new(
            JointLimits::from_bundle(&bundle),
            &cfg.safety,
            vec!["camera".into(), "joints".into()],
        )
        .map_err(|e| anyhow::anyhow!("config key `{e}`"))?;
        let period = stepper.control_period();
        let deadline = cfg
            .inference_deadline_ms
            .map_or(period / 2, Duration::from_millis);
        let command = CommandPublisher::open(transport, cfg, stepper.action_names(), period)?;
        tracing::info!(
            "policy: {} ({}, {} at {} Hz, {}, inference deadline {:?}); {}; starts {}",
            bundle.name(),
            cfg.precision,
            match stepper.mode() {
                sarm_runtime::policy::StepperMode::Queue { n_action_steps } =>
                    format!("action queue of {n_action_steps}"),
                sarm_runtime::policy::StepperMode::TemporalEnsemble { coeff } =>
                    format!("temporal ensembling, coeff {coeff}"),
            },
            stepper.fps(),
            stepper.model().graph().provider(),
            deadline,
            describe(cfg),
            if cfg.safety.auto_arm {
                "disarmed, arming itself at the first joint state (auto_arm)"
            } else {
                "disarmed: arm it on the control topic"
            }
        );
        let state_names = stepper.state_names().to_vec();
        let n_state = state_names.len();
        let n_action = stepper.action_names().len();
        let (model, selector) = stepper.into_parts();
        let infer = InferenceThread::start(model, n_state, selector.chunk_len())
            .context("starting the policy's inference thread")?;
        Ok(PolicyStage {
            period_ns: period.as_nanos() as i64,
            selector,
            infer,
            state_names,
            deadline,
            tick_index: 0,
            generation: 0,
            safety,
            clock,
            stats,
            command,
            out,
            robot_id: robot_id.to_string(),
            decoded: None,
            rgb: RgbImage::new(1, 1),
            state: vec![0.0; n_state],
            state_map: NameMap::default(),
            measured: vec![0.0; n_action],
            measured_map: NameMap::default(),
            action: vec![0.0; n_action],
            command_buf: vec![0.0; n_action],
            counters: SafetyCounters::default(),
            drops: Drops::new("policy", Duration::from_secs(5)),
        })
    }

    pub fn safety(&self) -> &SafetyLayer {
        &self.safety
    }

    /// Runs control ticks until `io.stop`; on the way out an armed layer is
    /// disarmed (and says so).
    pub fn run(mut self, io: PolicyIo) {
        let PolicyIo {
            latest,
            mut controls,
            control: (tx, rx),
            stop,
            age_from_arrival,
        } = io;
        // Controls arrive on their own thread so that the tick loop never
        // waits on the transport.
        let ctl_stop = stop.clone();
        let ctl_stats = self.stats.clone();
        let ctl = std::thread::Builder::new()
            .name("sarm-policy-control".into())
            .spawn(move || {
                while !ctl_stop.load(Ordering::Relaxed) {
                    match controls.recv_timeout(Duration::from_millis(20)) {
                        Ok(Some(m)) => match tx.try_send(m) {
                            Ok(()) => ctl_stats.count("policy_controls_received", 1),
                            Err(_) => ctl_stats.drop_one("policy_control_queue_full"),
                        },
                        Ok(None) => {}
                        Err(e) => {
                            // Counted; a failing subscription must not spin.
                            ctl_stats.drop_one(e.kind());
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                }
            });
        let mut next: Option<i64> = None;
        while !stop.load(Ordering::Relaxed) {
            if self.clock.source() == ClockSource::Sim && !self.clock.started() {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            let now = self.clock.now_ns();
            let due = *next.get_or_insert(now);
            if now < due {
                // Sim time that jumped back (a simulator reset): start over.
                if due - now > 2 * self.period_ns {
                    next = Some(now);
                    continue;
                }
                self.stats.set_policy_until(now);
                let wait = Duration::from_nanos((due - now) as u64).min(Duration::from_millis(2));
                std::thread::sleep(wait);
                continue;
            }
            self.tick(now, &rx, &latest, age_from_arrival);
            let mut n = due + self.period_ns;
            let after = self.clock.now_ns();
            if after >= n {
                let skipped = ((after - n) / self.period_ns + 1) as u64;
                self.stats.count("policy_ticks_skipped", skipped);
                n += skipped as i64 * self.period_ns;
            }
            next = Some(n);
            self.stats.set_policy_until(now);
        }
        if matches!(
            self.safety.state(),
            SafetyState::Armed | SafetyState::Holding { .. }
        ) {
            self.safety.control(Control::Disarm);
            let now = self.clock.now_ns();
            self.tick(now, &rx, &latest, age_from_arrival);
        }
        if let Ok(t) = ctl {
            let _ = t.join();
        }
    }

    /// One control tick at `now` (node clock).
    pub fn tick(
        &mut self,
        now: i64,
        controls: &Receiver<PolicyControl>,
        latest: &Latest,
        age_from_arrival: bool,
    ) {
        self.tick_index += 1;
        while let Ok(m) = controls.try_recv() {
            self.on_control(&m);
        }
        let camera = latest.camera();
        let joints = latest.joints();
        let status = |stamp: i64, at: i64| InputStatus {
            newest_stamp: Some(if age_from_arrival { at } else { stamp }),
            last_arrival: Some(at),
        };
        let inputs = [
            camera.as_ref().map_or(InputStatus::default(), |f| {
                status(f.msg.stamp_ns(), f.at_ns)
            }),
            joints.as_ref().map_or(InputStatus::default(), |j| {
                status(j.msg.header.stamp.as_nanos(), j.at_ns)
            }),
        ];
        let measured = match &joints {
            Some(j) => self
                .measured_map
                .fill(self.safety.limits().names(), &j.msg, &mut self.measured)
                .then_some(()),
            None => None,
        };
        if joints.is_some() && measured.is_none() {
            self.stats.drop_one("policy_joints_missing");
            self.drops.record(
                "policy_joints_missing",
                format_args!(
                    "the joint state lacks a position for one of {:?}",
                    self.safety.limits().names()
                ),
            );
        }
        let action = self.step(camera.as_ref(), joints.as_deref());
        let tick = Tick {
            now,
            action: match action {
                Ok(()) => ActionInput::Action(&self.action),
                Err(a) => a,
            },
            measured: measured.map(|_| &self.measured[..]),
            inputs: &inputs,
        };
        let command = match self.safety.tick(&tick) {
            Decision::Command(c) | Decision::Hold(c) => {
                self.command_buf.copy_from_slice(c);
                true
            }
            Decision::Silent => false,
        };
        if command {
            match self.command.publish(now, &self.command_buf) {
                Ok(()) => {
                    if let Some(f) = &camera {
                        self.stats.record_between(
                            Stage::ObservationToCommand,
                            f.at_ns,
                            self.clock.now_ns(),
                        );
                    }
                }
                Err(e) => {
                    self.stats.count_error("policy_commands");
                    self.drops.record("command_publish_failed", e);
                }
            }
        }
        self.report(now);
    }

    /// The policy's action this tick (into `self.action`), or why there is none.
    fn step(
        &mut self,
        camera: Option<&Frame>,
        joints: Option<&Arrived<JointState>>,
    ) -> Result<(), ActionInput<'static>> {
        let (Some(frame), Some(joints)) = (camera, joints) else {
            return Err(ActionInput::Failed);
        };
        let fresh = !self.decoded.as_ref().is_some_and(|d| Arc::ptr_eq(d, frame));
        if fresh {
            let t0 = std::time::Instant::now();
            if let Err(e) = frame.msg.decode(&mut self.rgb) {
                self.stats.drop_one("policy_undecodable_frame");
                self.drops.record("policy_undecodable_frame", e);
                self.decoded = None;
                return Err(ActionInput::Failed);
            }
            self.stats.record(Stage::PolicyDecode, t0.elapsed());
            self.decoded = Some(frame.clone());
        }
        let names = &self.state_names;
        if !names.is_empty() && !self.state_map.fill(names, &joints.msg, &mut self.state) {
            return Err(ActionInput::Failed);
        }
        // A chunk that finished since the last tick (a late one).
        let mut failed = false;
        if let Some(job) = self.infer.finished(Duration::ZERO) {
            failed |= !self.take_chunk(job);
        }
        if self.selector.needs_chunk() && !self.infer.busy() {
            if self
                .infer
                .submit(self.tick_index, self.generation, &self.rgb, &self.state)
            {
                if let Some(job) = self.infer.finished(self.deadline) {
                    failed |= !self.take_chunk(job);
                }
            } else {
                self.stats.drop_one("policy_inference_thread_gone");
                return Err(ActionInput::Failed);
            }
        }
        if failed {
            return Err(ActionInput::Failed);
        }
        match self.selector.next_action() {
            Some(served) => {
                self.stats.count("policy_steps", 1);
                self.action.copy_from_slice(served.action);
                Ok(())
            }
            None if self.infer.busy() => Err(ActionInput::DeadlineMissed),
            None => Err(ActionInput::Failed),
        }
    }

    /// Takes a finished model call into the selector (false: it failed).
    /// A chunk from before a reset is dropped; one that arrives ticks after
    /// its observation serves from the current tick.
    fn take_chunk(&mut self, job: Job) -> bool {
        let ok = match &job.result {
            Ok(t) => {
                self.stats.count("policy_model_calls", 1);
                self.stats.record(Stage::PolicyInference, t.inference);
                if job.generation == self.generation {
                    let skip = (self.tick_index - job.tick) as usize;
                    if skip > 0 {
                        self.stats.count("policy_inference_late", 1);
                    }
                    match self.selector.push_chunk(&job.chunk, skip) {
                        Ok(()) => true,
                        Err(e) => {
                            self.stats.drop_one("policy_step_failed");
                            self.drops.record("policy_step_failed", e);
                            false
                        }
                    }
                } else {
                    self.stats.count("policy_chunks_dropped_after_reset", 1);
                    true
                }
            }
            Err(e) => {
                self.stats.drop_one("policy_step_failed");
                self.drops.record("policy_step_failed", e);
                false
            }
        };
        self.infer.recycle(job);
        ok
    }

    fn on_control(&mut self, m: &PolicyControl) {
        if !m.robot_id.is_empty() && m.robot_id != self.robot_id {
            self.stats.count("policy_control_other_robot", 1);
            return;
        }
        let c = match m.command {
            PolicyControl::ARM => Control::Arm,
            PolicyControl::DISARM => Control::Disarm,
            PolicyControl::ESTOP => Control::EStop,
            PolicyControl::RESET => Control::Reset,
            other => {
                self.stats.drop_one("policy_control_unknown");
                self.drops.record(
                    "policy_control_unknown",
                    format_args!("PolicyControl.command {other} is not ARM/DISARM/ESTOP/RESET"),
                );
                return;
            }
        };
        tracing::info!(
            "policy control: {c:?}{}",
            if m.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", m.reason)
            }
        );
        if c == Control::Arm {
            // A fresh queue: the first command after arming comes from
            // the observation at arming, as after LeRobot's reset().
            self.selector.reset();
            self.generation += 1;
        }
        self.safety.control(c);
    }

    /// Publishes and logs the tick's events and moves the counters on.
    fn report(&mut self, now: i64) {
        let events: Vec<_> = self.safety.events().to_vec();
        for e in events {
            let detail = self.safety.describe_event(&e.kind);
            let c = *self.safety.counters();
            let (cause, held) = match e.kind {
                SafetyEventKind::Fault(f) => (
                    f.cause.kind().code(),
                    f.held.map_or(0.0, |h| h.as_secs_f64()),
                ),
                _ => (PolicyEvent::CAUSE_NONE, 0.0),
            };
            let name = match e.kind {
                SafetyEventKind::Armed => "armed",
                SafetyEventKind::Disarmed => "disarmed",
                SafetyEventKind::Fault(_) => "fault",
                SafetyEventKind::Reset => "reset",
                SafetyEventKind::ArmRefused(_) => "arm_refused",
            };
            match e.kind {
                SafetyEventKind::Fault(f) => tracing::error!(
                    "policy: FAULT latched ({}): {detail}; no commands until reset",
                    f.cause.kind()
                ),
                SafetyEventKind::ArmRefused(_) => {
                    tracing::warn!("policy: arming refused: {detail}")
                }
                _ => tracing::info!("policy: {name}"),
            }
            let msg = PolicyEvent {
                header: Header {
                    stamp: Time::from_nanos(e.stamp),
                    frame_id: String::new(),
                },
                robot_id: self.robot_id.clone(),
                episode_index: self.stats.live().episode_index,
                event: e.kind.code(),
                cause,
                held_s: held,
                detail: detail.clone(),
                commands: c.commands,
                hold_ticks: c.hold_ticks,
                faults: c.faults,
            };
            // Rare, and must not be lost: wait for room.
            if self.out.send(Output::Policy(msg)).is_err() {
                self.stats.drop_one("policy_event_undelivered");
            }
            self.stats.set_policy_event(name, &detail, now);
        }
        let c = *self.safety.counters();
        let p = &self.counters;
        for (key, new, old) in [
            ("policy_ticks", c.ticks, p.ticks),
            ("policy_commands", c.commands, p.commands),
            ("policy_hold_ticks", c.hold_ticks, p.hold_ticks),
            ("policy_silent_ticks", c.silent_ticks, p.silent_ticks),
            ("safety_step_limited", c.step_limited, p.step_limited),
            (
                "safety_position_clamped",
                c.position_clamped,
                p.position_clamped,
            ),
            ("safety_faults", c.faults, p.faults),
        ] {
            if new > old {
                self.stats.count(key, new - old);
            }
        }
        for kind in TripKind::ALL {
            let (new, old) = (c.trips(kind), p.trips(kind));
            if new > old {
                self.stats.count(trip_key(kind), new - old);
            }
        }
        self.counters = c;
        self.stats.set_policy_state(state_name(self.safety.state()));
    }
}

fn trip_key(kind: TripKind) -> &'static str {
    match kind {
        TripKind::EStop => "safety_trip_estop",
        TripKind::NonFiniteAction => "safety_trip_non_finite_action",
        TripKind::StaleObservation => "safety_trip_stale_observation",
        TripKind::InputSilent => "safety_trip_input_silent",
        TripKind::DeadlineMissed => "safety_trip_deadline_missed",
        TripKind::PolicyFailed => "safety_trip_policy_failed",
    }
}

/// The layer's state as `/diagnostics` shows it.
pub fn state_name(s: SafetyState) -> &'static str {
    match s {
        SafetyState::Disarmed => "disarmed",
        SafetyState::Armed => "armed",
        SafetyState::Holding { .. } => "holding",
        SafetyState::Faulted(_) => "faulted",
    }
}
