//! `sarm label <bag> --bundle <dir> --out <file.parquet>`.

use std::path::PathBuf;

use anyhow::Context;
use sarm_ros::bag::McapOut;
use sarm_ros::label::{label_bag, LabelOptions};
use sarm_ros::progress_parquet;
use sarm_ros::scores::{EpisodeProgress, ProgressStamper};
use sarm_runtime::{Bundle, HeadKind, ScorerConfig};

use super::{BackendArgs, PrecisionArg};

#[derive(Debug, clap::Args)]
pub struct LabelArgs {
    /// rosbag2 bag: a folder with metadata.yaml, or a single .mcap file.
    #[arg(value_name = "BAG")]
    pub bag: PathBuf,
    /// Model bundle folder.
    #[arg(long)]
    pub bundle: PathBuf,
    /// Output parquet (LeRobot's sarm_progress.parquet columns).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the Progress messages to this MCAP file (opens in Foxglove / ros2 bag).
    #[arg(long)]
    pub mcap: Option<PathBuf>,
    /// Camera topic (sensor_msgs/CompressedImage or Image).
    #[arg(long, default_value = "/camera/top/image_raw/compressed")]
    pub camera_topic: String,
    /// Joint-state topic (sensor_msgs/JointState).
    #[arg(long, default_value = "/joint_states")]
    pub joints_topic: String,
    /// Reward-model precision.
    #[arg(long, value_enum, default_value_t = PrecisionArg::Fp32)]
    pub precision: PrecisionArg,
    /// Score every N-th frame and interpolate the rest, as LeRobot's --stride does.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub stride: u32,
    /// Episode index written to the outputs.
    #[arg(long, default_value_t = 0)]
    pub episode_index: i64,
    /// Dataset index of the episode's first frame (the `index` column).
    #[arg(long, default_value_t = 0)]
    pub index_offset: i64,
    /// Robot id written to the Progress messages.
    #[arg(long, default_value = "robot")]
    pub robot_id: String,
    /// Camera/joint stamp difference above which a pair is counted as late, in ms.
    #[arg(long, default_value_t = 20.0)]
    pub joint_slop_ms: f64,
    #[command(flatten)]
    pub backend: BackendArgs,
}

pub fn run(args: &LabelArgs) -> anyhow::Result<()> {
    let bundle = Bundle::load(&args.bundle)
        .with_context(|| format!("loading bundle {}", args.bundle.display()))?;
    let precision = match args.precision {
        PrecisionArg::Fp32 => sarm_runtime::Precision::Fp32,
        PrecisionArg::Int8 => sarm_runtime::Precision::Int8,
        PrecisionArg::All => anyhow::bail!("--precision takes fp32 or int8 here"),
    };
    if !(args.joint_slop_ms.is_finite() && args.joint_slop_ms >= 0.0) {
        anyhow::bail!(
            "--joint-slop-ms must be a number >= 0, found {}",
            args.joint_slop_ms
        );
    }
    let opts = LabelOptions {
        camera_topic: args.camera_topic.clone(),
        joints_topic: args.joints_topic.clone(),
        scorer: ScorerConfig {
            precision,
            stride: args.stride as usize,
            ..ScorerConfig::default()
        },
        backend: args.backend.single()?,
        joint_slop_ns: (args.joint_slop_ms * 1e6) as i64,
    };
    eprintln!(
        "sarm label: {} with {} ({precision}, {})",
        args.bag.display(),
        bundle.name(),
        opts.backend.kind()
    );

    let heads: Vec<HeadKind> = bundle.heads.iter().map(|h| h.kind).collect();
    let mut episode = EpisodeProgress::new(heads.clone());
    let mut stamper = ProgressStamper::new(&args.robot_id, "sarm", heads.len());
    let mut mcap = match &args.mcap {
        Some(p) => Some(McapOut::create(p)?),
        None => None,
    };
    let mut mcap_error = None;
    let report = label_bag(&args.bag, &bundle, &opts, |s, stamp| {
        episode.push(s);
        if s.frame_index % 100 == 0 {
            eprint!("\r  frame {}", s.frame_index);
        }
        if let Some(out) = mcap.as_mut() {
            for msg in stamper.messages(s, args.episode_index, stamp) {
                if let Err(e) = out.write("/sarm/progress", stamp.max(0) as u64, &msg) {
                    mcap_error.get_or_insert(e);
                }
            }
        }
    })?;
    eprintln!();
    if let Some(e) = mcap_error {
        return Err(e.into());
    }
    if let Some(out) = mcap {
        out.finish()?;
    }
    if episode.is_empty() {
        anyhow::bail!("no frame could be scored (see the counts above)");
    }

    // Every frame of the episode, interpolated between scored frames (stride > 1).
    let rows = episode.rows(
        report.frames_in_episode,
        args.episode_index,
        args.index_offset,
    );
    progress_parquet::write(&args.out, &rows, &bundle.dir.display().to_string())?;

    println!(
        "labelled {} frames ({} scored) from {} camera and {} joint messages",
        rows.len(),
        episode.scored(),
        report.camera_messages,
        report.joint_messages
    );
    for (reason, n) in report.counts.iter().chain(report.bag.skipped.iter()) {
        println!("  {reason}: {n}");
    }
    for d in &report.bag.damaged {
        println!("  damaged: {d}");
    }
    println!("wrote {}", args.out.display());
    if let Some(p) = &args.mcap {
        println!("wrote {}", p.display());
    }
    Ok(())
}
