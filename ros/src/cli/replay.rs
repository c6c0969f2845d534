//! `sarm replay <bag> [--rate R] [--loop] [--transport dds|zenoh]`: publish a
//! recorded episode's topics with their original timing.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::Context;
use sarm_ros::replay::{bag_topics, publishers_for, replay_once};
use sarm_ros::transport::{Transport, TransportKind};

use super::TransportArgs;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "DDS and --interface: the participant advertises only the given \
interfaces' addresses and sends only to locators reachable through them: with \
--interface 127.0.0.1 only to 127.0.0.0/8, with a LAN address only to that interface's \
subnet (plus multicast on those interfaces), whatever other addresses a peer advertises."
)]
pub struct ReplayArgs {
    /// rosbag2 bag: a folder with metadata.yaml, or a single .mcap file.
    #[arg(value_name = "BAG")]
    pub bag: PathBuf,
    /// Playback speed: 2.0 plays twice as fast, 0.5 at half speed.
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// Start again from the beginning at the end, until interrupted.
    #[arg(long = "loop")]
    pub looping: bool,
    /// Only these topics (repeatable); default: every topic of a type sarm knows.
    #[arg(long = "topic", value_name = "TOPIC")]
    pub topics: Vec<String>,
    /// Seconds to wait after joining the network before the first message,
    /// so subscribers discover the publishers first (DDS discovery between
    /// loopback-only participants can take several seconds).
    #[arg(long, default_value_t = 2.0)]
    pub startup_delay: f64,
    #[command(flatten)]
    pub transport: TransportArgs,
}

pub fn run(args: &ReplayArgs) -> anyhow::Result<()> {
    if !(args.rate.is_finite() && args.rate > 0.0) {
        anyhow::bail!("--rate must be a number > 0, found {}", args.rate);
    }
    if !(args.startup_delay.is_finite() && args.startup_delay >= 0.0) {
        anyhow::bail!(
            "--startup-delay must be >= 0 seconds, found {}",
            args.startup_delay
        );
    }
    let topics =
        bag_topics(&args.bag).with_context(|| format!("reading {}", args.bag.display()))?;
    for wanted in &args.topics {
        if !topics.contains_key(wanted) {
            anyhow::bail!(
                "topic {wanted} is not in {} (it has: {})",
                args.bag.display(),
                topics.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
    }
    let kind = args.transport.transport;
    let cfg = args.transport.to_config("sarm_replay")?;
    let mut transport = Transport::open(kind, &cfg).context("joining the network")?;
    // Publishers first, so discovery happens during the start-up delay.
    let (mut publishers, unknown) = publishers_for(&mut transport, &topics, &args.topics)?;
    if publishers.is_empty() {
        anyhow::bail!(
            "nothing to replay: no topic of a known type in {}",
            args.bag.display()
        );
    }
    for (topic, t) in &unknown {
        eprintln!("sarm replay: skipping {topic} ({t}: not a type sarm knows)");
    }
    eprintln!(
        "sarm replay: {} over {} at {}x: {}",
        args.bag.display(),
        match kind {
            TransportKind::Dds => "DDS",
            TransportKind::Zenoh => "Zenoh (rmw_zenoh keys)",
        },
        args.rate,
        publishers.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    std::thread::sleep(Duration::from_secs_f64(args.startup_delay));

    let stop = AtomicBool::new(false);
    let mut pass = 0u64;
    loop {
        pass += 1;
        let mut last_report = Instant::now();
        let stats = replay_once(&args.bag, args.rate, &mut publishers, &stop, |s| {
            if last_report.elapsed() >= Duration::from_secs(1) {
                last_report = Instant::now();
                eprint!("\r  {} messages", s.published.values().sum::<u64>());
            }
        })
        .with_context(|| format!("reading {}", args.bag.display()))?;
        eprintln!();
        println!("pass {pass}: {:.1} s", stats.elapsed.as_secs_f64());
        for (topic, n) in &stats.published {
            println!("  {topic}: {n} published");
        }
        for (topic, reasons) in &stats.failed {
            for (reason, n) in reasons {
                println!("  {topic}: {n} not published ({reason})");
            }
        }
        for (reason, n) in &stats.skipped_in_bag {
            println!("  skipped in bag: {reason}: {n}");
        }
        if !args.looping {
            break;
        }
    }
    // Give reliable writers a moment to deliver the last samples. (Endpoints
    // keep their participant alive, so the drop order does not matter.)
    std::thread::sleep(Duration::from_millis(300));
    drop(publishers);
    drop(transport);
    Ok(())
}
