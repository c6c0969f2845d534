//! `sarm sink --out <dir>`: the trainer's end of the trainer link.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sarm_ros::trainer::sink::{run_sink, SinkConfig};
use sarm_ros::zenoh_link::open_session_retrying;
use sarm_runtime::rabc::RabcParams;
use zenoh::Wait;

use super::zenoh_args::ZenohArgs;

#[derive(Debug, clap::Args)]
pub struct SinkArgs {
    /// Output folder: one sub-folder per robot with records.log,
    /// sarm_progress.parquet, sarm_weights.parquet and sink_summary.json.
    /// Restarting on the same folder carries on where the last run stopped.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// RA-BC chunk size H of the policy to be trained (LeRobot: chunk_size).
    #[arg(long, default_value_t = 50)]
    pub chunk_size: usize,
    /// RA-BC kappa (LeRobot: rabc_kappa).
    #[arg(long, default_value_t = 0.01)]
    pub kappa: f64,
    /// RA-BC epsilon (LeRobot: rabc_epsilon).
    #[arg(long, default_value_t = 1e-6)]
    pub epsilon: f64,
    /// Progress head the weights use: sparse or dense (LeRobot: rabc_head_mode).
    #[arg(long, default_value = "sparse", value_parser = ["sparse", "dense"])]
    pub head: String,
    /// Seconds between rewrites of the combined parquet files while records
    /// come (besides exit). Each rewrite streams the whole dataset from the
    /// per-episode files in parts/, which are written as episodes end.
    #[arg(long, default_value_t = 60.0)]
    pub parquet_period: f64,
    #[command(flatten)]
    pub zenoh: ZenohArgs,
}

pub fn run(args: &SinkArgs) -> anyhow::Result<()> {
    let cfg = SinkConfig {
        out: args.out.clone(),
        rabc: RabcParams {
            chunk_size: args.chunk_size,
            kappa: args.kappa,
            epsilon: args.epsilon,
        },
        head: args
            .head
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--head: {e}"))?,
        parquet_period: std::time::Duration::from_secs_f64(args.parquet_period.max(0.1)),
        ..SinkConfig::default()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    ctrlc::set_handler(move || s.store(true, Ordering::Relaxed))
        .context("installing the signal handler")?;
    // A client of a router that is not up yet waits for it (Ctrl-C stops).
    let Some(session) = open_session_retrying(
        &args.zenoh.to_config(),
        Duration::from_secs(1),
        &stop,
        "sarm sink",
    )
    .context("opening the Zenoh session")?
    else {
        let _ = writeln!(std::io::stdout(), "[]");
        return Ok(());
    };
    eprintln!(
        "sarm sink: receiving sarm/** into {} (Ctrl-C to stop)",
        args.out.display()
    );
    let summaries = run_sink(&session, &cfg, &stop)?;
    for s in &summaries {
        if s.robot_unrecorded > 0 {
            eprintln!(
                "sarm sink: {}: the robot dropped {} outputs before numbering them (its output queue was full)",
                s.robot_id, s.robot_unrecorded
            );
        }
        eprintln!(
            "sarm sink: {}: {} records ({} progress rows, {} episodes), {} duplicates dropped, {} lost, {} recovered from the spool; this run's live delay p50 {:.1} ms, p99 {:.1} ms",
            s.robot_id,
            s.records,
            s.progress_rows,
            s.episodes,
            s.duplicates,
            s.lost,
            s.recovered,
            s.this_run_delay_ms_p50,
            s.this_run_delay_ms_p99
        );
    }
    // The summary as JSON on stdout (a closed stdout is not an error here).
    let _ = writeln!(std::io::stdout(), "{}", serde_json::to_string(&summaries)?);
    let _ = session.close().wait();
    Ok(())
}
