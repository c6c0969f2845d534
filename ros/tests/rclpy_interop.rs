//! Interop with a real ROS 2 stack: rclpy (ROS 2 Kilted) on rmw_fastrtps_cpp,
//! i.e. Fast DDS, ROS 2's default middleware (tests/interop/rclpy_peer.py,
//! installed by tests/interop/setup_rclpy.sh). Loopback only: the peer runs
//! with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and a Fast DDS profile that
//! whitelists 127.0.0.1; sarm with `interfaces = ["127.0.0.1"]`.
//!
//! - rclpy publishes the camera (SensorDataQoS, as camera drivers do) and
//!   joints (reliable) of a bag into `sarm run`, and receives its Progress
//!   and EpisodeEvent: the same as `sarm label` on that bag.
//! - `sarm replay` reaches an rclpy subscriber: every message, byte for byte,
//!   in order, and a clean exit logs no ERROR.
//! - rclpy's graph shows sarm's endpoints and no `/clock` reader of the wrong
//!   type (ros2-client's spinner subscribed `builtin_interfaces/msg/Time`).
//! - rclpy, as a robot's controller, arms the policy with
//!   sarm_msgs/PolicyControl and receives its commands as
//!   trajectory_msgs/JointTrajectory (joint_trajectory_controller), as
//!   std_msgs/Float64MultiArray (forward_command_controller) and as
//!   sensor_msgs/JointState (a position command), and the
//!   PolicyEvents: armed, then a fault once its inputs stop.
//! - A Fast DDS participant that also advertises this machine's LAN address
//!   gets nothing sent there from a `sarm replay` restricted to 127.0.0.1
//!   (every sendto/sendmsg traced with strace).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::Peer;
use sarm_ros::bag::read_bag;
use sarm_ros::dds::{DdsConfig, DdsNode, TopicQos};
use sarm_ros::msg::{EpisodeEvent, JointState, Progress};
use serde_json::Value;
use sha2::{Digest, Sha256};

const CAMERA: &str = "/camera/top/image_raw/compressed";
const JOINTS: &str = "/joint_states";

/// One at a time: the node is CPU-bound, and the others time discovery.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn bag() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/label/bag")
}

fn tmp(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sarm-rclpy-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `sarm label` on the bag, as Progress messages keyed by (frame, head).
fn labelled(dir: &Path) -> BTreeMap<(i64, String), Progress> {
    let msgs = common::labelled_progress(&bag(), &root().join("models/sarm-test"), dir);
    assert!(msgs.len() >= 36);
    msgs
}

/// One recorded message as a peer may receive it: SHA-256 and length of
/// the bag's raw CDR, and of the same bytes padded with zeros to a multiple
/// of 4 (RustDDS pads a serialized payload to 4-byte alignment; Fast DDS
/// then hands the padding to rclpy as part of the message).
#[derive(Debug, Clone, PartialEq)]
struct Recorded {
    exact: (String, usize),
    padded: (String, usize),
}

impl Recorded {
    fn of(data: &[u8]) -> Self {
        let mut padded = data.to_vec();
        padded.resize(data.len().next_multiple_of(4), 0);
        Recorded {
            exact: (hex(&Sha256::digest(data)), data.len()),
            padded: (hex(&Sha256::digest(&padded)), padded.len()),
        }
    }

    /// The received bytes are these, or these padded to 4 bytes.
    fn matches(&self, got: &(String, usize)) -> bool {
        *got == self.exact || *got == self.padded
    }
}

/// The bag's messages per topic, in order.
fn recorded() -> BTreeMap<String, Vec<Recorded>> {
    let mut out: BTreeMap<String, Vec<Recorded>> = BTreeMap::new();
    read_bag(&bag(), |m| {
        out.entry(m.topic.to_string())
            .or_default()
            .push(Recorded::of(m.data))
    })
    .unwrap();
    assert!(out[CAMERA].len() > 10 && out[JOINTS].len() > 10);
    out
}

/// Where `got` differs from the recording (index, what was expected, what came).
fn differences(got: &[(String, usize)], expected: &[Recorded]) -> Vec<String> {
    got.iter()
        .zip(expected)
        .enumerate()
        .filter(|(_, (g, e))| !e.matches(g))
        .map(|(i, (g, e))| {
            format!(
                "#{i}: expected {:?} (or padded {:?}), got {g:?}",
                e.exact, e.padded
            )
        })
        .collect()
}

/// A child killed if the test fails before stopping it (a node left running
/// on the test's DDS domain would publish into the next run).
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Stops a child with SIGINT, as Ctrl-C or `ros2 launch` does.
fn interrupt(child: &Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn error_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains("ERROR")).collect()
}

