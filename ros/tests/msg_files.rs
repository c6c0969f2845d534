//! ros/sarm_msgs/msg/*.msg (what ROS 2 users colcon-build) and the Rust
//! types agree field by field, in order, constants included.

use std::path::PathBuf;

use sarm_ros::msg::{EpisodeEvent, PolicyControl, PolicyEvent, Progress, RosMessage, SampleWeight};

type Parsed = (Vec<(String, String)>, Vec<(String, String, String)>);

/// Fields and constants of a .msg file (comments and blank lines skipped).
fn parse_msg(text: &str) -> Parsed {
    let (mut fields, mut consts) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (ty, rest) = line.split_once(char::is_whitespace).expect("type and name");
        let rest = rest.trim();
        if let Some((name, value)) = rest.split_once('=') {
            consts.push((
                ty.to_string(),
                name.trim().to_string(),
                value.trim().to_string(),
            ));
        } else {
            fields.push((rest.to_string(), ty.to_string()));
        }
    }
    (fields, consts)
}

fn check<T: RosMessage>(file: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("sarm_msgs/msg")
        .join(file);
    let (fields, consts) = parse_msg(&std::fs::read_to_string(&path).unwrap());
    let ours: Vec<(String, String)> = T::FIELDS
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    assert_eq!(fields, ours, "{file}: fields differ from {}", T::TYPE_NAME);
    let our_consts: Vec<(String, String, String)> = T::CONSTANTS
        .iter()
        .map(|(t, n, v)| (t.to_string(), n.to_string(), v.to_string()))
        .collect();
    assert_eq!(consts, our_consts, "{file}: constants differ");
}

#[test]
fn msg_files_match_rust_types() {
    check::<Progress>("Progress.msg");
    check::<SampleWeight>("SampleWeight.msg");
    check::<EpisodeEvent>("EpisodeEvent.msg");
    check::<PolicyEvent>("PolicyEvent.msg");
    check::<PolicyControl>("PolicyControl.msg");
}

#[test]
fn cmake_lists_every_msg_file() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sarm_msgs");
    let cmake = std::fs::read_to_string(dir.join("CMakeLists.txt")).unwrap();
    let mut n = 0;
    for entry in std::fs::read_dir(dir.join("msg")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            cmake.contains(&format!("\"msg/{name}\"")),
            "{name} missing from CMakeLists.txt"
        );
        n += 1;
    }
    assert_eq!(n, 5);
}
