//! Shared helpers of the sarm-ros integration tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

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

/// A Python interop peer running in the background (`tests/interop/<script> <args>`).
/// Closing its stdin (dropping `Peer`) tells it to stop; stdout lines arrive on `lines`.
pub struct Peer {
    child: Child,
    pub lines: mpsc::Receiver<String>,
}

impl Peer {
    pub fn spawn(script: &str, args: &[&str]) -> Peer {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/interop")
            .join(script);
        let mut child = Command::new(interop_python())
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Peer { child, lines }
    }

    /// Closes its stdin: it stops what it waits for and reports.
    pub fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    /// Waits for the next stdout line.
    pub fn line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP port free on loopback right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `sarm label` on `bag` with `bundle` (its files in `dir`), as the Progress
/// messages of its MCAP keyed by (frame, head).
pub fn labelled_progress(
    bag: &Path,
    bundle: &Path,
    dir: &Path,
) -> std::collections::BTreeMap<(i64, String), sarm_ros::msg::Progress> {
    use sarm_ros::msg::RosMessage;
    let mcap = dir.join("label.mcap");
    let out = Command::new(env!("CARGO_BIN_EXE_sarm"))
        .arg("label")
        .arg(bag)
        .arg("--bundle")
        .arg(bundle)
        .arg("--out")
        .arg(dir.join("label.parquet"))
        .arg("--mcap")
        .arg(&mcap)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut msgs = std::collections::BTreeMap::new();
    sarm_ros::bag::read_bag(&mcap, |m| {
        let p = sarm_ros::msg::Progress::from_cdr(m.data).unwrap();
        msgs.insert((p.frame_index, p.head.clone()), p);
    })
    .unwrap();
    msgs
}
