//! Loading and validating a policy bundle (`kind = "policy"`): the rules of
//! models/tools/README.md ("Policy bundles") and `policy_export/manifest.py`,
//! plus the file hashes, with the reward bundles' error style: every refusal
//! names the manifest field, the expected and the found value.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::manifest::{ImageInputSpec, PolicyManifest, POLICY_SCHEMA_VERSION};
use super::normalize::Normalization;
use crate::bundle::{check_file_hash, read_manifest, BundleError, BundleKind, Precision};

type Result<T> = std::result::Result<T, BundleError>;

/// How the stepper turns chunks into one action per tick (LeRobot's two
/// `select_action` modes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StepperMode {
    /// The action queue: run the model when the queue is empty, execute the
    /// first `n_action_steps` rows of its chunk, one per tick.
    Queue { n_action_steps: usize },
    /// ACT's temporal ensembling: run the model every tick and average the
    /// predictions for each tick with weights `exp(-coeff * i)`.
    TemporalEnsemble { coeff: f32 },
}

impl StepperMode {
    /// Checks the mode against the chunk size (LeRobot's rules: `1 <=
    /// n_action_steps <= chunk_size`; a finite coefficient).
    pub fn check(&self, chunk_size: usize, field: &str) -> Result<()> {
        match *self {
            StepperMode::Queue { n_action_steps }
                if !(1..=chunk_size).contains(&n_action_steps) =>
            {
                Err(BundleError::mismatch(
                    format!("{field}.n_action_steps"),
                    format!("1..={chunk_size} (chunk_size)"),
                    n_action_steps,
                ))
            }
            StepperMode::TemporalEnsemble { coeff } if !coeff.is_finite() => {
                Err(BundleError::mismatch(
                    format!("{field}.temporal_ensemble_coeff"),
                    "a finite value",
                    coeff,
                ))
            }
            _ => Ok(()),
        }
    }
}

/// The joint-state input: names (matched against JointState by name) and
/// its normalisation.
#[derive(Debug, Clone)]
pub struct StateInput {
    pub tensor: String,
    pub names: Vec<String>,
    pub normalization: Normalization,
}

/// A vector input without names (`observation.environment_state`).
#[derive(Debug, Clone)]
pub struct VectorInput {
    pub tensor: String,
    pub len: usize,
    pub normalization: Normalization,
}

/// One camera input of the graph.
#[derive(Debug, Clone)]
pub struct CameraInput {
    /// The robot camera it comes from.
    pub camera: String,
    pub tensor: String,
    /// The model's input size.
    pub height: u32,
    pub width: u32,
    /// The camera resolution the policy was trained with.
    pub source_height: u32,
    pub source_width: u32,
    pub pixel_divisor: f32,
    /// Per channel (R, G, B).
    pub normalization: Normalization,
}

/// The action the graph predicts.
#[derive(Debug, Clone)]
pub struct ActionOutput {
    pub tensor: String,
    pub names: Vec<String>,
    pub units: Vec<String>,
    pub normalization: Normalization,
}

/// A loaded, validated policy bundle. Paths are absolute.
#[derive(Debug, Clone)]
pub struct PolicyBundle {
    pub dir: PathBuf,
    pub manifest: PolicyManifest,
    /// The mode the bundle states (a node may choose another, see
    /// [`StepperMode::check`]).
    pub mode: StepperMode,
    pub chunk_size: usize,
    pub state: Option<StateInput>,
    pub environment_state: Option<VectorInput>,
    pub cameras: Vec<CameraInput>,
    pub action: ActionOutput,
}

impl PolicyBundle {
    /// Reads and validates `dir/bundle.toml` and the files it names. A
    /// reward bundle is refused, saying so.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let (dir, path, text) = read_manifest(dir.as_ref())?;
        BundleKind::Policy.expect(BundleKind::of_text(&path, &text)?, &path)?;
        let manifest: PolicyManifest = toml::from_str(&text).map_err(|e| BundleError::Parse {
            path: path.clone(),
            message: e.to_string(),
        })?;
        validate(dir, manifest)
    }

    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// Control rate in Hz (one action per tick).
    pub fn fps(&self) -> f64 {
        self.manifest.policy.fps
    }

    pub fn action_dim(&self) -> usize {
        self.action.names.len()
    }

    /// The precisions the bundle has graphs for (fp32 always).
    pub fn precisions(&self) -> Vec<Precision> {
        [Precision::Fp32, Precision::Int8]
            .into_iter()
            .filter(|p| self.manifest.precision.contains_key(p.as_str()))
            .collect()
    }

    /// The graph file of `precision` and the manifest key naming it.
    pub fn model_file(&self, precision: Precision) -> Option<(PathBuf, String)> {
        let f = self.manifest.precision.get(precision.as_str())?;
        Some((
            self.dir.join(&f.path),
            format!("precision.{precision}.path"),
        ))
    }

    /// Action limits as the bundle states them (lower, upper, max step per
    /// tick), in action units and `action.names` order.
    pub fn limits(&self) -> (&[f32], &[f32], &[f32]) {
        let l = &self.manifest.action.limits;
        (&l.lower, &l.upper, &l.max_step)
    }
}

