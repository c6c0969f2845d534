//! `sarm label <bag>... --bundle <dir> --out <file.parquet>`,
//! `sarm label --dataset <dir or repo id> --bundle <dir> --out <file.parquet>`,
//! `sarm label merge --out <file.parquet> <shard.parquet>...`.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sarm_ros::bag::McapOut;
use sarm_ros::label::{label_bag, label_bag_with, LabelOptions, LabelReport};
use sarm_ros::lerobot::label::DEFAULT_ENCODE_BATCH;
use sarm_ros::lerobot::run::{self as dataset_run, EpisodeSelection, RunOptions};
use sarm_ros::lerobot::video::DEFAULT_TOLERANCE_S;
use sarm_ros::progress_parquet;
use sarm_ros::scores::{EpisodeProgress, ProgressStamper};
use sarm_runtime::{Bundle, HeadKind, Precision, Scorer, ScorerConfig};

use super::{BackendArgs, PrecisionArg};

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct LabelArgs {
    #[command(subcommand)]
    pub command: Option<LabelCommand>,
    /// rosbag2 bags, one episode each: a folder with metadata.yaml, or a single .mcap file.
    #[arg(
        value_name = "BAG",
        required_unless_present = "dataset",
        conflicts_with = "dataset"
    )]
    pub bags: Vec<PathBuf>,
    /// A LeRobot dataset (layout v3.0): a folder, or a repo id (owner/name) in the
    /// local LeRobot cache (HF_LEROBOT_HOME). Nothing is downloaded. Videos need a
    /// build with `--features sarm-ros/video`.
    #[arg(long, value_name = "DIR_OR_REPO_ID")]
    pub dataset: Option<String>,
    /// Model bundle folder.
    #[arg(long, required = true)]
    pub bundle: Option<PathBuf>,
    /// Output parquet (LeRobot's sarm_progress.parquet columns).
    #[arg(long, required = true)]
    pub out: Option<PathBuf>,
    /// Reward-model precision.
    #[arg(long, value_enum, default_value_t = PrecisionArg::Fp32)]
    pub precision: PrecisionArg,
    /// Score every N-th frame of the bundle's clock and interpolate the rest, as
    /// LeRobot's --stride does (for a dataset at the bundle's rate: every N-th frame).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub stride: u32,
    /// Episodes (bags, or dataset episodes) labelled in parallel, one worker each.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: u32,

    // ---- bags
    /// Also write the Progress messages to this MCAP file (opens in Foxglove / ros2 bag).
    #[arg(long, conflicts_with = "dataset")]
    pub mcap: Option<PathBuf>,
    /// Camera topic (sensor_msgs/CompressedImage or Image).
    #[arg(long, default_value = "/camera/top/image_raw/compressed")]
    pub camera_topic: String,
    /// Joint-state topic (sensor_msgs/JointState).
    #[arg(long, default_value = "/joint_states")]
    pub joints_topic: String,
    /// Episode index written for the first bag (the next bags count up from it).
    #[arg(long, default_value_t = 0, conflicts_with = "dataset")]
    pub episode_index: i64,
    /// Dataset index of the first bag's first frame (the `index` column; the next
    /// bags follow on).
    #[arg(long, default_value_t = 0, conflicts_with = "dataset")]
    pub index_offset: i64,
    /// Robot id written to the Progress messages.
    #[arg(long, default_value = "robot")]
    pub robot_id: String,
    /// Camera/joint stamp difference above which a pair is counted as late, in ms.
    #[arg(long, default_value_t = 20.0)]
    pub joint_slop_ms: f64,
    #[command(flatten)]
    pub backend: BackendArgs,

    // ---- LeRobot datasets
    /// Episodes to label: A..B (B excluded), A..=B, A.., ..B, N, or a comma list.
    #[arg(long, requires = "dataset")]
    pub episodes: Option<String>,
    /// Label only the K-th of N contiguous slices of the selected episodes (an array
    /// job's share); join the N files with `sarm label merge`.
    #[arg(long, value_name = "K/N", requires = "dataset")]
    pub shard: Option<String>,
    /// Stop at the first bad episode instead of reporting it and going on.
    #[arg(long, requires = "dataset")]
    pub strict: bool,
    /// Frames per image-encoder call. 1 is fastest on the CPU (batches of 8 were
    /// 1.1x slower on onnxruntime and 2.4x slower on tract); raise it for a GPU
    /// execution provider (`--backend ort --providers cuda,cpu`).
    #[arg(long, default_value_t = DEFAULT_ENCODE_BATCH as u32, requires = "dataset",
          value_parser = clap::value_parser!(u32).range(1..=sarm_runtime::encoder::MAX_BATCH as i64))]
    pub encode_batch: u32,
    /// Camera feature (default: observation.images.<the bundle's camera>, or the only video).
    #[arg(long, requires = "dataset")]
    pub camera_key: Option<String>,
    /// Joint-state feature (default: observation.state; joints matched by name).
    #[arg(long, requires = "dataset")]
    pub state_key: Option<String>,
    /// Task text for every episode (default: each episode's task from meta/tasks.parquet);
    /// the bundle must have its embedding.
    #[arg(long, requires = "dataset")]
    pub task: Option<String>,
    /// Largest distance between a frame's timestamp and the video frame found for it,
    /// in seconds (LeRobotDataset's tolerance_s).
    #[arg(long, default_value_t = DEFAULT_TOLERANCE_S, requires = "dataset")]
    pub tolerance_s: f64,
    /// Discard the finished episodes of an interrupted run with other settings
    /// (<out>.parts/) instead of refusing to start.
    #[arg(long, requires = "dataset")]
    pub restart: bool,
    /// Keep <out>.parts/ (one parquet per episode) after writing <out>.
    #[arg(long, requires = "dataset")]
    pub keep_parts: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum LabelCommand {
    /// Join the files of `sarm label --dataset ... --shard K/N` runs (or any
    /// sarm_progress.parquet files of disjoint episodes) into one, sorted by index.
    ///
    /// Checks that all come from the same reward model, that every shard of N is
    /// there once, and that no frame index appears twice.
    Merge(MergeArgs),
}

