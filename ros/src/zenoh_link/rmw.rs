//! ROS 2 topics the way rmw_zenoh lays them out, so a node running
//! rmw_zenoh (Humble or Jazzy) sees our topics and we see theirs.
//!
//! From rmw_zenoh_cpp (`liveliness_utils.cpp`, `rmw_publisher_data.cpp`,
//! `attachment_helpers.cpp`, `qos.cpp`):
//! - data key `<domain>/<topic without outer slashes>/<pkg::msg::dds_::T_>/<hash>`,
//!   where the hash is `RIHS01_…` on Iron and later and the literal
//!   `TypeHashNotSupported` on Humble; subscribers here put `*` in that
//!   slot so they accept either;
//! - payload: CDR with its 4-byte header, as on DDS;
//! - attachment (rmw_zenoh drops samples without one): i64 sequence number
//!   (from 1, per publisher), i64 source time in ns, and the 16-byte GID,
//!   serialised with zenoh-ext (33 bytes);
//! - GID: XXH3-128 of the entity's liveliness key, little endian;
//! - liveliness tokens `@ros2_lv/<domain>/<zid>/<nid>/<eid>/<NN|MP|MS>/<enclave>/<ns>/<node>[/<topic>/<type>/<hash>/<qos>]`
//!   with `/` in names replaced by `%`; they make the node and its topics
//!   appear in `ros2 node list` / `ros2 topic list`.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use zenoh::handlers::{RingChannel, RingChannelHandler};
use zenoh::liveliness::LivelinessToken;
use zenoh::pubsub::{Publisher, Subscriber};
use zenoh::sample::Sample;
use zenoh::{Session, Wait};
use zenoh_ext::{ZDeserializer, ZSerializer};

use super::{now_ns, ZenohError};
use crate::msg::{dds_type_name, RosMessage};
use crate::qos::TopicQos;
use crate::type_hash::rihs01_of;

/// Which rmw_zenoh key format to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RosDistro {
    /// rmw_zenoh 0.1 (Humble): no type hashes.
    Humble,
    /// Iron, Jazzy, Kilted, Rolling: RIHS01 type hashes.
    #[default]
    Jazzy,
}

impl RosDistro {
    /// The type-hash slot of a key for `type_name` (`pkg/msg/Name`).
    pub fn type_hash(self, type_name: &str) -> String {
        match self {
            RosDistro::Humble => "TypeHashNotSupported".into(),
            RosDistro::Jazzy => rihs01_of(type_name).unwrap_or_else(|| "RIHS01_".into()),
        }
    }
}

impl RosDistro {
    pub fn as_str(self) -> &'static str {
        match self {
            RosDistro::Humble => "humble",
            RosDistro::Jazzy => "jazzy",
        }
    }
}

/// From the config's `transport.ros_distro` (every name its `FromStr` takes).
impl<'de> serde::Deserialize<'de> for RosDistro {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for RosDistro {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl std::str::FromStr for RosDistro {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "humble" => Ok(RosDistro::Humble),
            "jazzy" | "iron" | "kilted" | "rolling" => Ok(RosDistro::Jazzy),
            other => Err(format!(
                "unknown ROS distro {other:?} (humble, iron, jazzy, kilted or rolling)"
            )),
        }
    }
}

/// The rmw_zenoh attachment of one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attachment {
    pub sequence_number: i64,
    pub source_timestamp_ns: i64,
    pub gid: [u8; 16],
}

impl Attachment {
    pub fn to_bytes(self) -> zenoh::bytes::ZBytes {
        let mut s = ZSerializer::new();
        s.serialize(self.sequence_number);
        s.serialize(self.source_timestamp_ns);
        s.serialize(self.gid);
        s.finish()
    }

    pub fn from_bytes(bytes: &zenoh::bytes::ZBytes) -> Option<Self> {
        let mut d = ZDeserializer::new(bytes);
        let sequence_number = d.deserialize::<i64>().ok()?;
        let source_timestamp_ns = d.deserialize::<i64>().ok()?;
        let gid = d.deserialize::<[u8; 16]>().ok()?;
        Some(Attachment {
            sequence_number,
            source_timestamp_ns,
            gid,
        })
    }
}

