//! The node's observability: per-stage latency histograms, rates and drops
//! by reason, shared between the pipeline threads, turned into
//! diagnostic_msgs/DiagnosticArray and log lines.
//!
//! Latencies along the pipeline (queue, receive->publish, trigger->publish,
//! stamp->publish) and rates are on the node's clock, so under simulated
//! time they are the simulation's (lockstep: the robot waits for nobody).
//! The compute stages (decode, encode, reward, publish) are how long the
//! computer took, on the monotonic clock.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use sarm_runtime::clock::duration_between;
use sarm_runtime::Clock;

use hdrhistogram::Histogram;

use crate::msg::{DiagnosticArray, DiagnosticStatus, Header, KeyValue, Time};

/// Pipeline stages with a latency histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Arrival of the camera message -> the assembler took it.
    Queue,
    /// JPEG/PNG/raw -> RGB.
    Decode,
    /// Image encoder.
    Encode,
    /// Stage + subtask models.
    Reward,
    /// Score -> messages handed to the transport.
    Publish,
    /// Camera message arrival -> Progress published. Includes the window's
    /// look-ahead (a centred window scores a frame only once the frames
    /// after it have arrived).
    EndToEnd,
    /// Arrival of the input message whose handling produced the score (the
    /// camera frame or joint state that completed the window; for a frame
    /// released by its wait for joints running out, that frame) -> Progress
    /// published. Leaves out the window's look-ahead: what the node adds
    /// once a score is due. Scores flushed out at an episode's end answer no
    /// input and are not counted.
    Trigger,
    /// Camera header stamp -> Progress published (meaningful when stamps are live).
    StampToPublish,
    /// The policy stage's JPEG/PNG/raw -> RGB (once per new frame).
    PolicyDecode,
    /// The policy graph's run (ticks where the model ran).
    PolicyInference,
    /// Arrival of the camera frame a command was computed from -> the
    /// command handed to the transport.
    ObservationToCommand,
}

impl Stage {
    pub const ALL: [Stage; 11] = [
        Stage::Queue,
        Stage::Decode,
        Stage::Encode,
        Stage::Reward,
        Stage::Publish,
        Stage::EndToEnd,
        Stage::Trigger,
        Stage::StampToPublish,
        Stage::PolicyDecode,
        Stage::PolicyInference,
        Stage::ObservationToCommand,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Queue => "queue",
            Stage::Decode => "decode",
            Stage::Encode => "encode",
            Stage::Reward => "reward",
            Stage::Publish => "publish",
            Stage::EndToEnd => "receive_to_publish",
            Stage::Trigger => "trigger_to_publish",
            Stage::StampToPublish => "stamp_to_publish",
            Stage::PolicyDecode => "policy_decode",
            Stage::PolicyInference => "policy_inference",
            Stage::ObservationToCommand => "observation_to_command",
        }
    }
}

/// Live state shown in the terminal view.
#[derive(Debug, Clone, Default)]
pub struct Live {
    pub episode_index: i64,
    pub in_episode: bool,
    pub frame_index: i64,
    pub stage_name: String,
    pub progress: f32,
}

#[derive(Debug)]
struct Inner {
    /// Node-clock time of the first count (rates are per second since).
    started_ns: Option<i64>,
    hist: BTreeMap<Stage, Histogram<u64>>,
    counts: BTreeMap<&'static str, u64>,
    drops: BTreeMap<&'static str, u64>,
    /// Errors per sink.
    errors: BTreeMap<&'static str, u64>,
    /// Key/values that do not change while the node runs (the backend and
    /// its execution providers), shown in /diagnostics.
    fixed: Vec<(String, String)>,
    live: Live,
    policy: Option<PolicyStatus>,
}