#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// The joined sarm_progress.parquet.
    #[arg(long)]
    pub out: PathBuf,
    /// Accept missing shards (merge what is there).
    #[arg(long)]
    pub partial: bool,
    /// The shards' files.
    #[arg(value_name = "FILE", required = true)]
    pub inputs: Vec<PathBuf>,
}

fn precision(arg: PrecisionArg) -> anyhow::Result<Precision> {
    match arg {
        PrecisionArg::Fp32 => Ok(Precision::Fp32),
        PrecisionArg::Int8 => Ok(Precision::Int8),
        PrecisionArg::All => anyhow::bail!("--precision takes fp32 or int8 here"),
    }
}

pub fn run(args: &LabelArgs) -> anyhow::Result<()> {
    if let Some(LabelCommand::Merge(m)) = &args.command {
        return merge(m);
    }
    let (Some(bundle), Some(out)) = (&args.bundle, &args.out) else {
        anyhow::bail!("--bundle and --out are required");
    };
    if let Some(dataset) = &args.dataset {
        return run_dataset(args, dataset, bundle, out);
    }
    if args.bags.len() == 1 {
        return run_bag(args, bundle, out);
    }
    run_bags(args, bundle, out)
}

fn merge(m: &MergeArgs) -> anyhow::Result<()> {
    let r = dataset_run::merge_shards(&m.inputs, &m.out, m.partial)?;
    println!(
        "merged {} files: {} rows, {} episodes",
        m.inputs.len(),
        r.rows,
        r.episodes
    );
    if !r.failed.is_empty() {
        println!(
            "  episodes that failed in their shard (not in the file): {:?}",
            r.failed
        );
    }
    println!("wrote {}", m.out.display());
    Ok(())
}

