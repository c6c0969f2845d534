//! CDR bytes from an independent implementation (rosbags' serializer, see
//! fixtures/make_cdr_fixtures.py): we decode them to the same values and
//! encode the same values to the same bytes.

mod common;

use sarm_ros::msg::{
    CompressedImage, DiagnosticArray, EpisodeEvent, Float64MultiArray, Image, JointState,
    JointTrajectory, PolicyControl, PolicyEvent, Progress, RosMessage, SampleWeight,
};
use serde_json::Value;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn check<T: RosMessage + PartialEq + std::fmt::Debug>(case: &Value) {
    let expected: T = serde_json::from_value(case["values"].clone()).unwrap();
    let bytes = hex(case["cdr_hex"].as_str().unwrap());
    let decoded = T::from_cdr(&bytes).unwrap();
    assert_eq!(
        decoded,
        expected,
        "{}: decoding rosbags' bytes",
        T::TYPE_NAME
    );
    assert_eq!(
        expected.to_cdr().unwrap(),
        bytes,
        "{}: our bytes differ from rosbags'",
        T::TYPE_NAME
    );
}

#[test]
fn rosbags_cdr_roundtrips_byte_for_byte() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/cdr_rosbags.json"
    );
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    let mut seen = Vec::new();
    for case in cases {
        let ty = case["type"].as_str().unwrap();
        match ty {
            "sensor_msgs/msg/JointState" => check::<JointState>(case),
            "sensor_msgs/msg/Image" => check::<Image>(case),
            "sensor_msgs/msg/CompressedImage" => check::<CompressedImage>(case),
            "diagnostic_msgs/msg/DiagnosticArray" => check::<DiagnosticArray>(case),
            "sarm_msgs/msg/Progress" => check::<Progress>(case),
            "sarm_msgs/msg/SampleWeight" => check::<SampleWeight>(case),
            "sarm_msgs/msg/EpisodeEvent" => check::<EpisodeEvent>(case),
            "std_msgs/msg/Float64MultiArray" => check::<Float64MultiArray>(case),
            "trajectory_msgs/msg/JointTrajectory" => check::<JointTrajectory>(case),
            "sarm_msgs/msg/PolicyEvent" => check::<PolicyEvent>(case),
            "sarm_msgs/msg/PolicyControl" => check::<PolicyControl>(case),
            other => panic!("unexpected fixture type {other}"),
        }
        seen.push(ty.to_string());
    }
    assert_eq!(seen.len(), 11);
}

/// rmw_zenoh (Iron and later) puts RIHS01 type hashes in its keys; ours
/// must be rosbags' (an independent REP-2016 implementation) for every type.
#[test]
fn type_hashes_match_rosbags() {
    let msg_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sarm_msgs/msg");
    let out = common::run_python("type_hashes.py", &msg_dir);
    let hashes: serde_json::Map<String, Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(hashes.len(), 19);
    for (name, expected) in hashes {
        assert_eq!(
            sarm_ros::type_hash::rihs01_of(&name).as_deref(),
            expected.as_str(),
            "{name}"
        );
    }
}
