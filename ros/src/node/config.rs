//! `sarm run`'s configuration: one TOML file, validated at start-up with
//! errors that name the key, plus CLI overrides of the common keys.
//!
//! Every key has a default, so an empty file is a valid config; see
//! `launch/default.toml` for the annotated full set.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::zenoh_link::RosDistro;

/// The whole file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Identifies this robot on the trainer link (`sarm/<robot_id>/…`) and in messages.
    pub robot_id: String,
    /// Model bundle folder.
    pub bundle: PathBuf,
    /// `fp32` or `int8`.
    pub precision: String,
    /// Score every N-th frame of the model's clock.
    pub stride: usize,
    /// Confidence-weighted smoothing of progress (the SARM paper's).
    pub smoothing: bool,
    /// Folder for the results (MCAP of the outputs, parquet); empty = none.
    pub output_dir: PathBuf,
    pub source: SourceConfig,
    pub transport: TransportSection,
    pub inputs: InputsConfig,
    pub outputs: OutputsConfig,
    pub episode: EpisodeConfig,
    pub trainer: TrainerConfig,
    pub rabc: RabcConfig,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            robot_id: "robot".into(),
            bundle: PathBuf::from("models/sarm-test"),
            precision: "fp32".into(),
            stride: 1,
            smoothing: false,
            output_dir: PathBuf::new(),
            source: SourceConfig::default(),
            transport: TransportSection::default(),
            inputs: InputsConfig::default(),
            outputs: OutputsConfig::default(),
            episode: EpisodeConfig::default(),
            trainer: TrainerConfig::default(),
            rabc: RabcConfig::default(),
        }
    }
}

/// Where camera and joint messages come from.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    /// `topics`: subscribe on the transport. `bag`: replay `bag` in real
    /// time onto the transport from inside this process, and subscribe to it.
    pub kind: String,
    pub bag: PathBuf,
    /// Replay speed for `bag`.
    pub rate: f64,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            kind: "topics".into(),
            bag: PathBuf::new(),
            rate: 1.0,
        }
    }
}

/// How to join ROS 2.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TransportSection {
    /// `dds` or `zenoh` (rmw_zenoh key layout).
    pub kind: String,
    pub domain_id: u16,
    pub namespace: String,
    pub node_name: String,
    /// DDS: interfaces (addresses) to use; empty = all.
    pub interfaces: Vec<IpAddr>,
    /// Zenoh: session config (JSON5); empty = Zenoh's defaults, peer mode.
    pub zenoh_config: PathBuf,
    pub zenoh_listen: Vec<String>,
    pub zenoh_connect: Vec<String>,
    /// Zenoh: multicast/gossip scouting.
    pub zenoh_scouting: bool,
    /// rmw_zenoh key format: `humble` or `jazzy` (also iron, kilted, rolling).
    pub ros_distro: String,
}

