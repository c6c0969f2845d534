//! Zenoh interop with an independent implementation: the Zenoh Python API
//! (eclipse-zenoh, tests/interop/zenoh_peer.py) acting as an rmw_zenoh node,
//! with keys, RIHS01 hashes and CDR computed by rosbags, and as a trainer
//! reading the native keys. Loopback TCP only, scouting off.

mod common;

use std::time::{Duration, Instant};

use common::{free_port, Peer};
use sarm_ros::msg::{
    Duration as RosDuration, Header, JointState, JointTrajectory, JointTrajectoryPoint, Progress,
    Time,
};
use sarm_ros::qos::TopicQos;
use sarm_ros::zenoh_link::{
    open_session, NativePublisher, RmwNode, RosDistro, TrainerKeys, ZenohSessionConfig,
};
use serde_json::Value;
use zenoh::Wait;

fn listening_session() -> (zenoh::Session, String) {
    let endpoint = format!("tcp/127.0.0.1:{}", free_port());
    let session = open_session(&ZenohSessionConfig::loopback(
        vec![endpoint.clone()],
        vec![],
    ))
    .unwrap();
    (session, endpoint)
}

fn progress() -> Progress {
    Progress {
        header: Header {
            stamp: Time {
                sec: 1_700_000_001,
                nanosec: 5,
            },
            frame_id: "camera_top".into(),
        },
        robot_id: "aloha-2".into(),
        episode_index: 3,
        frame_index: 99,
        seq: 12,
        head: "sparse".into(),
        stage: 1,
        stage_confidence: 0.5,
        stage_probs: vec![0.25, 0.5, 0.25],
        stage_progress: 0.75,
        progress: 0.375,
        progress_smoothed: 0.25,
        reward: 0.125,
    }
}

/// Publishes until the peer prints a line; returns it as JSON.
fn publish_until_received(peer: &Peer, mut publish: impl FnMut()) -> Value {
    assert_eq!(peer.line(Duration::from_secs(30)).as_deref(), Some("ready"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            Instant::now() < deadline,
            "the Python peer received nothing in 30 s"
        );
        publish();
        if let Some(line) = peer.line(Duration::from_millis(100)) {
            return serde_json::from_str(&line).unwrap();
        }
    }
}

