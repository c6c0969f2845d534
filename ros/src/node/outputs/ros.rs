//! The ROS 2 publishers of the node's outputs: Progress, SampleWeight,
//! EpisodeEvent and PolicyEvent on their topics (DDS or rmw_zenoh, whichever transport the
//! node joined).

use super::{Scored, Sink, SinkError};
use crate::msg::{EpisodeEvent, PolicyEvent, Progress, SampleWeight};
use crate::transport::Publish;

pub struct RosSink {
    pub progress: Box<dyn Publish<Progress>>,
    pub weight: Box<dyn Publish<SampleWeight>>,
    pub episode: Box<dyn Publish<EpisodeEvent>>,
    /// The policy's events (`policy.event_topic`), when a policy runs.
    pub policy: Option<Box<dyn Publish<PolicyEvent>>>,
}

impl Sink for RosSink {
    fn name(&self) -> &'static str {
        "ros"
    }

    fn progress(&mut self, scored: &mut Scored<'_>) -> Result<(), SinkError> {
        // Every head is tried; the first error is reported.
        let mut result = Ok(());
        for msg in scored.messages.iter() {
            if let Err(e) = self.progress.publish(msg) {
                result = result.and(Err(SinkError::transient(format!("Progress: {e}"))));
            }
        }
        result
    }

    fn weight(&mut self, msg: &mut SampleWeight) -> Result<(), SinkError> {
        self.weight
            .publish(msg)
            .map_err(|e| SinkError::transient(format!("SampleWeight: {e}")))
    }

    fn episode(&mut self, msg: &mut EpisodeEvent) -> Result<(), SinkError> {
        self.episode
            .publish(msg)
            .map_err(|e| SinkError::transient(format!("EpisodeEvent: {e}")))
    }

    fn policy(&mut self, msg: &mut PolicyEvent) -> Result<(), SinkError> {
        match &mut self.policy {
            Some(p) => p
                .publish(msg)
                .map_err(|e| SinkError::transient(format!("PolicyEvent: {e}"))),
            None => Ok(()),
        }
    }
}
