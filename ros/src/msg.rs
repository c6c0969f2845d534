//! ROS 2 message types and their CDR encoding.
//!
//! Each type is declared once with [`ros_message!`], which gives the Rust
//! struct and the table of its ROS fields (name and ROS type, in order). The
//! table is what the `.msg` agreement test, the ros2msg schema text written
//! to MCAP and the rmw_zenoh type hash are derived from, so none of them can
//! drift from the struct.
//!
//! Encoding is `cdr-encoding` (the crate ros2-client/RustDDS use), little
//! endian, with the 4-byte encapsulation header that rmw_zenoh and rosbag2
//! carry in front of the body (DDS adds it itself).

use byteorder::{BigEndian, LittleEndian};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The encapsulation header of little-endian plain CDR.
pub const CDR_LE_HEADER: [u8; 4] = [0x00, 0x01, 0x00, 0x00];

/// Why a payload could not be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CdrError {
    #[error("payload of {0} bytes is shorter than the 4-byte CDR header")]
    TooShort(usize),
    #[error("unsupported CDR representation {0:#06x} (only plain CDR, LE or BE)")]
    Representation(u16),
    #[error("malformed {type_name}: {message}")]
    Malformed {
        type_name: &'static str,
        message: String,
    },
    #[error("cannot encode {type_name}: {message}")]
    Encode {
        type_name: &'static str,
        message: String,
    },
}

/// A ROS 2 message: its full type name and ordered field table.
pub trait RosMessage: Serialize + DeserializeOwned + Clone + Send + Sized + 'static {
    /// `pkg/msg/Name`.
    const TYPE_NAME: &'static str;
    /// `(field name, ROS type)` in declaration order.
    const FIELDS: &'static [(&'static str, &'static str)];
    /// `(ROS type, NAME, value)` constants of the `.msg` file.
    const CONSTANTS: &'static [(&'static str, &'static str, &'static str)] = &[];

    /// The DDS type name, `pkg::msg::dds_::Name_`.
    fn dds_type_name() -> String {
        dds_type_name(Self::TYPE_NAME)
    }

    /// CDR body only (what a DDS writer serialises).
    fn to_cdr_body(&self) -> Result<Vec<u8>, CdrError> {
        cdr_encoding::to_vec::<Self, LittleEndian>(self).map_err(|e| CdrError::Encode {
            type_name: Self::TYPE_NAME,
            message: e.to_string(),
        })
    }

    /// Header + body, as carried by rmw_zenoh and rosbag2.
    fn to_cdr(&self) -> Result<Vec<u8>, CdrError> {
        let body = self.to_cdr_body()?;
        let mut out = Vec::with_capacity(body.len() + 4);
        out.extend_from_slice(&CDR_LE_HEADER);
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Decodes header + body. Trailing bytes (writer padding) are ignored.
    fn from_cdr(bytes: &[u8]) -> Result<Self, CdrError> {
        if bytes.len() < 4 {
            return Err(CdrError::TooShort(bytes.len()));
        }
        let rep = u16::from_be_bytes([bytes[0], bytes[1]]);
        let malformed = |e: cdr_encoding::Error| CdrError::Malformed {
            type_name: Self::TYPE_NAME,
            message: e.to_string(),
        };
        match rep {
            0x0001 => cdr_encoding::from_bytes::<Self, LittleEndian>(&bytes[4..])
                .map(|(m, _)| m)
                .map_err(malformed),
            0x0000 => cdr_encoding::from_bytes::<Self, BigEndian>(&bytes[4..])
                .map(|(m, _)| m)
                .map_err(malformed),
            other => Err(CdrError::Representation(other)),
        }
    }
}

/// What an [`EpisodeEvent`] says (its `event` field on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Start,
    End,
    Abort,
}

impl EventKind {
    /// The wire value (`sarm_msgs/EpisodeEvent` START/END/ABORT).
    pub fn code(self) -> u8 {
        match self {
            EventKind::Start => 0,
            EventKind::End => 1,
            EventKind::Abort => 2,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(EventKind::Start),
            1 => Some(EventKind::End),
            2 => Some(EventKind::Abort),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Start => "start",
            EventKind::End => "end",
            EventKind::Abort => "abort",
        }
    }
}

/// `pkg/msg/Name` -> `pkg::msg::dds_::Name_`.
pub fn dds_type_name(type_name: &str) -> String {
    match type_name.rsplit_once('/') {
        Some((prefix, name)) => format!("{}::dds_::{name}_", prefix.replace('/', "::")),
        None => type_name.to_string(),
    }
}