/// `sarm run --config CFG`, its log in DIR/node.log: a pipe nobody reads
/// while the node runs would fill and block it.
fn start_node(cfg: &Path, dir: &Path) -> KillOnDrop {
    let log = std::fs::File::create(dir.join("node.log")).unwrap();
    KillOnDrop(Some(
        Command::new(env!("CARGO_BIN_EXE_sarm"))
            .args(["run", "--config"])
            .arg(cfg)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap(),
    ))
}

#[test]
fn rclpy_feeds_the_node_and_gets_what_label_gives() {
    let _serial = serial();
    let dir = tmp("node");
    let expected = labelled(&dir);
    let domain = 61u16;
    let cfg = dir.join("node.toml");
    std::fs::write(
        &cfg,
        format!(
            "robot_id = \"e2e\"\nbundle = \"{}\"\n\n[episode]\ninactivity_s = 2.0\n\n\
             [transport]\nkind = \"dds\"\ndomain_id = {domain}\ninterfaces = [\"127.0.0.1\"]\n\n\
             [outputs]\ntrainer_link = false\n",
            root().join("models/sarm-test").display()
        ),
    )
    .unwrap();
    let mut node = start_node(&cfg, &dir);
    // 0.1x: slow enough for a debug build on a busy 2-core machine to score
    // every frame (the node drops stale frames when it cannot keep up).
    let peer = Peer::spawn(
        "rclpy_peer.py",
        &[
            "feed-node",
            &domain.to_string(),
            bag().to_str().unwrap(),
            "0.1",
        ],
    );
    let mut published = None;
    let mut got = BTreeMap::new();
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        assert!(Instant::now() < deadline, "rclpy peer: no \"end\" in 150 s");
        let Some(line) = peer.line(Duration::from_secs(1)) else {
            continue;
        };
        if line == "end" {
            break;
        }
        if let Some(n) = line.strip_prefix("published ") {
            published = Some(n.parse::<usize>().unwrap());
            continue;
        }
        let v: Value = serde_json::from_str(&line).unwrap();
        if let Some(p) = v.get("progress") {
            let p: Progress = serde_json::from_value(p.clone()).unwrap();
            got.insert((p.frame_index, p.head.clone()), p);
        } else if let Some(e) = v.get("episode") {
            events.push(serde_json::from_value::<EpisodeEvent>(e.clone()).unwrap());
        }
    }
    drop(peer);
    let node = node.0.take().unwrap();
    interrupt(&node);
    let out = node.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "sarm run failed: {}",
        std::fs::read_to_string(dir.join("node.log")).unwrap_or_default()
    );

    assert_eq!(
        published,
        Some(108),
        "the bag has 36 frames and 72 joint states"
    );
    let keys = |m: &BTreeMap<(i64, String), Progress>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        keys(&got),
        keys(&expected),
        "scored frames differ from sarm label's"
    );
    for (k, e) in &expected {
        let g = &got[k];
        assert_eq!((g.stage, g.episode_index), (e.stage, 0), "{k:?}");
        assert_eq!(g.header.stamp, e.header.stamp, "{k:?}: stamp");
        for (name, a, b) in [
            ("progress", g.progress, e.progress),
            ("stage_progress", g.stage_progress, e.stage_progress),
            ("stage_confidence", g.stage_confidence, e.stage_confidence),
        ] {
            assert!((a - b).abs() <= 1e-6, "{k:?}: {name} {a} vs label {b}");
        }
        assert_eq!(g.robot_id, "e2e");
    }
    let end = events
        .iter()
        .find(|e| e.event != 0)
        .unwrap_or_else(|| panic!("no end/abort event; got {events:?}"));
    assert_eq!(end.frames, 36, "{end:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `sarm replay` over DDS on `domain`, restricted to 127.0.0.1, with the
/// given command prefix (e.g. strace); returns its stderr.
fn replay(domain: u16, prefix: &[&str]) -> String {
    let sarm = env!("CARGO_BIN_EXE_sarm");
    let mut argv: Vec<&str> = prefix.to_vec();
    argv.push(sarm);
    let domain = domain.to_string();
    let bag = bag();
    argv.extend([
        "replay",
        bag.to_str().unwrap(),
        "--transport",
        "dds",
        "--domain-id",
        &domain,
        "--interface",
        "127.0.0.1",
        "--rate",
        "2",
        "--startup-delay",
        "3",
    ]);
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "sarm replay failed:\n{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("{JOINTS}: 72 published")),
        "{stdout}"
    );
    stderr
}