fn rmw_zenoh_node_receives_our_progress(distro: RosDistro, name: &str) {
    let (session, endpoint) = listening_session();
    let node = RmwNode::new(&session, 0, distro, "/", "sarm").unwrap();
    let mut publisher = node
        .publisher::<Progress>("/sarm/progress", TopicQos::Reliable { depth: 10 })
        .unwrap();
    let peer = Peer::spawn("zenoh_peer.py", &["rmw-receive", &endpoint, name]);
    let msg = progress();
    let got = publish_until_received(&peer, || publisher.publish(&msg).unwrap());

    // The key an rmw_zenoh subscriber computes (hash from rosbags) is ours.
    assert_eq!(got["key"], got["expected_key"]);
    assert_eq!(got["key"].as_str(), Some(publisher.key()));
    assert_eq!(got["msg"], serde_json::to_value(&msg).unwrap());
    // rmw_zenoh's attachment: 33 bytes, sequence from 1, our GID.
    assert_eq!(got["attachment_len"], 33);
    assert!(got["seq"].as_i64().unwrap() >= 1);
    let gid: String = publisher.gid().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(got["gid"].as_str(), Some(gid.as_str()));
    let ts = got["source_timestamp"].as_i64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    assert!(
        (now - ts).abs() < 60_000_000_000,
        "source timestamp {ts} is not now"
    );
    // Liveliness: the node and the publisher, in rmw_zenoh's layout.
    let tokens: Vec<&str> = got["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let zid = session.zid().to_string();
    assert!(
        tokens
            .iter()
            .any(|t| t.starts_with(&format!("@ros2_lv/0/{zid}/")) && t.ends_with("/NN/%/%/sarm")),
        "no node token in {tokens:?}"
    );
    let hash = got["key"].as_str().unwrap().rsplit('/').next().unwrap();
    let publisher_suffix =
        format!("/MP/%/%/sarm/%sarm%progress/sarm_msgs::msg::dds_::Progress_/{hash}/::,10:,:,:,,");
    assert!(
        tokens.iter().any(|t| t.ends_with(&publisher_suffix)),
        "no publisher token ending {publisher_suffix} in {tokens:?}"
    );
    drop(publisher);
    drop(node);
    session.close().wait().unwrap();
}

#[test]
fn rmw_zenoh_jazzy_node_receives_our_progress() {
    rmw_zenoh_node_receives_our_progress(RosDistro::Jazzy, "jazzy");
}

#[test]
fn rmw_zenoh_humble_node_receives_our_progress() {
    rmw_zenoh_node_receives_our_progress(RosDistro::Humble, "humble");
}

fn we_receive_rmw_zenoh_joint_states(distro: RosDistro, name: &str) {
    let (session, endpoint) = listening_session();
    let node = RmwNode::new(&session, 0, distro, "/", "sarm").unwrap();
    let sub = node
        .subscriber::<JointState>("/joint_states", TopicQos::SensorData, 4)
        .unwrap();
    let _peer = Peer::spawn("zenoh_peer.py", &["rmw-publish", &endpoint, name]);
    let sample = sub
        .recv_timeout(Duration::from_secs(30))
        .unwrap()
        .expect("no JointState from the Python rmw_zenoh peer in 30 s");
    let k = sample.msg.header.stamp.sec - 200;
    assert!(k >= 0);
    assert_eq!(sample.msg.header.stamp.nanosec, 5);
    assert_eq!(sample.msg.name, ["b", "a"]);
    assert_eq!(sample.msg.position, [k as f64, -1.5]);
    let hash = if distro == RosDistro::Humble {
        "TypeHashNotSupported".to_string()
    } else {
        sarm_ros::type_hash::rihs01::<JointState>()
    };
    assert_eq!(
        sample.key,
        format!("0/joint_states/sensor_msgs::msg::dds_::JointState_/{hash}")
    );
    let att = sample.attachment.expect("attachment");
    assert_eq!(att.sequence_number, k as i64 + 1);
    assert_eq!(att.gid, core::array::from_fn::<u8, 16, _>(|i| i as u8));
    drop(sub);
    drop(node);
    session.close().wait().unwrap();
}

#[test]
fn we_receive_rmw_zenoh_jazzy_joint_states() {
    we_receive_rmw_zenoh_joint_states(RosDistro::Jazzy, "jazzy");
}

#[test]
fn we_receive_rmw_zenoh_humble_joint_states() {
    we_receive_rmw_zenoh_joint_states(RosDistro::Humble, "humble");
}

#[test]
fn trainer_reads_progress_on_the_native_key() {
    let (session, endpoint) = listening_session();
    let keys = TrainerKeys::new("aloha-2").unwrap();
    let mut publisher = NativePublisher::<Progress>::new(&session, keys.progress()).unwrap();
    let peer = Peer::spawn("zenoh_peer.py", &["native-receive", &endpoint, "aloha-2"]);
    let msg = progress();
    let got = publish_until_received(&peer, || publisher.publish(&msg).unwrap());
    assert_eq!(got["key"], "sarm/aloha-2/progress");
    assert_eq!(got["msg"], serde_json::to_value(&msg).unwrap());
    drop(publisher);
    session.close().wait().unwrap();
}

/// A policy's command as trajectory_msgs/JointTrajectory reaches an
/// rmw_zenoh subscriber (a joint_trajectory_controller on rmw_zenoh) on the
/// key it computes, and decodes (rosbags) to the same message.
#[test]
fn rmw_zenoh_controller_receives_our_joint_trajectory() {
    let (session, endpoint) = listening_session();
    let node = RmwNode::new(&session, 0, RosDistro::Jazzy, "/", "sarm").unwrap();
    let mut publisher = node
        .publisher::<JointTrajectory>("/sarm/joint_commands", TopicQos::Reliable { depth: 10 })
        .unwrap();
    let peer = Peer::spawn(
        "zenoh_peer.py",
        &[
            "rmw-receive",
            &endpoint,
            "jazzy",
            "trajectory_msgs/msg/JointTrajectory",
            "/sarm/joint_commands",
        ],
    );
    let msg = JointTrajectory {
        header: Header {
            stamp: Time {
                sec: 1_700_000_000,
                nanosec: 20_000_000,
            },
            frame_id: String::new(),
        },
        joint_names: vec!["left_waist".into(), "left_gripper".into()],
        points: vec![JointTrajectoryPoint {
            positions: vec![0.125, -0.5],
            velocities: vec![],
            accelerations: vec![],
            effort: vec![],
            time_from_start: RosDuration::from_nanos(20_000_000),
        }],
    };
    let got = publish_until_received(&peer, || publisher.publish(&msg).unwrap());
    assert_eq!(got["key"], got["expected_key"]);
    assert_eq!(got["key"].as_str(), Some(publisher.key()));
    assert_eq!(got["msg"], serde_json::to_value(&msg).unwrap());
    drop(publisher);
    drop(node);
    session.close().wait().unwrap();
}