fn run_dataset(
    args: &LabelArgs,
    dataset: &str,
    bundle: &std::path::Path,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let opts = RunOptions {
        dataset: dataset.to_string(),
        bundle: bundle.to_path_buf(),
        out: out.to_path_buf(),
        precision: precision(args.precision)?,
        backend: args.backend.single()?,
        episodes: args
            .episodes
            .as_deref()
            .map(EpisodeSelection::parse)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--episodes: {e}"))?,
        stride: args.stride as usize,
        jobs: args.jobs as usize,
        encode_batch: args.encode_batch as usize,
        shard: args
            .shard
            .as_deref()
            .map(dataset_run::parse_shard)
            .transpose()
            .map_err(anyhow::Error::msg)?,
        strict: args.strict,
        camera_key: args.camera_key.clone(),
        state_key: args.state_key.clone(),
        task: args.task.clone(),
        tolerance_s: args.tolerance_s,
        restart: args.restart,
        keep_parts: args.keep_parts,
    };
    let r = dataset_run::run(&opts)?;
    let secs = r.elapsed.as_secs_f64();
    println!(
        "labelled {} episodes ({} frames, {} scored, {} encoded) in {:.1} s ({:.0} frames/s){}",
        r.episodes_labelled,
        r.frames,
        r.frames_scored,
        r.frames_encoded,
        secs,
        r.frames as f64 / secs.max(1e-9),
        if r.episodes_resumed > 0 {
            format!(
                "; {} episodes were done by an earlier run",
                r.episodes_resumed
            )
        } else {
            String::new()
        }
    );
    println!(
        "  dataset {}, camera {}, state {}, decoder {}",
        r.dataset_root.display(),
        r.camera_key,
        r.state_key,
        if r.decoder.is_empty() {
            "-"
        } else {
            &r.decoder
        }
    );
    if !r.failed.is_empty() {
        println!(
            "skipped {} bad episodes (not in the output):",
            r.failed.len()
        );
        for f in &r.failed {
            println!("  episode {} ({}): {}", f.episode_index, f.kind, f.message);
        }
    }
    if r.parts_kept {
        println!(
            "  finished episodes kept in {}.parts/ (a rerun only redoes the others)",
            out.display()
        );
    }
    println!("wrote {} ({} rows)", out.display(), r.rows_written);
    Ok(())
}

fn label_options(args: &LabelArgs) -> anyhow::Result<LabelOptions> {
    if !(args.joint_slop_ms.is_finite() && args.joint_slop_ms >= 0.0) {
        anyhow::bail!(
            "--joint-slop-ms must be a number >= 0, found {}",
            args.joint_slop_ms
        );
    }
    Ok(LabelOptions {
        camera_topic: args.camera_topic.clone(),
        joints_topic: args.joints_topic.clone(),
        scorer: ScorerConfig {
            precision: precision(args.precision)?,
            stride: args.stride as usize,
            ..ScorerConfig::default()
        },
        backend: args.backend.single()?,
        joint_slop_ns: (args.joint_slop_ms * 1e6) as i64,
    })
}

fn print_counts(report: &LabelReport) {
    for (reason, n) in report.counts.iter().chain(report.bag.skipped.iter()) {
        println!("  {reason}: {n}");
    }
    for d in &report.bag.damaged {
        println!("  damaged: {d}");
    }
}

