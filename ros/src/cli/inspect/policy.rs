//! `sarm inspect` of a policy bundle: manifest, provenance, files, the
//! stepper's settings, limits, and the graph's tensor signatures on each
//! backend given.

use std::fmt::Write as _;

use sarm_runtime::backend::Backend;
use sarm_runtime::policy::{PolicyBundle, PolicyModel, StepperMode};

use super::{write_graph, write_value};

fn join<T: std::fmt::Display>(v: &[T]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn summary(bundle: &PolicyBundle, backends: &[Backend]) -> anyhow::Result<String> {
    let m = &bundle.manifest;
    let mut s = String::new();
    writeln!(
        s,
        "bundle      {} (policy, {})",
        m.name,
        bundle.dir.display()
    )?;
    writeln!(s, "            {}", m.description)?;
    writeln!(s, "\nprovenance")?;
    for (k, v) in &m.provenance {
        write_value(&mut s, k, v)?;
    }

    let p = &m.policy;
    writeln!(
        s,
        "\npolicy  {} at {} Hz, chunk_size {}, n_action_steps {}",
        p.policy_type, p.fps, p.chunk_size, p.n_action_steps
    )?;
    match bundle.mode {
        StepperMode::Queue { n_action_steps } => writeln!(
            s,
            "  stepper: action queue (model every {n_action_steps} ticks = {:.1} ms), on the {} chunk; latent {}",
            n_action_steps as f64 * 1e3 / p.fps,
            p.stepper_space,
            p.latent
        )?,
        StepperMode::TemporalEnsemble { coeff } => writeln!(
            s,
            "  stepper: temporal ensembling, coeff {coeff} (model every tick = {:.1} ms), on the {} chunk; latent {}",
            1e3 / p.fps,
            p.stepper_space,
            p.latent
        )?,
    }

    writeln!(s, "\nobservation")?;
    if let Some(st) = &m.observation.state {
        writeln!(
            s,
            "  state {:?} -> {:?} [1, {}], {}: {}",
            st.key,
            st.tensor,
            st.names.len(),
            st.normalization.mode.as_str(),
            st.names.join(", ")
        )?;
    }
    if let Some(e) = &m.observation.environment_state {
        writeln!(
            s,
            "  environment state {:?} -> {:?} {:?}, {}",
            e.key,
            e.tensor,
            e.shape,
            e.normalization.mode.as_str()
        )?;
    }
    for c in &m.observation.images {
        writeln!(
            s,
            "  camera {:?} -> {:?} {} 3x{}x{} {}; from {}x{} by {} ({}, antialias {}); x / {}, then {} mean [{}] std [{}]",
            c.camera,
            c.tensor,
            c.layout,
            c.height,
            c.width,
            c.color,
            c.source_width,
            c.source_height,
            c.resize,
            c.filter,
            c.antialias,
            c.pixel_divisor,
            c.normalization.mode.as_str(),
            join(c.normalization.mean.as_deref().unwrap_or_default()),
            join(c.normalization.std.as_deref().unwrap_or_default()),
        )?;
    }

    let a = &m.action;
    writeln!(
        s,
        "\naction  {:?} -> {:?} [1, {}, {}], {}",
        a.key,
        a.tensor,
        p.chunk_size,
        a.names.len(),
        a.normalization.mode.as_str()
    )?;
    writeln!(s, "  limits: {}", a.limits.source)?;
    writeln!(
        s,
        "  {:<22} {:>10} {:>10} {:>10} {:>10}  unit",
        "joint", "lower", "upper", "max_step", "per s"
    )?;
    for i in 0..a.names.len() {
        writeln!(
            s,
            "  {:<22} {:>10.4} {:>10.4} {:>10.4} {:>10.3}  {}",
            a.names[i],
            a.limits.lower[i],
            a.limits.upper[i],
            a.limits.max_step[i],
            a.limits.max_step[i] as f64 * p.fps,
            a.units[i]
        )?;
    }

    writeln!(s, "\nfiles")?;
    for (prec, f) in &m.precision {
        writeln!(
            s,
            "  {:<24} {:>12} bytes  sha256 {}  ({prec}; quantized ops [{}])",
            f.path,
            f.bytes,
            f.sha256,
            f.quantized_ops.join(", ")
        )?;
    }

    for backend in backends {
        let info = backend.describe();
        write!(s, "\nbackend  {} ({})", info.kind, info.version)?;
        if let Some(lib) = &info.library {
            write!(
                s,
                ", library {}, providers in this build {:?}",
                lib.display(),
                info.available_providers
            )?;
        }
        writeln!(s)?;
        writeln!(
            s,
            "tensors (as declared in the ONNX files), and where each graph runs"
        )?;
        for precision in bundle.precisions() {
            let model = PolicyModel::load(bundle, backend, precision)?;
            write_graph(&mut s, precision.as_str(), model.graph())?;
        }
    }
    Ok(s)
}