/// What the peer received per topic, in arrival order.
fn collected(peer: &Peer) -> BTreeMap<String, Vec<(String, usize)>> {
    let line = peer
        .line(Duration::from_secs(100))
        .expect("rclpy peer printed nothing in 100 s");
    serde_json::from_str(&line).unwrap()
}

#[test]
fn replay_reaches_rclpy_every_message_byte_identical_in_order_and_exits_cleanly() {
    let _serial = serial();
    let expected = recorded();
    let domain = 62u16;
    let peer = Peer::spawn(
        "rclpy_peer.py",
        &[
            "collect-raw",
            &domain.to_string(),
            &expected[CAMERA].len().to_string(),
            &expected[JOINTS].len().to_string(),
        ],
    );
    assert_eq!(peer.line(Duration::from_secs(30)).as_deref(), Some("ready"));
    let stderr = replay(domain, &[]);
    let got = collected(&peer);
    for topic in [CAMERA, JOINTS] {
        assert_eq!(
            got[topic].len(),
            expected[topic].len(),
            "{topic}: message count"
        );
        assert_eq!(
            differences(&got[topic], &expected[topic]),
            Vec::<String>::new(),
            "{topic}: CDR bytes or order differ"
        );
    }
    assert_eq!(
        error_lines(&stderr),
        Vec::<&str>::new(),
        "a clean exit logged errors:\n{stderr}"
    );
}

#[test]
fn rclpy_graph_shows_our_endpoints_and_no_stray_clock_reader() {
    let _serial = serial();
    let domain = 63u16;
    let mut node = DdsNode::new(&DdsConfig {
        domain_id: domain,
        interfaces: vec!["127.0.0.1".parse().unwrap()],
        node_name: "sarm_graph_probe".into(),
        namespace: "/".into(),
    })
    .unwrap();
    let _progress = node
        .publisher::<Progress>("/sarm/progress", TopicQos::Reliable { depth: 10 })
        .unwrap();
    let _joints = node
        .subscribe::<JointState>(JOINTS, TopicQos::SensorData)
        .unwrap();
    let peer = Peer::spawn(
        "rclpy_peer.py",
        &[
            "graph",
            &domain.to_string(),
            "sarm_graph_probe",
            "/sarm/progress",
        ],
    );
    let line = peer
        .line(Duration::from_secs(60))
        .expect("rclpy did not see sarm_graph_probe in 60 s");
    let graph: Value = serde_json::from_str(&line).unwrap();
    let topics = &graph["topics"];
    // The graph sees this participant's endpoints...
    assert_eq!(
        topics["/sarm/progress"],
        serde_json::json!(["sarm_msgs/msg/Progress"]),
        "{graph}"
    );
    assert_eq!(
        topics[JOINTS],
        serde_json::json!(["sensor_msgs/msg/JointState"]),
        "{graph}"
    );
    // ... and no /clock of ros2-client's wrong type.
    let clock_types: Vec<&str> = topics["/clock"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        !clock_types.contains(&"builtin_interfaces/msg/Time"),
        "{graph}"
    );
    for endpoint in graph["clock_subscriptions"].as_array().unwrap() {
        assert_ne!(endpoint["type"], "builtin_interfaces/msg/Time", "{graph}");
    }
}

