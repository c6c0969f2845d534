//! The backends every conformance test runs on: tract always, onnxruntime
//! from the library tests/setup.sh installs (or `ORT_DYLIB_PATH`).
//!
//! Shared by the runtime's, the node's and the end-to-end tests
//! (`#[path]`-included), so each golden test runs for every backend x
//! precision the same way. A missing ONNX Runtime library fails the test
//! with what to run, unless `SARM_SKIP_ORT_TESTS=1` opts out explicitly.
#![allow(dead_code)]

use std::path::PathBuf;

use sarm_runtime::backend::{Backend, BackendConfig, BackendKind};
use sarm_runtime::Precision;

/// The ONNX Runtime version tests/setup.sh installs (the pinned wheel).
pub const ORT_VERSION: &str = "1.32.0";

/// Set to 1 to run without the onnxruntime backend (its tests then say so).
pub const SKIP_ORT: &str = "SARM_SKIP_ORT_TESTS";

/// Set to `tract` or `ort` to run one backend only: a slow run (the ARM64
/// goldens under qemu) is split into one process per backend this way.
pub const ONLY_BACKEND: &str = "SARM_TEST_BACKEND";

fn repo_root() -> PathBuf {
    // Every crate of the workspace sits one level below the root.
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The ONNX Runtime library: `ORT_DYLIB_PATH`, else tests/onnxruntime/.
pub fn ort_library() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let p = repo_root().join(format!("tests/onnxruntime/libonnxruntime.so.{ORT_VERSION}"));
    p.is_file().then_some(p)
}

/// The onnxruntime backend (CPU provider, one thread, no spinning), or
/// `None` when explicitly skipped. Panics with what to do when the
/// library is missing.
pub fn ort() -> Option<Backend> {
    if std::env::var(SKIP_ORT).is_ok_and(|v| v == "1") {
        eprintln!("{SKIP_ORT}=1: the onnxruntime backend is NOT tested in this run");
        return None;
    }
    let Some(lib) = ort_library() else {
        panic!(
            "the onnxruntime backend's tests need libonnxruntime.so.{ORT_VERSION}: run tests/setup.sh \
             (installs it into tests/onnxruntime/), or set ORT_DYLIB_PATH; {SKIP_ORT}=1 skips them"
        );
    };
    let config = BackendConfig {
        ort_library: Some(lib),
        ..BackendConfig::of_kind(BackendKind::Ort)
    };
    Some(Backend::new(&config).unwrap_or_else(|e| panic!("setting up onnxruntime: {e}")))
}

/// Every backend under test: tract, then onnxruntime (or the one
/// `SARM_TEST_BACKEND` names).
pub fn all() -> Vec<Backend> {
    match std::env::var(ONLY_BACKEND)
        .ok()
        .filter(|v| !v.is_empty())
        .as_deref()
    {
        None => {
            let mut v = vec![Backend::tract()];
            v.extend(ort());
            v
        }
        Some("tract") => {
            eprintln!("{ONLY_BACKEND}=tract: the onnxruntime backend is NOT tested in this run");
            vec![Backend::tract()]
        }
        Some("ort") => {
            eprintln!("{ONLY_BACKEND}=ort: the tract backend is NOT tested in this run");
            vec![ort().unwrap_or_else(|| {
                panic!("{ONLY_BACKEND}=ort and {SKIP_ORT}=1 leave nothing to test")
            })]
        }
        Some(other) => panic!("{ONLY_BACKEND}={other}: expected tract or ort"),
    }
}

/// Every backend x precision pair under test.
pub fn pairs() -> Vec<(Backend, Precision)> {
    all()
        .into_iter()
        .flat_map(|b| [Precision::Fp32, Precision::Int8].map(|p| (b.clone(), p)))
        .collect()
}

/// One row of a test's tolerance table.
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    pub backend: BackendKind,
    pub precision: Precision,
    /// Largest |value - golden| accepted.
    pub value: f32,
    /// Smallest share of stage argmaxes that must agree with the golden.
    pub agreement: f64,
}

/// The row of `table` for this backend and precision (a missing row is a
/// test bug).
pub fn tolerance(table: &[Tolerance], backend: &Backend, precision: Precision) -> Tolerance {
    *table
        .iter()
        .find(|t| t.backend == backend.kind() && t.precision == precision)
        .unwrap_or_else(|| panic!("no tolerance for {} {precision}", backend.kind()))
}
