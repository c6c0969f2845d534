//! sarm-ros: everything that crosses a process boundary. ROS 2 message
//! types (CDR), image and joint-state decoding, and the `sarm` binary.
//!
//! The engine (`sarm-runtime`) knows nothing of this crate.

pub mod bag;
pub mod image;
pub mod joints;
pub mod label;
pub mod msg;
pub mod progress_parquet;
