//! `sarm link-check`: the robot's end of the trainer link with synthetic
//! records, to check a trainer setup (network, TLS, access control, sink)
//! without a model or cameras, and to test delivery under faults.
//!
//! Each episode's progress ramps from 0 to 1 (sparse linearly, dense
//! quadratically); weights come from the online RA-BC rule; episodes start
//! and end with EpisodeEvents. Records go through the same spool and link
//! as `sarm run`'s, so a run killed and restarted on the same spool carries
//! on with the next sequence number and episode.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sarm_ros::msg::{EpisodeEvent, EventKind, Header, Progress, SampleWeight, Time};
use sarm_ros::trainer::{LinkSession, RobotLink, RobotLinkConfig, SpoolConfig, WhenFull};
use sarm_ros::zenoh_link::now_ns;
use sarm_runtime::rabc::{OnlineRabc, RabcParams};

use super::zenoh_args::ZenohArgs;

#[derive(Debug, clap::Args)]
pub struct LinkCheckArgs {
    /// The robot's id (its keys: sarm/<robot_id>/...).
    #[arg(long)]
    pub robot_id: String,
    /// Spool folder (kept across runs: a restart carries on from it).
    #[arg(long, value_name = "DIR")]
    pub spool: PathBuf,
    /// Spool bound in MiB.
    #[arg(long, default_value_t = 64)]
    pub spool_max_mb: u64,
    /// What a full spool does: drop_oldest or drop_newest.
    #[arg(long, default_value = "drop_oldest")]
    pub when_full: WhenFull,
    /// Stop making records once the robot's sequence number reaches this
    /// (counted over all runs on this spool).
    #[arg(long, default_value_t = 10_000)]
    pub records: u64,
    /// Records per second.
    #[arg(long, default_value_t = 500.0)]
    pub rate: f64,
    /// Frames per episode.
    #[arg(long, default_value_t = 100)]
    pub episode_frames: u32,
    /// RA-BC chunk size for the online weights.
    #[arg(long, default_value_t = 50)]
    pub chunk_size: usize,
    /// After the last record, wait up to this many seconds for the sink to
    /// acknowledge everything (exit 3 if it does not).
    #[arg(long, default_value_t = 60.0)]
    pub wait_acked: f64,
    /// Seconds between tries to open the Zenoh session while the trainer
    /// (router or sink) cannot be reached; records are spooled meanwhile.
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    pub connect_retry: f64,
    #[command(flatten)]
    pub zenoh: ZenohArgs,
}

/// The synthetic progress of frame `f` of an episode of `n` frames.
pub fn synthetic_progress(f: u32, n: u32) -> (f32, f32) {
    let x = (f + 1) as f32 / n as f32;
    (x, x * x)
}

