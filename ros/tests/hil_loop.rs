//! Hardware-in-the-loop in the README's test command: the MuJoCo ALOHA sim
//! (models/tools/sim/ros_robot.py, a Zenoh peer with rmw_zenoh keys) driven
//! by this build's `sarm run` on loopback, in lockstep on the sim's clock
//! (tests/hil, pytest): the sim's own protocol, two closed-loop episodes
//! whose first action chunks must match LeRobot's own ACT on the same seeds,
//! one of them again over DDS (the sim an rclpy node on Fast DDS), the
//! runner's report, and the fault scenarios with their safety responses.
//!
//! Needs models/tools/.venv with the sim's packages (tests/setup.sh);
//! `SARM_SKIP_EXPORTER_ENV=1`, which skips that environment, skips this test
//! and says so; `SARM_SKIP_RCLPY_ENV=1` (no rclpy venv) leaves out the DDS
//! episode. About 3 minutes on 2 cores.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn hil_closed_loop_and_fault_scenarios() {
    if std::env::var("SARM_SKIP_EXPORTER_ENV").as_deref() == Ok("1") {
        eprintln!("hil_loop: skipped (SARM_SKIP_EXPORTER_ENV=1: no models/tools/.venv)");
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = root.join("models/tools/.venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run tests/setup.sh (or SARM_SKIP_EXPORTER_ENV=1 to skip this test)",
        python.display()
    );
    let mut args = vec!["-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider"];
    if std::env::var("SARM_SKIP_RCLPY_ENV").as_deref() == Ok("1") {
        eprintln!("hil_loop: the DDS episode left out (SARM_SKIP_RCLPY_ENV=1: no rclpy venv)");
        args.extend(["-k", "not dds"]);
    }
    args.push("tests/hil");
    let out = Command::new(&python)
        .args(&args)
        .current_dir(&root)
        .env("SARM_BIN", env!("CARGO_BIN_EXE_sarm"))
        .env("MUJOCO_GL", "egl")
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("running pytest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tests/hil failed:\n{stdout}\n{stderr}"
    );
    // A missing sim package or binary makes pytest skip, not fail: here that is a failure.
    assert!(
        !stdout.contains("skipped"),
        "tests/hil skipped tests (sim packages missing?):\n{stdout}"
    );
    eprintln!("{}", stdout.lines().last().unwrap_or(""));
}
