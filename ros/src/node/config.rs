//! `sarm run`'s configuration: one TOML file, typed and validated at
//! start-up, plus CLI overrides of the common keys.
//!
//! Enum-like keys are Rust enums (an unknown value is refused with the
//! allowed ones), optional paths are `Option`s (absent = none), unknown keys
//! are refused by name, and every error names its key. Every key has a
//! default, so an empty file is a valid config; `launch/default.toml` is the
//! annotated full set (a test keeps the two in step).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use sarm_runtime::policy::SafetyConfig;
use sarm_runtime::{BackendConfig, ClockSource, HeadKind, Precision};
use serde::{Deserialize, Serialize};

use crate::trainer::WhenFull;
use crate::transport::TransportKind;
use crate::zenoh_link::RosDistro;

/// The whole file.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Identifies this robot on the trainer link (`sarm/<robot_id>/…`) and in messages.
    pub robot_id: String,
    /// Model bundle folder.
    pub bundle: PathBuf,
    pub precision: Precision,
    /// Score every N-th frame of the model's clock.
    pub stride: usize,
    /// Confidence-weighted smoothing of progress (the SARM paper's).
    pub smoothing: bool,
    /// Folder for the results (MCAP of the outputs, parquet); none if unset.
    pub output_dir: Option<PathBuf>,
    pub source: SourceConfig,
    pub transport: TransportSection,
    pub time: TimeConfig,
    pub inputs: InputsConfig,
    pub outputs: OutputsConfig,
    pub episode: EpisodeConfig,
    pub trainer: TrainerConfig,
    pub rabc: RabcConfig,
    /// The inference backend (tract, or onnxruntime loaded at run time).
    pub backend: BackendConfig,
    /// A policy driving the robot through the safety layer (off unless
    /// `policy.bundle` is set).
    pub policy: PolicySection,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            robot_id: "robot".into(),
            bundle: PathBuf::from("models/sarm-test"),
            precision: Precision::Fp32,
            stride: 1,
            smoothing: false,
            output_dir: None,
            source: SourceConfig::default(),
            transport: TransportSection::default(),
            time: TimeConfig::default(),
            inputs: InputsConfig::default(),
            outputs: OutputsConfig::default(),
            episode: EpisodeConfig::default(),
            trainer: TrainerConfig::default(),
            rabc: RabcConfig::default(),
            backend: BackendConfig::default(),
            policy: PolicySection::default(),
        }
    }
}

/// Where camera and joint messages come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// Subscribe on the transport.
    #[default]
    Topics,
    /// Replay `source.bag` onto the transport from inside this process, and
    /// subscribe to it.
    Bag,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    pub kind: SourceKind,
    /// The rosbag2 episode for `kind = "bag"`.
    pub bag: Option<PathBuf>,
    /// Replay speed for `bag`.
    pub rate: f64,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            kind: SourceKind::Topics,
            bag: None,
            rate: 1.0,
        }
    }
}

/// How to join ROS 2.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TransportSection {
    pub kind: TransportKind,
    pub domain_id: u16,
    pub namespace: String,
    pub node_name: String,
    /// DDS: the interfaces (addresses) the participant uses and the only
    /// places it sends to; empty = all. On DDS the trainer link's default
    /// Zenoh peer keeps to them too.
    pub interfaces: Vec<IpAddr>,
    /// Zenoh: session config (JSON5); unset = Zenoh's defaults, peer mode.
    pub zenoh_config: Option<PathBuf>,
    pub zenoh_listen: Vec<String>,
    pub zenoh_connect: Vec<String>,
    /// Zenoh: multicast/gossip scouting.
    pub zenoh_scouting: bool,
    /// rmw_zenoh key format: `humble` or `jazzy` (also iron, kilted, rolling).
    pub ros_distro: RosDistro,
}

impl Default for TransportSection {
    fn default() -> Self {
        TransportSection {
            kind: TransportKind::Dds,
            domain_id: 0,
            namespace: "/".into(),
            node_name: "sarm".into(),
            interfaces: Vec::new(),
            zenoh_config: None,
            zenoh_listen: Vec::new(),
            zenoh_connect: Vec::new(),
            zenoh_scouting: true,
            ros_distro: RosDistro::Jazzy,
        }
    }
}