/// The policy's safety layer as `/diagnostics` shows it.
#[derive(Debug, Clone, Default)]
pub struct PolicyStatus {
    /// disarmed, armed, holding, faulted.
    pub state: &'static str,
    /// The last event (armed, disarmed, fault, reset, arm_refused), its
    /// detail and node-clock time.
    pub last_event: Option<(&'static str, String, i64)>,
}

/// Shared statistics (one lock, taken briefly once per event).
#[derive(Debug)]
pub struct NodeStats {
    inner: Mutex<Inner>,
    clock: Clock,
    /// Node-clock time up to which the assembler has done its timed work
    /// (a lockstep simulator, or a test, waits for it).
    assembled_until: AtomicI64,
    /// Node-clock time up to which the policy stage has done its ticks.
    policy_until: AtomicI64,
    /// Ticks the assembler handed on and the reward stage took up: their
    /// difference is the reward stage's backlog.
    ticks_handed_on: AtomicU64,
    ticks_taken: AtomicU64,
}

impl Default for NodeStats {
    fn default() -> Self {
        Self::new(Clock::wall())
    }
}

impl NodeStats {
    pub fn new(clock: Clock) -> Self {
        let hist = Stage::ALL
            .iter()
            .map(|s| {
                // 1 µs .. 60 s, 3 significant digits: fixed size, no growth.
                let h = Histogram::new_with_bounds(1, 60_000_000, 3)
                    .expect("constant, valid histogram bounds");
                (*s, h)
            })
            .collect();
        NodeStats {
            inner: Mutex::new(Inner {
                started_ns: None,
                hist,
                counts: BTreeMap::new(),
                drops: BTreeMap::new(),
                errors: BTreeMap::new(),
                fixed: Vec::new(),
                live: Live::default(),
                policy: None,
            }),
            clock,
            assembled_until: AtomicI64::new(i64::MIN),
            policy_until: AtomicI64::new(i64::MIN),
            ticks_handed_on: AtomicU64::new(0),
            ticks_taken: AtomicU64::new(0),
        }
    }

    /// The assembler has done its timed work up to `now_ns`.
    pub fn set_assembled_until(&self, now_ns: i64) {
        self.assembled_until.fetch_max(now_ns, Ordering::AcqRel);
    }

    /// The policy stage has done its control ticks up to `now_ns`.
    pub fn set_policy_until(&self, now_ns: i64) {
        self.policy_until.store(now_ns, Ordering::Release);
    }

    pub fn policy_until(&self) -> i64 {
        self.policy_until.load(Ordering::Acquire)
    }

    pub fn assembled_until(&self) -> i64 {
        self.assembled_until.load(Ordering::Acquire)
    }

    pub fn tick_handed_on(&self) {
        self.ticks_handed_on.fetch_add(1, Ordering::AcqRel);
    }

    pub fn tick_taken(&self) {
        self.ticks_taken.fetch_add(1, Ordering::AcqRel);
    }

    /// Ticks handed on that the reward stage has not taken up yet.
    pub fn reward_backlog(&self) -> u64 {
        let taken = self.ticks_taken.load(Ordering::Acquire);
        self.ticks_handed_on
            .load(Ordering::Acquire)
            .saturating_sub(taken)
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let mut guard = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    pub fn record(&self, stage: Stage, d: Duration) {
        let us = (d.as_micros() as u64).clamp(1, 60_000_000);
        self.with(|i| {
            if let Some(h) = i.hist.get_mut(&stage) {
                let _ = h.record(us);
            }
        });
    }

    /// A latency between two node-clock times.
    pub fn record_between(&self, stage: Stage, from_ns: i64, to_ns: i64) {
        self.record(stage, duration_between(from_ns, to_ns));
    }

    pub fn count(&self, what: &'static str, n: u64) {
        let now = self.clock.now_ns();
        self.with(|i| {
            i.started_ns.get_or_insert(now);
            *i.counts.entry(what).or_default() += n
        });
    }

    /// Key/values shown in every /diagnostics (set once at start).
    pub fn set_static(&self, values: Vec<(String, String)>) {
        self.with(|i| i.fixed = values);
    }

    /// A sink failed once.
    /// The safety layer's state after a control tick.
    pub fn set_policy_state(&self, state: &'static str) {
        self.with(|i| i.policy.get_or_insert_with(Default::default).state = state);
    }

    /// A safety layer event (for `/diagnostics`: the last one).
    pub fn set_policy_event(&self, name: &'static str, detail: &str, at_ns: i64) {
        self.with(|i| {
            i.policy.get_or_insert_with(Default::default).last_event =
                Some((name, detail.to_string(), at_ns))
        });
    }

    pub fn policy(&self) -> Option<PolicyStatus> {
        self.with(|i| i.policy.clone())
    }

    pub fn count_error(&self, sink: &'static str) {
        self.with(|i| *i.errors.entry(sink).or_default() += 1);
    }

    pub fn errors(&self) -> BTreeMap<&'static str, u64> {
        self.with(|i| i.errors.clone())
    }

    pub fn drop_one(&self, reason: &'static str) {
        self.with(|i| *i.drops.entry(reason).or_default() += 1);
    }

    pub fn set_live(&self, f: impl FnOnce(&mut Live)) {
        self.with(|i| f(&mut i.live));
    }

    pub fn live(&self) -> Live {
        self.with(|i| i.live.clone())
    }

    pub fn counts(&self) -> BTreeMap<&'static str, u64> {
        self.with(|i| i.counts.clone())
    }

