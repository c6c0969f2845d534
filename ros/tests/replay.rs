//! `sarm replay` publishes every message of a bag written by rosbags,
//! unchanged and in order, over DDS and over Zenoh (rmw_zenoh keys).

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sarm_ros::bag::read_bag;
use sarm_ros::dds::{DdsConfig, DdsNode};
use sarm_ros::msg::{CompressedImage, JointState, RosMessage};
use sarm_ros::qos::TopicQos;
use sarm_ros::zenoh_link::{open_session, RmwNode, RosDistro, ZenohSessionConfig};

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
        .args(["--rate", "4", "--startup-delay", "6"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
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

#[test]
fn replay_over_dds_delivers_every_message_in_order() {
    let expected = recorded();
    let domain = 43u16;
    let mut node = DdsNode::new(&DdsConfig {
        domain_id: domain,
        interfaces: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        node_name: "replay_check".into(),
        namespace: "/".into(),
    })
    .unwrap();
    let qos = TopicQos::Reliable { depth: 100 };
    let mut cam = node.subscribe::<CompressedImage>(CAMERA, qos).unwrap();
    let mut joints = node.subscribe::<JointState>(JOINTS, qos).unwrap();
    let child = replay(&[
        "--transport",
        "dds",
        "--domain-id",
        &domain.to_string(),
        "--interface",
        "127.0.0.1",
    ]);
    let got = collect(&expected, |c, j| {
        if let Some(m) = cam.recv_timeout(Duration::from_millis(10)).unwrap() {
            c.push(m.to_cdr().unwrap());
        }
        while let Some(m) = cam.try_recv().unwrap() {
            c.push(m.to_cdr().unwrap());
        }
        while let Some(m) = joints.try_recv().unwrap() {
            j.push(m.to_cdr().unwrap());
        }
    });
    finish(child);
    assert_same(&expected, &got);
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