/// The node's clock (see `sarm_runtime::clock`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TimeConfig {
    /// `wall`, or `sim`: ROS 2 simulated time from `clock_topic`
    /// (`use_sim_time`); rates, timeouts and latencies follow it.
    pub source: ClockSource,
    /// rosgraph_msgs/Clock topic for `source = "sim"`.
    pub clock_topic: String,
}

impl Default for TimeConfig {
    fn default() -> Self {
        TimeConfig {
            source: ClockSource::Wall,
            clock_topic: "/clock".into(),
        }
    }
}

/// The camera message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CameraType {
    /// sensor_msgs/CompressedImage (JPEG, PNG).
    #[default]
    Compressed,
    /// sensor_msgs/Image.
    Raw,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct InputsConfig {
    /// Camera topic (the bundle's encoder reads it).
    pub camera: String,
    pub camera_type: CameraType,
    pub joints: String,
    /// Largest camera/joint stamp difference for a pair.
    pub slop_ms: f64,
    /// How long a frame waits for its joint state before it is scored without.
    pub max_wait_ms: f64,
    /// Capacity of each input queue (camera frames are latest-wins).
    pub queue: usize,
}

impl Default for InputsConfig {
    fn default() -> Self {
        InputsConfig {
            camera: "/camera/top/image_raw/compressed".into(),
            camera_type: CameraType::Compressed,
            joints: "/joint_states".into(),
            slop_ms: 20.0,
            max_wait_ms: 100.0,
            queue: 64,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutputsConfig {
    /// sarm_msgs/Progress topic (one message per scored frame and head).
    pub progress: String,
    /// sarm_msgs/EpisodeEvent topic.
    pub episode: String,
    /// sarm_msgs/SampleWeight topic (RA-BC weights, `rabc.chunk_size` frames late).
    pub weight: String,
    /// diagnostic_msgs/DiagnosticArray topic.
    pub diagnostics: String,
    pub diagnostics_period_s: f64,
    /// Also send every output over the trainer link to `sarm sink`
    /// (native Zenoh keys, spooled on disk; see `[trainer]`).
    pub trainer_link: bool,
    /// Capacity of the queue from the scorer to the publishers.
    pub queue: usize,
}

impl Default for OutputsConfig {
    fn default() -> Self {
        OutputsConfig {
            progress: "/sarm/progress".into(),
            episode: "/sarm/episode".into(),
            weight: "/sarm/weight".into(),
            diagnostics: "/diagnostics".into(),
            diagnostics_period_s: 1.0,
            trainer_link: true,
            queue: 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EpisodeConfig {
    /// sarm_msgs/EpisodeEvent commands (start/end/abort) on this topic.
    pub control: String,
    /// End (abort) the episode after this long without camera frames; 0 = never.
    pub inactivity_s: f64,
    /// Start an episode with the first frame instead of waiting for a start event.
    pub auto_start: bool,
    /// End an episode after this many frames of the model's clock (a bound
    /// on what an episode holds in memory).
    pub max_frames: u64,
    /// End the episode (reason "success: ...") when progress (the
    /// `rabc.head`) stays >= `success_progress` for `success_hold_s`.
    pub end_on_success: bool,
    pub success_progress: f32,
    pub success_hold_s: f64,
    /// End the episode (reason "stall: ...") when progress has not risen
    /// by `stall_delta` for `stall_s`.
    pub end_on_stall: bool,
    pub stall_delta: f32,
    pub stall_s: f64,
}

impl EpisodeConfig {
    /// The success and stall rules that are on.
    pub fn rules(
        &self,
    ) -> (
        Option<sarm_runtime::judge::SuccessRule>,
        Option<sarm_runtime::judge::StallRule>,
    ) {
        use std::time::Duration;
        (
            self.end_on_success
                .then(|| sarm_runtime::judge::SuccessRule {
                    progress: self.success_progress,
                    hold: Duration::from_secs_f64(self.success_hold_s.max(0.0)),
                }),
            self.end_on_stall.then(|| sarm_runtime::judge::StallRule {
                delta: self.stall_delta,
                time: Duration::from_secs_f64(self.stall_s.max(0.0)),
            }),
        )
    }
}

impl Default for EpisodeConfig {
    fn default() -> Self {
        EpisodeConfig {
            control: "/sarm/episode_control".into(),
            inactivity_s: 2.0,
            auto_start: true,
            max_frames: 100_000,
            end_on_success: false,
            success_progress: 0.95,
            success_hold_s: 1.0,
            end_on_stall: false,
            stall_delta: 0.02,
            stall_s: 10.0,
        }
    }
}

/// The message type of the policy's joint commands (what the robot's
/// driver takes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandForm {
    /// std_msgs/Float64MultiArray, one value per joint in the bundle's
    /// action order (ros2_control's forward_command_controller).
    #[default]
    Float64MultiArray,
    /// trajectory_msgs/JointTrajectory with one point reached one control
    /// period ahead (joint_trajectory_controller).
    JointTrajectory,
    /// sensor_msgs/JointState with names and positions (a position command).
    JointState,
}

impl CommandForm {
    pub fn type_name(self) -> &'static str {
        match self {
            CommandForm::Float64MultiArray => "std_msgs/msg/Float64MultiArray",
            CommandForm::JointTrajectory => "trajectory_msgs/msg/JointTrajectory",
            CommandForm::JointState => "sensor_msgs/msg/JointState",
        }
    }
}

/// `[policy]`: the policy stage (LeRobot ACT at the control rate) and its
/// safety layer.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySection {
    /// Policy bundle folder (`kind = "policy"`); none: no policy runs.
    pub bundle: Option<PathBuf>,
    pub precision: Precision,
    /// The message type of the commands.
    pub command: CommandForm,
    /// Where commands go (e.g. `/forward_position_controller/commands`).
    pub command_topic: String,
    /// sarm_msgs/PolicyControl (arm, disarm, e-stop, reset) on this topic.
    pub control_topic: String,
    /// sarm_msgs/PolicyEvent (armed, disarmed, fault and cause, reset).
    pub event_topic: String,
    /// Disarm the policy when the episode ends on a success or stall
    /// verdict (`episode.end_on_success`, `episode.end_on_stall`).
    pub disarm_on_verdict: bool,
    /// How long (wall time) a control tick waits for the model call it
    /// started; a later chunk serves from the tick it arrives at, and a
    /// tick with nothing queued holds. None: half a control period.
    /// Lockstep simulation under a slow model may raise it to stay
    /// deterministic.
    pub inference_deadline_ms: Option<u64>,
    /// Limits (only stricter than the bundle's), deadlines, arming.
    pub safety: SafetyConfig,
}

impl Default for PolicySection {
    fn default() -> Self {
        PolicySection {
            bundle: None,
            precision: Precision::Fp32,
            command: CommandForm::default(),
            command_topic: "/sarm/joint_commands".into(),
            control_topic: "/sarm/policy_control".into(),
            event_topic: "/sarm/policy_event".into(),
            disarm_on_verdict: false,
            inference_deadline_ms: None,
            safety: SafetyConfig::default(),
        }
    }
}

/// The robot's end of the trainer link (used when `outputs.trainer_link`
/// is on).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainerConfig {
    /// The trainer link's own Zenoh session (JSON5, e.g.
    /// launch/zenoh/trainer-robot.json5: a TLS client of the trainer's
    /// router). Unset: on the Zenoh transport, the ROS 2 session carries
    /// the link; on DDS, a Zenoh peer session of its own.
    pub zenoh_config: Option<PathBuf>,
    /// Endpoints the link's own session connects to (override the file's),
    /// e.g. `tls/trainer-host:7447`.
    pub zenoh_connect: Vec<String>,
    /// How often the link's own session retries opening while the trainer
    /// cannot be reached (records are spooled meanwhile).
    pub connect_retry_s: f64,
    /// On-disk spool of records not yet acknowledged by the sink; kept
    /// across runs (sequence numbers and episode indices carry on from it).
    /// Unset: `<output_dir>/spool`, or `sarm_spool/<robot_id>` without an
    /// output folder.
    pub spool_dir: Option<PathBuf>,
    /// Upper bound of the spool.
    pub spool_max_mb: u64,
    /// What to drop when the spool is full (counted, logged, and reported
    /// to the sink).
    pub when_full: WhenFull,
    /// Heartbeat period (and how often the spool is synced to disk).
    pub heartbeat_s: f64,
}

impl Default for TrainerConfig {
    fn default() -> Self {
        TrainerConfig {
            zenoh_config: None,
            zenoh_connect: Vec::new(),
            connect_retry_s: 2.0,
            spool_dir: None,
            spool_max_mb: 256,
            when_full: WhenFull::DropOldest,
            heartbeat_s: 0.5,
        }
    }
}

/// RA-BC weights on the robot (LeRobot's rule, with running statistics).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RabcConfig {
    /// H: the policy's action chunk, in scored frames (LeRobot's policies use 50).
    pub chunk_size: usize,
    pub kappa: f64,
    pub epsilon: f64,
    /// Progress head the weights use.
    pub head: HeadKind,
}

impl Default for RabcConfig {
    fn default() -> Self {
        let p = sarm_runtime::rabc::RabcParams::default();
        RabcConfig {
            chunk_size: p.chunk_size,
            kappa: p.kappa,
            epsilon: p.epsilon,
            head: HeadKind::Sparse,
        }
    }
}

impl RabcConfig {
    pub fn params(&self) -> sarm_runtime::rabc::RabcParams {
        sarm_runtime::rabc::RabcParams {
            chunk_size: self.chunk_size,
            kappa: self.kappa,
            epsilon: self.epsilon,
        }
    }
}

/// A config error that names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

impl NodeConfig {
    /// Reads a TOML file (not yet validated: overrides come first).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg = Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })?;
        // Relative paths in the file are relative to the file when they do
        // not exist from the working directory.
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() && !p.exists() {
                let candidate = base.join(&*p);
                if candidate.exists() {
                    *p = candidate;
                }
            }
        };
        resolve(&mut cfg.bundle);
        if let Some(p) = cfg.policy.bundle.as_mut() {
            resolve(p);
        }
        for p in [
            &mut cfg.backend.ort_library,
            &mut cfg.source.bag,
            &mut cfg.transport.zenoh_config,
            &mut cfg.trainer.zenoh_config,
            &mut cfg.trainer.spool_dir,
        ]
        .into_iter()
        .flatten()
        {
            resolve(p);
        }
        Ok(cfg)
    }

    /// Parses TOML. An error names the key (`transport.kind: unknown
    /// variant "udp", expected "dds" or "zenoh"`) and the line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let de = toml::Deserializer::parse(text).map_err(|e| e.to_string())?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let message = inner.message().to_string();
            let at = inner
                .span()
                .map(|s| {
                    let start = s.start.min(text.len());
                    let line = text[..start].matches('\n').count() + 1;
                    // The value as written, when the message does not show it.
                    let found = text.get(start..s.end.min(text.len())).unwrap_or("").trim();
                    if found.is_empty() || message.contains(found.trim_matches('"')) {
                        format!(" (line {line})")
                    } else {
                        format!(" (found {found}, line {line})")
                    }
                })
                .unwrap_or_default();
            if key == "." || key.is_empty() {
                format!("{message}{at}")
            } else {
                format!("key `{key}`: {message}{at}")
            }
        })
    }

    /// Checks every value that its type does not; the first problem names
    /// its key, the value found and what is allowed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if crate::zenoh_link::TrainerKeys::new(&self.robot_id).is_err() {
            return Err(invalid(
                "robot_id",
                format!(
                    "{:?} must be non-empty, without '/', '*', '$', '?', '#' or spaces",
                    self.robot_id
                ),
            ));
        }
        if self.stride == 0 {
            return Err(invalid("stride", "must be >= 1, found 0"));
        }
        match (&self.source.kind, &self.source.bag) {
            (SourceKind::Bag, None) => {
                return Err(invalid(
                    "source.bag",
                    "source.kind = \"bag\" needs a bag path",
                ))
            }
            (SourceKind::Bag, Some(bag)) if !bag.exists() => {
                return Err(invalid(
                    "source.bag",
                    format!("{} does not exist", bag.display()),
                ))
            }
            _ => {}
        }
        positive("source.rate", self.source.rate)?;
        if self.transport.domain_id > 232 {
            return Err(invalid(
                "transport.domain_id",
                format!("must be 0..=232, found {}", self.transport.domain_id),
            ));
        }
        if !self.transport.namespace.starts_with('/') {
            return Err(invalid(
                "transport.namespace",
                format!("must start with '/', found {:?}", self.transport.namespace),
            ));
        }
        for (key, file) in [
            ("transport.zenoh_config", &self.transport.zenoh_config),
            ("trainer.zenoh_config", &self.trainer.zenoh_config),
        ] {
            if let Some(f) = file {
                if !f.is_file() {
                    return Err(invalid(key, format!("{} is not a file", f.display())));
                }
            }
        }
        for (key, topic) in [
            ("inputs.camera", &self.inputs.camera),
            ("inputs.joints", &self.inputs.joints),
            ("outputs.progress", &self.outputs.progress),
            ("outputs.episode", &self.outputs.episode),
            ("outputs.weight", &self.outputs.weight),
            ("outputs.diagnostics", &self.outputs.diagnostics),
            ("episode.control", &self.episode.control),
            ("time.clock_topic", &self.time.clock_topic),
            ("policy.command_topic", &self.policy.command_topic),
            ("policy.control_topic", &self.policy.control_topic),
            ("policy.event_topic", &self.policy.event_topic),
        ] {
            crate::zenoh_link::rmw::resolve_topic(topic, &self.transport.namespace)
                .map_err(|m| invalid(key, m))?;
        }
        non_negative("inputs.slop_ms", self.inputs.slop_ms)?;
        non_negative("inputs.max_wait_ms", self.inputs.max_wait_ms)?;
        non_negative("episode.inactivity_s", self.episode.inactivity_s)?;
        let p = self.episode.success_progress;
        if !(p.is_finite() && p > 0.0 && p <= 1.0) {
            return Err(invalid(
                "episode.success_progress",
                format!("must be in (0, 1], found {p}"),
            ));
        }
        non_negative("episode.success_hold_s", self.episode.success_hold_s)?;
        let d = self.episode.stall_delta;
        if !(d.is_finite() && d > 0.0 && d <= 1.0) {
            return Err(invalid(
                "episode.stall_delta",
                format!("must be in (0, 1], found {d}"),
            ));
        }
        positive("episode.stall_s", self.episode.stall_s)?;
        positive(
            "outputs.diagnostics_period_s",
            self.outputs.diagnostics_period_s,
        )?;
        in_range("inputs.queue", self.inputs.queue as u64, 2, 1 << 16)?;
        in_range("outputs.queue", self.outputs.queue as u64, 16, 1 << 20)?;
        in_range("episode.max_frames", self.episode.max_frames, 1, 1 << 32)?;
        use sarm_runtime::rabc::RabcParamsError as R;
        self.rabc.params().validate().map_err(|e| {
            let key = match e {
                R::ChunkSize(_) | R::ChunkTooLarge(_) => "rabc.chunk_size",
                R::Kappa(_) => "rabc.kappa",
                R::Epsilon(_) => "rabc.epsilon",
            };
            invalid(key, e.to_string())
        })?;
        in_range(
            "trainer.spool_max_mb",
            self.trainer.spool_max_mb,
            1,
            1 << 40,
        )?;
        positive("trainer.heartbeat_s", self.trainer.heartbeat_s)?;
        self.backend.validate().map_err(|e| match e {
            sarm_runtime::BackendError::Config { key, message } => {
                invalid(format!("backend.{key}"), message)
            }
            other => invalid("backend", other.to_string()),
        })?;
        positive("trainer.connect_retry_s", self.trainer.connect_retry_s)?;
        if self.policy.inference_deadline_ms == Some(0) {
            return Err(invalid(
                "policy.inference_deadline_ms",
                "0: a tick must be given time for its model call (unset: one control period)",
            ));
        }
        if let Some(b) = &self.policy.bundle {
            if !b.join("bundle.toml").is_file() {
                return Err(invalid(
                    "policy.bundle",
                    format!("{} has no bundle.toml", b.display()),
                ));
            }
        }
        // The layer checks its own keys (and the limits against the bundle)
        // when it is built; the times are checked here too so that a bad
        // config fails before anything starts.
        sarm_runtime::policy::SafetyLayer::new(
            sarm_runtime::policy::JointLimits::new(Vec::new(), Vec::new(), Vec::new(), Vec::new())
                .map_err(|e| invalid("policy.safety", e.to_string()))?,
            &sarm_runtime::policy::SafetyConfig {
                limits: Default::default(),
                ..self.policy.safety.clone()
            },
            Vec::new(),
        )
        .map_err(|e| match e {
            sarm_runtime::policy::SafetyConfigError::Key { key, message } => {
                invalid(format!("policy.safety.{key}"), message)
            }
            other => invalid("policy.safety.limits", other.to_string()),
        })?;
        Ok(())
    }

    /// The trainer link's spool folder (see `trainer.spool_dir`).
    pub fn spool_dir(&self) -> PathBuf {
        match (&self.trainer.spool_dir, &self.output_dir) {
            (Some(dir), _) => dir.clone(),
            (None, Some(out)) => out.join("spool"),
            (None, None) => PathBuf::from("sarm_spool").join(&self.robot_id),
        }
    }
}

