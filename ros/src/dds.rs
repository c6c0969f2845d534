//! ROS 2 over DDS with ros2-client (pure-Rust RustDDS; no ROS 2 install).
//!
//! One [`DdsNode`] per process: a DomainParticipant (optionally restricted
//! to configured interfaces, loopback in tests) and a ROS 2 node, announced
//! on `ros_discovery_info` so `ros2 node list` / `ros2 topic info` see it.
//! Topics are typed with the message types of [`crate::msg`]; the DDS names
//! are ROS 2's (`rt/<topic>`, `pkg::msg::dds_::Name_`).
//!
//! Restricted to interfaces, the participant advertises only their
//! addresses and sends only to locators reachable through them: loopback
//! only talks to 127.0.0.0/8, an interface address to its subnet, plus
//! multicast on those interfaces (the send side is a patch of RustDDS,
//! third_party/README.md).
//!
//! The node runs no ros2-client `Spinner`: its only use to us was graph
//! bookkeeping, and it subscribes `/clock` as `builtin_interfaces/msg/Time`
//! (ROS 2's type is `rosgraph_msgs/msg/Clock`), which real peers saw as a
//! wrongly typed `/clock` reader. Without it there is no such reader.
//!
//! Shutdown: every endpoint keeps the ros2-client `Context` (and so the
//! participant and its event loop) alive until it is dropped, so endpoints
//! and the node can be dropped in any order without RustDDS logging
//! "Cannot remove Writer/Reader" into a stopped event loop.
//!
//! QoS follows the issue: camera and joint inputs use the sensor-data
//! profile (best effort, keep last 1: a late frame is replaced, never
//! queued); outputs are reliable.

use std::marker::PhantomData;
use std::net::IpAddr;
use std::time::Duration;

use ros2_client::dds::rustdds::mio1::{Events, Interest, Poll, Token};
use ros2_client::dds::rustdds::DomainParticipantBuilder;
use ros2_client::dds::{Context, Node, Publisher, Subscription};
use ros2_client::qos::{Durability, History, WhenFull};
use ros2_client::{MessageTypeName, Name, NodeName, NodeOptions, QosProfile};

use crate::msg::RosMessage;
pub use crate::qos::TopicQos;

/// Where and as whom the node joins the DDS domain.
#[derive(Debug, Clone, PartialEq)]
pub struct DdsConfig {
    /// ROS_DOMAIN_ID.
    pub domain_id: u16,
    /// Interfaces (by address) the participant uses; empty = all. It
    /// advertises only these and sends only to locators reachable through
    /// them (127.0.0.1: 127.0.0.0/8; a LAN address: its subnet; multicast on
    /// these interfaces).
    pub interfaces: Vec<IpAddr>,
    /// ROS 2 node name.
    pub node_name: String,
    /// ROS 2 namespace, e.g. `/` or `/robot1`.
    pub namespace: String,
}

impl Default for DdsConfig {
    fn default() -> Self {
        DdsConfig {
            domain_id: 0,
            interfaces: Vec::new(),
            node_name: "sarm".into(),
            namespace: "/".into(),
        }
    }
}

impl TopicQos {
    fn profile(self) -> QosProfile {
        match self {
            TopicQos::SensorData => QosProfile::subscription_default()
                .reliability_best_effort()
                .durability(Durability::Volatile)
                .history(History::KeepLast { depth: 1 }),
            TopicQos::BestEffort { depth } => QosProfile::subscription_default()
                .reliability_best_effort()
                .durability(Durability::Volatile)
                .history(History::KeepLast {
                    depth: depth.max(1) as usize,
                }),
            TopicQos::Reliable { depth } => QosProfile::publisher_default()
                .reliability_reliable(WhenFull::Fail)
                .durability(Durability::Volatile)
                .history(History::KeepLast {
                    depth: depth.max(1) as usize,
                }),
        }
    }
}

/// What went wrong on the DDS side.
#[derive(Debug, thiserror::Error)]
pub enum DdsError {
    #[error("cannot create DDS {what}: {message}")]
    Create { what: String, message: String },
    #[error("invalid ROS 2 name {name:?}: {message}")]
    Name { name: String, message: String },
    #[error("publishing on {topic} failed: {message}")]
    Write { topic: String, message: String },
    #[error("malformed sample on {topic}: {message}")]
    Malformed { topic: String, message: String },
    #[error("reading {topic} failed: {message}")]
    Read { topic: String, message: String },
}

