//! `sarm replay` publishes every message of a bag written by rosbags,
//! unchanged and in order, over DDS (received by Cyclone DDS) and over
//! Zenoh (rmw_zenoh keys).

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sarm_ros::bag::read_bag;
use sarm_ros::msg::{CompressedImage, JointState, RosMessage};
use sarm_ros::qos::TopicQos;
use sarm_ros::zenoh_link::{open_session, RmwNode, RosDistro, ZenohSessionConfig};
use sha2::{Digest, Sha256};

const CAMERA: &str = "/camera/top/image_raw/compressed";
const JOINTS: &str = "/joint_states";

fn bag() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/label/bag")
}

/// The bag's messages per topic, as raw CDR.
fn recorded() -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut out: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    read_bag(&bag(), |m| {
        out.entry(m.topic.to_string())
            .or_default()
            .push(m.data.to_vec())
    })
    .unwrap();
    assert!(out[CAMERA].len() > 10 && out[JOINTS].len() > 10);
    out
}

fn replay(args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_sarm"))
        .arg("replay")
        .arg(bag())
        .args(["--rate", "4"])
        .args(args)
        .stdout(Stdio::piped())
        // A pipe nobody reads while the child runs would fill and block it.
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn finish(child: std::process::Child) {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("{JOINTS}: ")), "{stdout}");
}

/// Collects until both topics have `expected` messages or 60 s pass.
fn collect(
    expected: &BTreeMap<String, Vec<Vec<u8>>>,
    mut poll: impl FnMut(&mut Vec<Vec<u8>>, &mut Vec<Vec<u8>>),
) -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut got: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline
        && (got.get(CAMERA).map_or(0, Vec::len) < expected[CAMERA].len()
            || got.get(JOINTS).map_or(0, Vec::len) < expected[JOINTS].len())
    {
        let (mut c, mut j) = (Vec::new(), Vec::new());
        poll(&mut c, &mut j);
        got.entry(CAMERA.into()).or_default().extend(c);
        got.entry(JOINTS.into()).or_default().extend(j);
    }
    got
}

fn assert_same(expected: &BTreeMap<String, Vec<Vec<u8>>>, got: &BTreeMap<String, Vec<Vec<u8>>>) {
    eprintln!(
        "received: {:?}",
        got.iter().map(|(k, v)| (k, v.len())).collect::<Vec<_>>()
    );
    for topic in [CAMERA, JOINTS] {
        let (e, g) = (
            &expected[topic],
            got.get(topic).cloned().unwrap_or_default(),
        );
        assert_eq!(
            g.len(),
            e.len(),
            "{topic}: received {} of {}",
            g.len(),
            e.len()
        );
        assert!(
            g == *e,
            "{topic}: messages differ from the bag's (or came out of order)"
        );
    }
}

/// Over DDS the receiver is Cyclone DDS (an independent implementation).
#[test]
fn replay_over_dds_reaches_cyclone_complete_and_in_order() {
    let domain = 43u16;
    let mut expected_cam = Vec::new();
    let mut expected_joints = Vec::new();
    read_bag(&bag(), |m| {
        if m.topic == CAMERA {
            let c = CompressedImage::from_cdr(m.data).unwrap();
            let digest: String = Sha256::digest(&c.data)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            expected_cam.push(serde_json::json!([
                c.header.stamp.sec,
                c.header.stamp.nanosec,
                c.format,
                digest
            ]));
        } else if m.topic == JOINTS {
            let j = JointState::from_cdr(m.data).unwrap();
            expected_joints.push(serde_json::json!([
                j.header.stamp.sec,
                j.header.stamp.nanosec,
                j.name,
                j.position
            ]));
        }
    })
    .unwrap();
    let peer = common::Peer::spawn(
        "cyclone_peer.py",
        &[
            "collect-bag",
            &domain.to_string(),
            &expected_cam.len().to_string(),
            &expected_joints.len().to_string(),
        ],
    );
    assert_eq!(peer.line(Duration::from_secs(30)).as_deref(), Some("ready"));
    std::thread::sleep(Duration::from_secs(3));
    let child = replay(&[
        "--transport",
        "dds",
        "--domain-id",
        &domain.to_string(),
        "--interface",
        "127.0.0.1",
        // RustDDS on a loopback-only participant can take several seconds
        // to discover a peer that started before it.
        "--startup-delay",
        "10",
    ]);
    let line = peer
        .line(Duration::from_secs(120))
        .expect("Cyclone printed nothing");
    finish(child);
    let got: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        got["camera"].as_array().unwrap(),
        &expected_cam,
        "camera messages at Cyclone"
    );
    let joints = got["joints"].as_array().unwrap();
    assert_eq!(
        joints.len(),
        expected_joints.len(),
        "joint states at Cyclone"
    );
    for (g, e) in joints.iter().zip(&expected_joints) {
        for i in 0..3 {
            assert_eq!(g[i], e[i], "joint state stamp and names at Cyclone");
        }
        // serde_json parses decimal floats to within one ulp, not exactly.
        let values = |v: &serde_json::Value| -> Vec<f64> {
            v[3].as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        };
        for (a, b) in values(g).iter().zip(values(e)) {
            assert!(
                (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                "position {a} vs {b}"
            );
        }
    }
}

#[test]
fn replay_over_zenoh_delivers_every_message_in_order() {
    let expected = recorded();
    let endpoint = format!("tcp/127.0.0.1:{}", common::free_port());
    let session = open_session(&ZenohSessionConfig::loopback(
        vec![endpoint.clone()],
        vec![],
    ))
    .unwrap();
    let node = RmwNode::new(&session, 0, RosDistro::Jazzy, "/", "replay_check").unwrap();
    let cam = node
        .subscriber::<CompressedImage>(CAMERA, TopicQos::Reliable { depth: 100 }, 1000)
        .unwrap();
    let joints = node
        .subscriber::<JointState>(JOINTS, TopicQos::Reliable { depth: 100 }, 1000)
        .unwrap();
    let child = replay(&[
        "--transport",
        "zenoh",
        "--zenoh-connect",
        &endpoint,
        "--zenoh-no-scouting",
        "--startup-delay",
        "2",
    ]);
    let got = collect(&expected, |c, j| {
        if let Some(s) = cam.recv_timeout(Duration::from_millis(10)).unwrap() {
            c.push(s.msg.to_cdr().unwrap());
        }
        while let Some(s) = cam.try_recv().unwrap() {
            c.push(s.msg.to_cdr().unwrap());
        }
        while let Some(s) = joints.try_recv().unwrap() {
            j.push(s.msg.to_cdr().unwrap());
        }
    });
    finish(child);
    assert_same(&expected, &got);
}