fn run_bag(
    args: &LabelArgs,
    bundle_dir: &std::path::Path,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let bag = &args.bags[0];
    let bundle = Bundle::load(bundle_dir)
        .with_context(|| format!("loading bundle {}", bundle_dir.display()))?;
    let opts = label_options(args)?;
    eprintln!(
        "sarm label: {} with {} ({}, {})",
        bag.display(),
        bundle.name(),
        opts.scorer.precision,
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
    let report = label_bag(bag, &bundle, &opts, |s, stamp| {
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
    progress_parquet::write(out, &rows, &bundle.dir.display().to_string())?;

    println!(
        "labelled {} frames ({} scored) from {} camera and {} joint messages",
        rows.len(),
        episode.scored(),
        report.camera_messages,
        report.joint_messages
    );
    print_counts(&report);
    println!("wrote {}", out.display());
    if let Some(p) = &args.mcap {
        println!("wrote {}", p.display());
    }
    Ok(())
}

/// One bag's result in a multi-bag run.
struct BagResult {
    episode: EpisodeProgress,
    report: LabelReport,
}

/// Several bags, one episode each, on `--jobs` workers (each with its own
/// scorer), with a progress bar; rows are numbered in the bags' order.
fn run_bags(
    args: &LabelArgs,
    bundle_dir: &std::path::Path,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let bundle = Bundle::load(bundle_dir)
        .with_context(|| format!("loading bundle {}", bundle_dir.display()))?;
    let opts = label_options(args)?;
    let heads: Vec<HeadKind> = bundle.heads.iter().map(|h| h.kind).collect();
    let n = args.bags.len();
    let jobs = (args.jobs as usize).min(n).max(1);
    eprintln!(
        "sarm label: {n} bags with {} ({}, {}), {jobs} job(s)",
        bundle.name(),
        opts.scorer.precision,
        opts.backend.kind()
    );
    let bar = ProgressBar::with_draw_target(
        Some(n as u64),
        if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr_with_hz(4)
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} bags  ETA {eta}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let queue = Mutex::new((0..n).collect::<VecDeque<usize>>());
    let results: Vec<Mutex<Option<anyhow::Result<BagResult>>>> =
        (0..n).map(|_| Mutex::new(None)).collect();
    let frames_done = std::sync::atomic::AtomicU64::new(0);
    let mcap = match &args.mcap {
        Some(p) => Some(Mutex::new(McapOut::create(p)?)),
        None => None,
    };
    let mcap_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let load_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                let mut scorer = match Scorer::with_backend(&bundle, &opts.scorer, &opts.backend) {
                    Ok(sc) => sc,
                    Err(e) => {
                        if let Ok(mut err) = load_error.lock() {
                            err.get_or_insert(e.into());
                        }
                        return;
                    }
                };
                loop {
                    let Some(i) = queue.lock().ok().and_then(|mut q| q.pop_front()) else {
                        return;
                    };
                    let mut episode = EpisodeProgress::new(heads.clone());
                    let mut messages = Vec::new();
                    let mut stamper = ProgressStamper::new(&args.robot_id, "sarm", heads.len());
                    let ep_index = args.episode_index + i as i64;
                    let r =
                        label_bag_with(&mut scorer, &args.bags[i], &bundle, &opts, |sc, stamp| {
                            episode.push(sc);
                            if mcap.is_some() {
                                for m in stamper.messages(sc, ep_index, stamp) {
                                    messages.push((stamp, m));
                                }
                            }
                        })
                        .with_context(|| format!("bag {}", args.bags[i].display()));
                    if let (Some(m), Ok(_)) = (&mcap, &r) {
                        if let Ok(mut w) = m.lock() {
                            for (stamp, msg) in &messages {
                                if let Err(e) =
                                    w.write("/sarm/progress", (*stamp).max(0) as u64, msg)
                                {
                                    if let Ok(mut err) = mcap_error.lock() {
                                        err.get_or_insert(e.into());
                                    }
                                }
                            }
                        }
                    }
                    let done = frames_done.fetch_add(
                        r.as_ref().map_or(0, |rep| rep.frames_in_episode as u64),
                        std::sync::atomic::Ordering::Relaxed,
                    ) + r.as_ref().map_or(0, |rep| rep.frames_in_episode as u64);
                    bar.set_message(format!(
                        "{:.0} frames/s",
                        done as f64 / started.elapsed().as_secs_f64().max(1e-9)
                    ));
                    bar.inc(1);
                    if let Ok(mut slot) = results[i].lock() {
                        *slot = Some(r.map(|report| BagResult { episode, report }));
                    }
                }
            });
        }
    });
    bar.finish_and_clear();
    if let Some(e) = load_error.into_inner().ok().flatten() {
        return Err(e.context("loading the bundle's models"));
    }
    if let Some(e) = mcap_error.into_inner().ok().flatten() {
        return Err(e);
    }
    let mut rows = Vec::new();
    let mut offset = args.index_offset;
    let mut scored = 0;
    let mut errors = Vec::new();
    for (i, slot) in results.into_iter().enumerate() {
        match slot.into_inner().ok().flatten() {
            Some(Ok(b)) if !b.episode.is_empty() => {
                let ep_rows = b.episode.rows(
                    b.report.frames_in_episode,
                    args.episode_index + i as i64,
                    offset,
                );
                offset += ep_rows.len() as i64;
                scored += b.episode.scored();
                println!(
                    "{}: episode {}, {} frames ({} scored) from {} camera and {} joint messages",
                    args.bags[i].display(),
                    args.episode_index + i as i64,
                    ep_rows.len(),
                    b.episode.scored(),
                    b.report.camera_messages,
                    b.report.joint_messages
                );
                print_counts(&b.report);
                rows.extend(ep_rows);
            }
            Some(Ok(_)) => errors.push(format!(
                "{}: no frame could be scored",
                args.bags[i].display()
            )),
            Some(Err(e)) => errors.push(format!("{e:#}")),
            None => errors.push(format!("{}: not labelled", args.bags[i].display())),
        }
    }
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("error: {e}");
        }
        anyhow::bail!(
            "{} of {n} bags could not be labelled; nothing written",
            errors.len()
        );
    }
    if let Some(m) = mcap {
        if let Ok(w) = m.into_inner() {
            w.finish()?;
        }
    }
    progress_parquet::write(out, &rows, &bundle.dir.display().to_string())?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "labelled {} frames ({scored} scored) from {n} bags in {secs:.1} s ({:.0} frames/s)",
        rows.len(),
        rows.len() as f64 / secs.max(1e-9)
    );
    println!("wrote {}", out.display());
    if let Some(p) = &args.mcap {
        println!("wrote {}", p.display());
    }
    Ok(())
}
