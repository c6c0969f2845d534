//! `sarm bench <bundle>`: per-step latency of the bundle's models.
//!
//! A benchmark, not a test: it prints what this machine measures. int8 is
//! reported next to fp32 from the same run, as a ratio. `sarm bench --node`
//! (see [`node`]) also runs the whole node on a recorded episode and reports
//! its end-to-end latency next to these model steps.

mod node;

use std::path::PathBuf;

use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use image::RgbImage;
use sarm_runtime::encoder::ImageEncoder;
use sarm_runtime::reward::{RewardModel, StepTimings};
use sarm_runtime::{BackendKind, Bundle, HeadKind, Precision};

use super::{BackendArgs, PrecisionArg};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Model bundle folder (contains bundle.toml). Optional with --node,
    /// which defaults to the embedded default's bundle (`sarm run`'s).
    #[arg(value_name = "BUNDLE", required_unless_present = "node")]
    pub bundle: Option<PathBuf>,
    /// Also run the node itself, in process, on a recorded episode and report
    /// its end-to-end latency next to the model's own step time.
    ///
    /// Measures the model steps as without --node, then runs `sarm run`'s
    /// embedded default (the bag replayed in real time over Zenoh on
    /// loopback inside this process, no live view, no result files, the trainer
    /// link spooling to a temporary folder) once per
    /// precision, with the camera at the bag's rate (50 Hz for the bundled
    /// episode) and joint states at --joint-rate (resampled by linear
    /// interpolation when the bag's rate differs). Prints, per precision,
    /// receive->publish and trigger->publish p50/p99, the model step
    /// (encoder + reward) p50/p99 and the node's overhead: trigger->publish
    /// minus the model step (p50), in ms and as a ratio; plus per-stage
    /// latencies and the node's drop counts. Build with --release for
    /// meaningful figures: a debug build cannot keep up and drops frames.
    #[arg(long)]
    pub node: bool,
    /// With --node: the recorded episode (rosbag2 folder or .mcap) to replay
    /// [default: the embedded default's, models/aloha-transfer-cube/episodes/success_ep_0025/bag].
    #[arg(long, value_name = "BAG", requires = "node")]
    pub bag: Option<PathBuf>,
    /// With --node: rate at which joint states are fed, in Hz (0 = as recorded).
    #[arg(long, value_name = "HZ", default_value_t = 200.0, value_parser = parse_rate)]
    pub joint_rate: f64,
    /// Timed iterations per step.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub iterations: u32,
    /// Untimed iterations first (caches, lazy initialisation).
    #[arg(long, default_value_t = 20)]
    pub warmup: u32,
    /// Precisions to measure (the image encoder too, where the bundle has
    /// an int8 encoder).
    #[arg(long, value_enum, default_value_t = PrecisionArg::All)]
    pub precision: PrecisionArg,
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Camera image size fed to the encoder, WIDTHxHEIGHT [default: 640x480;
    /// with --node, the size of the episode's camera frames].
    #[arg(long, value_name = "WxH", value_parser = parse_size)]
    pub image_size: Option<(u32, u32)>,
    /// Print the results as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once('x')
        .ok_or_else(|| format!("expected WIDTHxHEIGHT, found {s:?}"))?;
    let parse = |v: &str| {
        v.parse::<u32>()
            .ok()
            .filter(|n| (1..=16384).contains(n))
            .ok_or_else(|| format!("bad image size {s:?}: sides must be 1..=16384"))
    };
    Ok((parse(w)?, parse(h)?))
}

fn parse_rate(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|r| r.is_finite() && (0.0..=100_000.0).contains(r))
        .ok_or_else(|| format!("expected a rate in Hz (0..=100000), found {s:?}"))
}

/// Latency of one step.
#[derive(Debug, Clone, serde::Serialize)]
struct Row {
    step: String,
    backend: &'static str,
    precision: &'static str,
    iterations: u64,
    p50_ms: f64,
    p99_ms: f64,
    mean_ms: f64,
}