fn non_negative(key: &str, v: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(invalid(key, format!("must be a number >= 0, found {v}")))
    }
}

fn positive(key: &str, v: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(invalid(key, format!("must be a number > 0, found {v}")))
    }
}

fn in_range(key: &str, v: u64, lo: u64, hi: u64) -> Result<(), ConfigError> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(invalid(key, format!("must be {lo}..={hi}, found {v}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_the_defaults() {
        let c = NodeConfig::parse("").unwrap();
        assert_eq!(c, NodeConfig::default());
        c.validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let e = NodeConfig::parse("[inputs]\ncamera_topic = \"/x\"\n").unwrap_err();
        assert!(e.contains("camera_topic"), "{e}");
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn enum_keys_name_the_key_the_value_and_the_choices() {
        let bad = |text: &str, key: &str, found: &str, allowed: &[&str]| {
            let e = NodeConfig::parse(text).unwrap_err();
            assert!(e.contains(&format!("`{key}`")), "{text}: {e}");
            assert!(e.contains(found), "{text}: {e}");
            for a in allowed {
                assert!(e.contains(a), "{text}: {e} lacks {a}");
            }
        };
        bad(
            "precision = \"fp16\"",
            "precision",
            "fp16",
            &["fp32", "int8"],
        );
        bad(
            "[transport]\nkind = \"udp\"",
            "transport.kind",
            "udp",
            &["dds", "zenoh"],
        );
        bad(
            "[transport]\nros_distro = \"foxy\"",
            "transport.ros_distro",
            "foxy",
            &["humble", "jazzy"],
        );
        bad(
            "[source]\nkind = \"file\"",
            "source.kind",
            "file",
            &["topics", "bag"],
        );
        bad(
            "[inputs]\ncamera_type = \"jpeg\"",
            "inputs.camera_type",
            "jpeg",
            &["compressed", "raw"],
        );
        bad(
            "[rabc]\nhead = \"both\"",
            "rabc.head",
            "both",
            &["sparse", "dense"],
        );
        bad(
            "[trainer]\nwhen_full = \"block\"",
            "trainer.when_full",
            "block",
            &["drop_oldest", "drop_newest"],
        );
        bad(
            "[time]\nsource = \"gps\"",
            "time.source",
            "gps",
            &["wall", "sim"],
        );
        bad(
            "[transport]\ninterfaces = [\"localhost\"]",
            "transport.interfaces[0]",
            "localhost",
            &["IP address"],
        );
    }

    #[test]
    fn bad_values_name_their_key_and_value() {
        let bad = |text: &str, key: &str, found: &str| {
            let c = NodeConfig::parse(text).unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(&format!("`{key}`")), "{text}: {e}");
            assert!(e.contains(found), "{text}: {e}");
        };
        bad("stride = 0", "stride", "0");
        bad("robot_id = \"a/b\"", "robot_id", "a/b");
        bad("[inputs]\nslop_ms = -1", "inputs.slop_ms", "-1");
        bad("[inputs]\ncamera = \"/a b\"", "inputs.camera", "/a b");
        bad("[source]\nkind = \"bag\"", "source.bag", "bag path");
        bad("[source]\nrate = 0", "source.rate", "0");
        bad("[outputs]\nqueue = 1", "outputs.queue", "1");
        bad("[episode]\nmax_frames = 0", "episode.max_frames", "0");
        bad("[rabc]\nchunk_size = 0", "rabc.chunk_size", "0");
        bad(
            "[trainer]\nconnect_retry_s = 0.0",
            "trainer.connect_retry_s",
            "0",
        );
        bad(
            "[trainer]\nzenoh_config = \"/nonexistent/trainer-robot.json5\"",
            "trainer.zenoh_config",
            "/nonexistent/trainer-robot.json5",
        );
        bad("[time]\nclock_topic = \"\"", "time.clock_topic", "");
        bad(
            "[episode]\nsuccess_progress = 1.5",
            "episode.success_progress",
            "1.5",
        );
        bad("[episode]\nstall_s = 0.0", "episode.stall_s", "0");
        bad(
            "[policy.safety]\nhold_timeout_ms = 0",
            "policy.safety.hold_timeout_ms",
            "0",
        );
        bad(
            "[policy]\ninference_deadline_ms = 0",
            "policy.inference_deadline_ms",
            "0",
        );
        bad(
            "[policy]\nbundle = \"/nonexistent/policy\"",
            "policy.bundle",
            "/nonexistent/policy",
        );
    }

    /// `launch/default.toml` documents every key (set, or commented out for
    /// optional ones) in its section, and sets none to a non-default value.
    #[test]
    fn default_toml_lists_every_key_with_its_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../launch/default.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        // Every key, with the optional ones given a value so they show up.
        let d = NodeConfig::default();
        let all = NodeConfig {
            output_dir: Some("x".into()),
            source: SourceConfig {
                bag: Some("x".into()),
                ..d.source.clone()
            },
            transport: TransportSection {
                zenoh_config: Some("x".into()),
                ..d.transport.clone()
            },
            trainer: TrainerConfig {
                zenoh_config: Some("x".into()),
                spool_dir: Some("x".into()),
                ..d.trainer.clone()
            },
            backend: BackendConfig {
                ort_library: Some("x".into()),
                tensorrt_cache_dir: Some("x".into()),
                ..d.backend.clone()
            },
            policy: PolicySection {
                bundle: Some("x".into()),
                inference_deadline_ms: Some(20),
                ..d.policy.clone()
            },
            ..d
        };
        let value = toml::Value::try_from(&all).unwrap();
        let mut keys = Vec::new();
        fn walk(prefix: &str, v: &toml::Value, keys: &mut Vec<(String, String)>) {
            if let toml::Value::Table(t) = v {
                for (k, v) in t {
                    match v {
                        toml::Value::Table(_) if prefix.is_empty() => walk(k, v, keys),
                        toml::Value::Table(_) => walk(&format!("{prefix}.{k}"), v, keys),
                        _ => keys.push((prefix.to_string(), k.clone())),
                    }
                }
            }
        }
        walk("", &value, &mut keys);
        // Keys documented per section, commented or not.
        let mut documented = Vec::new();
        let mut section = String::new();
        for line in text.lines() {
            let l = line.trim_start_matches('#').trim();
            if let Some(s) = l.strip_prefix('[').and_then(|r| r.split(']').next()) {
                if !l.contains('=') {
                    section = s.to_string();
                    continue;
                }
            }
            if let Some((k, _)) = l.split_once('=') {
                let k = k.trim();
                if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    documented.push((section.clone(), k.to_string()));
                }
            }
        }
        for key in &keys {
            assert!(
                documented.contains(key),
                "launch/default.toml does not document `{}.{}`",
                key.0,
                key.1
            );
        }
        for key in &documented {
            assert!(
                keys.contains(key),
                "launch/default.toml documents `{}.{}`, which is not a key",
                key.0,
                key.1
            );
        }
        // What it sets is the default.
        let parsed = NodeConfig::parse(&text).unwrap();
        assert_eq!(parsed, NodeConfig::default());
    }
}
