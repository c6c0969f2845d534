//! One publishing interface over the two ROS 2 transports (DDS with
//! ros2-client, rmw_zenoh-compatible Zenoh), so commands such as `replay`
//! and the node are written once.

use zenoh::Session;

use crate::dds::{DdsConfig, DdsError, DdsNode, DdsPublisher};
use crate::msg::{
    normalize_type, Clock, CompressedImage, DiagnosticArray, EpisodeEvent, Float64MultiArray,
    Image, JointState, JointTrajectory, PolicyControl, PolicyEvent, Progress, RosMessage,
    SampleWeight,
};
use crate::qos::TopicQos;
use crate::zenoh_link::{
    open_session, RmwNode, RmwPublisher, RosDistro, ZenohError, ZenohSessionConfig,
};

/// Which transport carries ROS 2 topics.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// DDS (RTPS) via ros2-client: what rmw_fastrtps / rmw_cyclonedds nodes speak.
    Dds,
    /// Zenoh with rmw_zenoh's key layout: what rmw_zenoh_cpp nodes speak.
    Zenoh,
}

/// Everything needed to join either transport.
#[derive(Debug, Clone, Default)]
pub struct TransportConfig {
    pub dds: DdsConfig,
    pub zenoh: ZenohSessionConfig,
    pub distro: RosDistro,
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(transparent)]
    Dds(#[from] DdsError),
    #[error(transparent)]
    Zenoh(#[from] ZenohError),
    #[error("cannot decode {type_name} for publishing: {message}")]
    Decode {
        type_name: &'static str,
        message: String,
    },
    #[error(transparent)]
    InProc(#[from] crate::inproc::InProcError),
    #[error("message type {0} is not one sarm knows (sensor_msgs Image/CompressedImage/JointState, diagnostic_msgs/DiagnosticArray, sarm_msgs)")]
    UnknownType(String),
}

impl TransportError {
    /// A short reason, for skip counters.
    pub fn kind(&self) -> &'static str {
        match self {
            TransportError::Dds(_) => "dds",
            TransportError::Zenoh(_) => "zenoh",
            TransportError::Decode { .. } => "cdr",
            TransportError::InProc(crate::inproc::InProcError::Malformed { .. }) => "cdr",
            TransportError::InProc(_) => "inproc",
            TransportError::UnknownType(_) => "unknown_type",
        }
    }
}

/// A joined transport: a DDS node, a Zenoh session with an rmw_zenoh
/// node, or the in-process bus (tests, benchmarks).
pub enum Transport {
    Dds(Box<DdsNode>),
    Zenoh { session: Session, node: RmwNode },
    InProcess(crate::inproc::Bus),
}

impl Transport {
    /// Joins `kind` as node `cfg.dds.node_name` in `cfg.dds.namespace`
    /// (the same name and namespace on both transports).
    pub fn open(kind: TransportKind, cfg: &TransportConfig) -> Result<Self, TransportError> {
        Ok(match kind {
            TransportKind::Dds => Transport::Dds(Box::new(DdsNode::new(&cfg.dds)?)),
            TransportKind::Zenoh => {
                let session = open_session(&cfg.zenoh)?;
                let node = RmwNode::new(
                    &session,
                    cfg.dds.domain_id as u32,
                    cfg.distro,
                    &cfg.dds.namespace,
                    &cfg.dds.node_name,
                )?;
                Transport::Zenoh { session, node }
            }
        })
    }

    /// A typed publisher.
    pub fn publisher<T: RosMessage + Send + 'static>(
        &mut self,
        topic: &str,
        qos: TopicQos,
    ) -> Result<Box<dyn Publish<T>>, TransportError> {
        Ok(match self {
            Transport::Dds(node) => Box::new(node.publisher::<T>(topic, qos)?),
            Transport::Zenoh { node, .. } => Box::new(node.publisher::<T>(topic, qos)?),
            Transport::InProcess(bus) => Box::new(bus.publisher::<T>(topic)?),
        })
    }

    /// A publisher of already-encoded CDR of the named type (`pkg/msg/Name`).
    pub fn raw_publisher(
        &mut self,
        topic: &str,
        type_name: &str,
        qos: TopicQos,
    ) -> Result<Box<dyn PublishCdr>, TransportError> {
        fn typed<T: RosMessage + Send + 'static>(
            t: &mut Transport,
            topic: &str,
            qos: TopicQos,
        ) -> Result<Box<dyn PublishCdr>, TransportError> {
            Ok(match t {
                Transport::Dds(node) => Box::new(node.publisher::<T>(topic, qos)?),
                Transport::Zenoh { node, .. } => Box::new(node.publisher::<T>(topic, qos)?),
                Transport::InProcess(bus) => Box::new(bus.publisher::<T>(topic)?),
            })
        }
        match normalize_type(type_name).as_str() {
            "sensor_msgs/msg/Image" => typed::<Image>(self, topic, qos),
            "sensor_msgs/msg/CompressedImage" => typed::<CompressedImage>(self, topic, qos),
            "sensor_msgs/msg/JointState" => typed::<JointState>(self, topic, qos),
            "diagnostic_msgs/msg/DiagnosticArray" => typed::<DiagnosticArray>(self, topic, qos),
            "sarm_msgs/msg/Progress" => typed::<Progress>(self, topic, qos),
            "sarm_msgs/msg/SampleWeight" => typed::<SampleWeight>(self, topic, qos),
            "sarm_msgs/msg/EpisodeEvent" => typed::<EpisodeEvent>(self, topic, qos),
            "sarm_msgs/msg/PolicyEvent" => typed::<PolicyEvent>(self, topic, qos),
            "sarm_msgs/msg/PolicyControl" => typed::<PolicyControl>(self, topic, qos),
            "std_msgs/msg/Float64MultiArray" => typed::<Float64MultiArray>(self, topic, qos),
            "trajectory_msgs/msg/JointTrajectory" => typed::<JointTrajectory>(self, topic, qos),
            "rosgraph_msgs/msg/Clock" => typed::<Clock>(self, topic, qos),
            other => Err(TransportError::UnknownType(other.to_string())),
        }
    }

    /// A typed subscriber keeping at most `capacity` undelivered samples
    /// (Zenoh: oldest dropped first; DDS: the QoS history depth).
    pub fn subscriber<T: RosMessage + Send + 'static>(
        &mut self,
        topic: &str,
        qos: TopicQos,
        capacity: usize,
    ) -> Result<Box<dyn Subscribe<T> + Send>, TransportError> {
        Ok(match self {
            Transport::Dds(node) => Box::new(node.subscribe::<T>(topic, qos)?),
            Transport::Zenoh { node, .. } => Box::new(node.subscriber::<T>(topic, qos, capacity)?),
            Transport::InProcess(bus) => Box::new(bus.subscriber::<T>(topic, qos, capacity)?),
        })
    }

    /// The Zenoh session, when on Zenoh.
    pub fn zenoh_session(&self) -> Option<&Session> {
        match self {
            Transport::Zenoh { session, .. } => Some(session),
            Transport::Dds(_) | Transport::InProcess(_) => None,
        }
    }
}

