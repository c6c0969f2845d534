//! Command-line interface: one module per subcommand.

mod bench;
mod inspect;
mod label;
mod link_check;
pub mod logging;
mod replay;
mod run;
mod sink;
mod zenoh_args;

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use sarm_ros::dds::DdsConfig;
use sarm_ros::transport::{TransportConfig, TransportKind};
use sarm_ros::zenoh_link::RosDistro;
use sarm_runtime::backend::{Backend, BackendConfig, BackendKind, Provider};
use sarm_runtime::Precision;

/// The on-robot runtime for stage-aware reward models (SARM).
///
/// Runs reward models trained with LeRobot's SARM, exported to a model
/// bundle (bundle.toml + ONNX), with tract (pure Rust, the default) or
/// onnxruntime (`--backend ort`, CPU, CUDA or TensorRT).
#[derive(Debug, Parser)]
#[command(name = "sarm", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a bundle's manifest, files, provenance and tensor signatures.
    ///
    /// Loads every ONNX graph the bundle names, so a bundle that passes
    /// `inspect` will load in `run`. Reward (SARM) and policy (ACT) bundles;
    /// for a policy, `--backend tract,ort` shows the signatures on each.
    Inspect(inspect::InspectArgs),
    /// Measure per-step latency of a bundle's models on this machine.
    ///
    /// Reports p50/p99 of the image encoder, the stage model and the subtask
    /// model, fp32 and int8, and the int8/fp32 ratio measured in the same run.
    /// For a policy bundle: the observation preparation, the model call and
    /// the policy step (queue and temporal ensembling), against the control period.
    /// With --node, also runs the node on the bundled episode (50 Hz camera,
    /// 200 Hz joints) and reports its end-to-end latency and its overhead over
    /// the model step.
    Bench(bench::BenchArgs),
    /// Score recorded episodes (rosbag2 MCAP bags, or a LeRobot dataset) offline
    /// and write LeRobot's sarm_progress.parquet (and optionally MCAP of Progress
    /// messages).
    ///
    /// Runs the engine's scorer exactly as a live node feeds it: images decoded, joints
    /// reordered by name, frames taken at the bundle's rate by header stamp.
    Label(Box<label::LabelArgs>),
    /// Run the node: score camera and joint topics live and publish stage,
    /// progress and episode events (the product's main job).
    ///
    /// Without arguments it runs the embedded default: the bundled model
    /// scores a bundled recorded episode replayed in real time over Zenoh on
    /// loopback inside this process, shows the live view, writes the results
    /// to a new folder under sarm_out/ and exits with a summary.
    Run(Box<run::RunArgs>),
    /// Publish a recorded episode's topics (rosbag2 MCAP) with their
    /// original timing, over DDS or Zenoh (rmw_zenoh key layout).
    ///
    /// Messages are sent unchanged (original header stamps); only topics of
    /// types sarm knows are published, the others are listed and skipped.
    Replay(replay::ReplayArgs),
    /// The trainer's end of the trainer link: receive every robot's
    /// progress, RA-BC weights and episode events from sarm/**, persist them
    /// on arrival, and write LeRobot's sarm_progress.parquet per robot.
    ///
    /// Nothing is lost across a sink restart, a cut link or a robot killed
    /// mid-episode: records are acknowledged once durable, and gaps are
    /// filled from the robots' on-disk spools. Each record is kept once.
    /// As a client of a router that is not up yet, it waits for it.
    Sink(sink::SinkArgs),
    /// Check a trainer link without a model: send synthetic records through
    /// the robot's spool and link to a `sarm sink`, then wait until the sink
    /// has acknowledged all of them.
    ///
    /// As on the robot, records are made and spooled while the trainer is
    /// unreachable; the session is retried until it opens.
    LinkCheck(link_check::LinkCheckArgs),
}

/// Which precisions a command covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PrecisionArg {
    Fp32,
    Int8,
    All,
}

impl PrecisionArg {
    pub fn expand(self) -> Vec<Precision> {
        match self {
            PrecisionArg::Fp32 => vec![Precision::Fp32],
            PrecisionArg::Int8 => vec![Precision::Int8],
            PrecisionArg::All => vec![Precision::Fp32, Precision::Int8],
        }
    }
}

/// The bundle folder argument shared by commands.
#[derive(Debug, Clone, clap::Args)]
pub struct BundleArg {
    /// Model bundle folder (contains bundle.toml).
    #[arg(value_name = "BUNDLE")]
    pub bundle: PathBuf,
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Inspect(args) => inspect::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Label(args) => label::run(&args),
        Command::Replay(args) => replay::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Sink(args) => sink::run(&args),
        Command::LinkCheck(args) => link_check::run(&args),
    }
}

