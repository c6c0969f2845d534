//! DDS interop with an independent implementation: Cyclone DDS (its Python
//! binding, tests/interop/cyclone_peer.py) on loopback.
//!
//! Cyclone publishes JointState and Image on the ROS 2 DDS names and we
//! receive them through ros2-client; we publish Progress and Cyclone
//! decodes it with its own type declaration.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use common::Peer;
use image::RgbImage;
use sarm_ros::dds::{DdsConfig, DdsNode, TopicQos};
use sarm_ros::msg::{Header, Image, JointState, Progress, Time};
use serde_json::Value;

fn node(domain_id: u16) -> DdsNode {
    DdsNode::new(&DdsConfig {
        domain_id,
        interfaces: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        node_name: "sarm_interop".into(),
        namespace: "/".into(),
    })
    .unwrap()
}

#[test]
fn we_receive_cyclone_joint_states_and_images() {
    let domain = 41;
    let _peer = Peer::spawn("cyclone_peer.py", &["publish-inputs", &domain.to_string()]);
    let mut node = node(domain);
    let mut joints = node
        .subscribe::<JointState>("/joint_states", TopicQos::SensorData)
        .unwrap();
    let mut images = node
        .subscribe::<Image>("/camera/image_raw", TopicQos::SensorData)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut js, mut im) = (None, None);
    while (js.is_none() || im.is_none()) && Instant::now() < deadline {
        if let Some(m) = joints.recv_timeout(Duration::from_millis(50)).unwrap() {
            js = Some(m);
        }
        if let Some(m) = images.recv_timeout(Duration::from_millis(50)).unwrap() {
            im = Some(m);
        }
    }
    let js = js.expect("no JointState from Cyclone within 30 s");
    let im = im.expect("no Image from Cyclone within 30 s");

    // What cyclone_peer.py sends for its k-th message.
    let k = js.header.stamp.sec - 100;
    assert!(k >= 0);
    assert_eq!(js.header.stamp.nanosec, 250_000_000);
    assert_eq!(js.header.frame_id, "base");
    assert_eq!(js.name, ["j2", "j1"]);
    assert_eq!(js.position, [k as f64 + 0.5, -(k as f64) - 0.25]);
    assert_eq!(js.velocity, [0.1 * k as f64, 0.2]);
    assert!(js.effort.is_empty());
    // ... and its joints go through our reordering by name.
    let mut map = sarm_ros::joints::JointMap::new(&["j1".to_string(), "j2".to_string()]);
    let mut ordered = [0f32; 2];
    map.reorder(&js, &mut ordered).unwrap();
    assert_eq!(ordered, [-(k as f32) - 0.25, k as f32 + 0.5]);

    let k = im.header.stamp.sec - 100;
    assert_eq!(
        (im.width, im.height, im.step, im.encoding.as_str()),
        (4, 2, 12, "rgb8")
    );
    let mut rgb = RgbImage::new(1, 1);
    sarm_ros::image::decode_raw(&im, &mut rgb).unwrap();
    let expected: Vec<u8> = (0..24).map(|i| ((k + i) % 256) as u8).collect();
    assert_eq!(rgb.as_raw(), &expected);
}

#[test]
fn cyclone_receives_our_progress() {
    let domain = 42;
    let peer = Peer::spawn(
        "cyclone_peer.py",
        &["receive-progress", &domain.to_string()],
    );
    assert_eq!(peer.line(Duration::from_secs(30)).as_deref(), Some("ready"));
    let mut node = node(domain);
    let publisher = node
        .publisher::<Progress>("/sarm/progress", TopicQos::Reliable { depth: 10 })
        .unwrap();
    let msg = Progress {
        header: Header {
            stamp: Time {
                sec: 1_700_000_000,
                nanosec: 123_456_789,
            },
            frame_id: "camera_top".into(),
        },
        robot_id: "aloha-1".into(),
        episode_index: 7,
        frame_index: 1234,
        seq: 98_765,
        head: "dense".into(),
        stage: 3,
        stage_confidence: 0.75,
        stage_probs: vec![0.125, 0.125, 0.0, 0.75],
        stage_progress: 0.5,
        progress: 0.625,
        progress_smoothed: 0.5,
        reward: -0.25,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let line = loop {
        assert!(
            Instant::now() < deadline,
            "Cyclone received nothing in 30 s"
        );
        publisher.publish(msg.clone()).unwrap();
        if let Some(line) = peer.line(Duration::from_millis(100)) {
            break line;
        }
    };
    let got: Value = serde_json::from_str(&line).unwrap();
    let expected = serde_json::to_value(&msg).unwrap();
    assert_eq!(got, expected, "Cyclone decoded something else");
}

/// A policy's commands, in both forms robot drivers take, reach a Cyclone
/// DDS reader and decode to the same message.
#[test]
fn cyclone_receives_our_commands() {
    use sarm_ros::msg::{
        Duration as RosDuration, Float64MultiArray, JointTrajectory, JointTrajectoryPoint,
        MultiArrayDimension, MultiArrayLayout,
    };
    let header = Header {
        stamp: Time {
            sec: 1_700_000_000,
            nanosec: 20_000_000,
        },
        frame_id: String::new(),
    };
    let trajectory = JointTrajectory {
        header,
        joint_names: vec!["left_waist".into(), "left_gripper".into()],
        points: vec![JointTrajectoryPoint {
            positions: vec![0.125, -0.5],
            velocities: vec![],
            accelerations: vec![],
            effort: vec![],
            time_from_start: RosDuration::from_nanos(20_000_000),
        }],
    };
    let multi = Float64MultiArray {
        layout: MultiArrayLayout {
            dim: vec![MultiArrayDimension {
                label: "joints".into(),
                size: 2,
                stride: 2,
            }],
            data_offset: 0,
        },
        data: vec![0.125, -0.5],
    };
    for (domain, form) in [(43u16, "joint_trajectory"), (44, "float64_multi_array")] {
        let peer = Peer::spawn(
            "cyclone_peer.py",
            &["receive-command", &domain.to_string(), form],
        );
        assert_eq!(peer.line(Duration::from_secs(30)).as_deref(), Some("ready"));
        let mut node = node(domain);
        let qos = TopicQos::Reliable { depth: 10 };
        let (expected, mut publish): (Value, Box<dyn FnMut()>) = match form {
            "joint_trajectory" => {
                let p = node
                    .publisher::<JointTrajectory>("/sarm/joint_commands", qos)
                    .unwrap();
                let m = trajectory.clone();
                (
                    serde_json::to_value(&m).unwrap(),
                    Box::new(move || p.publish(m.clone()).unwrap()),
                )
            }
            _ => {
                let p = node
                    .publisher::<Float64MultiArray>("/sarm/joint_commands", qos)
                    .unwrap();
                let m = multi.clone();
                (
                    serde_json::to_value(&m).unwrap(),
                    Box::new(move || p.publish(m.clone()).unwrap()),
                )
            }
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let line = loop {
            assert!(
                Instant::now() < deadline,
                "Cyclone received no {form} in 30 s"
            );
            publish();
            if let Some(line) = peer.line(Duration::from_millis(100)) {
                break line;
            }
        };
        let got: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(got, expected, "Cyclone decoded another {form}");
    }
}