/// Receives typed messages.
pub trait Subscribe<T> {
    /// Waits up to `timeout`. A sample that does not decode is consumed and
    /// returned as an error (the caller counts and skips it).
    fn recv_timeout(&mut self, timeout: std::time::Duration) -> Result<Option<T>, TransportError>;
}

impl<T: RosMessage + 'static> Subscribe<T> for crate::dds::DdsSubscriber<T> {
    fn recv_timeout(&mut self, timeout: std::time::Duration) -> Result<Option<T>, TransportError> {
        Ok(crate::dds::DdsSubscriber::recv_timeout(self, timeout)?)
    }
}

impl<T: RosMessage> Subscribe<T> for crate::zenoh_link::RmwSubscriber<T> {
    fn recv_timeout(&mut self, timeout: std::time::Duration) -> Result<Option<T>, TransportError> {
        Ok(crate::zenoh_link::RmwSubscriber::recv_timeout(self, timeout)?.map(|s| s.msg))
    }
}

/// Publishes typed messages.
pub trait Publish<T>: Send {
    fn publish(&mut self, msg: &T) -> Result<(), TransportError>;
}

/// Publishes CDR bytes (header + body) of one known type.
pub trait PublishCdr: Send {
    fn publish_cdr(&mut self, cdr: &[u8]) -> Result<(), TransportError>;
}

impl<T: RosMessage + Clone + Send> Publish<T> for DdsPublisher<T> {
    fn publish(&mut self, msg: &T) -> Result<(), TransportError> {
        Ok(DdsPublisher::publish(self, msg.clone())?)
    }
}

impl<T: RosMessage + Send> Publish<T> for RmwPublisher<T> {
    fn publish(&mut self, msg: &T) -> Result<(), TransportError> {
        Ok(RmwPublisher::publish(self, msg)?)
    }
}

impl<T: RosMessage + Send> PublishCdr for DdsPublisher<T> {
    /// DDS writers serialise typed samples, so the bytes are decoded first
    /// (which also keeps malformed bytes off the wire).
    fn publish_cdr(&mut self, cdr: &[u8]) -> Result<(), TransportError> {
        let msg = T::from_cdr(cdr).map_err(|e| TransportError::Decode {
            type_name: T::TYPE_NAME,
            message: e.to_string(),
        })?;
        Ok(DdsPublisher::publish(self, msg)?)
    }
}

impl<T: RosMessage + Send> PublishCdr for RmwPublisher<T> {
    /// The bytes are checked to decode as `T`, then sent as they are.
    fn publish_cdr(&mut self, cdr: &[u8]) -> Result<(), TransportError> {
        T::from_cdr(cdr).map_err(|e| TransportError::Decode {
            type_name: T::TYPE_NAME,
            message: e.to_string(),
        })?;
        Ok(RmwPublisher::publish_cdr(self, cdr.to_vec())?)
    }
}
