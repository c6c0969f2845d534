//! `sarm bench --node`: the whole node's latency next to the model's own
//! step time, so the node's overhead over the model is a number.
//!
//! One command: the model steps are timed as plain `sarm bench` times them
//! (encoder preprocessing + encoder + reward step), then the real node
//! ([`sarm_ros::node::run_with_view`]) runs in this process on a recorded
//! episode, as `sarm run`'s embedded default does (the bag replayed in real
//! time over Zenoh on loopback), once per precision, and its per-stage
//! histograms are read back.
//!
//! Two end-to-end figures come out of the node. `receive_to_publish` starts
//! at the scored frame's arrival, so it includes the window's look-ahead (a
//! centred window scores a frame only once the frames after it have
//! arrived: model-inherent lag, not overhead). `trigger_to_publish` starts at
//! the arrival of the input whose handling produced the score; minus the
//! model step, that is what the node adds: queueing, decoding, pairing,
//! hand-off and publishing.
//!
//! The camera is fed at the bag's rate; joint states at `--joint-rate`
//! (200 Hz by default), linearly interpolated into a temporary MCAP when the
//! bag's rate differs. The trainer link runs as in `sarm run`, its spool
//! in a temporary folder (nothing is left in the robot's own spool).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use image::RgbImage;
use sarm_ros::bag::{read_bag, McapOut};
use sarm_ros::image::{decode_compressed, decode_raw};
use sarm_ros::msg::{CompressedImage, Image, JointState, RosMessage, Time};
use sarm_ros::node::stats::Stage;
use sarm_ros::node::{self, RunSummary};
use sarm_runtime::Bundle;

use super::super::run::{embedded_default, locate};
use super::{measure, BenchArgs, Row, ENCODER_MODEL, ENCODER_PREPROCESS, REWARD_STEP};

/// A camera message of the episode.
enum Camera {
    Compressed(CompressedImage),
    Raw(Image),
}

impl Camera {
    fn stamp_ns(&self) -> i64 {
        match self {
            Camera::Compressed(m) => m.header.stamp.as_nanos(),
            Camera::Raw(m) => m.header.stamp.as_nanos(),
        }
    }
}

/// The camera and joint messages of the episode, with their log times.
struct Episode {
    camera: Vec<(u64, Camera)>,
    joints: Vec<(u64, JointState)>,
}

fn read_episode(bag: &Path, camera_topic: &str, joints_topic: &str) -> anyhow::Result<Episode> {
    let mut ep = Episode {
        camera: Vec::new(),
        joints: Vec::new(),
    };
    let mut error: Option<anyhow::Error> = None;
    read_bag(bag, |m| {
        if error.is_some() {
            return;
        }
        let decoded = if m.topic == camera_topic {
            match m.type_name {
                "sensor_msgs/msg/CompressedImage" => CompressedImage::from_cdr(m.data)
                    .map(|c| ep.camera.push((m.log_time, Camera::Compressed(c))))
                    .map_err(anyhow::Error::from),
                "sensor_msgs/msg/Image" => Image::from_cdr(m.data)
                    .map(|c| ep.camera.push((m.log_time, Camera::Raw(c))))
                    .map_err(anyhow::Error::from),
                other => Err(anyhow::anyhow!("camera topic has type {other}")),
            }
        } else if m.topic == joints_topic {
            JointState::from_cdr(m.data)
                .map(|j| ep.joints.push((m.log_time, j)))
                .map_err(anyhow::Error::from)
        } else {
            Ok(())
        };
        if let Err(e) = decoded {
            error = Some(e.context(format!("{} in {}", m.topic, bag.display())));
        }
    })
    // The error names the file and the cause.
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(e) = error {
        return Err(e);
    }
    if ep.camera.len() < 2 {
        anyhow::bail!(
            "{} has {} messages on the camera topic {camera_topic}; at least 2 are needed",
            bag.display(),
            ep.camera.len()
        );
    }
    if ep.joints.len() < 2 {
        anyhow::bail!(
            "{} has {} messages on the joint topic {joints_topic}; at least 2 are needed",
            bag.display(),
            ep.joints.len()
        );
    }
    Ok(ep)
}

