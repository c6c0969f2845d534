//! The `bundle.toml` schema, exactly as written by `models/tools/export_bundle.py`.
//!
//! These types are plain data: parsing only checks syntax and types. Every
//! semantic rule (lengths agree, files exist, hashes match) lives in
//! [`super::validate`], so the error can name the field, the expected and the
//! found value.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The manifest schema this runtime reads.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub schema_version: u32,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub provenance: Provenance,
    pub image_encoder: ImageEncoderSpec,
    pub text: TextSpec,
    pub state: StateSpec,
    pub window: WindowSpecToml,
    pub model: ModelDims,
    pub heads: Heads,
    pub tensors: TensorNames,
    pub precision: BTreeMap<String, PrecisionFiles>,
}

/// What produced the bundle. Free-form beyond the named keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Provenance {
    pub script: String,
    #[serde(default)]
    pub command: String,
    #[serde(default)]
    pub seed: Option<i64>,
    #[serde(default)]
    pub source_checkpoint: String,
    #[serde(default)]
    pub created_utc: String,
    #[serde(default)]
    pub libraries: BTreeMap<String, String>,
    /// Anything else the exporter recorded.
    #[serde(flatten)]
    pub extra: BTreeMap<String, toml::Value>,
}

/// A file of the bundle with its content hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRef {
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeRule {
    /// Resize the shorter side to the target, then centre-crop.
    ShorterSideCenterCrop,
    /// Resize straight to (height, width), ignoring aspect ratio.
    Stretch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeFilter {
    Bilinear,
    Bicubic,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageEncoderSpec {
    pub kind: String,
    pub cameras: Vec<String>,
    pub input: String,
    pub output: String,
    pub layout: String,
    pub height: u32,
    pub width: u32,
    pub resize: ResizeRule,
    pub filter: ResizeFilter,
    pub scale: f32,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub output_dim: usize,
    pub precision: String,
    pub file: FileRef,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextSpec {
    pub source: String,
    #[serde(default)]
    pub encoder: String,
    pub dim: usize,
    pub default_task: String,
    pub tasks: Vec<TaskEmbedding>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskEmbedding {
    pub text: String,
    pub embedding: Vec<f32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSpec {
    pub joint_names: Vec<String>,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub eps: f32,
    pub model_dim: usize,
}

// The window enums live with the window logic; the manifest names them.
pub use crate::window::{ClampRule, WindowLayout};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpecToml {
    pub fps: f64,
    pub n_obs_steps: usize,
    pub frame_gap: usize,
    pub layout: WindowLayout,
    pub offsets: Vec<i64>,
    pub readout: usize,
    #[serde(default)]
    pub anchor_first: bool,
    pub clamp: ClampRule,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelDims {
    pub hidden_dim: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub image_dim: usize,
    pub text_dim: usize,
    pub state_dim: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heads {
    pub sparse: HeadSpec,
    #[serde(default)]
    pub dense: Option<HeadSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadSpec {
    pub stage_names: Vec<String>,
    pub temporal_proportions: Vec<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorNames {
    pub image_features: String,
    pub text_embedding: String,
    pub state: String,
    pub stage_onehot: String,
    pub stage_logits: PerHead,
    pub tau: PerHead,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerHead {
    pub sparse: String,
    #[serde(default)]
    pub dense: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrecisionFiles {
    pub stage: FileRef,
    pub subtask: FileRef,
    /// The image encoder of this precision; `[image_encoder] file` (fp32)
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_encoder: Option<FileRef>,
}
