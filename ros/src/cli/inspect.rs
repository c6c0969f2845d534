//! `sarm inspect <bundle>`.

use std::fmt::Write as _;

use anyhow::Context;
use sarm_runtime::backend::{Backend, Graph};
use sarm_runtime::encoder::ImageEncoder;
use sarm_runtime::reward::RewardModel;
use sarm_runtime::Bundle;

use super::{BackendArgs, BundleArg};

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub bundle: BundleArg,
    /// Print the manifest as JSON instead of the summary.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub backend: BackendArgs,
}

pub fn run(args: &InspectArgs) -> anyhow::Result<()> {
    let bundle = Bundle::load(&args.bundle.bundle)
        .with_context(|| format!("loading bundle {}", args.bundle.bundle.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&bundle.manifest)?);
        return Ok(());
    }
    let backend = args.backend.single()?;
    print!("{}", summary(&bundle, &backend)?);
    Ok(())
}

fn summary(bundle: &Bundle, backend: &Backend) -> anyhow::Result<String> {
    let m = &bundle.manifest;
    let mut s = String::new();
    writeln!(s, "bundle      {} ({})", m.name, bundle.dir.display())?;
    if !m.description.is_empty() {
        writeln!(s, "            {}", m.description)?;
    }
    writeln!(s, "\nprovenance")?;
    writeln!(s, "  script            {}", m.provenance.script)?;
    if !m.provenance.command.is_empty() {
        writeln!(s, "  command           {}", m.provenance.command)?;
    }
    if let Some(seed) = m.provenance.seed {
        writeln!(s, "  seed              {seed}")?;
    }
    writeln!(s, "  source checkpoint {}", m.provenance.source_checkpoint)?;
    writeln!(s, "  created (UTC)     {}", m.provenance.created_utc)?;
    for (lib, v) in &m.provenance.libraries {
        writeln!(s, "  {lib:<17} {v}")?;
    }
    for (k, v) in &m.provenance.extra {
        write_value(&mut s, k, v)?;
    }

    let e = &m.image_encoder;
    writeln!(
        s,
        "\nimage encoder  {} ({}), cameras {:?}",
        e.kind, e.precision, e.cameras
    )?;
    writeln!(
        s,
        "  input {:?} {} 3x{}x{}, resize {:?} ({:?}), scale {}, mean {:?}, std {:?}",
        e.input, e.layout, e.height, e.width, e.resize, e.filter, e.scale, e.mean, e.std
    )?;
    writeln!(s, "  output {:?} [{}]", e.output, e.output_dim)?;

    writeln!(
        s,
        "\ntext  {} ({}), dim {}",
        m.text.source, m.text.encoder, m.text.dim
    )?;
    for t in &m.text.tasks {
        let mark = if t.text == m.text.default_task {
            " (default)"
        } else {
            ""
        };
        writeln!(s, "  task {:?}{mark}", t.text)?;
    }

    writeln!(
        s,
        "\nstate  {} joints, padded to {}: {}",
        m.state.joint_names.len(),
        m.state.model_dim,
        m.state.joint_names.join(", ")
    )?;

    let w = &bundle.window;
    writeln!(
        s,
        "\nwindow  {:?}, {} frames at {} fps, offsets {:?}, readout {}, anchor_first {}",
        w.layout,
        w.len(),
        w.fps,
        w.offsets(),
        w.readout(),
        w.anchor_first()
    )?;
    writeln!(
        s,
        "  output delay {} frames ({:.3} s), reaches back {} frames",
        w.delay(),
        w.delay() as f64 / w.fps,
        w.reach_back()
    )?;

    writeln!(
        s,
        "\nmodel  hidden {} layers {} heads {}",
        m.model.hidden_dim, m.model.num_layers, m.model.num_heads
    )?;
    for h in &bundle.heads {
        writeln!(s, "  head {} ({} stages)", h.kind, h.num_stages())?;
        for (i, name) in h.stage_names.iter().enumerate() {
            let b = h.breakpoints.as_slice();
            writeln!(
                s,
                "    {i:>2} {name:<24} progress {:.4} .. {:.4}",
                b[i],
                b[i + 1]
            )?;
        }
    }

    writeln!(s, "\nfiles")?;
    let f = &e.file;
    writeln!(
        s,
        "  {:<24} {:>12} bytes  sha256 {}",
        f.path, f.bytes, f.sha256
    )?;
    for (p, files) in &m.precision {
        for f in [
            Some(&files.stage),
            Some(&files.subtask),
            files.image_encoder.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            writeln!(
                s,
                "  {:<24} {:>12} bytes  sha256 {}  ({p})",
                f.path, f.bytes, f.sha256
            )?;
        }
    }

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
        "\ntensors (as declared in the ONNX files; B and T are bound at load), and where each graph runs"
    )?;
    for p in bundle.precisions() {
        let encoder = ImageEncoder::load_with(bundle, backend, p, 1)?;
        let rm = RewardModel::load_with(bundle, backend, p)?;
        write_graph(&mut s, p.as_str(), encoder.graph())?;
        write_graph(&mut s, p.as_str(), rm.stage_graph())?;
        write_graph(&mut s, p.as_str(), rm.subtask_graph())?;
    }
    Ok(s)
}

fn write_graph(s: &mut String, precision: &str, graph: &Graph) -> std::fmt::Result {
    let file = graph
        .path()
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    writeln!(s, "  {file} ({precision}) on {}", graph.provider())?;
    let sig = graph.signature();
    for t in &sig.inputs {
        writeln!(s, "    in  {:<16} {}", t.name, t.describe())?;
    }
    for t in &sig.outputs {
        writeln!(s, "    out {:<16} {}", t.name, t.describe())?;
    }
    Ok(())
}

/// Nested provenance tables, one dotted key per line.
fn write_value(s: &mut String, key: &str, v: &toml::Value) -> std::fmt::Result {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                write_value(s, &format!("{key}.{k}"), v)?;
            }
            Ok(())
        }
        toml::Value::String(text) => writeln!(s, "  {key:<17} {text}"),
        other => writeln!(s, "  {key:<17} {other}"),
    }
}
