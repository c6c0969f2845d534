//! Zenoh: the session, rmw_zenoh-compatible ROS 2 topics, and the native
//! trainer-link keys.
//!
//! - [`session`]: opening a session from a JSON5 config file (peer mode by
//!   default), with the few overrides the CLI offers.
//! - [`rmw`]: ROS 2 topics as rmw_zenoh lays them out (data key, CDR
//!   payload, 33-byte attachment, liveliness tokens; Humble or Jazzy keys),
//!   so a ROS 2 node on rmw_zenoh sees our topics and we see theirs.
//! - [`native`]: `sarm/<robot_id>/{progress,weight,episode}`, the trainer link.
//!
//! Payloads on every path are the same CDR bytes (header + body) that DDS
//! and rosbag2 carry.

pub mod native;
pub mod rmw;
pub mod session;

pub use native::{NativePublisher, TrainerKeys};
pub use rmw::{RmwNode, RmwPublisher, RmwSubscriber, RosDistro};
pub use session::{open_session, open_session_retrying, ZenohSessionConfig};

/// What went wrong on the Zenoh side.
#[derive(Debug, thiserror::Error)]
pub enum ZenohError {
    #[error("Zenoh config {what}: {message}")]
    Config { what: String, message: String },
    #[error("cannot open Zenoh session: {0}")]
    Open(String),
    #[error("cannot declare {what} on {key}: {message}")]
    Declare {
        what: &'static str,
        key: String,
        message: String,
    },
    #[error("publishing on {key} failed: {message}")]
    Put { key: String, message: String },
    #[error("receiving on {key} failed: {message}")]
    Recv { key: String, message: String },
    #[error("malformed sample on {key}: {message}")]
    Malformed { key: String, message: String },
    #[error("cannot encode {type_name}: {message}")]
    Encode {
        type_name: &'static str,
        message: String,
    },
}

/// Wall time in nanoseconds since the UNIX epoch, for attachments' source
/// timestamps and delivery delays (transport-level, so wall time even when
/// the node runs on simulated time; see `sarm_runtime::clock`).
pub fn now_ns() -> i64 {
    sarm_runtime::clock::wall_ns()
}