/// rmw_zenoh's GID of an entity: XXH3-128 of its liveliness key.
pub fn gid(liveliness_key: &str) -> [u8; 16] {
    xxhash_rust::xxh3::xxh3_128(liveliness_key.as_bytes()).to_le_bytes()
}

/// `/` -> `%`, as rmw_zenoh mangles names inside liveliness keys.
fn mangle(name: &str) -> String {
    name.replace('/', "%")
}

/// A topic name resolved against the node's namespace, without leading or
/// trailing slashes: `/a/b` -> `a/b`; `b` in `/ns` -> `ns/b`.
pub fn resolve_topic(topic: &str, namespace: &str) -> Result<String, String> {
    let full = if topic.starts_with('/') {
        topic.to_string()
    } else {
        format!("{}/{}", namespace.trim_end_matches('/'), topic)
    };
    let trimmed = full.trim_matches('/');
    if trimmed.is_empty() || trimmed.split('/').any(|c| c.is_empty()) {
        return Err(format!("invalid ROS 2 topic name {topic:?}"));
    }
    if !trimmed
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '/')
    {
        return Err(format!(
            "invalid ROS 2 topic name {topic:?} (letters, digits, '_' and '/' only)"
        ));
    }
    Ok(trimmed.to_string())
}

/// The data key of `T` on `topic` (already resolved).
pub fn data_key(domain_id: u32, topic: &str, type_name: &str, hash: &str) -> String {
    format!("{domain_id}/{topic}/{}/{hash}", dds_type_name(type_name))
}

/// A ROS 2 node on rmw_zenoh: its liveliness token, and the id counter its
/// publishers and subscribers draw from.
pub struct RmwNode {
    session: Session,
    domain_id: u32,
    distro: RosDistro,
    namespace: String,
    name: String,
    node_id: u64,
    _token: LivelinessToken,
}

/// Entity ids are unique per process, as in rmw_zenoh's context.
static NEXT_ENTITY_ID: AtomicU64 = AtomicU64::new(0);

impl RmwNode {
    /// Declares the node on `session`. `namespace` is `/` or `/ns`.
    pub fn new(
        session: &Session,
        domain_id: u32,
        distro: RosDistro,
        namespace: &str,
        name: &str,
    ) -> Result<Self, ZenohError> {
        let node_id = NEXT_ENTITY_ID.fetch_add(1, Ordering::Relaxed);
        let namespace = if namespace.is_empty() { "/" } else { namespace }.to_string();
        let key = format!(
            "@ros2_lv/{domain_id}/{}/{node_id}/{node_id}/NN/%/{}/{name}",
            session.zid(),
            mangle(&namespace)
        );
        let token = declare_token(session, key, "node liveliness token")?;
        Ok(RmwNode {
            session: session.clone(),
            domain_id,
            distro,
            namespace,
            name: name.to_string(),
            node_id,
            _token: token,
        })
    }

    /// The liveliness key of a publisher (`MP`) or subscriber (`MS`).
    fn entity_key(
        &self,
        kind: &str,
        entity_id: u64,
        topic: &str,
        type_name: &str,
        qos: TopicQos,
    ) -> String {
        format!(
            "@ros2_lv/{}/{}/{}/{entity_id}/{kind}/%/{}/{}/{}/{}/{}/{}",
            self.domain_id,
            self.session.zid(),
            self.node_id,
            mangle(&self.namespace),
            self.name,
            mangle(&format!("/{topic}")),
            dds_type_name(type_name),
            self.distro.type_hash(type_name),
            qos.rmw_zenoh_key()
        )
    }

    fn new_entity_id(&self) -> u64 {
        NEXT_ENTITY_ID.fetch_add(1, Ordering::Relaxed)
    }

    fn resolve(&self, topic: &str) -> Result<String, ZenohError> {
        resolve_topic(topic, &self.namespace).map_err(|message| ZenohError::Declare {
            what: "topic",
            key: topic.into(),
            message,
        })
    }

