//! `sarm`: the on-robot runtime for stage-aware reward models.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SARM_LOG")
                // The middleware libraries log discovery chatter at warn
                // level (Zenoh warns that gossip is off, which sarm's
                // loopback configs do on purpose); SARM_LOG=debug (or e.g.
                // rustdds=warn) shows it.
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new(
                        "info,rustdds=error,ros2_client=error,zenoh=warn,zenoh::net::routing::hat=error",
                    )
                }),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