fn create(what: impl Into<String>) -> impl FnOnce(ros2_client::CreateError) -> DdsError {
    let what = what.into();
    move |e| DdsError::Create {
        what,
        message: e.to_string(),
    }
}

/// A ROS 2 node on DDS.
pub struct DdsNode {
    // Dropped in declaration order: the node (its own writers, e.g.
    // parameter events) before the last `Context`, which ends the participant.
    node: Node,
    context: Context,
}

impl DdsNode {
    /// Joins the domain and announces the node.
    pub fn new(cfg: &DdsConfig) -> Result<Self, DdsError> {
        let mut builder = DomainParticipantBuilder::new(cfg.domain_id);
        if !cfg.interfaces.is_empty() {
            builder = builder.with_only_networks(cfg.interfaces.iter().copied());
        }
        let participant = builder.build().map_err(|e| DdsError::Create {
            what: format!("participant on domain {}", cfg.domain_id),
            message: e.to_string(),
        })?;
        let context = Context::from_domain_participant(participant).map_err(create("context"))?;
        let name = NodeName::new(&cfg.namespace, &cfg.node_name).map_err(|e| DdsError::Name {
            name: format!("{}/{}", cfg.namespace, cfg.node_name),
            message: format!("{e:?}"),
        })?;
        let node = context
            .new_node(
                name,
                NodeOptions::new()
                    .enable_rosout(false)
                    .start_parameter_services(false),
            )
            .map_err(|e| DdsError::Create {
                what: "node".into(),
                message: e.to_string(),
            })?;
        Ok(DdsNode { node, context })
    }

    fn topic<T: RosMessage>(
        &mut self,
        topic: &str,
        qos: &QosProfile,
    ) -> Result<ros2_client::dds::rustdds::Topic, DdsError> {
        let name = Name::parse(topic).map_err(|e| DdsError::Name {
            name: topic.into(),
            message: format!("{e:?}"),
        })?;
        let (pkg, ty) = package_and_name(T::TYPE_NAME);
        self.node
            .create_topic(&name, MessageTypeName::new(pkg, ty), qos)
            .map_err(create(format!("topic {topic}")))
    }

    /// Subscribes to `topic` with messages of type `T`.
    pub fn subscribe<T: RosMessage + 'static>(
        &mut self,
        topic: &str,
        qos: TopicQos,
    ) -> Result<DdsSubscriber<T>, DdsError> {
        let profile = qos.profile();
        let t = self.topic::<T>(topic, &profile)?;
        let mut sub = self
            .node
            .create_subscription::<T>(&t, Some(profile))
            .map_err(create(format!("subscription to {topic}")))?;
        let poll = Poll::new().map_err(|e| DdsError::Create {
            what: "poll".into(),
            message: e.to_string(),
        })?;
        poll.registry()
            .register(&mut sub, Token(0), Interest::READABLE)
            .map_err(|e| DdsError::Create {
                what: format!("poll registration for {topic}"),
                message: e.to_string(),
            })?;
        Ok(DdsSubscriber {
            topic: topic.into(),
            sub,
            poll,
            events: Events::with_capacity(4),
            _context: self.context.clone(),
        })
    }

    /// A publisher of `T` on `topic`.
    pub fn publisher<T: RosMessage>(
        &mut self,
        topic: &str,
        qos: TopicQos,
    ) -> Result<DdsPublisher<T>, DdsError> {
        let profile = qos.profile();
        let t = self.topic::<T>(topic, &profile)?;
        let publisher = self
            .node
            .create_publisher::<T>(&t, Some(profile))
            .map_err(create(format!("publisher on {topic}")))?;
        Ok(DdsPublisher {
            topic: topic.into(),
            publisher,
            _context: self.context.clone(),
            _t: PhantomData,
        })
    }
}

/// `pkg/msg/Name` -> (`pkg`, `Name`).
fn package_and_name(full: &str) -> (&str, &str) {
    let pkg = full.split('/').next().unwrap_or(full);
    let name = full.rsplit('/').next().unwrap_or(full);
    (pkg, name)
}

/// A typed DDS subscription.
pub struct DdsSubscriber<T: 'static> {
    topic: String,
    sub: Subscription<T>,
    poll: Poll,
    events: Events,
    // After `sub`: the participant outlives the reader (see the module doc).
    _context: Context,
}

