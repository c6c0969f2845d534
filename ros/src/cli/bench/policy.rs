//! `sarm bench <policy bundle>`: the policy step per backend x precision,
//! in one run, with ratios: the observation preparation (resize +
//! normalisation of a camera frame at the trained resolution), the model
//! call, the full step when the model runs (preparation + model + queue or
//! ensemble + unnormalisation, the step LeRobot's `select_action` takes),
//! the step served from the queue, and the full step with temporal
//! ensembling (the model every tick). The control period is the budget:
//! p99 of the full step is printed against it.

use std::time::Instant;

use sarm_runtime::backend::BackendKind;
use sarm_runtime::policy::{
    Frame, Observation, PolicyBundle, PolicyStepper, StepperMode, StepperOptions,
};
use sarm_runtime::Precision;

use super::{fill_pseudo_random, test_image, BenchArgs, Recorder, Row};

pub(super) const PREPARE: &str = "policy observation prep";
pub(super) const MODEL: &str = "policy model";
pub(super) const STEP_MODEL: &str = "policy step (model runs)";
pub(super) const STEP_QUEUE: &str = "policy step (from queue)";
pub(super) const STEP_ENSEMBLE: &str = "policy step (ensembling)";

/// Times the policy steps of `bundle` for every backend x precision asked.
pub(super) fn measure(bundle: &PolicyBundle, args: &BenchArgs) -> anyhow::Result<Vec<Row>> {
    let n = args.iterations;
    let backends = args.backend.all()?;
    let images: Vec<_> = bundle
        .cameras
        .iter()
        .map(|c| {
            let (w, h) = args.image_size.unwrap_or((c.source_width, c.source_height));
            test_image(w, h)
        })
        .collect();
    let frames: Vec<Frame<'_>> = images.iter().map(Frame::from).collect();
    let mut state = vec![0.0; bundle.state.as_ref().map_or(0, |s| s.names.len())];
    fill_pseudo_random(&mut state, 3);
    let mut environment = vec![0.0; bundle.environment_state.as_ref().map_or(0, |e| e.len)];
    fill_pseudo_random(&mut environment, 4);
    let obs = Observation {
        frames: &frames,
        state: &state,
        environment_state: &environment,
    };
    eprintln!(
        "sarm bench: policy {} ({} warm-up + {} timed iterations per step; camera frames {})",
        bundle.name(),
        args.warmup,
        n,
        frames
            .iter()
            .map(|f| format!("{}x{}", f.width, f.height))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut rows = Vec::new();
    for backend in &backends {
        let b = backend.kind().as_str();
        for precision in args.precision.expand() {
            if !bundle.precisions().contains(&precision) {
                eprintln!("  {precision}: not in this bundle, skipped");
                continue;
            }
            let p = precision.as_str();
            eprintln!("  {b} {p}: policy step ...");
            let queue_mode = match bundle.mode {
                m @ StepperMode::Queue { .. } => m,
                StepperMode::TemporalEnsemble { .. } => StepperMode::Queue { n_action_steps: 2 },
            };
            let mut stepper = PolicyStepper::load(
                bundle,
                backend,
                precision,
                StepperOptions {
                    mode: Some(queue_mode),
                },
            )?;
            let mut prepare = Recorder::new()?;
            let mut model = Recorder::new()?;
            let mut step_model = Recorder::new()?;
            let mut step_queue = Recorder::new()?;
            let mut step_ensemble = Recorder::new()?;
            for i in 0..args.warmup + n {
                let timed = i >= args.warmup;
                // Observation preparation and the model call alone.
                let t0 = Instant::now();
                stepper.model_mut().prepare(&obs)?;
                let t1 = Instant::now();
                stepper.model_mut().run()?;
                let t2 = Instant::now();
                // A step that runs the model (after a reset, the queue is empty).
                stepper.reset();
                let t3 = Instant::now();
                let s = stepper.step(&obs)?;
                let ran = s.model_ran;
                let t4 = Instant::now();
                // The next one is served from the queue.
                let s = stepper.step(&obs)?;
                let queued = !s.model_ran;
                let t5 = Instant::now();
                if timed {
                    prepare.record(t1 - t0);
                    model.record(t2 - t1);
                    if ran {
                        step_model.record(t4 - t3);
                    }
                    if queued {
                        step_queue.record(t5 - t4);
                    }
                }
            }
            let mut ensembling = PolicyStepper::load(
                bundle,
                backend,
                precision,
                StepperOptions {
                    mode: Some(match bundle.mode {
                        m @ StepperMode::TemporalEnsemble { .. } => m,
                        StepperMode::Queue { .. } => StepperMode::TemporalEnsemble { coeff: 0.01 },
                    }),
                },
            )?;
            for i in 0..args.warmup + n {
                let t0 = Instant::now();
                ensembling.step(&obs)?;
                if i >= args.warmup {
                    step_ensemble.record(t0.elapsed());
                }
            }
            rows.push(prepare.row(PREPARE, b, p));
            rows.push(model.row(MODEL, b, p));
            rows.push(step_model.row(STEP_MODEL, b, p));
            rows.push(step_queue.row(STEP_QUEUE, b, p));
            rows.push(step_ensemble.row(STEP_ENSEMBLE, b, p));
        }
    }
    Ok(rows)
}

/// The table, the ratios from the same run, and the control-period budget.
pub(super) fn print(bundle: &PolicyBundle, rows: &[Row]) {
    super::print_table(rows);
    let find = |step: &str, b: BackendKind, p: Precision| {
        rows.iter()
            .find(|r| r.step == step && r.backend == b.as_str() && r.precision == p.as_str())
    };
    let steps = [PREPARE, MODEL, STEP_MODEL, STEP_ENSEMBLE];
    println!("\np50 ratios (below 1: the first is faster)");
    for b in BackendKind::ALL {
        for s in steps {
            if let (Some(a), Some(c)) = (find(s, b, Precision::Fp32), find(s, b, Precision::Int8)) {
                println!("  int8/fp32 {b:<5} {s:<28} {:.2}", c.p50_ms / a.p50_ms);
            }
        }
    }
    for p in [Precision::Fp32, Precision::Int8] {
        for s in steps {
            if let (Some(t), Some(o)) =
                (find(s, BackendKind::Tract, p), find(s, BackendKind::Ort, p))
            {
                println!("  ort/tract {p:<5} {s:<28} {:.2}", o.p50_ms / t.p50_ms);
            }
        }
    }
    let period_ms = 1e3 / bundle.fps();
    println!(
        "\ncontrol period {period_ms:.2} ms ({} Hz): p99 of the full step / period",
        bundle.fps()
    );
    for r in rows
        .iter()
        .filter(|r| r.step == STEP_MODEL || r.step == STEP_ENSEMBLE)
    {
        println!(
            "  {:<5} {:<5} {:<28} {:.3}{}",
            r.backend,
            r.precision,
            r.step,
            r.p99_ms / period_ms,
            if r.p99_ms > period_ms {
                "  (over budget)"
            } else {
                ""
            }
        );
    }
}