/// Mean rate of a stream, in Hz, from its first and last header stamps.
fn rate_hz(stamps: impl Iterator<Item = i64>) -> Option<f64> {
    let (mut first, mut last, mut n) = (None, 0i64, 0u64);
    for s in stamps {
        first.get_or_insert(s);
        last = s;
        n += 1;
    }
    let span = (last - first?) as f64 / 1e9;
    (n >= 2 && span > 0.0).then(|| (n - 1) as f64 / span)
}

fn lerp(a: &[f64], b: &[f64], alpha: f64) -> Vec<f64> {
    if a.len() != b.len() {
        return a.to_vec();
    }
    a.iter().zip(b).map(|(x, y)| x + (y - x) * alpha).collect()
}

/// Joint states at `hz`, from the first recorded stamp to the last:
/// positions, velocities and efforts linearly interpolated between the two
/// recorded states around each new stamp (the earlier one is copied when
/// the two do not name the same joints in the same order). Log times are
/// interpolated alike. `src` must be in stamp order.
fn resample_joints(src: &[(u64, JointState)], hz: f64) -> Vec<(u64, JointState)> {
    let stamp = |i: usize| src[i].1.header.stamp.as_nanos();
    let (Some(_), true) = (src.first(), hz > 0.0) else {
        return Vec::new();
    };
    let (first, last) = (stamp(0), stamp(src.len() - 1));
    let step = 1e9 / hz;
    let mut out = Vec::with_capacity(((last - first) as f64 / step) as usize + 1);
    let mut i = 0;
    for k in 0u64.. {
        let t = first + (k as f64 * step).round() as i64;
        if t > last {
            break;
        }
        while i + 1 < src.len() && stamp(i + 1) <= t {
            i += 1;
        }
        let (log_a, a) = &src[i];
        let (log_time, mut msg) = match src.get(i + 1) {
            // stamp(i) <= t < stamp(i + 1)
            Some((log_b, b)) if a.name == b.name => {
                let alpha = (t - stamp(i)) as f64 / (stamp(i + 1) - stamp(i)) as f64;
                let log = *log_a as f64 + (*log_b as f64 - *log_a as f64) * alpha;
                let msg = JointState {
                    header: a.header.clone(),
                    name: a.name.clone(),
                    position: lerp(&a.position, &b.position, alpha),
                    velocity: lerp(&a.velocity, &b.velocity, alpha),
                    effort: lerp(&a.effort, &b.effort, alpha),
                };
                (log.round() as u64, msg)
            }
            _ => {
                let shift = t - stamp(i);
                (log_a.saturating_add_signed(shift), a.clone())
            }
        };
        msg.header.stamp = Time::from_nanos(t);
        out.push((log_time, msg));
    }
    out
}