    pub fn drops(&self) -> BTreeMap<&'static str, u64> {
        self.with(|i| i.drops.clone())
    }

    /// (p50, p99, count) in milliseconds of a stage.
    pub fn percentiles(&self, stage: Stage) -> (f64, f64, u64) {
        self.with(|i| match i.hist.get(&stage) {
            Some(h) if !h.is_empty() => (
                h.value_at_quantile(0.5) as f64 / 1e3,
                h.value_at_quantile(0.99) as f64 / 1e3,
                h.len(),
            ),
            _ => (0.0, 0.0, 0),
        })
    }

    /// Node-clock time since the first count.
    pub fn uptime(&self) -> Duration {
        let now = self.clock.now_ns();
        self.with(|i| {
            i.started_ns
                .map_or(Duration::ZERO, |s| duration_between(s, now))
        })
    }

    /// The node's status as diagnostic_msgs/DiagnosticArray.
    pub fn diagnostics(
        &self,
        node_name: &str,
        hardware_id: &str,
        stamp_ns: i64,
    ) -> DiagnosticArray {
        let mut values = Vec::new();
        let up = self.uptime().as_secs_f64().max(1e-9);
        for (k, v) in self.counts() {
            values.push(KeyValue {
                key: k.to_string(),
                value: v.to_string(),
            });
            values.push(KeyValue {
                key: format!("{k}_per_s"),
                value: format!("{:.2}", v as f64 / up),
            });
        }
        let drops = self.drops();
        for (k, v) in &drops {
            values.push(KeyValue {
                key: format!("dropped_{k}"),
                value: v.to_string(),
            });
        }
        for s in Stage::ALL {
            let (p50, p99, n) = self.percentiles(s);
            if n > 0 {
                values.push(KeyValue {
                    key: format!("latency_{}_p50_ms", s.name()),
                    value: format!("{p50:.3}"),
                });
                values.push(KeyValue {
                    key: format!("latency_{}_p99_ms", s.name()),
                    value: format!("{p99:.3}"),
                });
            }
        }
        for (key, value) in self.with(|i| i.fixed.clone()) {
            values.push(KeyValue { key, value });
        }
        let live = self.live();
        let (level, message) = if drops.is_empty() {
            (0u8, "ok".to_string())
        } else {
            (
                1u8,
                format!("{} inputs dropped", drops.values().sum::<u64>()),
            )
        };
        let (mut level, mut message) = (level, message);
        if let Some(p) = self.policy() {
            values.push(KeyValue {
                key: "policy_state".into(),
                value: p.state.to_string(),
            });
            if let Some((name, detail, _)) = &p.last_event {
                values.push(KeyValue {
                    key: "policy_last_event".into(),
                    value: if detail.is_empty() {
                        name.to_string()
                    } else {
                        format!("{name}: {detail}")
                    },
                });
            }
            if p.state == "faulted" {
                level = 2;
                message = format!(
                    "policy fault latched{}",
                    p.last_event
                        .as_ref()
                        .filter(|e| e.0 == "fault")
                        .map(|e| format!(": {}", e.1))
                        .unwrap_or_default()
                );
            } else if p.state == "holding" && level == 0 {
                level = 1;
                message = "policy holding its last command".into();
            }
        }
        values.push(KeyValue {
            key: "episode_index".into(),
            value: live.episode_index.to_string(),
        });
        values.push(KeyValue {
            key: "reward_backlog".into(),
            value: self.reward_backlog().to_string(),
        });
        DiagnosticArray {
            header: Header {
                stamp: Time::from_nanos(stamp_ns),
                frame_id: String::new(),
            },
            status: vec![DiagnosticStatus {
                level,
                name: format!("{node_name}: reward model"),
                message,
                hardware_id: hardware_id.to_string(),
                values,
            }],
        }
    }

    /// One log line: rates, p99s and drops.
    pub fn summary_line(&self) -> String {
        let counts = self.counts();
        let up = self.uptime().as_secs_f64().max(1e-9);
        let rate = |k: &str| counts.get(k).copied().unwrap_or(0) as f64 / up;
        let (_, e2e99, _) = self.percentiles(Stage::EndToEnd);
        let (_, enc99, _) = self.percentiles(Stage::Encode);
        let (_, rew99, _) = self.percentiles(Stage::Reward);
        let drops: u64 = self.drops().values().sum();
        format!(
            "camera {:.1}/s, joints {:.1}/s, scored {:.1}/s; p99 encode {enc99:.1} ms, reward {rew99:.1} ms, receive->publish {e2e99:.1} ms; dropped {drops}",
            rate("camera_messages"),
            rate("joint_messages"),
            rate("frames_scored"),
        )
    }
}
