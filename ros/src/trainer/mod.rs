//! The trainer link: records (progress, RA-BC weights, episode events) from
//! robots to a trainer's `sarm sink`, with nothing lost.
//!
//! - [`record`]: a record and its checksummed framing;
//! - [`log`]: append-only files of records (torn tails cut on open);
//! - [`spool`]: the robot's bounded on-disk spool;
//! - [`protocol`]: heartbeat, acknowledgement and spool-query messages;
//! - [`robot`]: the robot's end (number, spool, publish, replay, trim);
//! - [`sink`]: the trainer's end (receive, persist, recover gaps,
//!   acknowledge, write LeRobot's parquet).
//!
//! Delivery: a record is spooled before it is published, so a robot killed
//! at any point still has it. The sink persists records on arrival and
//! acknowledges the contiguous prefix it holds; a gap (a put lost to a cut
//! link, a sink that was down) is filled by querying the robot's spool from
//! the first missing sequence number. Duplicates are recognised by sequence
//! number, so every record is kept once.

pub mod log;
pub mod protocol;
pub mod record;
pub mod robot;
pub mod sink;
pub mod spool;

pub use record::{Record, RecordKind};
pub use robot::{LinkSession, RobotLink, RobotLinkConfig, Sequenced};
pub use spool::{SpoolConfig, WhenFull};

/// What went wrong on the trainer link.
#[derive(Debug, thiserror::Error)]
pub enum TrainerError {
    #[error(transparent)]
    Key(#[from] crate::zenoh_link::ZenohError),
    #[error(transparent)]
    Spool(#[from] spool::SpoolError),
    #[error(transparent)]
    Log(#[from] log::LogError),
    #[error("cannot declare a Zenoh {what} on {key}: {message}")]
    Zenoh {
        what: &'static str,
        key: String,
        message: String,
    },
    #[error("cannot encode a record: {0}")]
    Encode(String),
    #[error("{0}")]
    Io(String),
    #[error(transparent)]
    Parquet(#[from] crate::progress_parquet::ParquetError),
}

impl TrainerError {
    pub(crate) fn zenoh(what: &'static str, key: &str, e: impl std::fmt::Display) -> Self {
        TrainerError::Zenoh {
            what,
            key: key.to_string(),
            message: e.to_string(),
        }
    }
}
