//! What a bundle is (`kind` in bundle.toml), read before its schema: a
//! reward bundle handed to the policy loader, or the reverse, is refused
//! with an error that says which kind it is and what to do, instead of a
//! list of unknown keys.

use std::fmt;
use std::path::{Path, PathBuf};

use super::BundleError;

/// The kinds of bundle this runtime loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BundleKind {
    /// A SARM reward model (`models/tools/export_bundle.py`): no `kind`
    /// key, or `kind = "reward"`.
    Reward,
    /// A LeRobot policy (`models/tools/export_policy.py`): `kind = "policy"`.
    Policy,
}

impl BundleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BundleKind::Reward => "reward",
            BundleKind::Policy => "policy",
        }
    }

    /// The kind of the bundle in `dir` (reads `dir/bundle.toml` only).
    pub fn of_dir(dir: impl AsRef<Path>) -> Result<Self, BundleError> {
        let (_, path, text) = read_manifest(dir.as_ref())?;
        Self::of_text(&path, &text)
    }

    /// The kind declared by manifest `text` (read from `path`).
    pub fn of_text(path: &Path, text: &str) -> Result<Self, BundleError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| BundleError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        match table.get("kind") {
            None => Ok(BundleKind::Reward),
            Some(toml::Value::String(s)) if s == "reward" => Ok(BundleKind::Reward),
            Some(toml::Value::String(s)) if s == "policy" => Ok(BundleKind::Policy),
            Some(other) => Err(BundleError::mismatch(
                "kind",
                "\"policy\", \"reward\" or no `kind` key (a reward bundle)",
                format!("{other} in {}", path.display()),
            )),
        }
    }

    /// Refuses a bundle of another kind than `self`, naming both.
    pub(crate) fn expect(self, found: BundleKind, path: &Path) -> Result<(), BundleError> {
        if self == found {
            return Ok(());
        }
        let what = |k: BundleKind| match k {
            BundleKind::Reward => {
                "a reward bundle (SARM reward model; no `kind` key or kind = \"reward\")"
            }
            BundleKind::Policy => "a policy bundle (kind = \"policy\", e.g. LeRobot ACT)",
        };
        Err(BundleError::mismatch(
            "kind",
            what(self),
            format!(
                "{} in {}: it cannot be used where a {} model is expected",
                what(found),
                path.display(),
                self.as_str()
            ),
        ))
    }
}

impl fmt::Display for BundleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The bundle folder (absolute), the manifest path and its text.
pub(crate) fn read_manifest(dir: &Path) -> Result<(PathBuf, PathBuf, String), BundleError> {
    let dir = dir.canonicalize().map_err(|source| BundleError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join("bundle.toml");
    let text = std::fs::read_to_string(&path).map_err(|source| BundleError::Io {
        path: path.clone(),
        source,
    })?;
    Ok((dir, path, text))
}
