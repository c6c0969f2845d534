//! Model bundles: a folder with `bundle.toml` and the ONNX files it names.
//! This module loads reward (SARM) bundles; [`crate::policy`] loads policy
//! bundles; [`BundleKind`] tells them apart before either schema is read.
//!
//! [`Bundle::load`] parses the manifest, checks every rule that can be checked
//! without running a model (lengths, ranges, file presence, content hashes)
//! and yields typed, validated specs. Tensor names and shapes are checked when
//! the ONNX graphs are loaded ([`crate::backend`]), with the same error type.

mod error;
mod kind;
pub mod manifest;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub use error::BundleError;
pub use kind::BundleKind;
pub use manifest::Manifest;

pub(crate) use kind::read_manifest;
pub(crate) use validate::check_file_hash;

use crate::progress::Breakpoints;
use crate::window::WindowSpec;

/// The two reward heads of a SARM model.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum HeadKind {
    /// High-level stages.
    Sparse,
    /// Fine-grained stages.
    Dense,
}

impl HeadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HeadKind::Sparse => "sparse",
            HeadKind::Dense => "dense",
        }
    }
}

impl std::str::FromStr for HeadKind {
    type Err = String;
    /// `sparse` or `dense`, as the wire (`Progress.head`) and LeRobot name them.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sparse" => Ok(HeadKind::Sparse),
            "dense" => Ok(HeadKind::Dense),
            other => Err(format!("expected sparse or dense, found {other:?}")),
        }
    }
}

impl fmt::Display for HeadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Numeric precision of the reward transformers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp32,
    Int8,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "fp32" => Some(Precision::Fp32),
            "int8" => Some(Precision::Int8),
            _ => None,
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One validated head: its stages and the breakpoints of global progress.
#[derive(Debug, Clone)]
pub struct Head {
    pub kind: HeadKind,
    pub stage_names: Vec<String>,
    pub breakpoints: Breakpoints,
    /// Output tensor names in the stage and subtask graphs.
    pub logits_tensor: String,
    pub tau_tensor: String,
}

impl Head {
    pub fn num_stages(&self) -> usize {
        self.stage_names.len()
    }
}

/// A loaded, validated bundle. Paths are absolute.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub window: WindowSpec,
    pub heads: Vec<Head>,
}

impl Bundle {
    /// Reads and validates `dir/bundle.toml` and the files it names.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, BundleError> {
        validate::load(dir.as_ref())
    }

    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// The file of `role` ("stage" or "subtask") for `precision`, if the bundle has it.
    pub fn reward_file(&self, precision: Precision, role: RewardGraph) -> Option<PathBuf> {
        let files = self.manifest.precision.get(precision.as_str())?;
        let file = match role {
            RewardGraph::Stage => &files.stage,
            RewardGraph::Subtask => &files.subtask,
        };
        Some(self.dir.join(&file.path))
    }

    pub fn precisions(&self) -> Vec<Precision> {
        [Precision::Fp32, Precision::Int8]
            .into_iter()
            .filter(|p| self.manifest.precision.contains_key(p.as_str()))
            .collect()
    }

    /// The image encoder file `precision` runs, and the manifest key that
    /// names it: `precision.<p>.image_encoder` when the bundle has one,
    /// else the fp32 `image_encoder.file`.
    pub fn image_encoder_file(&self, precision: Precision) -> (PathBuf, String) {
        match self
            .manifest
            .precision
            .get(precision.as_str())
            .and_then(|f| f.image_encoder.as_ref())
        {
            Some(f) => (
                self.dir.join(&f.path),
                format!("precision.{precision}.image_encoder"),
            ),
            None => (
                self.dir.join(&self.manifest.image_encoder.file.path),
                "image_encoder.file".to_string(),
            ),
        }
    }

    /// The largest stage count over the heads: the width of `stage_onehot`.
    pub fn max_stages(&self) -> usize {
        self.heads.iter().map(Head::num_stages).max().unwrap_or(0)
    }

    pub fn head(&self, kind: HeadKind) -> Option<&Head> {
        self.heads.iter().find(|h| h.kind == kind)
    }

    /// The precomputed embedding of `task`, or of the default task when `None`.
    pub fn task_embedding(&self, task: Option<&str>) -> Result<&[f32], BundleError> {
        let text = task.unwrap_or(&self.manifest.text.default_task);
        self.manifest
            .text
            .tasks
            .iter()
            .find(|t| t.text == text)
            .map(|t| t.embedding.as_slice())
            .ok_or_else(|| BundleError::Mismatch {
                field: "text.tasks".into(),
                expected: format!("an embedding for task {text:?}"),
                found: format!(
                    "tasks {:?}",
                    self.manifest
                        .text
                        .tasks
                        .iter()
                        .map(|t| &t.text)
                        .collect::<Vec<_>>()
                ),
            })
    }
}

/// The two reward graphs of a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewardGraph {
    Stage,
    Subtask,
}

impl RewardGraph {
    pub fn as_str(self) -> &'static str {
        match self {
            RewardGraph::Stage => "stage",
            RewardGraph::Subtask => "subtask",
        }
    }
}
