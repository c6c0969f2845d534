//! Command-line interface: one module per subcommand.

mod bench;
mod inspect;
mod label;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use sarm_runtime::Precision;

/// The on-robot runtime for stage-aware reward models (SARM).
///
/// Runs reward models trained with LeRobot's SARM, exported to a model
/// bundle (bundle.toml + ONNX), with tract on the robot's CPU.
#[derive(Debug, Parser)]
#[command(name = "sarm", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a bundle's manifest, files, provenance and tensor signatures.
    ///
    /// Loads every ONNX graph the bundle names, so a bundle that passes
    /// `inspect` will load in `run`.
    Inspect(inspect::InspectArgs),
    /// Measure per-step latency of a bundle's models on this machine.
    ///
    /// Reports p50/p99 of the image encoder, the stage model and the subtask
    /// model, fp32 and int8, and the int8/fp32 ratio measured in the same run.
    Bench(bench::BenchArgs),
    /// Score a recorded episode (rosbag2 MCAP) offline and write LeRobot's
    /// sarm_progress.parquet (and optionally MCAP of Progress messages).
    ///
    /// Runs the engine's scorer exactly as a live node feeds it: images decoded, joints
    /// reordered by name, frames taken at the bundle's rate by header stamp.
    Label(label::LabelArgs),
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
    }
}