impl Default for TransportSection {
    fn default() -> Self {
        TransportSection {
            kind: "dds".into(),
            domain_id: 0,
            namespace: "/".into(),
            node_name: "sarm".into(),
            interfaces: Vec::new(),
            zenoh_config: PathBuf::new(),
            zenoh_listen: Vec::new(),
            zenoh_connect: Vec::new(),
            zenoh_scouting: true,
            ros_distro: "jazzy".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct InputsConfig {
    /// Camera topic (the bundle's encoder reads it).
    pub camera: String,
    /// `compressed` (sensor_msgs/CompressedImage) or `raw` (sensor_msgs/Image).
    pub camera_type: String,
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
            camera_type: "compressed".into(),
            joints: "/joint_states".into(),
            slop_ms: 20.0,
            max_wait_ms: 100.0,
            queue: 64,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
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

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EpisodeConfig {
    /// sarm_msgs/EpisodeEvent commands (start/end/abort) on this topic.
    pub control: String,
    /// End (abort) the episode after this long without camera frames; 0 = never.
    pub inactivity_s: f64,
    /// Start an episode with the first frame instead of waiting for a start event.
    pub auto_start: bool,
}

impl Default for EpisodeConfig {
    fn default() -> Self {
        EpisodeConfig {
            control: "/sarm/episode_control".into(),
            inactivity_s: 2.0,
            auto_start: true,
        }
    }
}

/// The robot's end of the trainer link (used when `outputs.trainer_link`
/// is on).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainerConfig {
    /// The trainer link's own Zenoh session (JSON5, e.g.
    /// launch/zenoh/trainer-robot.json5: a TLS client of the trainer's
    /// router). Empty: on the Zenoh transport, the ROS 2 session carries
    /// the link; on DDS, a Zenoh peer session with Zenoh's defaults.
    pub zenoh_config: PathBuf,
    /// Endpoints the link's own session connects to (override the file's),
    /// e.g. `tls/trainer-host:7447`.
    pub zenoh_connect: Vec<String>,
    /// How often the link's own session retries opening while the trainer
    /// cannot be reached (records are spooled meanwhile).
    pub connect_retry_s: f64,
    /// On-disk spool of records not yet acknowledged by the sink; kept
    /// across runs (sequence numbers and episode indices carry on from it).
    /// Empty: `<output_dir>/spool`, or `sarm_spool/<robot_id>` without an
    /// output folder.
    pub spool_dir: PathBuf,
    /// Upper bound of the spool.
    pub spool_max_mb: u64,
    /// `drop_oldest` or `drop_newest` when the spool is full (counted,
    /// logged, and reported to the sink).
    pub when_full: String,
    /// Heartbeat period (and how often the spool is synced to disk).
    pub heartbeat_s: f64,
}

impl Default for TrainerConfig {
    fn default() -> Self {
        TrainerConfig {
            zenoh_config: PathBuf::new(),
            zenoh_connect: Vec::new(),
            connect_retry_s: 2.0,
            spool_dir: PathBuf::new(),
            spool_max_mb: 256,
            when_full: "drop_oldest".into(),
            heartbeat_s: 0.5,
        }
    }
}

/// RA-BC weights on the robot (LeRobot's rule, with running statistics).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RabcConfig {
    /// H: the policy's action chunk, in scored frames (LeRobot's policies use 50).
    pub chunk_size: usize,
    pub kappa: f64,
    pub epsilon: f64,
    /// Progress head the weights use: `sparse` or `dense`.
    pub head: String,
}

impl Default for RabcConfig {
    fn default() -> Self {
        let p = sarm_runtime::rabc::RabcParams::default();
        RabcConfig {
            chunk_size: p.chunk_size,
            kappa: p.kappa,
            epsilon: p.epsilon,
            head: "sparse".into(),
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
    Invalid { key: &'static str, message: String },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

impl NodeConfig {
    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg = Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })?;
        // Relative paths in the file are relative to the file.
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut cfg.bundle,
            &mut cfg.source.bag,
            &mut cfg.transport.zenoh_config,
            &mut cfg.trainer.zenoh_config,
            &mut cfg.trainer.spool_dir,
        ] {
            if !p.as_os_str().is_empty() && p.is_relative() && !p.exists() {
                let candidate = base.join(&*p);
                if candidate.exists() {
                    *p = candidate;
                }
            }
        }
        Ok(cfg)
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Checks every value; the first problem names its key.
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
        if !matches!(self.precision.as_str(), "fp32" | "int8") {
            return Err(invalid(
                "precision",
                format!("fp32 or int8, found {:?}", self.precision),
            ));
        }
        if self.stride == 0 {
            return Err(invalid("stride", "must be >= 1"));
        }
        match self.source.kind.as_str() {
            "topics" => {}
            "bag" => {
                if self.source.bag.as_os_str().is_empty() {
                    return Err(invalid(
                        "source.bag",
                        "source.kind = \"bag\" needs a bag path",
                    ));
                }
                if !self.source.bag.exists() {
                    return Err(invalid(
                        "source.bag",
                        format!("{} does not exist", self.source.bag.display()),
                    ));
                }
            }
            other => {
                return Err(invalid(
                    "source.kind",
                    format!("topics or bag, found {other:?}"),
                ))
            }
        }
        if !(self.source.rate.is_finite() && self.source.rate > 0.0) {
            return Err(invalid(
                "source.rate",
                format!("must be > 0, found {}", self.source.rate),
            ));
        }
        if !matches!(self.transport.kind.as_str(), "dds" | "zenoh") {
            return Err(invalid(
                "transport.kind",
                format!("dds or zenoh, found {:?}", self.transport.kind),
            ));
        }
        if self.transport.domain_id > 232 {
            return Err(invalid("transport.domain_id", "must be 0..=232"));
        }
        self.ros_distro()?;
        if !self.transport.namespace.starts_with('/') {
            return Err(invalid("transport.namespace", "must start with '/'"));
        }
        if !matches!(self.inputs.camera_type.as_str(), "compressed" | "raw") {
            return Err(invalid(
                "inputs.camera_type",
                format!("compressed or raw, found {:?}", self.inputs.camera_type),
            ));
        }
        for (key, topic) in [
            ("inputs.camera", &self.inputs.camera),
            ("inputs.joints", &self.inputs.joints),
            ("outputs.progress", &self.outputs.progress),
            ("outputs.episode", &self.outputs.episode),
            ("outputs.weight", &self.outputs.weight),
            ("outputs.diagnostics", &self.outputs.diagnostics),
            ("episode.control", &self.episode.control),
        ] {
            crate::zenoh_link::rmw::resolve_topic(topic, &self.transport.namespace)
                .map_err(|m| invalid(key, m))?;
        }
        let non_negative = |key: &'static str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(invalid(key, format!("must be a number >= 0, found {v}")))
            }
        };
        non_negative("inputs.slop_ms", self.inputs.slop_ms)?;
        non_negative("inputs.max_wait_ms", self.inputs.max_wait_ms)?;
        non_negative("episode.inactivity_s", self.episode.inactivity_s)?;
        if !(self.outputs.diagnostics_period_s.is_finite()
            && self.outputs.diagnostics_period_s > 0.0)
        {
            return Err(invalid("outputs.diagnostics_period_s", "must be > 0"));
        }
        if self.inputs.queue < 2 || self.inputs.queue > 1 << 16 {
            return Err(invalid("inputs.queue", "must be 2..=65536"));
        }
        if self.outputs.queue < 16 || self.outputs.queue > 1 << 20 {
            return Err(invalid("outputs.queue", "must be 16..=1048576"));
        }
        use sarm_runtime::rabc::RabcParamsError as R;
        self.rabc.params().validate().map_err(|e| {
            let key = match e {
                R::ChunkSize(_) | R::ChunkTooLarge(_) => "rabc.chunk_size",
                R::Kappa(_) => "rabc.kappa",
                R::Epsilon(_) => "rabc.epsilon",
            };
            invalid(key, e.to_string())
        })?;
        if !matches!(self.rabc.head.as_str(), "sparse" | "dense") {
            return Err(invalid(
                "rabc.head",
                format!("sparse or dense, found {:?}", self.rabc.head),
            ));
        }
        if self.trainer.spool_max_mb < 1 {
            return Err(invalid("trainer.spool_max_mb", "must be >= 1"));
        }
        self.when_full()?;
        if !(self.trainer.heartbeat_s.is_finite() && self.trainer.heartbeat_s > 0.0) {
            return Err(invalid("trainer.heartbeat_s", "must be > 0"));
        }
        if !(self.trainer.connect_retry_s.is_finite() && self.trainer.connect_retry_s > 0.0) {
            return Err(invalid("trainer.connect_retry_s", "must be > 0"));
        }
        let z = &self.trainer.zenoh_config;
        if !z.as_os_str().is_empty() && !z.is_file() {
            return Err(invalid(
                "trainer.zenoh_config",
                format!("{} is not a file", z.display()),
            ));
        }
        Ok(())
    }