/// A folder removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("sarm-bench-node-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the temporary folder {}", dir.display()))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes the episode's camera messages and `joints` to one MCAP, by log time.
fn write_episode(
    path: &Path,
    camera_topic: &str,
    joints_topic: &str,
    camera: &[(u64, Camera)],
    joints: &[(u64, JointState)],
) -> anyhow::Result<()> {
    enum Item<'a> {
        Camera(&'a Camera),
        Joints(&'a JointState),
    }
    let mut items: Vec<(u64, Item)> = camera
        .iter()
        .map(|(t, c)| (*t, Item::Camera(c)))
        .chain(joints.iter().map(|(t, j)| (*t, Item::Joints(j))))
        .collect();
    items.sort_by_key(|(t, _)| *t);
    let mut out = McapOut::create(path)?;
    for (t, item) in items {
        match item {
            Item::Camera(Camera::Compressed(m)) => out.write(camera_topic, t, m)?,
            Item::Camera(Camera::Raw(m)) => out.write(camera_topic, t, m)?,
            Item::Joints(m) => out.write(joints_topic, t, m)?,
        }
    }
    out.finish()?;
    Ok(())
}

/// What was fed to the node.
#[derive(Debug, serde::Serialize)]
struct Fed {
    bag: String,
    camera_topic: String,
    camera_hz: f64,
    camera_messages: usize,
    image: String,
    joints_topic: String,
    joints_hz: f64,
    joint_messages: usize,
    joints_recorded_hz: f64,
    /// True when the joint states were resampled to `joints_hz`.
    joints_resampled: bool,
    /// The model's frame clock and its window's look-ahead.
    model_fps: f64,
    look_ahead_s: f64,
}

#[derive(Debug, serde::Serialize)]
struct StageRow {
    stage: &'static str,
    p50_ms: f64,
    p99_ms: f64,
    samples: u64,
}

/// One precision's node run, next to its model step.
#[derive(Debug, serde::Serialize)]
struct NodeRow {
    precision: &'static str,
    /// Encoder preprocessing + encoder + reward step: sum of the steps' p50s (p99s).
    model_step_p50_ms: f64,
    model_step_p99_ms: f64,
    receive_to_publish_p50_ms: f64,
    receive_to_publish_p99_ms: f64,
    trigger_to_publish_p50_ms: f64,
    trigger_to_publish_p99_ms: f64,
    /// trigger_to_publish p50 - model step p50.
    overhead_p50_ms: f64,
    /// trigger_to_publish p50 / model step p50.
    overhead_ratio: f64,
    frames_scored: u64,
    progress_published: u64,
    stages: Vec<StageRow>,
    counts: BTreeMap<&'static str, u64>,
    drops: BTreeMap<&'static str, u64>,
}

#[derive(Debug, serde::Serialize)]
struct Report {
    bundle: String,
    build: &'static str,
    fed: Fed,
    model_steps: Vec<Row>,
    node: Vec<NodeRow>,
}

fn node_row(precision: &'static str, rows: &[Row], s: &RunSummary) -> NodeRow {
    // The node runs on tract (its backend is not configurable yet).
    let step = |name: &str, p: &str| {
        rows.iter()
            .find(|r| r.step == name && r.precision == p && r.backend == "tract")
            .map_or((0.0, 0.0), |r| (r.p50_ms, r.p99_ms))
    };
    let parts = [
        step(ENCODER_PREPROCESS, precision),
        step(ENCODER_MODEL, precision),
        step(REWARD_STEP, precision),
    ];
    let model50: f64 = parts.iter().map(|p| p.0).sum();
    let model99: f64 = parts.iter().map(|p| p.1).sum();
    let stages: Vec<StageRow> = s
        .latency
        .iter()
        .map(|&(stage, p50_ms, p99_ms, samples)| StageRow {
            stage,
            p50_ms,
            p99_ms,
            samples,
        })
        .collect();
    let lat = |stage: Stage| {
        stages
            .iter()
            .find(|r| r.stage == stage.name())
            .map_or((0.0, 0.0), |r| (r.p50_ms, r.p99_ms))
    };
    let (e2e50, e2e99) = lat(Stage::EndToEnd);
    let (trig50, trig99) = lat(Stage::Trigger);
    NodeRow {
        precision,
        model_step_p50_ms: model50,
        model_step_p99_ms: model99,
        receive_to_publish_p50_ms: e2e50,
        receive_to_publish_p99_ms: e2e99,
        trigger_to_publish_p50_ms: trig50,
        trigger_to_publish_p99_ms: trig99,
        overhead_p50_ms: trig50 - model50,
        overhead_ratio: if model50 > 0.0 { trig50 / model50 } else { 0.0 },
        frames_scored: s.counts.get("frames_scored").copied().unwrap_or(0),
        progress_published: s.outputs.progress_published,
        stages,
        counts: s.counts.clone(),
        drops: s.drops.clone(),
    }
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if args.backend.backend != [sarm_runtime::BackendKind::Tract] {
        anyhow::bail!(
            "sarm bench --node: the node runs on tract until its config has a [backend] table; \
             compare backends on the model steps with `sarm bench BUNDLE --backend tract,ort`"
        );
    }
    let mut cfg = embedded_default();
    if let Some(b) = &args.bundle {
        cfg.bundle = locate(b);
    }
    if let Some(b) = &args.bag {
        cfg.source.bag = Some(locate(b));
    }
    // No result files: only the node's statistics are wanted.
    cfg.output_dir = None;
    let bundle = Bundle::load(&cfg.bundle)
        .with_context(|| format!("loading bundle {}", cfg.bundle.display()))?;

    // What the node will be fed.
    let (camera_topic, joints_topic) = (cfg.inputs.camera.clone(), cfg.inputs.joints.clone());
    let bag = cfg
        .source
        .bag
        .clone()
        .context("no episode to replay (--bag)")?;
    let mut ep = read_episode(&bag, &camera_topic, &joints_topic)?;
    ep.joints.sort_by_key(|(_, j)| j.header.stamp.as_nanos());
    let camera_hz = rate_hz(ep.camera.iter().map(|(_, c)| c.stamp_ns())).unwrap_or(0.0);
    let joints_recorded_hz =
        rate_hz(ep.joints.iter().map(|(_, j)| j.header.stamp.as_nanos())).unwrap_or(0.0);
    let mut rgb = RgbImage::new(1, 1);
    match &ep.camera[0].1 {
        Camera::Compressed(m) => decode_compressed(m, &mut rgb),
        Camera::Raw(m) => {
            cfg.inputs.camera_type = sarm_ros::node::config::CameraType::Raw;
            decode_raw(m, &mut rgb)
        }
    }
    .with_context(|| format!("decoding the first camera frame of {camera_topic}"))?;
    let frame_size = (rgb.width(), rgb.height());
    let resample = args.joint_rate > 0.0
        && (joints_recorded_hz - args.joint_rate).abs() > 0.01 * args.joint_rate;
    // The resampled episode and the trainer link's spools go to a temporary
    // folder: a benchmark leaves nothing in the robot's own spool.
    let tmp = TempDir::new()?;
    if resample {
        let joints = resample_joints(&ep.joints, args.joint_rate);
        let path = tmp.0.join("episode.mcap");
        write_episode(&path, &camera_topic, &joints_topic, &ep.camera, &joints)
            .context("writing the resampled episode")?;
        ep.joints = joints;
        cfg.source.bag = Some(path);
    }
    let fed = Fed {
        bag: args
            .bag
            .as_ref()
            .map_or_else(
                || embedded_default().source.bag.unwrap_or_default(),
                |b| locate(b),
            )
            .display()
            .to_string(),
        camera_topic: camera_topic.clone(),
        camera_hz,
        camera_messages: ep.camera.len(),
        image: format!("{}x{}", frame_size.0, frame_size.1),
        joints_topic: joints_topic.clone(),
        joints_hz: rate_hz(ep.joints.iter().map(|(_, j)| j.header.stamp.as_nanos())).unwrap_or(0.0),
        joint_messages: ep.joints.len(),
        joints_recorded_hz,
        joints_resampled: resample,
        model_fps: bundle.window.fps,
        look_ahead_s: bundle.window.delay() as f64 / bundle.window.fps,
    };
    drop(ep);
    eprintln!(
        "sarm bench --node: {} on {}: camera {:.1} Hz ({} frames, {}), joints {:.1} Hz \
         ({} messages{}); model clock {:.1} Hz, window look-ahead {:.2} s; {} build",
        bundle.name(),
        fed.bag,
        fed.camera_hz,
        fed.camera_messages,
        fed.image,
        fed.joints_hz,
        fed.joint_messages,
        if resample {
            format!(
                ", linearly interpolated from the recorded {:.1} Hz",
                fed.joints_recorded_hz
            )
        } else {
            String::new()
        },
        fed.model_fps,
        fed.look_ahead_s,
        build(),
    );

    // 1. The model's own steps, as plain `sarm bench` measures them, on
    //    images the size of the episode's.
    let rows = measure(&bundle, args, args.image_size.unwrap_or(frame_size))?;

    // 2. The node, once per precision.
    // Each run sets its own stop flag when it ends; Ctrl-C sets the current
    // run's and `interrupted`.
    let interrupted = Arc::new(AtomicBool::new(false));
    let current = Arc::new(Mutex::new(Arc::new(AtomicBool::new(false))));
    let (i, c) = (interrupted.clone(), current.clone());
    ctrlc::set_handler(move || {
        i.store(true, Ordering::Relaxed);
        match c.lock() {
            Ok(stop) => stop.store(true, Ordering::Relaxed),
            Err(poisoned) => poisoned.into_inner().store(true, Ordering::Relaxed),
        }
    })
    .context("installing the Ctrl-C handler")?;
    let mut runs = Vec::new();
    for precision in args.precision.expand() {
        if !bundle.precisions().contains(&precision) {
            eprintln!("  node ({precision}): not in this bundle, skipped");
            continue;
        }
        eprintln!(
            "  node ({precision}): replaying the episode in real time ({:.1} s) ...",
            (fed.camera_messages.saturating_sub(1)) as f64 / fed.camera_hz.max(1e-9)
        );
        let mut c = cfg.clone();
        c.precision = precision;
        c.trainer.spool_dir = Some(tmp.0.join(format!("spool-{precision}")));
        let stop = Arc::new(AtomicBool::new(interrupted.load(Ordering::Relaxed)));
        match current.lock() {
            Ok(mut g) => *g = stop.clone(),
            Err(poisoned) => *poisoned.into_inner() = stop.clone(),
        }
        let summary = node::run_with_view(&c, stop, false)
            .with_context(|| format!("running the node ({precision})"))?;
        if interrupted.load(Ordering::Relaxed) {
            anyhow::bail!("interrupted");
        }
        runs.push(node_row(precision.as_str(), &rows, &summary));
    }

    let report = Report {
        bundle: cfg.bundle.display().to_string(),
        build: build(),
        fed,
        model_steps: rows,
        node: runs,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

fn build() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

fn print_report(r: &Report) {
    let f = &r.fed;
    println!(
        "sarm bench --node: {} ({} build)\n  fed: {} replayed in real time over Zenoh (loopback, in process)\n  \
         camera {} at {:.1} Hz ({} frames, {}); joints {} at {:.1} Hz ({} messages{})\n  \
         model clock {:.1} Hz; the window's look-ahead is {:.2} s (in receive->publish, not in trigger->publish)",
        r.bundle,
        r.build,
        f.bag,
        f.camera_topic,
        f.camera_hz,
        f.camera_messages,
        f.image,
        f.joints_topic,
        f.joints_hz,
        f.joint_messages,
        if f.joints_resampled {
            format!(", linearly interpolated from {:.1} Hz", f.joints_recorded_hz)
        } else {
            String::new()
        },
        f.model_fps,
        f.look_ahead_s,
    );
    println!();
    println!("model steps (as `sarm bench`):");
    println!(
        "  {:<26} {:>5} {:>7} {:>10} {:>10} {:>10}",
        "step", "prec", "n", "p50 ms", "p99 ms", "mean ms"
    );
    for s in &r.model_steps {
        println!(
            "  {:<26} {:>5} {:>7} {:>10.3} {:>10.3} {:>10.3}",
            s.step, s.precision, s.iterations, s.p50_ms, s.p99_ms, s.mean_ms,
        );
    }
    println!();
    println!("node vs model (ms; model step = encoder preprocess + encoder + reward step, sums of p50s / p99s):");
    println!(
        "  {:<5} {:>17} {:>21} {:>21} {:>13} {:>8} {:>7} {:>8}",
        "prec",
        "model step p50/99",
        "receive->publish p50/99",
        "trigger->publish p50/99",
        "overhead p50",
        "ratio",
        "scored",
        "dropped"
    );
    for n in &r.node {
        println!(
            "  {:<5} {:>8.2} /{:>7.2} {:>11.2} /{:>9.2} {:>11.2} /{:>9.2} {:>13.2} {:>7.2}x {:>7} {:>8}",
            n.precision,
            n.model_step_p50_ms,
            n.model_step_p99_ms,
            n.receive_to_publish_p50_ms,
            n.receive_to_publish_p99_ms,
            n.trigger_to_publish_p50_ms,
            n.trigger_to_publish_p99_ms,
            n.overhead_p50_ms,
            n.overhead_ratio,
            n.frames_scored,
            n.drops.values().sum::<u64>(),
        );
    }
    println!("  overhead = trigger->publish p50 - model step p50; ratio = trigger->publish p50 / model step p50");
    println!();
    println!("node stages (ms):");
    for n in &r.node {
        println!("  {}:", n.precision);
        for s in n.stages.iter().filter(|s| s.samples > 0) {
            println!(
                "    {:<20} p50 {:>9.2}  p99 {:>9.2}  ({} samples)",
                s.stage, s.p50_ms, s.p99_ms, s.samples
            );
        }
        if n.drops.is_empty() {
            println!("    dropped: none (the node kept up)");
        } else {
            let list: Vec<String> = n.drops.iter().map(|(k, v)| format!("{k} {v}")).collect();
            println!(
                "    dropped: {} (the node did not keep up)",
                list.join(", ")
            );
        }
        let count = |k: &str| n.counts.get(k).copied().unwrap_or(0);
        println!(
            "    received: {} camera, {} joint messages; {} frames scored, {} Progress published",
            count("camera_messages"),
            count("joint_messages"),
            n.frames_scored,
            n.progress_published
        );
    }
    if r.build == "debug" {
        println!();
        println!(
            "note: a debug build; for meaningful figures run `cargo run --release -- bench --node`"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sarm_ros::msg::Header;

    fn js(stamp_ns: i64, pos: &[f64]) -> (u64, JointState) {
        (
            stamp_ns as u64 + 7,
            JointState {
                header: Header {
                    stamp: Time::from_nanos(stamp_ns),
                    frame_id: "base".into(),
                },
                name: vec!["a".into(), "b".into()],
                position: pos.to_vec(),
                velocity: Vec::new(),
                effort: Vec::new(),
            },
        )
    }

    #[test]
    fn resampling_interpolates_between_recorded_states() {
        // 50 Hz -> 200 Hz: four states per recorded interval, the recorded
        // ones kept exactly.
        let src = vec![
            js(0, &[0.0, 1.0]),
            js(20_000_000, &[4.0, 1.0]),
            js(40_000_000, &[8.0, -3.0]),
        ];
        let out = resample_joints(&src, 200.0);
        let stamps: Vec<i64> = out.iter().map(|(_, j)| j.header.stamp.as_nanos()).collect();
        assert_eq!(stamps, (0..9).map(|k| k * 5_000_000).collect::<Vec<i64>>());
        let pos: Vec<f64> = out.iter().map(|(_, j)| j.position[0]).collect();
        assert_eq!(pos, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        assert_eq!(out[6].1.position[1], -1.0);
        assert_eq!(out[1].0, 5_000_007, "log times are interpolated alike");
        assert!(out
            .iter()
            .all(|(_, j)| j.name == ["a", "b"] && j.header.frame_id == "base"));
        assert_eq!(rate_hz(stamps.into_iter()), Some(200.0));
    }

    #[test]
    fn resampling_does_not_mix_differently_named_states() {
        let mut b = js(10_000_000, &[10.0, 10.0]);
        b.1.name = vec!["b".into(), "a".into()];
        let out = resample_joints(&[js(0, &[0.0, 0.0]), b], 200.0);
        assert_eq!(out.len(), 3);
        assert_eq!(out[1].1.position, vec![0.0, 0.0]);
        assert_eq!(out[2].1.position, vec![10.0, 10.0]);
    }
}
