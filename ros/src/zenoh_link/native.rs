//! The trainer link's native keys: `sarm/<robot_id>/{progress,weight,episode}`.
//!
//! Payloads are the same CDR bytes as on ROS 2, and each sample carries the
//! rmw_zenoh-style attachment (sequence number, source time, publisher id),
//! so a subscriber can tell samples apart and spot gaps.

use std::marker::PhantomData;

use zenoh::{Session, Wait};

use super::rmw::{gid, AttachedPublisher};
use super::ZenohError;
use crate::msg::RosMessage;

/// The key space of one robot on the trainer link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainerKeys {
    robot_id: String,
}

impl TrainerKeys {
    /// `robot_id` becomes one key chunk, so it must be non-empty and free
    /// of `/`, `*`, `$`, `?` and `#`.
    pub fn new(robot_id: &str) -> Result<Self, ZenohError> {
        let bad = robot_id.is_empty()
            || robot_id
                .chars()
                .any(|c| matches!(c, '/' | '*' | '$' | '?' | '#') || c.is_whitespace());
        if bad {
            return Err(ZenohError::Config {
                what: "robot_id".into(),
                message: format!(
                    "{robot_id:?} is not a valid key chunk (non-empty; no '/', '*', '$', '?', '#' or spaces)"
                ),
            });
        }
        Ok(TrainerKeys {
            robot_id: robot_id.to_string(),
        })
    }

    pub fn robot_id(&self) -> &str {
        &self.robot_id
    }
    pub fn progress(&self) -> String {
        format!("sarm/{}/progress", self.robot_id)
    }
    pub fn weight(&self) -> String {
        format!("sarm/{}/weight", self.robot_id)
    }
    pub fn episode(&self) -> String {
        format!("sarm/{}/episode", self.robot_id)
    }
    /// The key of a record kind.
    pub fn key(&self, kind: crate::trainer::RecordKind) -> String {
        format!("sarm/{}/{}", self.robot_id, kind.key_suffix())
    }
    /// The robot's spool queryable.
    pub fn spool(&self) -> String {
        format!("sarm/{}/spool", self.robot_id)
    }
    /// The sink's acknowledgements to this robot.
    pub fn ack(&self) -> String {
        format!("sarm/{}/ack", self.robot_id)
    }
    /// The robot's heartbeat.
    pub fn head(&self) -> String {
        format!("sarm/{}/head", self.robot_id)
    }
}

/// A publisher of `T` on a native key.
pub struct NativePublisher<T> {
    inner: AttachedPublisher,
    _t: PhantomData<T>,
}

impl<T: RosMessage> NativePublisher<T> {
    pub fn new(session: &Session, key: String) -> Result<Self, ZenohError> {
        let publisher =
            session
                .declare_publisher(key.clone())
                .wait()
                .map_err(|e| ZenohError::Declare {
                    what: "publisher",
                    key: key.clone(),
                    message: e.to_string(),
                })?;
        let gid = gid(&format!("{}/{key}", session.zid()));
        Ok(NativePublisher {
            inner: AttachedPublisher::new(key, gid, publisher),
            _t: PhantomData,
        })
    }

    pub fn publish(&mut self, msg: &T) -> Result<(), ZenohError> {
        self.inner.publish(msg)
    }

    pub fn key(&self) -> &str {
        self.inner.key()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_bad_robot_ids() {
        let k = TrainerKeys::new("aloha-1").unwrap();
        assert_eq!(k.progress(), "sarm/aloha-1/progress");
        assert_eq!(k.weight(), "sarm/aloha-1/weight");
        assert_eq!(k.episode(), "sarm/aloha-1/episode");
        for bad in ["", "a/b", "a*", "x y", "$z"] {
            assert!(TrainerKeys::new(bad).is_err(), "{bad:?}");
        }
    }
}