    /// The trainer link's spool folder (see `trainer.spool_dir`).
    pub fn spool_dir(&self) -> PathBuf {
        if !self.trainer.spool_dir.as_os_str().is_empty() {
            self.trainer.spool_dir.clone()
        } else if !self.output_dir.as_os_str().is_empty() {
            self.output_dir.join("spool")
        } else {
            PathBuf::from("sarm_spool").join(&self.robot_id)
        }
    }

    pub fn when_full(&self) -> Result<crate::trainer::WhenFull, ConfigError> {
        self.trainer
            .when_full
            .parse()
            .map_err(|m: String| invalid("trainer.when_full", m))
    }

    pub fn ros_distro(&self) -> Result<RosDistro, ConfigError> {
        self.transport
            .ros_distro
            .parse()
            .map_err(|m: String| invalid("transport.ros_distro", m))
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
    }

    #[test]
    fn bad_values_name_their_key() {
        let bad = |text: &str, key: &str| {
            let c = NodeConfig::parse(text).unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        };
        bad("precision = \"fp16\"", "`precision`");
        bad("stride = 0", "`stride`");
        bad("robot_id = \"a/b\"", "`robot_id`");
        bad("[transport]\nkind = \"udp\"", "`transport.kind`");
        bad(
            "[transport]\nros_distro = \"foxy\"",
            "`transport.ros_distro`",
        );
        bad("[inputs]\nslop_ms = -1", "`inputs.slop_ms`");
        bad("[inputs]\ncamera = \"/a b\"", "`inputs.camera`");
        bad("[source]\nkind = \"bag\"", "`source.bag`");
        bad("[outputs]\nqueue = 1", "`outputs.queue`");
        bad("[rabc]\nchunk_size = 0", "`rabc.chunk_size`");
        bad("[rabc]\nhead = \"both\"", "`rabc.head`");
        bad("[trainer]\nwhen_full = \"block\"", "`trainer.when_full`");
        bad(
            "[trainer]\nconnect_retry_s = 0.0",
            "`trainer.connect_retry_s`",
        );
        bad(
            "[trainer]\nzenoh_config = \"/nonexistent/trainer-robot.json5\"",
            "`trainer.zenoh_config`",
        );
    }
}
