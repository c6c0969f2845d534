//! `sarm run [--config FILE]`: the node. Without a config it runs the
//! embedded default: the bundled model on a bundled recorded episode,
//! replayed in real time over Zenoh (peer mode, loopback, inside this
//! process), results in a new folder under `sarm_out/`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use sarm_ros::msg::EventKind;
use sarm_ros::node::config::{NodeConfig, SourceKind};
use sarm_ros::node::{self, RunSummary};
use sarm_ros::transport::TransportKind;
use sarm_runtime::ClockSource;

use sarm_runtime::Precision;

/// One precision (`sarm run` runs one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnePrecision {
    Fp32,
    Int8,
}

impl From<OnePrecision> for Precision {
    fn from(p: OnePrecision) -> Self {
        match p {
            OnePrecision::Fp32 => Precision::Fp32,
            OnePrecision::Int8 => Precision::Int8,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Node configuration (TOML), e.g. launch/aloha.toml. Without it, the
    /// embedded default runs: the bundled episode, scored and written to sarm_out/.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Model bundle folder (overrides `bundle`).
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    /// Score this recorded episode (rosbag2 MCAP), replayed in real time
    /// inside the process (sets `source.kind = "bag"`).
    #[arg(long)]
    pub bag: Option<PathBuf>,
    /// Overrides `transport.kind`.
    #[arg(long, value_enum)]
    pub transport: Option<TransportKind>,
    /// Overrides `robot_id`.
    #[arg(long)]
    pub robot_id: Option<String>,
    /// Overrides `precision`.
    #[arg(long, value_enum)]
    pub precision: Option<OnePrecision>,
    /// Results folder (overrides `output_dir`).
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// ROS_DOMAIN_ID (overrides `transport.domain_id`).
    #[arg(long)]
    pub domain_id: Option<u16>,
    /// Replay speed of a bag source (overrides `source.rate`).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Follow ROS 2 simulated time on `/clock` (sets `time.source = "sim"`,
    /// as `use_sim_time` does).
    #[arg(long)]
    pub use_sim_time: bool,
    /// Run a policy bundle beside the reward model (sets `policy.bundle`);
    /// without a value, the test policy models/act-test. Commands go
    /// through the safety layer, which starts disarmed; the embedded
    /// default arms it by itself (open loop on the bundled episode).
    #[arg(long, value_name = "BUNDLE", num_args = 0..=1, default_missing_value = "models/act-test")]
    pub policy: Option<PathBuf>,
    /// Arm the policy at the first joint state (sets
    /// `policy.safety.auto_arm`; meant for simulation and replays).
    #[arg(long)]
    pub auto_arm: bool,
    /// Print the effective configuration and exit.
    #[arg(long)]
    pub print_config: bool,
    /// ROS 2 arguments as `ros2 launch` passes them (`--ros-args -p key:=value ...`);
    /// `-p config:=`, `bundle:=`, `robot_id:=`, `transport:=`, `use_sim_time:=` are understood.
    #[arg(long = "ros-args", num_args = 0.., allow_hyphen_values = true, value_name = "ARGS")]
    pub ros_args: Vec<String>,
}

/// Finds a path relative to the working directory or, failing that, to the
/// source tree this binary was built from (so `cargo run` works anywhere).
pub(super) fn locate(p: &Path) -> PathBuf {
    if p.is_absolute() || p.exists() {
        return p.to_path_buf();
    }
    let tree = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(p);
    if tree.exists() {
        tree
    } else {
        p.to_path_buf()
    }
}

/// The bundle and episode the embedded default uses: the ALOHA model and a
/// held-out episode when present, else the test model and its label fixture.
pub(super) fn embedded_default() -> NodeConfig {
    let mut cfg = NodeConfig::default();
    let aloha = locate(Path::new("models/aloha-transfer-cube"));
    let episode = aloha.join("episodes").join("success_ep_0025").join("bag");
    if aloha.join("bundle.toml").exists() && episode.exists() {
        cfg.bundle = aloha;
        cfg.source.bag = Some(episode);
    } else {
        cfg.bundle = locate(Path::new("models/sarm-test"));
        cfg.source.bag = Some(locate(Path::new("ros/tests/fixtures/label/bag")));
    }
    cfg.source.kind = SourceKind::Bag;
    cfg.transport.kind = TransportKind::Zenoh;
    cfg.transport.zenoh_scouting = false;
    cfg.transport.zenoh_listen = vec!["tcp/127.0.0.1:0".into()];
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    cfg.output_dir = Some(PathBuf::from("sarm_out").join(format!("run-{secs}")));
    cfg
}

/// `--ros-args` as `ros2 launch` passes them: `--params-file FILE` (YAML,
/// `<node>: ros__parameters: {...}`) and `-p key:=value`, applied in order.
/// Empty values leave the config's value.
fn apply_ros_args(cfg: &mut NodeConfig, args: &[String]) -> anyhow::Result<()> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-p" | "--param" => {
                let Some(kv) = it.next() else { break };
                let Some((k, v)) = kv.split_once(":=") else {
                    anyhow::bail!("ROS parameter {kv:?} is not key:=value");
                };
                apply_param(cfg, k, v)?;
            }
            "--params-file" => {
                let Some(file) = it.next() else { break };
                let text = std::fs::read_to_string(locate(Path::new(file)))
                    .with_context(|| format!("reading --params-file {file}"))?;
                let doc: serde_yaml::Value = serde_yaml::from_str(&text)
                    .with_context(|| format!("parsing --params-file {file}"))?;
                let nodes = doc.as_mapping().cloned().unwrap_or_default();
                for (_, node) in nodes {
                    let Some(params) = node.get("ros__parameters").and_then(|p| p.as_mapping())
                    else {
                        continue;
                    };
                    for (k, v) in params {
                        let value = match v {
                            serde_yaml::Value::String(s) => s.clone(),
                            serde_yaml::Value::Bool(b) => b.to_string(),
                            _ => continue,
                        };
                        let Some(k) = k.as_str() else { continue };
                        apply_param(cfg, k, &value)?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn apply_param(cfg: &mut NodeConfig, key: &str, value: &str) -> anyhow::Result<()> {
    if value.is_empty() {
        return Ok(());
    }
    match key {
        "config" => {
            let keep = cfg.output_dir.take();
            *cfg = NodeConfig::load(&locate(Path::new(value)))?;
            if cfg.output_dir.is_none() {
                cfg.output_dir = keep;
            }
        }
        "bundle" => cfg.bundle = locate(Path::new(value)),
        "robot_id" => cfg.robot_id = value.to_string(),
        "transport" => {
            cfg.transport.kind = match value {
                "dds" => TransportKind::Dds,
                "zenoh" => TransportKind::Zenoh,
                other => anyhow::bail!("ROS parameter transport:={other}: expected dds or zenoh"),
            }
        }
        "use_sim_time" => {
            cfg.time.source = match value {
                "true" | "True" | "1" => ClockSource::Sim,
                "false" | "False" | "0" => ClockSource::Wall,
                other => {
                    anyhow::bail!("ROS parameter use_sim_time:={other}: expected true or false")
                }
            }
        }
        other => tracing::warn!("ignoring unknown ROS parameter {other}"),
    }
    Ok(())
}

pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let embedded = args.config.is_none() && args.ros_args.is_empty();
    let mut cfg = match &args.config {
        Some(path) => NodeConfig::load(&locate(path))?,
        None if embedded => embedded_default(),
        None => NodeConfig::default(),
    };
    apply_ros_args(&mut cfg, &args.ros_args)?;
    if let Some(b) = &args.bundle {
        cfg.bundle = locate(b);
    }
    if let Some(b) = &args.bag {
        cfg.source.kind = SourceKind::Bag;
        cfg.source.bag = Some(locate(b));
    }
    if let Some(t) = args.transport {
        cfg.transport.kind = t;
    }
    if args.use_sim_time {
        cfg.time.source = ClockSource::Sim;
    }
    if let Some(r) = &args.robot_id {
        cfg.robot_id = r.clone();
    }
    if let Some(p) = args.precision {
        cfg.precision = p.into();
    }
    if let Some(o) = &args.output_dir {
        cfg.output_dir = Some(o.clone());
    }
    if let Some(d) = args.domain_id {
        cfg.transport.domain_id = d;
    }
    if let Some(r) = args.rate {
        cfg.source.rate = r;
    }
    if let Some(p) = &args.policy {
        cfg.policy.bundle = Some(locate(p));
        // The embedded default replays a recorded episode: nothing moves,
        // so the policy arms by itself to show its commands.
        cfg.policy.safety.auto_arm |= embedded;
    }
    if args.auto_arm {
        cfg.policy.safety.auto_arm = true;
    }
    cfg.validate()?;
    if args.print_config {
        print!("{}", toml::to_string(&cfg)?);
        return Ok(());
    }
    if embedded {
        eprintln!(
            "sarm run: the embedded default: {} scores {} replayed in real time over Zenoh \
             (peer, loopback, in process); results go to {}",
            cfg.bundle.display(),
            cfg.source
                .bag
                .as_deref()
                .unwrap_or(Path::new("?"))
                .display(),
            cfg.output_dir
                .as_deref()
                .unwrap_or(Path::new("?"))
                .display()
        );
        if let Some(p) = &cfg.policy.bundle {
            eprintln!(
                "sarm run: policy {} runs open loop on the same episode (auto-armed), {}",
                p.display(),
                node::policy::describe(&cfg.policy)
            );
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    ctrlc::set_handler(move || s.store(true, Ordering::Relaxed))
        .context("installing the Ctrl-C handler")?;
    let summary = node::run(&cfg, stop)?;
    print_summary(&cfg, &summary);
    Ok(())
}

fn print_summary(cfg: &NodeConfig, s: &RunSummary) {
    println!("sarm run: done");
    for e in &s.outputs.episodes {
        println!(
            "  episode {}: {} after {} frames, final progress {:.3}{}",
            e.episode_index,
            if e.kind() == Some(EventKind::Abort) {
                "aborted"
            } else {
                "ended"
            },
            e.frames,
            e.final_progress,
            if e.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", e.reason)
            }
        );
    }
    println!(
        "  {} Progress messages published",
        s.outputs.progress_published
    );
    for (sink, n) in &s.outputs.sink_errors {
        println!("  sink {sink}: {n} errors");
    }
    for (k, v) in &s.counts {
        println!("  {k}: {v}");
    }
    if s.drops.is_empty() {
        println!("  dropped: none");
    }
    for (k, v) in &s.drops {
        println!("  dropped ({k}): {v}");
    }
    println!("  latency (ms)                p50      p99   samples");
    for (name, p50, p99, n) in &s.latency {
        if *n > 0 {
            println!("    {name:<22} {p50:>8.2} {p99:>8.2} {n:>9}");
        }
    }
    if let (false, Some(dir)) = (s.outputs.files.is_empty(), &cfg.output_dir) {
        println!("  results in {}:", dir.display());
        for f in &s.outputs.files {
            println!("    {}", f.display());
        }
    }
}