pub fn run(args: &LinkCheckArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.rate > 0.0, "--rate must be > 0");
    anyhow::ensure!(args.episode_frames > 0, "--episode-frames must be > 0");
    anyhow::ensure!(
        args.connect_retry.is_finite() && args.connect_retry > 0.0,
        "--connect-retry must be > 0"
    );
    // The link's own session, opened in the background as the node's is:
    // records are made and spooled while the trainer is unreachable.
    let mut link = RobotLink::start(
        LinkSession::Connect {
            config: args.zenoh.to_config(),
            retry: Duration::from_secs_f64(args.connect_retry),
        },
        RobotLinkConfig {
            robot_id: args.robot_id.clone(),
            spool: SpoolConfig {
                dir: args.spool.clone(),
                max_bytes: args.spool_max_mb << 20,
                when_full: args.when_full,
            },
            heartbeat: Duration::from_millis(200),
            model: "synthetic (sarm link-check)".into(),
        },
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    ctrlc::set_handler(move || s.store(true, Ordering::Relaxed))
        .context("installing the signal handler")?;
    let mut rabc = OnlineRabc::new(RabcParams {
        chunk_size: args.chunk_size,
        ..RabcParams::default()
    })?;
    let rec = link.recovered();
    eprintln!(
        "sarm link-check: {} from seq {}, episode {} ({} records target, {:.0}/s)",
        args.robot_id, rec.next_seq, rec.next_episode, args.records, args.rate
    );
    let robot_id = args.robot_id.clone();
    let header = || Header {
        stamp: Time::from_nanos(now_ns()),
        frame_id: String::new(),
    };
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let started = Instant::now();
    let mut sent_here = 0u64;
    let mut next_at = Instant::now();
    let mut episode = rec.next_episode;
    let n = args.episode_frames;
    let mut pace = |link: &RobotLink| -> bool {
        next_at += period;
        let now = Instant::now();
        if next_at > now {
            std::thread::sleep(next_at - now);
        }
        !stop.load(Ordering::Relaxed) && link.next_seq() < args.records
    };
    'episodes: while link.next_seq() < args.records && !stop.load(Ordering::Relaxed) {
        let event = |kind: EventKind, frames: u64, final_progress: f32| EpisodeEvent {
            header: header(),
            robot_id: robot_id.clone(),
            episode_index: episode,
            event: kind.code(),
            frames,
            final_progress,
            reason: String::new(),
        };
        link.send(&mut event(EventKind::Start, 0, 0.0))?;
        sent_here += 1;
        let mut weights = Vec::new();
        for f in 0..n {
            let (sparse, dense) = synthetic_progress(f, n);
            for (i, (head, p)) in [("sparse", sparse), ("dense", dense)]
                .into_iter()
                .enumerate()
            {
                // A frame's heads go together, as the node sends them: the
                // record target or a stop ends the run between frames only.
                if !pace(&link) && i == 0 {
                    break 'episodes;
                }
                let mut msg = Progress {
                    header: header(),
                    robot_id: robot_id.clone(),
                    episode_index: episode,
                    frame_index: f as i64,
                    seq: 0,
                    head: head.into(),
                    stage: 0,
                    stage_confidence: 1.0,
                    stage_probs: vec![1.0],
                    stage_progress: p,
                    progress: p,
                    progress_smoothed: p,
                    reward: 0.0,
                };
                link.send(&mut msg)?;
                sent_here += 1;
            }
            rabc.push(sparse, &mut |w| weights.push(w));
            if f + 1 == n {
                rabc.finish(&mut |w| weights.push(w));
            }
            for w in weights.drain(..) {
                if !pace(&link) {
                    break 'episodes;
                }
                let mut msg = SampleWeight {
                    header: header(),
                    robot_id: robot_id.clone(),
                    episode_index: episode,
                    frame_index: w.frame_index as i64,
                    seq: 0,
                    chunk_size: args.chunk_size as u32,
                    delta: w.delta,
                    weight: w.weight,
                };
                link.send(&mut msg)?;
                sent_here += 1;
            }
        }
        link.send(&mut event(EventKind::End, n as u64, 1.0))?;
        sent_here += 1;
        episode += 1;
        // Progress every ten episodes.
        if (episode - rec.next_episode) % 10 == 0 {
            eprintln!(
                "sarm link-check: seq {}, {} unacknowledged",
                link.next_seq(),
                link.unacked()
            );
        }
    }
    link.sync()?;
    let deadline = Instant::now() + Duration::from_secs_f64(args.wait_acked.max(0.0));
    while link.unacked() > 0 && Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let st = link.stats();
    let report = serde_json::json!({
        "robot_id": args.robot_id,
        "next_seq": link.next_seq(),
        "sent_this_run": sent_here,
        "unacked": link.unacked(),
        "replayed": st.replayed.load(Ordering::Relaxed),
        "spool_dropped": st.spool_dropped.load(Ordering::Relaxed),
        "spool_rejected": st.spool_rejected.load(Ordering::Relaxed),
        "seconds": started.elapsed().as_secs_f64(),
    });
    let _ = writeln!(std::io::stdout(), "{report}");
    let unacked = link.unacked();
    drop(link);
    if unacked > 0 {
        eprintln!("sarm link-check: {unacked} records not acknowledged by a sink");
        std::process::exit(3);
    }
    Ok(())
}