    /// A publisher of `T` on `topic`.
    pub fn publisher<T: RosMessage>(
        &self,
        topic: &str,
        qos: TopicQos,
    ) -> Result<RmwPublisher<T>, ZenohError> {
        let topic = self.resolve(topic)?;
        let hash = self.distro.type_hash(T::TYPE_NAME);
        let key = data_key(self.domain_id, &topic, T::TYPE_NAME, &hash);
        let entity = self.new_entity_id();
        let lv_key = self.entity_key("MP", entity, &topic, T::TYPE_NAME, qos);
        let reliability = match qos {
            TopicQos::SensorData | TopicQos::BestEffort { .. } => {
                zenoh::qos::Reliability::BestEffort
            }
            TopicQos::Reliable { .. } => zenoh::qos::Reliability::Reliable,
        };
        let publisher = self
            .session
            .declare_publisher(key.clone())
            .reliability(reliability)
            .wait()
            .map_err(|e| ZenohError::Declare {
                what: "publisher",
                key: key.clone(),
                message: e.to_string(),
            })?;
        let token = declare_token(&self.session, lv_key.clone(), "publisher liveliness token")?;
        Ok(RmwPublisher {
            inner: AttachedPublisher::new(key, gid(&lv_key), publisher),
            _token: token,
            _t: PhantomData,
        })
    }

    /// A subscriber to `T` on `topic` that keeps at most `capacity` samples
    /// (oldest dropped first; 1 = latest wins).
    pub fn subscriber<T: RosMessage>(
        &self,
        topic: &str,
        qos: TopicQos,
        capacity: usize,
    ) -> Result<RmwSubscriber<T>, ZenohError> {
        let topic = self.resolve(topic)?;
        let key = data_key(self.domain_id, &topic, T::TYPE_NAME, "*");
        let entity = self.new_entity_id();
        let lv_key = self.entity_key("MS", entity, &topic, T::TYPE_NAME, qos);
        let subscriber = self
            .session
            .declare_subscriber(key.clone())
            .with(RingChannel::new(capacity.max(1)))
            .wait()
            .map_err(|e| ZenohError::Declare {
                what: "subscriber",
                key: key.clone(),
                message: e.to_string(),
            })?;
        let token = declare_token(&self.session, lv_key, "subscriber liveliness token")?;
        Ok(RmwSubscriber {
            key,
            subscriber,
            _token: token,
            _t: PhantomData,
        })
    }
}

fn declare_token(
    session: &Session,
    key: String,
    what: &'static str,
) -> Result<LivelinessToken, ZenohError> {
    session
        .liveliness()
        .declare_token(key.clone())
        .wait()
        .map_err(|e| ZenohError::Declare {
            what,
            key,
            message: e.to_string(),
        })
}

/// A Zenoh publisher that puts rmw_zenoh's attachment (sequence number
/// from 1, source time, GID) on every sample; used for rmw_zenoh topics
/// and the native trainer keys alike.
pub(crate) struct AttachedPublisher {
    key: String,
    gid: [u8; 16],
    publisher: Publisher<'static>,
    next_seq: i64,
}

impl AttachedPublisher {
    pub(crate) fn new(key: String, gid: [u8; 16], publisher: Publisher<'static>) -> Self {
        AttachedPublisher {
            key,
            gid,
            publisher,
            next_seq: 1,
        }
    }

    /// Publishes CDR (header + body).
    pub(crate) fn put(&mut self, cdr: Vec<u8>) -> Result<(), ZenohError> {
        let attachment = Attachment {
            sequence_number: self.next_seq,
            source_timestamp_ns: now_ns(),
            gid: self.gid,
        };
        self.next_seq += 1;
        self.publisher
            .put(cdr)
            .attachment(attachment.to_bytes())
            .wait()
            .map_err(|e| ZenohError::Put {
                key: self.key.clone(),
                message: e.to_string(),
            })
    }

    /// Encodes `msg` and publishes it.
    pub(crate) fn publish<T: RosMessage>(&mut self, msg: &T) -> Result<(), ZenohError> {
        let bytes = msg.to_cdr().map_err(|e| ZenohError::Encode {
            type_name: T::TYPE_NAME,
            message: e.to_string(),
        })?;
        self.put(bytes)
    }

    pub(crate) fn key(&self) -> &str {
        &self.key
    }
}

/// A publisher on an rmw_zenoh data key.
pub struct RmwPublisher<T> {
    inner: AttachedPublisher,
    _token: LivelinessToken,
    _t: PhantomData<T>,
}

