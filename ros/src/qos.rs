//! The QoS a topic is used with, independent of the transport: DDS maps it
//! to a ros2-client profile, rmw_zenoh to its QoS key string and Zenoh
//! reliability.

/// Per-topic QoS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicQos {
    /// Best effort, volatile, keep last 1 (ROS 2's sensor-data profile):
    /// a late frame is replaced, never queued.
    SensorData,
    /// Best effort, volatile, keep last `depth`: a high-rate stream (joint
    /// states) read by a thread that may wake late, from reliable or
    /// best-effort publishers alike.
    BestEffort { depth: i32 },
    /// Reliable, volatile, keep last `depth`. A full send window fails the
    /// write instead of blocking the caller.
    Reliable { depth: i32 },
}

impl TopicQos {
    /// rmw_zenoh's QoS string (`qos_to_keyexpr`): fields equal to
    /// rmw_zenoh's defaults (reliable, volatile, keep last, depth 42,
    /// automatic liveliness, infinite durations) are left empty.
    pub fn rmw_zenoh_key(self) -> String {
        let (reliability, depth) = match self {
            TopicQos::SensorData => ("2", 1),
            TopicQos::BestEffort { depth } => ("2", depth),
            TopicQos::Reliable { depth } => ("", depth),
        };
        let depth = if depth == 42 {
            String::new()
        } else {
            depth.to_string()
        };
        format!("{reliability}::,{depth}:,:,:,,")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rmw_zenoh_qos_strings() {
        assert_eq!(TopicQos::SensorData.rmw_zenoh_key(), "2::,1:,:,:,,");
        assert_eq!(
            TopicQos::BestEffort { depth: 42 }.rmw_zenoh_key(),
            "2::,:,:,:,,"
        );
        assert_eq!(
            TopicQos::Reliable { depth: 10 }.rmw_zenoh_key(),
            "::,10:,:,:,,"
        );
    }
}