fn expect_str(field: &str, expected: &str, found: &str) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(BundleError::mismatch(
            field,
            format!("{expected:?}"),
            format!("{found:?}"),
        ))
    }
}

fn expect_len(field: &str, expected: usize, found: usize, what: &str) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(BundleError::mismatch(
            field,
            format!("{expected} values ({what})"),
            format!("{found} values"),
        ))
    }
}

fn unique_names(field: &str, names: &[String]) -> Result<()> {
    if names.is_empty() {
        return Err(BundleError::mismatch(
            field,
            "at least one name",
            "an empty list",
        ));
    }
    let mut seen = HashSet::new();
    if let Some(dup) = names.iter().find(|n| !seen.insert(n.as_str())) {
        return Err(BundleError::mismatch(
            field,
            "unique names",
            format!("{dup:?} twice"),
        ));
    }
    Ok(())
}

fn check_provenance(p: &toml::Table) -> Result<()> {
    for key in [
        "script",
        "export_command",
        "source_checkpoint",
        "created_utc",
        "exporter",
    ] {
        match p.get(key) {
            Some(toml::Value::String(_)) => {}
            other => {
                return Err(BundleError::mismatch(
                    format!("provenance.{key}"),
                    "a string",
                    other.map_or("no such key".to_string(), |v| v.to_string()),
                ))
            }
        }
    }
    match p.get("libraries") {
        Some(toml::Value::Table(_)) => Ok(()),
        other => Err(BundleError::mismatch(
            "provenance.libraries",
            "a table of library versions",
            other.map_or("no such key".to_string(), |v| v.to_string()),
        )),
    }
}

fn camera(i: usize, c: &ImageInputSpec) -> Result<CameraInput> {
    let f = |k: &str| format!("observation.images[{i}].{k}");
    if c.camera.is_empty() {
        return Err(BundleError::mismatch(f("camera"), "a camera name", "\"\""));
    }
    if c.channels != 3 {
        return Err(BundleError::mismatch(f("channels"), 3, c.channels));
    }
    expect_str(&f("layout"), "NCHW", &c.layout)?;
    expect_str(&f("color"), "RGB", &c.color)?;
    expect_str(&f("resize"), "stretch", &c.resize)?;
    expect_str(&f("filter"), "bilinear", &c.filter)?;
    if !c.antialias {
        return Err(BundleError::mismatch(
            f("antialias"),
            "true (the runtime resamples with torchvision's antialiased bilinear filter)",
            false,
        ));
    }
    for (key, v) in [
        ("height", c.height),
        ("width", c.width),
        ("source_height", c.source_height),
        ("source_width", c.source_width),
    ] {
        if v == 0 {
            return Err(BundleError::mismatch(f(key), "a size > 0", v));
        }
    }
    if !(c.pixel_divisor.is_finite() && c.pixel_divisor > 0.0) {
        return Err(BundleError::mismatch(
            f("pixel_divisor"),
            "a finite value > 0 (255)",
            c.pixel_divisor,
        ));
    }
    Ok(CameraInput {
        camera: c.camera.clone(),
        tensor: c.tensor.clone(),
        height: c.height,
        width: c.width,
        source_height: c.source_height,
        source_width: c.source_width,
        pixel_divisor: c.pixel_divisor,
        normalization: Normalization::new(&c.normalization, 3, &f("normalization"))?,
    })
}