macro_rules! ros_message {
    (
        $(#[$meta:meta])*
        $name:ident = $full:literal {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty => $rostype:literal ),* $(,)?
        }
        $( consts { $( $cty:literal $cname:ident = $cval:literal ),* $(,)? } )?
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl RosMessage for $name {
            const TYPE_NAME: &'static str = $full;
            const FIELDS: &'static [(&'static str, &'static str)] =
                &[ $( (stringify!($field), $rostype) ),* ];
            $( const CONSTANTS: &'static [(&'static str, &'static str, &'static str)] =
                &[ $( ($cty, stringify!($cname), $cval) ),* ]; )?
        }
    };
}

ros_message! {
    /// builtin_interfaces/msg/Time.
    Time = "builtin_interfaces/msg/Time" {
        sec: i32 => "int32",
        nanosec: u32 => "uint32",
    }
}

impl Time {
    pub fn from_nanos(ns: i64) -> Self {
        Time {
            sec: ns.div_euclid(1_000_000_000) as i32,
            nanosec: ns.rem_euclid(1_000_000_000) as u32,
        }
    }

    pub fn as_nanos(&self) -> i64 {
        self.sec as i64 * 1_000_000_000 + self.nanosec as i64
    }
}

ros_message! {
    /// std_msgs/msg/Header.
    Header = "std_msgs/msg/Header" {
        stamp: Time => "builtin_interfaces/Time",
        frame_id: String => "string",
    }
}

ros_message! {
    /// sensor_msgs/msg/Image: raw pixels.
    Image = "sensor_msgs/msg/Image" {
        header: Header => "std_msgs/Header",
        height: u32 => "uint32",
        width: u32 => "uint32",
        encoding: String => "string",
        is_bigendian: u8 => "uint8",
        step: u32 => "uint32",
        #[serde(with = "serde_bytes")]
        data: Vec<u8> => "uint8[]",
    }
}

ros_message! {
    /// sensor_msgs/msg/CompressedImage: JPEG or PNG bytes.
    CompressedImage = "sensor_msgs/msg/CompressedImage" {
        header: Header => "std_msgs/Header",
        format: String => "string",
        #[serde(with = "serde_bytes")]
        data: Vec<u8> => "uint8[]",
    }
}

ros_message! {
    /// sensor_msgs/msg/JointState.
    JointState = "sensor_msgs/msg/JointState" {
        header: Header => "std_msgs/Header",
        name: Vec<String> => "string[]",
        position: Vec<f64> => "float64[]",
        velocity: Vec<f64> => "float64[]",
        effort: Vec<f64> => "float64[]",
    }
}

ros_message! {
    /// diagnostic_msgs/msg/KeyValue.
    KeyValue = "diagnostic_msgs/msg/KeyValue" {
        key: String => "string",
        value: String => "string",
    }
}

ros_message! {
    /// diagnostic_msgs/msg/DiagnosticStatus.
    DiagnosticStatus = "diagnostic_msgs/msg/DiagnosticStatus" {
        level: u8 => "byte",
        name: String => "string",
        message: String => "string",
        hardware_id: String => "string",
        values: Vec<KeyValue> => "diagnostic_msgs/KeyValue[]",
    }
    consts { "byte" OK = "0", "byte" WARN = "1", "byte" ERROR = "2", "byte" STALE = "3" }
}

ros_message! {
    /// diagnostic_msgs/msg/DiagnosticArray: the node's status on /diagnostics.
    DiagnosticArray = "diagnostic_msgs/msg/DiagnosticArray" {
        header: Header => "std_msgs/Header",
        status: Vec<DiagnosticStatus> => "diagnostic_msgs/DiagnosticStatus[]",
    }
}

ros_message! {
    /// sarm_msgs/msg/Progress: one per scored frame and head.
    Progress = "sarm_msgs/msg/Progress" {
        header: Header => "std_msgs/Header",
        robot_id: String => "string",
        episode_index: i64 => "int64",
        frame_index: i64 => "int64",
        seq: u64 => "uint64",
        head: String => "string",
        stage: u32 => "uint32",
        stage_confidence: f32 => "float32",
        stage_probs: Vec<f32> => "float32[]",
        stage_progress: f32 => "float32",
        progress: f32 => "float32",
        progress_smoothed: f32 => "float32",
        reward: f32 => "float32",
    }
}

