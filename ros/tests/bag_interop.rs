//! rosbag2 MCAP written by other libraries (rosbags, mcap-ros2-support) is
//! read into our typed messages; bad bags are counted and skipped; MCAP we
//! write is read back by mcap-ros2-support.

use std::path::{Path, PathBuf};

use image::RgbImage;

mod common;
use common::run_python;
use sarm_ros::bag::{read_bag, McapOut};
use sarm_ros::image::decode_compressed;
use sarm_ros::msg::{CompressedImage, Header, JointState, Progress, RosMessage, Time};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bags")
        .join(name)
}

/// Reads a bag written by make_bags.py: 3 joint states and 3 PNG images.
fn check_standard_bag(path: &Path) {
    let (mut joints, mut images) = (Vec::new(), Vec::new());
    let stats = read_bag(path, |m| match m.type_name {
        "sensor_msgs/msg/JointState" => {
            assert_eq!(m.topic, "/joint_states");
            joints.push((m.log_time, JointState::from_cdr(m.data).unwrap()));
        }
        "sensor_msgs/msg/CompressedImage" => {
            assert_eq!(m.topic, "/camera/image/compressed");
            images.push(CompressedImage::from_cdr(m.data).unwrap());
        }
        other => panic!("unexpected type {other}"),
    })
    .unwrap();
    assert_eq!(stats.messages, 6);
    assert_eq!(stats.skipped_total(), 0);
    assert!(stats.damaged.is_empty());
    assert_eq!(joints.len(), 3);
    for (i, (log_time, js)) in joints.iter().enumerate() {
        assert_eq!(js.name, ["j1", "j2"]);
        assert_eq!(js.position, [0.1 * i as f64, -0.2]);
        assert_eq!(
            js.header.stamp,
            Time {
                sec: 100 + i as i32,
                nanosec: 500_000_000
            }
        );
        assert_eq!(*log_time, js.header.stamp.as_nanos() as u64);
    }
    let mut rgb = RgbImage::new(1, 1);
    for img in &images {
        assert_eq!(img.format, "png");
        decode_compressed(img, &mut rgb).unwrap();
        assert_eq!(rgb.dimensions(), (4, 2));
        assert!(rgb.pixels().all(|p| p.0 == [255, 0, 0]));
    }
}

#[test]
fn reads_a_rosbags_bag_folder() {
    check_standard_bag(&fixture("rosbags_jazzy"));
}

#[test]
fn reads_an_mcap_ros2_file_with_zstd_chunks() {
    check_standard_bag(&fixture("mcap_ros2.mcap"));
}

#[test]
fn missing_and_unknown_schemas_are_counted_and_skipped() {
    let mut topics = Vec::new();
    let stats = read_bag(&fixture("missing_schema.mcap"), |m| {
        topics.push(m.topic.to_string())
    })
    .unwrap();
    assert_eq!(topics, ["/joint_states", "/joint_states"]);
    assert_eq!(stats.skipped.get("no_schema"), Some(&1));
    assert_eq!(stats.skipped.get("unknown_schema"), Some(&1));
}

#[test]
fn a_truncated_bag_keeps_what_was_read_and_says_so() {
    let mut n = 0;
    let stats = read_bag(&fixture("truncated.mcap"), |_| n += 1).unwrap();
    assert_eq!(stats.messages, n);
    assert_eq!(stats.damaged.len(), 1, "{stats:?}");
}

#[test]
fn not_a_bag_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("sarm-notabag-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let e = read_bag(&dir, |_| ()).unwrap_err().to_string();
    assert!(e.contains("metadata.yaml"), "{e}");
    let file = dir.join("x.mcap");
    std::fs::write(&file, b"definitely not mcap").unwrap();
    let e = read_bag(&file, |_| ()).unwrap_err().to_string();
    assert!(e.contains("not a readable MCAP"), "{e}");
}

fn progress(i: i64) -> Progress {
    Progress {
        header: Header {
            stamp: Time::from_nanos(1_000_000_000 + i * 20_000_000),
            frame_id: "camera_top".into(),
        },
        robot_id: "robot-1".into(),
        episode_index: 2,
        frame_index: i,
        seq: 100 + i as u64,
        head: "sparse".into(),
        stage: (i % 3) as u32,
        stage_confidence: 0.75,
        stage_probs: vec![0.125, 0.125, 0.75],
        stage_progress: 0.5,
        progress: i as f32 / 8.0,
        progress_smoothed: i as f32 / 8.0,
        reward: 0.125,
    }
}

#[test]
fn mcap_we_write_is_read_by_mcap_ros2_support() {
    let path = std::env::temp_dir().join(format!("sarm-progress-{}.mcap", std::process::id()));
    let mut out = McapOut::create(&path).unwrap();
    for i in 0..5 {
        let p = progress(i);
        out.write("/sarm/progress", p.header.stamp.as_nanos() as u64, &p)
            .unwrap();
    }
    out.finish().unwrap();

    // Our own reader first.
    let mut ours = Vec::new();
    read_bag(&path, |m| ours.push(Progress::from_cdr(m.data).unwrap())).unwrap();
    assert_eq!(ours, (0..5).map(progress).collect::<Vec<_>>());

    // Then an independent decoder.
    let stdout = run_python("read_mcap.py", &path);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    for (i, l) in lines.iter().enumerate() {
        let p = progress(i as i64);
        assert_eq!(l["topic"], "/sarm/progress");
        assert_eq!(l["schema"], "sarm_msgs/msg/Progress");
        let m = &l["msg"];
        assert_eq!(m["frame_index"], i as i64);
        assert_eq!(m["seq"], p.seq);
        assert_eq!(m["head"], "sparse");
        assert_eq!(m["robot_id"], "robot-1");
        assert_eq!(m["header"]["frame_id"], "camera_top");
        assert_eq!(m["header"]["stamp"]["nanosec"], p.header.stamp.nanosec);
        assert_eq!(m["progress"].as_f64().unwrap() as f32, p.progress);
        let probs: Vec<f32> = m["stage_probs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(probs, p.stage_probs);
    }
    let _ = std::fs::remove_file(&path);
}
