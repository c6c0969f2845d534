//! ROS 2 over DDS with ros2-client (pure-Rust RustDDS; no ROS 2 install).
//!
//! One [`DdsNode`] per process: a DomainParticipant (optionally restricted
//! to configured interfaces, loopback in tests) and a ROS 2 node whose graph
//! info is spun on a background thread, so `ros2 node list` / `ros2 topic
//! info` see it. Topics are typed with the message types of [`crate::msg`];
//! the DDS names are ROS 2's (`rt/<topic>`, `pkg::msg::dds_::Name_`).
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
    /// Interfaces (by address) the participant uses; empty = all.
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
    node: Node,
    spinner: Option<std::thread::JoinHandle<()>>,
}

impl DdsNode {
    /// Joins the domain and starts the node's graph spinner.
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
        let mut node = context
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
        let spinner = node.spinner().map_err(create("node spinner"))?;
        let handle = std::thread::Builder::new()
            .name("sarm-dds-spin".into())
            .spawn(move || {
                // Runs until the node is dropped.
                let _ = futures::executor::block_on(spinner.spin());
            })
            .map_err(|e| DdsError::Create {
                what: "spinner thread".into(),
                message: e.to_string(),
            })?;
        Ok(DdsNode {
            node,
            spinner: Some(handle),
        })
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
            _t: PhantomData,
        })
    }

    /// Number of matched remote subscriptions of `publisher`.
    pub fn subscription_count<T: RosMessage>(&self, publisher: &DdsPublisher<T>) -> usize {
        publisher.publisher.get_subscription_count(&self.node)
    }
}

impl Drop for DdsNode {
    fn drop(&mut self) {
        self.node.stop_spinner();
        if let Some(h) = self.spinner.take() {
            let _ = h.join();
        }
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