ros_message! {
    /// sarm_msgs/msg/SampleWeight: the RA-BC weight of one frame.
    SampleWeight = "sarm_msgs/msg/SampleWeight" {
        header: Header => "std_msgs/Header",
        robot_id: String => "string",
        episode_index: i64 => "int64",
        frame_index: i64 => "int64",
        seq: u64 => "uint64",
        chunk_size: u32 => "uint32",
        delta: f32 => "float32",
        weight: f32 => "float32",
    }
}

ros_message! {
    /// sarm_msgs/msg/EpisodeEvent: an episode started, ended or was aborted.
    EpisodeEvent = "sarm_msgs/msg/EpisodeEvent" {
        header: Header => "std_msgs/Header",
        robot_id: String => "string",
        episode_index: i64 => "int64",
        event: u8 => "uint8",
        frames: u64 => "uint64",
        final_progress: f32 => "float32",
        reason: String => "string",
    }
    consts { "uint8" START = "0", "uint8" END = "1", "uint8" ABORT = "2" }
}

impl EpisodeEvent {
    /// The event, or `None` for a value this version does not know.
    pub fn kind(&self) -> Option<EventKind> {
        EventKind::from_code(self.event)
    }

    /// Whether this event closes an episode (END or ABORT).
    pub fn closes(&self) -> bool {
        matches!(self.kind(), Some(EventKind::End | EventKind::Abort))
    }
}

ros_message! {
    /// rosgraph_msgs/msg/Clock: simulated time on `/clock` (`use_sim_time`).
    Clock = "rosgraph_msgs/msg/Clock" {
        clock: Time => "builtin_interfaces/Time",
    }
}

ros_message! {
    /// builtin_interfaces/msg/Duration.
    Duration = "builtin_interfaces/msg/Duration" {
        sec: i32 => "int32",
        nanosec: u32 => "uint32",
    }
}

impl Duration {
    pub fn from_nanos(ns: i64) -> Self {
        Duration {
            sec: ns.div_euclid(1_000_000_000) as i32,
            nanosec: ns.rem_euclid(1_000_000_000) as u32,
        }
    }

    pub fn as_nanos(&self) -> i64 {
        self.sec as i64 * 1_000_000_000 + self.nanosec as i64
    }
}

ros_message! {
    /// std_msgs/msg/MultiArrayDimension.
    MultiArrayDimension = "std_msgs/msg/MultiArrayDimension" {
        label: String => "string",
        size: u32 => "uint32",
        stride: u32 => "uint32",
    }
}

ros_message! {
    /// std_msgs/msg/MultiArrayLayout.
    MultiArrayLayout = "std_msgs/msg/MultiArrayLayout" {
        dim: Vec<MultiArrayDimension> => "std_msgs/MultiArrayDimension[]",
        data_offset: u32 => "uint32",
    }
}

ros_message! {
    /// std_msgs/msg/Float64MultiArray: joint commands for ros2_control's
    /// forward_command_controller (one value per joint, in its order).
    Float64MultiArray = "std_msgs/msg/Float64MultiArray" {
        layout: MultiArrayLayout => "std_msgs/MultiArrayLayout",
        data: Vec<f64> => "float64[]",
    }
}

ros_message! {
    /// trajectory_msgs/msg/JointTrajectoryPoint.
    JointTrajectoryPoint = "trajectory_msgs/msg/JointTrajectoryPoint" {
        positions: Vec<f64> => "float64[]",
        velocities: Vec<f64> => "float64[]",
        accelerations: Vec<f64> => "float64[]",
        effort: Vec<f64> => "float64[]",
        time_from_start: Duration => "builtin_interfaces/Duration",
    }
}

ros_message! {
    /// trajectory_msgs/msg/JointTrajectory: joint commands for ros2_control's
    /// joint_trajectory_controller.
    JointTrajectory = "trajectory_msgs/msg/JointTrajectory" {
        header: Header => "std_msgs/Header",
        joint_names: Vec<String> => "string[]",
        points: Vec<JointTrajectoryPoint> => "trajectory_msgs/JointTrajectoryPoint[]",
    }
}