impl<T: RosMessage + 'static> DdsSubscriber<T> {
    /// The next received sample, if any, without waiting. A sample that does
    /// not decode is consumed and returned as [`DdsError::Malformed`].
    pub fn try_recv(&mut self) -> Result<Option<T>, DdsError> {
        match self.sub.take() {
            Ok(Some((msg, _info))) => Ok(Some(msg)),
            Ok(None) => Ok(None),
            Err(ros2_client::ReadError::Deserialization { reason }) => Err(DdsError::Malformed {
                topic: self.topic.clone(),
                message: reason,
            }),
            Err(e) => Err(DdsError::Read {
                topic: self.topic.clone(),
                message: e.to_string(),
            }),
        }
    }

    /// Waits up to `timeout` for a sample.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<T>, DdsError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(m) = self.try_recv()? {
                return Ok(Some(m));
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            // Edge-triggered: after a wake-up, try_recv drains until empty.
            self.poll
                .poll(
                    &mut self.events,
                    Some((deadline - now).min(Duration::from_millis(50))),
                )
                .map_err(|e| DdsError::Read {
                    topic: self.topic.clone(),
                    message: e.to_string(),
                })?;
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }
}

/// A typed DDS publisher.
pub struct DdsPublisher<T: RosMessage> {
    topic: String,
    publisher: Publisher<T>,
    // After `publisher`: the participant outlives the writer (see the module doc).
    _context: Context,
    _t: PhantomData<T>,
}