fn validate(dir: PathBuf, m: PolicyManifest) -> Result<PolicyBundle> {
    if m.schema_version != POLICY_SCHEMA_VERSION {
        return Err(BundleError::mismatch(
            "schema_version",
            POLICY_SCHEMA_VERSION,
            m.schema_version,
        ));
    }
    expect_str("kind", "policy", &m.kind)?;
    check_provenance(&m.provenance)?;

    let p = &m.policy;
    expect_str("policy.type", "act", &p.policy_type)?;
    expect_str("policy.stepper_space", "normalized", &p.stepper_space)?;
    expect_str("policy.latent", "zero", &p.latent)?;
    if !(p.fps.is_finite() && p.fps > 0.0) {
        return Err(BundleError::mismatch(
            "policy.fps",
            "a rate in Hz > 0",
            p.fps,
        ));
    }
    if p.chunk_size == 0 {
        return Err(BundleError::mismatch("policy.chunk_size", ">= 1", 0));
    }
    let mode = match p.temporal_ensemble_coeff {
        None => StepperMode::Queue {
            n_action_steps: p.n_action_steps,
        },
        Some(coeff) => {
            if p.n_action_steps != 1 {
                return Err(BundleError::mismatch(
                    "policy.n_action_steps",
                    "1 with temporal_ensemble_coeff (LeRobot's rule)",
                    p.n_action_steps,
                ));
            }
            StepperMode::TemporalEnsemble { coeff }
        }
    };
    StepperMode::Queue {
        n_action_steps: p.n_action_steps,
    }
    .check(p.chunk_size, "policy")?;
    mode.check(p.chunk_size, "policy")?;

    let a = &m.action;
    unique_names("action.names", &a.names)?;
    let n = a.names.len();
    expect_len("action.units", n, a.units.len(), "one per action name")?;
    let action = ActionOutput {
        tensor: a.tensor.clone(),
        names: a.names.clone(),
        units: a.units.clone(),
        normalization: Normalization::new(&a.normalization, n, "action.normalization")?,
    };
    let l = &a.limits;
    for (key, v) in [
        ("lower", &l.lower),
        ("upper", &l.upper),
        ("max_step", &l.max_step),
    ] {
        let field = format!("action.limits.{key}");
        expect_len(&field, n, v.len(), "one per action name")?;
        if let Some((i, x)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
            return Err(BundleError::mismatch(
                format!("{field}[{i}]"),
                "a finite value",
                x,
            ));
        }
    }
    for i in 0..n {
        if l.lower[i] >= l.upper[i] {
            return Err(BundleError::mismatch(
                format!("action.limits.upper[{i}] ({})", a.names[i]),
                format!("> lower {}", l.lower[i]),
                l.upper[i],
            ));
        }
        if l.max_step[i] <= 0.0 {
            return Err(BundleError::mismatch(
                format!("action.limits.max_step[{i}] ({})", a.names[i]),
                "> 0",
                l.max_step[i],
            ));
        }
    }

    let o = &m.observation;
    let mut tensors: Vec<&str> = Vec::new();
    let state = match &o.state {
        None => None,
        Some(s) => {
            unique_names("observation.state.names", &s.names)?;
            let want = vec![1, s.names.len()];
            if s.shape != want {
                return Err(BundleError::mismatch(
                    "observation.state.shape",
                    format!("{want:?} (batch 1, one value per name)"),
                    format!("{:?}", s.shape),
                ));
            }
            tensors.push(&s.tensor);
            Some(StateInput {
                tensor: s.tensor.clone(),
                names: s.names.clone(),
                normalization: Normalization::new(
                    &s.normalization,
                    s.names.len(),
                    "observation.state.normalization",
                )?,
            })
        }
    };
    let environment_state = match &o.environment_state {
        None => None,
        Some(e) => {
            let len = match e.shape.as_slice() {
                [1, len] if *len > 0 => *len,
                other => {
                    return Err(BundleError::mismatch(
                        "observation.environment_state.shape",
                        "[1, E] with E > 0",
                        format!("{other:?}"),
                    ))
                }
            };
            tensors.push(&e.tensor);
            Some(VectorInput {
                tensor: e.tensor.clone(),
                len,
                normalization: Normalization::new(
                    &e.normalization,
                    len,
                    "observation.environment_state.normalization",
                )?,
            })
        }
    };
    let mut cameras: Vec<CameraInput> = Vec::with_capacity(o.images.len());
    for (i, c) in o.images.iter().enumerate() {
        let cam = camera(i, c)?;
        if cameras.iter().any(|k| k.camera == cam.camera) {
            return Err(BundleError::mismatch(
                format!("observation.images[{i}].camera"),
                "one entry per camera",
                format!("{:?} twice", cam.camera),
            ));
        }
        tensors.push(&c.tensor);
        cameras.push(cam);
    }
    if cameras.is_empty() && environment_state.is_none() {
        return Err(BundleError::mismatch(
            "observation.images",
            "at least one image or an environment state (ACT needs one)",
            "neither",
        ));
    }

    let g = &m.graph;
    if g.batch != 1 {
        return Err(BundleError::mismatch("graph.batch", 1, g.batch));
    }
    if g.opset <= 0 {
        return Err(BundleError::mismatch(
            "graph.opset",
            "an ONNX opset > 0",
            g.opset,
        ));
    }
    if g.inputs != tensors {
        return Err(BundleError::mismatch(
            "graph.inputs",
            format!("{tensors:?} (state, environment state, images, in order)"),
            format!("{:?}", g.inputs),
        ));
    }
    let mut seen = HashSet::new();
    if let Some(dup) = g.inputs.iter().find(|t| !seen.insert(t.as_str())) {
        return Err(BundleError::mismatch(
            "graph.inputs",
            "distinct tensor names",
            format!("{dup:?} twice"),
        ));
    }
    expect_str("graph.output", &a.tensor, &g.output)?;
    let want = vec![1, p.chunk_size, n];
    if g.output_shape != want {
        return Err(BundleError::mismatch(
            "graph.output_shape",
            format!("{want:?} ([1, chunk_size, action dim])"),
            format!("{:?}", g.output_shape),
        ));
    }

    if !m.precision.contains_key("fp32") {
        return Err(BundleError::mismatch(
            "precision.fp32",
            "a [precision.fp32] table",
            "none",
        ));
    }
    for (key, f) in &m.precision {
        if Precision::parse(key).is_none() {
            return Err(BundleError::mismatch(
                format!("precision.{key}"),
                "fp32 or int8",
                key,
            ));
        }
        check_file_hash(
            &dir,
            &format!("precision.{key}"),
            &f.path,
            f.bytes,
            &f.sha256,
        )?;
    }

    Ok(PolicyBundle {
        dir,
        mode,
        chunk_size: p.chunk_size,
        state,
        environment_state,
        cameras,
        action,
        manifest: m,
    })
}