ros_message! {
    /// sarm_msgs/msg/PolicyEvent: the policy safety layer armed, disarmed,
    /// latched a fault (with its cause), was reset, or refused to arm.
    PolicyEvent = "sarm_msgs/msg/PolicyEvent" {
        header: Header => "std_msgs/Header",
        robot_id: String => "string",
        episode_index: i64 => "int64",
        event: u8 => "uint8",
        cause: u8 => "uint8",
        held_s: f64 => "float64",
        detail: String => "string",
        commands: u64 => "uint64",
        hold_ticks: u64 => "uint64",
        faults: u64 => "uint64",
    }
    consts {
        "uint8" ARMED = "0", "uint8" DISARMED = "1", "uint8" FAULT = "2", "uint8" RESET = "3",
        "uint8" ARM_REFUSED = "4",
        "uint8" CAUSE_NONE = "0", "uint8" CAUSE_ESTOP = "1", "uint8" CAUSE_NON_FINITE_ACTION = "2",
        "uint8" CAUSE_STALE_OBSERVATION = "3", "uint8" CAUSE_INPUT_SILENT = "4",
        "uint8" CAUSE_DEADLINE_MISSED = "5", "uint8" CAUSE_POLICY_FAILED = "6"
    }
}

ros_message! {
    /// sarm_msgs/msg/PolicyControl: an operator's command to the policy
    /// safety layer, on /sarm/policy_control.
    PolicyControl = "sarm_msgs/msg/PolicyControl" {
        header: Header => "std_msgs/Header",
        robot_id: String => "string",
        command: u8 => "uint8",
        reason: String => "string",
    }
    consts { "uint8" ARM = "0", "uint8" DISARM = "1", "uint8" ESTOP = "2", "uint8" RESET = "3" }
}

impl PolicyControl {
    pub const ARM: u8 = 0;
    pub const DISARM: u8 = 1;
    pub const ESTOP: u8 = 2;
    pub const RESET: u8 = 3;
}

impl PolicyEvent {
    pub const ARMED: u8 = 0;
    pub const DISARMED: u8 = 1;
    pub const FAULT: u8 = 2;
    pub const RESET: u8 = 3;
    pub const ARM_REFUSED: u8 = 4;
    pub const CAUSE_NONE: u8 = 0;
}

/// Field table of a message type by full or short name (`pkg/msg/Name` or
/// `pkg/Name`), for schema text and nested types.
pub fn fields_of(type_name: &str) -> Option<&'static [(&'static str, &'static str)]> {
    let full = normalize_type(type_name);
    Some(match full.as_str() {
        "builtin_interfaces/msg/Time" => Time::FIELDS,
        "std_msgs/msg/Header" => Header::FIELDS,
        "sensor_msgs/msg/Image" => Image::FIELDS,
        "sensor_msgs/msg/CompressedImage" => CompressedImage::FIELDS,
        "sensor_msgs/msg/JointState" => JointState::FIELDS,
        "diagnostic_msgs/msg/KeyValue" => KeyValue::FIELDS,
        "diagnostic_msgs/msg/DiagnosticStatus" => DiagnosticStatus::FIELDS,
        "diagnostic_msgs/msg/DiagnosticArray" => DiagnosticArray::FIELDS,
        "sarm_msgs/msg/Progress" => Progress::FIELDS,
        "sarm_msgs/msg/SampleWeight" => SampleWeight::FIELDS,
        "sarm_msgs/msg/EpisodeEvent" => EpisodeEvent::FIELDS,
        "rosgraph_msgs/msg/Clock" => Clock::FIELDS,
        "builtin_interfaces/msg/Duration" => Duration::FIELDS,
        "std_msgs/msg/MultiArrayDimension" => MultiArrayDimension::FIELDS,
        "std_msgs/msg/MultiArrayLayout" => MultiArrayLayout::FIELDS,
        "std_msgs/msg/Float64MultiArray" => Float64MultiArray::FIELDS,
        "trajectory_msgs/msg/JointTrajectoryPoint" => JointTrajectoryPoint::FIELDS,
        "trajectory_msgs/msg/JointTrajectory" => JointTrajectory::FIELDS,
        "sarm_msgs/msg/PolicyEvent" => PolicyEvent::FIELDS,
        "sarm_msgs/msg/PolicyControl" => PolicyControl::FIELDS,
        _ => return None,
    })
}

fn constants_of(full: &str) -> &'static [(&'static str, &'static str, &'static str)] {
    match full {
        "diagnostic_msgs/msg/DiagnosticStatus" => DiagnosticStatus::CONSTANTS,
        "sarm_msgs/msg/EpisodeEvent" => EpisodeEvent::CONSTANTS,
        _ => &[],
    }
}

