//! The node's observability: per-stage latency histograms, rates and drops
//! by reason, shared between the pipeline threads, turned into
//! diagnostic_msgs/DiagnosticArray and log lines.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
}

impl Stage {
    pub const ALL: [Stage; 8] = [
        Stage::Queue,
        Stage::Decode,
        Stage::Encode,
        Stage::Reward,
        Stage::Publish,
        Stage::EndToEnd,
        Stage::Trigger,
        Stage::StampToPublish,
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
    started: Instant,
    hist: BTreeMap<Stage, Histogram<u64>>,
    counts: BTreeMap<&'static str, u64>,
    drops: BTreeMap<&'static str, u64>,
    live: Live,
}

/// Shared statistics (one lock, taken briefly once per event).
#[derive(Debug)]
pub struct NodeStats {
    inner: Mutex<Inner>,
}

impl Default for NodeStats {
    fn default() -> Self {
        Self::new()
    }
}

impl NodeStats {
    pub fn new() -> Self {
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
                started: Instant::now(),
                hist,
                counts: BTreeMap::new(),
                drops: BTreeMap::new(),
                live: Live::default(),
            }),
        }
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

    pub fn count(&self, what: &'static str, n: u64) {
        self.with(|i| *i.counts.entry(what).or_default() += n);
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

    pub fn uptime(&self) -> Duration {
        self.with(|i| i.started.elapsed())
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
        let live = self.live();
        let (level, message) = if drops.is_empty() {
            (0u8, "ok".to_string())
        } else {
            (
                1u8,
                format!("{} inputs dropped", drops.values().sum::<u64>()),
            )
        };
        values.push(KeyValue {
            key: "episode_index".into(),
            value: live.episode_index.to_string(),
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