struct Recorder(Histogram<u64>);

impl Recorder {
    fn new() -> anyhow::Result<Self> {
        // 1 µs .. 60 s, 3 significant digits.
        Ok(Recorder(Histogram::new_with_bounds(1, 60_000_000, 3)?))
    }
    fn record(&mut self, d: Duration) {
        let us = (d.as_micros() as u64).clamp(1, 60_000_000);
        let _ = self.0.record(us);
    }
    fn row(&self, step: &str, backend: &'static str, precision: &'static str) -> Row {
        Row {
            step: step.to_string(),
            backend,
            precision,
            iterations: self.0.len(),
            p50_ms: self.0.value_at_quantile(0.5) as f64 / 1000.0,
            p99_ms: self.0.value_at_quantile(0.99) as f64 / 1000.0,
            mean_ms: self.0.mean() / 1000.0,
        }
    }
}

/// A deterministic test pattern (no RNG dependency, same every run).
fn test_image(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            (x * 255 / w.max(1)) as u8,
            (y * 255 / h.max(1)) as u8,
            ((x ^ y) & 0xff) as u8,
        ])
    })
}

/// Deterministic pseudo-random values in [-1, 1) (xorshift).
fn fill_pseudo_random(buf: &mut [f32], seed: u64) {
    let mut x = seed.max(1);
    for v in buf {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *v = ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0;
    }
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if args.node {
        return node::run(args);
    }
    let Some(path) = &args.bundle else {
        anyhow::bail!("sarm bench: a BUNDLE folder is needed (or --node)");
    };
    let bundle =
        Bundle::load(path).with_context(|| format!("loading bundle {}", path.display()))?;
    let rows = measure(&bundle, args, args.image_size.unwrap_or((640, 480)))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    print_rows(&bundle, &rows);
    Ok(())
}

/// Times each model step of `bundle`, per backend and precision: the
/// encoder (preprocessing a `w`x`h` image, then the model), the reward
/// models, and the frame step (encoder model + reward step, timed together).
fn measure(bundle: &Bundle, args: &BenchArgs, (w, h): (u32, u32)) -> anyhow::Result<Vec<Row>> {
    let n = args.iterations;
    let mut rows = Vec::new();
    let backends = args.backend.all()?;
    eprintln!(
        "sarm bench: {} ({} warm-up + {} timed iterations per step)",
        bundle.name(),
        args.warmup,
        n
    );
    let img = test_image(w, h);
    for backend in &backends {
        let b = backend.kind().as_str();
        for precision in args.precision.expand() {
            if !bundle.precisions().contains(&precision) {
                eprintln!("  {precision}: not in this bundle, skipped");
                continue;
            }
            let p = precision.as_str();
            eprintln!("  {b} {p}: image encoder ({w}x{h} input), reward models ...");
            let mut encoder = ImageEncoder::load_with(bundle, backend, precision, 1)?;
            let mut feats = vec![0.0; encoder.output_dim()];
            let (mut pre, mut model) = (Recorder::new()?, Recorder::new()?);
            for i in 0..args.warmup + n {
                let t0 = Instant::now();
                encoder.preprocess(&img)?;
                let t1 = Instant::now();
                encoder.run_prepared(&mut feats)?;
                if i >= args.warmup {
                    pre.record(t1 - t0);
                    model.record(t1.elapsed());
                }
            }
            rows.push(pre.row(ENCODER_PREPROCESS, b, p));
            rows.push(model.row(ENCODER_MODEL, b, p));

            let mut rm = RewardModel::load_with(bundle, backend, precision)?;
            rm.set_text(bundle.task_embedding(None)?);
            fill_pseudo_random(rm.image_input(), 1);
            fill_pseudo_random(rm.state_input(), 2);
            let mut scores = rm.new_scores();
            let mut timings = StepTimings::default();
            let mut stage = Recorder::new()?;
            let mut subtask: Vec<Recorder> = bundle
                .heads
                .iter()
                .map(|_| Recorder::new())
                .collect::<Result<_, _>>()?;
            let mut step = Recorder::new()?;
            for i in 0..args.warmup + n {
                let t0 = Instant::now();
                rm.run_timed(&mut scores, Some(&mut timings))?;
                if i >= args.warmup {
                    step.record(t0.elapsed());
                    stage.record(timings.stage);
                    for (r, d) in subtask.iter_mut().zip(&timings.subtask) {
                        r.record(*d);
                    }
                }
            }
            rows.push(stage.row("stage model", b, p));
            for (head, r) in bundle.heads.iter().zip(&subtask) {
                rows.push(r.row(&format!("subtask model ({})", head.kind), b, p));
            }
            rows.push(step.row(REWARD_STEP, b, p));

            // The frame step: what one scored frame costs in models.
            let mut frame = Recorder::new()?;
            for i in 0..args.warmup + n {
                let t0 = Instant::now();
                encoder.run_prepared(&mut feats)?;
                rm.run(&mut scores)?;
                if i >= args.warmup {
                    frame.record(t0.elapsed());
                }
            }
            rows.push(frame.row(FRAME_STEP, b, p));
        }
    }
    Ok(rows)
}