/// `pkg/Name` -> `pkg/msg/Name`; full names unchanged.
pub fn normalize_type(t: &str) -> String {
    let parts: Vec<&str> = t.split('/').collect();
    match parts.as_slice() {
        [pkg, name] => format!("{pkg}/msg/{name}"),
        _ => t.to_string(),
    }
}

/// The element type of a ROS field type: `pkg/Name[]` -> `pkg/Name`.
fn base_type(t: &str) -> &str {
    t.split('[').next().unwrap_or(t)
}

fn is_primitive(t: &str) -> bool {
    matches!(
        t,
        "bool"
            | "byte"
            | "char"
            | "int8"
            | "uint8"
            | "int16"
            | "uint16"
            | "int32"
            | "uint32"
            | "int64"
            | "uint64"
            | "float32"
            | "float64"
            | "string"
            | "wstring"
    )
}

fn definition(full: &str) -> String {
    let mut s = String::new();
    for (ty, name, value) in constants_of(full) {
        s.push_str(&format!("{ty} {name}={value}\n"));
    }
    for (name, ty) in fields_of(full).unwrap_or(&[]) {
        s.push_str(&format!("{ty} {name}\n"));
    }
    s
}

/// The `ros2msg` schema text rosbag2 stores for `T`: its definition, then
/// each nested type's after a line of 80 `=` and `MSG: pkg/Name`.
pub fn ros2msg_schema<T: RosMessage>() -> String {
    let mut text = definition(T::TYPE_NAME);
    let mut seen: Vec<String> = Vec::new();
    let mut queue: Vec<String> = vec![T::TYPE_NAME.to_string()];
    while let Some(t) = queue.pop() {
        for (_, ty) in fields_of(&t).unwrap_or(&[]) {
            let base = base_type(ty);
            if is_primitive(base) {
                continue;
            }
            let full = normalize_type(base);
            if !seen.contains(&full) {
                seen.push(full.clone());
                queue.push(full);
            }
        }
    }
    for full in seen {
        let short = full.replace("/msg/", "/");
        text.push_str(&"=".repeat(80));
        text.push_str(&format!("\nMSG: {short}\n"));
        text.push_str(&definition(&full));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dds_names() {
        assert_eq!(
            JointState::dds_type_name(),
            "sensor_msgs::msg::dds_::JointState_"
        );
        assert_eq!(Progress::dds_type_name(), "sarm_msgs::msg::dds_::Progress_");
    }

    #[test]
    fn roundtrip_every_type() {
        let p = Progress {
            header: Header {
                stamp: Time::from_nanos(1_500_000_001),
                frame_id: "camera_top".into(),
            },
            robot_id: "aloha-1".into(),
            episode_index: 3,
            frame_index: 41,
            seq: 9,
            head: "sparse".into(),
            stage: 2,
            stage_confidence: 0.9,
            stage_probs: vec![0.05, 0.05, 0.9],
            stage_progress: 0.5,
            progress: 0.875,
            progress_smoothed: 0.86,
            reward: 0.01,
        };
        assert_eq!(Progress::from_cdr(&p.to_cdr().unwrap()).unwrap(), p);
        let d = DiagnosticArray {
            header: Header::default(),
            status: vec![DiagnosticStatus {
                level: DiagnosticStatus::CONSTANTS[1].2.parse().unwrap(),
                name: "sarm".into(),
                values: vec![KeyValue {
                    key: "fps".into(),
                    value: "50".into(),
                }],
                ..Default::default()
            }],
        };
        assert_eq!(DiagnosticArray::from_cdr(&d.to_cdr().unwrap()).unwrap(), d);
    }

    #[test]
    fn header_is_checked() {
        assert_eq!(JointState::from_cdr(&[0, 1]), Err(CdrError::TooShort(2)));
        assert_eq!(
            JointState::from_cdr(&[0, 7, 0, 0, 0, 0, 0, 0]),
            Err(CdrError::Representation(7))
        );
    }

    #[test]
    fn schema_text_lists_nested_types_once() {
        let s = ros2msg_schema::<Progress>();
        assert!(s.starts_with("std_msgs/Header header\nstring robot_id\n"));
        assert_eq!(s.matches("MSG: std_msgs/Header").count(), 1);
        assert_eq!(s.matches("MSG: builtin_interfaces/Time").count(), 1);
        let e = ros2msg_schema::<EpisodeEvent>();
        assert!(e.starts_with("uint8 START=0\nuint8 END=1\nuint8 ABORT=2\n"));
    }
}