impl<T: RosMessage> RmwPublisher<T> {
    /// Encodes and publishes `msg`.
    pub fn publish(&mut self, msg: &T) -> Result<(), ZenohError> {
        self.inner.publish(msg)
    }

    /// Publishes already-encoded CDR (header + body), e.g. from a bag.
    pub fn publish_cdr(&mut self, cdr: Vec<u8>) -> Result<(), ZenohError> {
        self.inner.put(cdr)
    }

    pub fn key(&self) -> &str {
        self.inner.key()
    }

    pub fn gid(&self) -> [u8; 16] {
        self.inner.gid
    }
}

/// One received sample.
#[derive(Debug, Clone)]
pub struct RmwSample<T> {
    pub msg: T,
    pub key: String,
    /// `None` when the publisher sent none (rmw_zenoh itself would drop it).
    pub attachment: Option<Attachment>,
}

/// A subscriber on an rmw_zenoh data key (any type hash).
pub struct RmwSubscriber<T> {
    key: String,
    subscriber: Subscriber<RingChannelHandler<Sample>>,
    _token: LivelinessToken,
    _t: PhantomData<T>,
}

impl<T: RosMessage> RmwSubscriber<T> {
    fn decode(&self, sample: Sample) -> Result<RmwSample<T>, ZenohError> {
        let key = sample.key_expr().as_str().to_string();
        let payload = sample.payload().to_bytes();
        let msg = T::from_cdr(&payload).map_err(|e| ZenohError::Malformed {
            key: key.clone(),
            message: e.to_string(),
        })?;
        Ok(RmwSample {
            msg,
            key,
            attachment: sample.attachment().and_then(Attachment::from_bytes),
        })
    }

    /// The next sample, if one is waiting. A sample that does not decode is
    /// consumed and returned as [`ZenohError::Malformed`].
    pub fn try_recv(&self) -> Result<Option<RmwSample<T>>, ZenohError> {
        match self.subscriber.try_recv() {
            Ok(Some(s)) => self.decode(s).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(ZenohError::Recv {
                key: self.key.clone(),
                message: e.to_string(),
            }),
        }
    }

    /// Waits up to `timeout` for a sample.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<RmwSample<T>>, ZenohError> {
        match self.subscriber.recv_timeout(timeout) {
            Ok(Some(s)) => self.decode(s).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(ZenohError::Recv {
                key: self.key.clone(),
                message: e.to_string(),
            }),
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_resolve_like_ros() {
        assert_eq!(resolve_topic("/joint_states", "/").unwrap(), "joint_states");
        assert_eq!(resolve_topic("image", "/robot1").unwrap(), "robot1/image");
        assert_eq!(
            resolve_topic("/camera/top/image_raw/compressed", "/").unwrap(),
            "camera/top/image_raw/compressed"
        );
        assert!(resolve_topic("/a//b", "/").is_err());
        assert!(resolve_topic("/a b", "/").is_err());
    }

    #[test]
    fn keys_follow_rmw_zenoh() {
        assert_eq!(
            data_key(
                0,
                "joint_states",
                "sensor_msgs/msg/JointState",
                "TypeHashNotSupported"
            ),
            "0/joint_states/sensor_msgs::msg::dds_::JointState_/TypeHashNotSupported"
        );
        assert_eq!(
            RosDistro::Jazzy.type_hash("sensor_msgs/msg/JointState"),
            "RIHS01_a13ee3a330e346c9d87b5aa18d24e11690752bd33a0350f11c5882bc9179260e"
        );
    }

    #[test]
    fn attachment_is_33_bytes_in_rmw_zenoh_order() {
        let a = Attachment {
            sequence_number: 1,
            source_timestamp_ns: 0x0102_0304_0506_0708,
            gid: core::array::from_fn(|i| i as u8),
        };
        let bytes = a.to_bytes().to_bytes().to_vec();
        assert_eq!(bytes.len(), 33);
        assert_eq!(&bytes[..8], &1i64.to_le_bytes());
        assert_eq!(&bytes[8..16], &0x0102_0304_0506_0708i64.to_le_bytes());
        assert_eq!(bytes[16], 16);
        assert_eq!(&bytes[17..], &a.gid);
        assert_eq!(Attachment::from_bytes(&a.to_bytes()), Some(a));
    }
}