impl<T: RosMessage> DdsPublisher<T> {
    pub fn publish(&self, msg: T) -> Result<(), DdsError> {
        self.publisher.publish(msg).map_err(|e| DdsError::Write {
            topic: self.topic.clone(),
            message: e.to_string(),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
    use std::time::Instant;

    /// This machine's non-loopback IPv4 addresses, from the kernel's local
    /// routing table.
    fn lan_addresses() -> Vec<Ipv4Addr> {
        let trie = std::fs::read_to_string("/proc/net/fib_trie").unwrap_or_default();
        let lines: Vec<&str> = trie.lines().collect();
        let mut found: Vec<Ipv4Addr> = lines
            .windows(2)
            .filter(|w| w[1].trim() == "/32 host LOCAL")
            .filter_map(|w| w[0].trim().strip_prefix("|-- ")?.parse().ok())
            .filter(|a: &Ipv4Addr| !a.is_loopback())
            .collect();
        found.sort();
        found.dedup();
        found
    }

    /// An RTPS message with one SPDP DATA(p): a participant `prefix` whose
    /// metatraffic and default unicast locators are `locators`.
    fn spdp_announcement(prefix: [u8; 12], domain: u16, locators: &[SocketAddr]) -> Vec<u8> {
        fn param(out: &mut Vec<u8>, pid: u16, value: &[u8]) {
            out.extend_from_slice(&pid.to_le_bytes());
            out.extend_from_slice(&(value.len() as u16).to_le_bytes());
            out.extend_from_slice(value);
        }
        fn locator(addr: &SocketAddr) -> Vec<u8> {
            let SocketAddr::V4(v4) = addr else {
                panic!("IPv4 only")
            };
            let mut l = 1i32.to_le_bytes().to_vec(); // LOCATOR_KIND_UDPv4
            l.extend_from_slice(&u32::from(v4.port()).to_le_bytes());
            l.extend_from_slice(&[0; 12]);
            l.extend_from_slice(&v4.ip().octets());
            l
        }
        let mut guid = prefix.to_vec();
        guid.extend_from_slice(&[0, 0, 1, 0xc1]); // ENTITYID_PARTICIPANT
        let mut payload = vec![0x00, 0x03, 0x00, 0x00]; // PL_CDR_LE
        param(&mut payload, 0x0015, &[2, 3, 0, 0]); // PID_PROTOCOL_VERSION
        param(&mut payload, 0x0016, &[0x01, 0x99, 0, 0]); // PID_VENDORID (unassigned)
        param(&mut payload, 0x000f, &u32::from(domain).to_le_bytes()); // PID_DOMAIN_ID
        param(&mut payload, 0x0050, &guid); // PID_PARTICIPANT_GUID
                                            // Participant announcer/detector, publications and subscriptions
                                            // announcer/detector, participant message writer/reader.
        param(&mut payload, 0x0058, &0x0000_0c3fu32.to_le_bytes()); // PID_BUILTIN_ENDPOINT_SET
        for l in locators {
            param(&mut payload, 0x0032, &locator(l)); // PID_METATRAFFIC_UNICAST_LOCATOR
            param(&mut payload, 0x0031, &locator(l)); // PID_DEFAULT_UNICAST_LOCATOR
        }
        let mut lease = 20i32.to_le_bytes().to_vec();
        lease.extend_from_slice(&[0; 4]);
        param(&mut payload, 0x0002, &lease); // PID_PARTICIPANT_LEASE_DURATION
        param(&mut payload, 0x0001, &[]); // PID_SENTINEL

        let mut data = vec![0u8, 0, 16, 0]; // extraFlags, octetsToInlineQos
        data.extend_from_slice(&[0x00, 0x01, 0x00, 0xc7]); // SPDP reader
        data.extend_from_slice(&[0x00, 0x01, 0x00, 0xc2]); // SPDP writer
        data.extend_from_slice(&0i32.to_le_bytes()); // writerSN high
        data.extend_from_slice(&1u32.to_le_bytes()); // writerSN low
        data.extend_from_slice(&payload);

        let mut msg = b"RTPS".to_vec();
        msg.extend_from_slice(&[2, 3, 0x01, 0x99]);
        msg.extend_from_slice(&prefix);
        msg.extend_from_slice(&[0x15, 0x05]); // DATA, little endian, data present
        msg.extend_from_slice(&(data.len() as u16).to_le_bytes());
        msg.extend_from_slice(&data);
        msg
    }

    /// A participant restricted to loopback meets a peer on this machine
    /// that advertises its LAN address next to 127.0.0.1 (as a Fast DDS
    /// participant does) and whose traffic comes from that LAN address: we
    /// talk to it on 127.0.0.1 only; nothing is sent to the LAN address.
    #[test]
    fn a_loopback_participant_never_sends_to_a_lan_locator() {
        let lan = *lan_addresses()
            .first()
            .expect("this test needs a non-loopback IPv4 address on this machine (it is only ever bound, never sent to)");
        let domain = 150u16;
        let node = DdsNode::new(&DdsConfig {
            domain_id: domain,
            interfaces: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            node_name: "sarm_locator_filter".into(),
            namespace: "/".into(),
        })
        .unwrap();

        let on_lo = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let on_lan = UdpSocket::bind((lan, 0)).unwrap();
        for s in [&on_lo, &on_lan] {
            s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        }
        let announcement = spdp_announcement(
            *b"fakepeer\x01\x02\x03\x04",
            domain,
            &[on_lo.local_addr().unwrap(), on_lan.local_addr().unwrap()],
        );
        let (mut to_lo, mut to_lan) = (0usize, Vec::new());
        let mut buf = [0u8; 65536];
        let started = Instant::now();
        let mut first_reply: Option<Instant> = None;
        let mut last_announced: Option<Instant> = None;
        // Until 3 s after the first datagram to 127.0.0.1 (SPDP, SEDP and
        // their heartbeats have gone out by then), at most 20 s.
        while first_reply.is_none_or(|t| t.elapsed() < Duration::from_secs(3))
            && started.elapsed() < Duration::from_secs(20)
        {
            if last_announced.is_none_or(|t| t.elapsed() >= Duration::from_millis(300)) {
                last_announced = Some(Instant::now());
                // To the well-known SPDP unicast ports of participants 0..4 on
                // loopback, from the LAN socket (so the peer is not seen as
                // being on this host by its source address).
                for pid in 0..4u16 {
                    let port = 7400 + 250 * domain + 10 + 2 * pid;
                    let _ = on_lan.send_to(&announcement, (Ipv4Addr::LOCALHOST, port));
                }
            }
            if on_lo.recv_from(&mut buf).is_ok() {
                to_lo += 1;
                first_reply.get_or_insert_with(Instant::now);
            }
            if let Ok((n, from)) = on_lan.recv_from(&mut buf) {
                to_lan.push((from, n));
            }
        }
        drop(node);
        assert!(
            to_lo > 0,
            "the participant sent nothing to the peer's 127.0.0.1 locator in 20 s: the fake peer was not discovered"
        );
        assert!(
            to_lan.is_empty(),
            "{} datagrams went to the peer's LAN locator {}: {to_lan:?}",
            to_lan.len(),
            on_lan.local_addr().unwrap()
        );
    }
}