const ENCODER_PREPROCESS: &str = "encoder preprocess";
const ENCODER_MODEL: &str = "encoder model";
const REWARD_STEP: &str = "reward step (all heads)";
const FRAME_STEP: &str = "frame step (encoder+reward)";

fn print_rows(bundle: &Bundle, rows: &[Row]) {
    println!(
        "{:<28} {:>5} {:>5} {:>7} {:>10} {:>10} {:>10}",
        "step", "back", "prec", "n", "p50 ms", "p99 ms", "mean ms"
    );
    for r in rows {
        println!(
            "{:<28} {:>5} {:>5} {:>7} {:>10.3} {:>10.3} {:>10.3}",
            r.step, r.backend, r.precision, r.iterations, r.p50_ms, r.p99_ms, r.mean_ms
        );
    }
    let find = |step: &str, b: BackendKind, p: Precision| {
        rows.iter()
            .find(|r| r.step == step && r.backend == b.as_str() && r.precision == p.as_str())
            .map(|r| r.p50_ms)
    };
    let mut steps = vec![
        ENCODER_MODEL.to_string(),
        "stage model".to_string(),
        REWARD_STEP.to_string(),
        FRAME_STEP.to_string(),
    ];
    steps.extend(
        [HeadKind::Sparse, HeadKind::Dense]
            .iter()
            .filter(|k| bundle.head(**k).is_some())
            .map(|k| format!("subtask model ({k})")),
    );
    println!("\np50 ratios (below 1: the first is faster)");
    for b in BackendKind::ALL {
        for s in &steps {
            if let (Some(a), Some(c)) = (find(s, b, Precision::Fp32), find(s, b, Precision::Int8)) {
                println!("  int8/fp32 {b:<5} {s:<28} {:.2}", c / a);
            }
        }
    }
    for p in [Precision::Fp32, Precision::Int8] {
        for s in &steps {
            if let (Some(t), Some(o)) =
                (find(s, BackendKind::Tract, p), find(s, BackendKind::Ort, p))
            {
                println!("  ort/tract {p:<5} {s:<28} {:.2}", o / t);
            }
        }
    }
    for b in BackendKind::ALL {
        if let (Some(a), Some(c)) = (
            find(FRAME_STEP, b, Precision::Fp32),
            find(FRAME_STEP, b, Precision::Int8),
        ) {
            if c > a {
                println!(
                    "note: on {b}, int8 is {:.2}x SLOWER than fp32 per frame here; int8 pays on \
                     --backend ort",
                    c / a
                );
            }
        }
    }
}
