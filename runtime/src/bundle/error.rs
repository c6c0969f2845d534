use std::path::PathBuf;

/// Why a bundle was refused. Every variant names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid bundle manifest: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("bundle field `{field}`: expected {expected}, found {found}")]
    Mismatch {
        field: String,
        expected: String,
        found: String,
    },
    #[error("cannot load ONNX file {path} (`{field}`): {message}")]
    Onnx {
        field: String,
        path: PathBuf,
        message: String,
    },
}

impl BundleError {
    pub(crate) fn mismatch(
        field: impl Into<String>,
        expected: impl std::fmt::Display,
        found: impl std::fmt::Display,
    ) -> Self {
        BundleError::Mismatch {
            field: field.into(),
            expected: expected.to_string(),
            found: found.to_string(),
        }
    }
}

impl From<crate::window::WindowError> for BundleError {
    fn from(e: crate::window::WindowError) -> Self {
        BundleError::Mismatch {
            field: format!("window.{}", e.key),
            expected: e.expected,
            found: e.found,
        }
    }
}