/// Which ROS 2 transport to use and how to join it (shared by the commands
/// that talk to ROS 2).
#[derive(Debug, Clone, clap::Args)]
pub struct TransportArgs {
    /// ROS 2 transport.
    #[arg(long, value_enum, default_value_t = TransportKind::Dds)]
    pub transport: TransportKind,
    /// ROS_DOMAIN_ID (default: the environment's ROS_DOMAIN_ID, else 0).
    #[arg(long)]
    pub domain_id: Option<u16>,
    /// ROS 2 namespace of the node.
    #[arg(long, default_value = "/")]
    pub namespace: String,
    /// DDS: use only this interface, by address (repeatable; e.g. 127.0.0.1).
    #[arg(long = "interface", value_name = "ADDR")]
    pub interfaces: Vec<IpAddr>,
    #[command(flatten)]
    pub zenoh: zenoh_args::ZenohArgs,
    /// rmw_zenoh key format: humble, or jazzy (also iron, kilted, rolling).
    #[arg(long, default_value = "jazzy")]
    pub ros_distro: RosDistro,
}

impl TransportArgs {
    pub fn to_config(&self, node_name: &str) -> anyhow::Result<TransportConfig> {
        let domain_id = match self.domain_id {
            Some(d) => d,
            None => match std::env::var("ROS_DOMAIN_ID") {
                Ok(v) if !v.trim().is_empty() => v.trim().parse().map_err(|_| {
                    anyhow::anyhow!("ROS_DOMAIN_ID must be a number 0..=232, found {v:?}")
                })?,
                _ => 0,
            },
        };
        Ok(TransportConfig {
            dds: DdsConfig {
                domain_id,
                interfaces: self.interfaces.clone(),
                node_name: node_name.into(),
                namespace: self.namespace.clone(),
            },
            zenoh: self.zenoh.to_config(),
            distro: self.ros_distro,
        })
    }
}

/// Which inference backend runs the models, and its onnxruntime settings
/// (shared by `label`, `bench` and `inspect`; the node reads `[backend]`).
#[derive(Debug, Clone, clap::Args)]
pub struct BackendArgs {
    /// Inference backend: tract (pure Rust, the default) or ort (onnxruntime,
    /// loaded at run time from ORT_DYLIB_PATH or --ort-library). `sarm bench`
    /// takes a list (`--backend tract,ort`) and compares them in one run.
    #[arg(long, value_name = "tract|ort", value_delimiter = ',', default_value = "tract",
          value_parser = parse_backend)]
    pub backend: Vec<BackendKind>,
    /// ort: path of libonnxruntime.so (ORT_DYLIB_PATH, when set, wins).
    #[arg(long, value_name = "PATH")]
    pub ort_library: Option<PathBuf>,
    /// ort: execution providers in order of preference (tensorrt,cuda,cpu).
    #[arg(long, value_name = "LIST", value_delimiter = ',', default_value = "cpu",
          value_parser = parse_provider)]
    pub providers: Vec<Provider>,
    /// ort: fail when the first provider is unavailable instead of falling back.
    #[arg(long)]
    pub require_provider: bool,
    /// ort: threads per graph within an operator.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub ort_threads: usize,
}

fn parse_backend(s: &str) -> Result<BackendKind, String> {
    BackendKind::parse(s).ok_or_else(|| format!("unknown backend {s:?}: tract or ort"))
}

fn parse_provider(s: &str) -> Result<Provider, String> {
    match s {
        "tensorrt" => Ok(Provider::Tensorrt),
        "cuda" => Ok(Provider::Cuda),
        "cpu" => Ok(Provider::Cpu),
        _ => Err(format!("unknown provider {s:?}: tensorrt, cuda or cpu")),
    }
}

impl BackendArgs {
    /// The configuration of `kind` with these settings.
    pub fn config(&self, kind: BackendKind) -> BackendConfig {
        BackendConfig {
            kind,
            ort_library: self.ort_library.clone(),
            providers: self.providers.clone(),
            require_provider: self.require_provider,
            intra_op_threads: self.ort_threads,
            ..BackendConfig::default()
        }
    }

    /// The one backend a command runs on (`--backend` with one value).
    pub fn single(&self) -> anyhow::Result<Backend> {
        match self.backend.as_slice() {
            [kind] => Ok(Backend::new(&self.config(*kind))?),
            list => anyhow::bail!("--backend takes one backend here, found {list:?}"),
        }
    }

    /// Every listed backend, set up, in order (duplicates dropped).
    pub fn all(&self) -> anyhow::Result<Vec<Backend>> {
        let mut kinds: Vec<BackendKind> = Vec::new();
        for k in &self.backend {
            if !kinds.contains(k) {
                kinds.push(*k);
            }
        }
        kinds
            .into_iter()
            .map(|k| Ok(Backend::new(&self.config(k))?))
            .collect()
    }
}