/// This machine's non-loopback IPv4 addresses (the kernel's local routes).
fn lan_addresses() -> Vec<String> {
    let trie = std::fs::read_to_string("/proc/net/fib_trie").unwrap_or_default();
    let lines: Vec<&str> = trie.lines().collect();
    let mut found: Vec<String> = lines
        .windows(2)
        .filter(|w| w[1].trim() == "/32 host LOCAL")
        .filter_map(|w| w[0].trim().strip_prefix("|-- ").map(str::to_string))
        .filter(|a| !a.starts_with("127."))
        .collect();
    found.sort();
    found.dedup();
    found
}

/// Destination IP addresses of every sendto/sendmsg in an strace log, with counts.
fn destinations(strace_log: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for line in strace_log.lines() {
        if !(line.contains("sendto(") || line.contains("sendmsg(")) {
            continue;
        }
        for marker in ["inet_addr(\"", "inet_pton(AF_INET6, \""] {
            if let Some(rest) = line.split(marker).nth(1) {
                if let Some(addr) = rest.split('"').next() {
                    *out.entry(addr.to_string()).or_default() += 1;
                }
            }
        }
    }
    out
}

#[test]
fn a_loopback_replay_sends_nothing_to_a_fast_dds_peers_lan_address() {
    let _serial = serial();
    let lan = lan_addresses();
    assert!(
        !lan.is_empty(),
        "this test needs a non-loopback IPv4 address on this machine for the Fast DDS peer to advertise"
    );
    let strace = Command::new("strace").arg("-V").output();
    assert!(
        strace.is_ok_and(|o| o.status.success()),
        "strace is missing: run tests/setup.sh (it installs it)"
    );
    let expected = recorded();
    let domain = 64u16;
    let mut peer = Peer::spawn(
        "rclpy_peer.py",
        &[
            "collect-raw",
            &domain.to_string(),
            &expected[CAMERA].len().to_string(),
            &expected[JOINTS].len().to_string(),
            "--lan-too",
        ],
    );
    assert_eq!(peer.line(Duration::from_secs(30)).as_deref(), Some("ready"));
    let dir = tmp("strace");
    let log = dir.join("strace.log");
    replay(
        domain,
        &[
            "strace",
            "-f",
            "-qq",
            "-e",
            "trace=sendto,sendmsg",
            "-o",
            log.to_str().unwrap(),
        ],
    );
    // What reached the peer is reported, not asserted: Fast DDS announces only its
    // non-loopback addresses when it has others, and a participant restricted to
    // 127.0.0.1 does not send there, so this peer gets nothing (RustDDS does not map a
    // same-host peer's LAN locators to loopback as Fast DDS does; see the README).
    peer.close_stdin();
    let got = collected(&peer);
    eprintln!(
        "the Fast DDS peer received {} joint states and {} images over loopback",
        got[JOINTS].len(),
        got[CAMERA].len()
    );
    let sent = destinations(&std::fs::read_to_string(&log).unwrap());
    assert!(
        sent.get("127.0.0.1").copied().unwrap_or(0) > 0,
        "strace saw no datagram to 127.0.0.1: {sent:?}"
    );
    for addr in sent.keys() {
        assert!(
            addr.starts_with("127."),
            "sarm replay --interface 127.0.0.1 sent to {addr}: {sent:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One node run with a policy whose commands take `form`, fed and armed by
/// rclpy: the peer's output lines as JSON.
fn policy_run(domain: u16, form: &str) -> Vec<Value> {
    let dir = tmp(&format!("policy-{form}"));
    let cfg = dir.join("node.toml");
    std::fs::write(
        &cfg,
        format!(
            "robot_id = \"e2e\"\nbundle = \"{}\"\n\n[episode]\ninactivity_s = 2.0\n\n\
             [transport]\nkind = \"dds\"\ndomain_id = {domain}\ninterfaces = [\"127.0.0.1\"]\n\n\
             [outputs]\ntrainer_link = false\n\n[policy]\nbundle = \"{}\"\ncommand = \"{form}\"\n",
            root().join("models/sarm-test").display(),
            root().join("models/act-test").display(),
        ),
    )
    .unwrap();
    let mut node = start_node(&cfg, &dir);
    let policy = format!("--policy={form}");
    let peer = Peer::spawn(
        "rclpy_peer.py",
        &[
            "feed-node",
            &domain.to_string(),
            bag().to_str().unwrap(),
            "1.0",
            &policy,
        ],
    );
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        assert!(Instant::now() < deadline, "rclpy peer: no \"end\" in 150 s");
        let Some(line) = peer.line(Duration::from_secs(1)) else {
            continue;
        };
        if line == "end" {
            break;
        }
        if line.starts_with("published ") {
            continue;
        }
        lines.push(serde_json::from_str::<Value>(&line).unwrap());
    }
    drop(peer);
    let node = node.0.take().unwrap();
    interrupt(&node);
    let out = node.wait_with_output().unwrap();
    let log = std::fs::read_to_string(dir.join("node.log")).unwrap_or_default();
    assert!(out.status.success(), "sarm run failed: {log}");
    let _ = std::fs::remove_dir_all(&dir);
    lines
}

#[test]
fn rclpy_arms_the_policy_and_its_controllers_get_the_commands() {
    let _serial = serial();
    let bundle = sarm_runtime::policy::PolicyBundle::load(root().join("models/act-test")).unwrap();
    let names = bundle.action.names.clone();
    let (lower, upper, _) = bundle.limits();
    for (domain, form) in [
        (64u16, "joint_trajectory"),
        (65, "float64_multi_array"),
        (66, "joint_state"),
    ] {
        let lines = policy_run(domain, form);
        let events: Vec<&Value> = lines.iter().filter_map(|l| l.get("policy_event")).collect();
        let commands: Vec<&Value> = lines.iter().filter_map(|l| l.get("command")).collect();
        assert_eq!(
            events.first().map(|e| e["event"].as_u64()),
            Some(Some(0)),
            "{form}: ARMED first: {events:?}"
        );
        assert!(
            commands.len() >= 20,
            "{form}: {} commands in a 1.2 s episode at 50 Hz",
            commands.len()
        );
        for c in &commands {
            let positions: Vec<f64> = match form {
                "joint_trajectory" => {
                    assert_eq!(c["joint_names"], serde_json::json!(names), "{c}");
                    let points = c["points"].as_array().unwrap();
                    assert_eq!(points.len(), 1);
                    assert_eq!(
                        (
                            &points[0]["time_from_start"]["sec"],
                            &points[0]["time_from_start"]["nanosec"]
                        ),
                        (&serde_json::json!(0), &serde_json::json!(20_000_000)),
                        "one control period ahead"
                    );
                    serde_json::from_value(points[0]["positions"].clone()).unwrap()
                }
                "joint_state" => {
                    assert_eq!(c["name"], serde_json::json!(names), "{c}");
                    serde_json::from_value(c["position"].clone()).unwrap()
                }
                _ => {
                    assert_eq!(c["layout"]["dim"][0]["size"], 14);
                    serde_json::from_value(c["data"].clone()).unwrap()
                }
            };
            assert_eq!(positions.len(), names.len());
            for (j, p) in positions.iter().enumerate() {
                assert!(
                    *p >= lower[j] as f64 && *p <= upper[j] as f64,
                    "{form}: joint {j} {p} outside the limits"
                );
            }
        }
        // The bag ends, its inputs go quiet: a fault with that cause.
        assert!(
            events
                .iter()
                .any(|e| e["event"] == 2 && [3, 4].contains(&e["cause"].as_u64().unwrap_or(0))),
            "{form}: no stale/silent fault after the inputs stopped: {events:?}"
        );
    }
}
