//! The policy `bundle.toml` schema (`kind = "policy"`, schema_version 1),
//! exactly as `models/tools/export_policy.py` writes it and
//! models/tools/README.md ("Policy bundles") documents it.
//!
//! Plain data: parsing checks syntax, types and unknown keys only; every
//! semantic rule lives in [`super::bundle`], where an error can name the
//! field, the expected and the found value. Floats the exporter wrote as
//! float32 values are read as f32 (TOML's f64, cast), as the schema says.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The policy manifest schema this runtime reads.
pub const POLICY_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyManifest {
    pub schema_version: u32,
    pub kind: String,
    pub name: String,
    pub description: String,
    /// Free-form beyond `script` and `export_command` (checked in validation).
    pub provenance: toml::Table,
    pub policy: PolicySpec,
    pub graph: GraphSpecToml,
    pub observation: ObservationSpec,
    pub action: ActionSpec,
    pub precision: BTreeMap<String, ModelFile>,
}

/// `[policy]`: what the stepper does each control tick.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    #[serde(rename = "type")]
    pub policy_type: String,
    /// Control rate in Hz: one action per tick.
    pub fps: f64,
    pub chunk_size: usize,
    pub n_action_steps: usize,
    /// Present: temporal ensembling with this coefficient; absent: the queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temporal_ensemble_coeff: Option<f32>,
    pub stepper_space: String,
    pub latent: String,
}

/// `[graph]`: the ONNX graph's interface.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphSpecToml {
    pub batch: usize,
    pub opset: i64,
    pub inputs: Vec<String>,
    pub output: String,
    pub output_shape: Vec<usize>,
}

/// `[observation]`: the state, environment state and camera inputs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservationSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StateInputSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_state: Option<VectorInputSpec>,
    #[serde(default)]
    pub images: Vec<ImageInputSpec>,
}

/// `[observation.state]`: joint positions by name.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateInputSpec {
    pub key: String,
    pub tensor: String,
    pub names: Vec<String>,
    pub shape: Vec<usize>,
    pub normalization: NormalizationSpec,
}

/// `[observation.environment_state]`: a vector input without joint names.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorInputSpec {
    pub key: String,
    pub tensor: String,
    pub shape: Vec<usize>,
    pub normalization: NormalizationSpec,
}

/// One `[[observation.images]]` entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageInputSpec {
    pub key: String,
    pub camera: String,
    pub tensor: String,
    pub channels: u32,
    pub height: u32,
    pub width: u32,
    pub layout: String,
    pub color: String,
    pub source_height: u32,
    pub source_width: u32,
    pub resize: String,
    pub filter: String,
    pub antialias: bool,
    pub pixel_divisor: f32,
    pub normalization: NormalizationSpec,
}

/// `[action]`: the command the policy produces.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionSpec {
    pub key: String,
    pub tensor: String,
    pub names: Vec<String>,
    pub units: Vec<String>,
    pub normalization: NormalizationSpec,
    pub limits: LimitsSpec,
}

/// `[action.limits]`, in action units.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    pub lower: Vec<f32>,
    pub upper: Vec<f32>,
    /// Largest change of each joint's command per control tick.
    pub max_step: Vec<f32>,
    pub source: String,
}

/// LeRobot's normalisation modes (`NormalizationMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NormMode {
    MeanStd,
    MinMax,
    Quantiles,
    #[serde(rename = "QUANTILE10")]
    Quantile10,
    Identity,
}

impl NormMode {
    pub fn as_str(self) -> &'static str {
        match self {
            NormMode::MeanStd => "MEAN_STD",
            NormMode::MinMax => "MIN_MAX",
            NormMode::Quantiles => "QUANTILES",
            NormMode::Quantile10 => "QUANTILE10",
            NormMode::Identity => "IDENTITY",
        }
    }

    /// The two stats the mode reads, by key (none for IDENTITY).
    pub fn stats(self) -> &'static [&'static str] {
        match self {
            NormMode::MeanStd => &["mean", "std"],
            NormMode::MinMax => &["min", "max"],
            NormMode::Quantiles => &["q01", "q99"],
            NormMode::Quantile10 => &["q10", "q90"],
            NormMode::Identity => &[],
        }
    }
}

/// A `*.normalization` table: the mode, its stats and LeRobot's eps.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NormalizationSpec {
    pub mode: NormMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<Vec<f32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<Vec<f32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<Vec<f32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Vec<f32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q01: Option<Vec<f32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q99: Option<Vec<f32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q10: Option<Vec<f32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q90: Option<Vec<f32>>,
    pub eps: f32,
}

impl NormalizationSpec {
    /// A stat by key (`"mean"`, `"q01"`, ...), if present.
    pub fn stat(&self, key: &str) -> Option<&[f32]> {
        match key {
            "mean" => self.mean.as_deref(),
            "std" => self.std.as_deref(),
            "min" => self.min.as_deref(),
            "max" => self.max.as_deref(),
            "q01" => self.q01.as_deref(),
            "q99" => self.q99.as_deref(),
            "q10" => self.q10.as_deref(),
            "q90" => self.q90.as_deref(),
            _ => None,
        }
    }

    /// Every stat key the schema knows.
    pub const STAT_KEYS: [&'static str; 8] =
        ["mean", "std", "min", "max", "q01", "q99", "q10", "q90"];
}

/// `[precision.<p>]`: one ONNX graph with its hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
    pub quantized_ops: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activations: Option<String>,
}
