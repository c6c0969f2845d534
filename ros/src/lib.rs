//! sarm-ros: everything that crosses a process boundary. ROS 2 message
//! types (CDR), DDS (ros2-client), Zenoh (native keys and rmw_zenoh),
//! MCAP, image and joint-state decoding, synchronisation, and the `sarm` binary.
//!
//! The engine (`sarm-runtime`) knows nothing of this crate.

pub mod bag;
pub mod dds;
pub mod drops;
pub mod image;
pub mod inproc;
pub mod joints;
pub mod label;
pub mod lerobot;
pub mod msg;
pub mod node;
pub mod parquet_parts;
pub mod progress_parquet;
pub mod qos;
pub mod replay;
pub mod scores;
pub mod trainer;
pub mod transport;
pub mod type_hash;
pub mod zenoh_link;
