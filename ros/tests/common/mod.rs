//! Shared helpers of the sarm-ros integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Python of the interop environment (tests/setup.sh creates it).
pub fn interop_python() -> PathBuf {
    let py = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/.venv/bin/python");
    assert!(
        py.exists(),
        "{} is missing: run tests/setup.sh (it installs ros/tests/interop/requirements.txt)",
        py.display()
    );
    py
}

/// Runs `tests/interop/<script> <arg>` and returns its stdout; fails the test on error.
pub fn run_python(script: &str, arg: &Path) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(script);
    let out = Command::new(interop_python())
        .arg(script)
        .arg(arg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
