//! Publishing a recorded episode with its original timing (`sarm replay`,
//! and the node's in-process bag source).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::bag::{read_bag, BagError};
use crate::drops::Drops;
use crate::qos::TopicQos;
use crate::transport::{PublishCdr, Transport, TransportError};

/// Topic -> message type of every topic in a bag.
pub fn bag_topics(bag: &Path) -> Result<BTreeMap<String, String>, BagError> {
    let mut topics = BTreeMap::new();
    read_bag(bag, |m| {
        if !topics.contains_key(m.topic) {
            topics.insert(m.topic.to_string(), m.type_name.to_string());
        }
    })?;
    Ok(topics)
}

/// Publishers for the bag's topics (all of them, or `only`), and the topics
/// skipped because sarm does not know their type.
pub type Publishers = BTreeMap<String, Box<dyn PublishCdr>>;

pub fn publishers_for(
    transport: &mut Transport,
    topics: &BTreeMap<String, String>,
    only: &[String],
) -> Result<(Publishers, BTreeMap<String, String>), TransportError> {
    let mut publishers = Publishers::new();
    let mut unknown = BTreeMap::new();
    for (topic, type_name) in topics {
        if !only.is_empty() && !only.contains(topic) {
            continue;
        }
        // Reliable writers match both reliable and best-effort readers.
        match transport.raw_publisher(topic, type_name, TopicQos::Reliable { depth: 10 }) {
            Ok(p) => {
                publishers.insert(topic.clone(), p);
            }
            Err(TransportError::UnknownType(t)) => {
                unknown.insert(topic.clone(), t);
            }
            Err(e) => return Err(e),
        }
    }
    Ok((publishers, unknown))
}

/// What one pass published.
#[derive(Debug, Clone, Default)]
pub struct ReplayStats {
    pub published: BTreeMap<String, u64>,
    /// Per topic, messages that could not be published, by reason.
    pub failed: BTreeMap<String, BTreeMap<&'static str, u64>>,
    pub skipped_in_bag: BTreeMap<&'static str, u64>,
    pub elapsed: Duration,
    /// True when `stop` cut the pass short.
    pub stopped: bool,
}

/// Publishes the bag once, `rate` times real time, by log time.
pub fn replay_once(
    bag: &Path,
    rate: f64,
    publishers: &mut Publishers,
    stop: &AtomicBool,
    mut on_message: impl FnMut(&ReplayStats),
) -> Result<ReplayStats, BagError> {
    let mut stats = ReplayStats::default();
    let mut drops: BTreeMap<String, Drops> = BTreeMap::new();
    let mut first: Option<u64> = None;
    let start = Instant::now();
    let read = read_bag(bag, |m| {
        if stats.stopped {
            return;
        }
        let Some(publisher) = publishers.get_mut(m.topic) else {
            return;
        };
        let t0 = *first.get_or_insert(m.log_time);
        let due =
            start + Duration::from_secs_f64(m.log_time.saturating_sub(t0) as f64 / 1e9 / rate);
        // Sleep in slices so a stop request is seen promptly.
        loop {
            if stop.load(Ordering::Relaxed) {
                stats.stopped = true;
                return;
            }
            let now = Instant::now();
            if now >= due {
                break;
            }
            std::thread::sleep((due - now).min(Duration::from_millis(50)));
        }
        match publisher.publish_cdr(m.data) {
            Ok(()) => *stats.published.entry(m.topic.to_string()).or_default() += 1,
            Err(e) => {
                let d = drops.entry(m.topic.to_string()).or_insert_with(|| {
                    Drops::new(format!("replay {}", m.topic), Duration::from_secs(5))
                });
                d.record(e.kind(), e);
            }
        }
        on_message(&stats);
    })?;
    stats.skipped_in_bag = read.skipped;
    stats.failed = drops
        .into_iter()
        .map(|(t, d)| (t, d.counts().clone()))
        .collect();
    stats.elapsed = start.elapsed();
    Ok(stats)
}
