//! An in-process transport: the same CDR bytes as DDS and rmw_zenoh carry,
//! handed between publishers and subscribers of one process with no
//! network. The node's own deterministic tests and benchmarks run on it;
//! everything that must meet other implementations uses DDS or Zenoh.
//!
//! A topic has one message type (a publisher or subscriber of another type
//! is refused). Each subscription has a bounded queue: best-effort
//! subscriptions drop their oldest sample when full (counted), reliable
//! ones make the publisher wait for room, as a reliable DDS writer with
//! keep-last history blocks on a slow reader.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

use crate::msg::RosMessage;
use crate::qos::TopicQos;
use crate::transport::{Publish, PublishCdr, Subscribe, TransportError};

#[derive(Debug, thiserror::Error)]
pub enum InProcError {
    #[error("topic {topic} carries {existing}, not {wanted}")]
    TypeMismatch {
        topic: String,
        existing: String,
        wanted: &'static str,
    },
    #[error("malformed sample on {topic}: {message}")]
    Malformed { topic: String, message: String },
    #[error("cannot encode {type_name}: {message}")]
    Encode {
        type_name: &'static str,
        message: String,
    },
}

struct Subscription {
    tx: Sender<Arc<[u8]>>,
    /// For dropping the oldest sample of a full best-effort queue.
    rx: Receiver<Arc<[u8]>>,
    reliable: bool,
    /// Gone when the subscriber is dropped.
    alive: std::sync::Weak<()>,
}

/// A subscription's queue as the publisher sees it: (sender, receiver, reliable).
type Target = (Sender<Arc<[u8]>>, Receiver<Arc<[u8]>>, bool);

struct Topic {
    type_name: &'static str,
    subscriptions: Vec<Subscription>,
}

#[derive(Default)]
struct Inner {
    topics: Mutex<HashMap<String, Topic>>,
    dropped: AtomicU64,
}

/// The in-process bus; clones share it.
#[derive(Clone, Default)]
pub struct Bus {
    inner: Arc<Inner>,
}

impl Bus {
    pub fn new() -> Self {
        Bus::default()
    }

    fn topics(&self) -> std::sync::MutexGuard<'_, HashMap<String, Topic>> {
        match self.inner.topics.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn topic<'a>(
        topics: &'a mut HashMap<String, Topic>,
        name: &str,
        type_name: &'static str,
    ) -> Result<&'a mut Topic, InProcError> {
        let t = topics.entry(name.to_string()).or_insert_with(|| Topic {
            type_name,
            subscriptions: Vec::new(),
        });
        if t.type_name != type_name {
            return Err(InProcError::TypeMismatch {
                topic: name.to_string(),
                existing: t.type_name.to_string(),
                wanted: type_name,
            });
        }
        Ok(t)
    }

    pub fn publisher<T: RosMessage>(&self, topic: &str) -> Result<InProcPublisher<T>, InProcError> {
        Self::topic(&mut self.topics(), topic, T::TYPE_NAME)?;
        Ok(InProcPublisher {
            bus: self.clone(),
            topic: topic.to_string(),
            _t: PhantomData,
        })
    }

    /// A subscription keeping at most `capacity` undelivered samples.
    pub fn subscriber<T: RosMessage>(
        &self,
        topic: &str,
        qos: TopicQos,
        capacity: usize,
    ) -> Result<InProcSubscriber<T>, InProcError> {
        let (tx, rx) = bounded(capacity.max(1));
        let reliable = matches!(qos, TopicQos::Reliable { .. });
        let token = Arc::new(());
        let mut topics = self.topics();
        let t = Self::topic(&mut topics, topic, T::TYPE_NAME)?;
        t.subscriptions.push(Subscription {
            tx,
            rx: rx.clone(),
            reliable,
            alive: Arc::downgrade(&token),
        });
        Ok(InProcSubscriber {
            rx,
            topic: topic.to_string(),
            _alive: token,
            _t: PhantomData,
        })
    }

    /// Samples dropped from full best-effort queues.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    fn deliver(&self, topic: &str, bytes: Arc<[u8]>) {
        // Senders are cloned out so that a reliable subscriber's wait does
        // not hold the bus's lock.
        let targets: Vec<Target> = {
            let mut topics = self.topics();
            let Some(t) = topics.get_mut(topic) else {
                return;
            };
            // Subscriptions whose subscriber is gone are forgotten.
            t.subscriptions.retain(|s| s.alive.strong_count() > 0);
            t.subscriptions
                .iter()
                .map(|s| (s.tx.clone(), s.rx.clone(), s.reliable))
                .collect()
        };
        for (tx, rx, reliable) in targets {
            if reliable {
                let _ = tx.send(bytes.clone());
                continue;
            }
            let mut item = bytes.clone();
            loop {
                match tx.try_send(item) {
                    Ok(()) => break,
                    Err(TrySendError::Full(back)) => {
                        self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                        let _ = rx.try_recv();
                        item = back;
                    }
                    Err(TrySendError::Disconnected(_)) => break,
                }
            }
        }
    }
}

pub struct InProcPublisher<T> {
    bus: Bus,
    topic: String,
    _t: PhantomData<fn(T)>,
}

impl<T: RosMessage> InProcPublisher<T> {
    pub fn publish_cdr(&self, cdr: &[u8]) {
        self.bus.deliver(&self.topic, Arc::from(cdr));
    }
}

impl<T: RosMessage + Send> Publish<T> for InProcPublisher<T> {
    fn publish(&mut self, msg: &T) -> Result<(), TransportError> {
        let cdr = msg.to_cdr().map_err(|e| {
            TransportError::InProc(InProcError::Encode {
                type_name: T::TYPE_NAME,
                message: e.to_string(),
            })
        })?;
        self.bus.deliver(&self.topic, Arc::from(cdr));
        Ok(())
    }
}

impl<T: RosMessage + Send> PublishCdr for InProcPublisher<T> {
    /// The bytes are checked to decode as `T`, then sent as they are.
    fn publish_cdr(&mut self, cdr: &[u8]) -> Result<(), TransportError> {
        T::from_cdr(cdr).map_err(|e| TransportError::Decode {
            type_name: T::TYPE_NAME,
            message: e.to_string(),
        })?;
        self.bus.deliver(&self.topic, Arc::from(cdr));
        Ok(())
    }
}

pub struct InProcSubscriber<T> {
    rx: Receiver<Arc<[u8]>>,
    topic: String,
    _alive: Arc<()>,
    _t: PhantomData<fn() -> T>,
}

impl<T: RosMessage> InProcSubscriber<T> {
    fn decode(&self, bytes: &[u8]) -> Result<T, InProcError> {
        T::from_cdr(bytes).map_err(|e| InProcError::Malformed {
            topic: self.topic.clone(),
            message: e.to_string(),
        })
    }

    /// The next sample if one is waiting.
    pub fn try_recv(&self) -> Result<Option<T>, InProcError> {
        match self.rx.try_recv() {
            Ok(b) => self.decode(&b).map(Some),
            Err(_) => Ok(None),
        }
    }
}

impl<T: RosMessage> Subscribe<T> for InProcSubscriber<T> {
    fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<T>, TransportError> {
        match self.rx.recv_timeout(timeout) {
            Ok(b) => Ok(Some(self.decode(&b).map_err(TransportError::InProc)?)),
            Err(_) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{JointState, Progress};

    #[test]
    fn carries_the_cdr_bytes_and_keeps_types_apart() {
        let bus = Bus::new();
        let mut s = bus
            .subscriber::<JointState>("/j", TopicQos::BestEffort { depth: 2 }, 2)
            .unwrap();
        let mut p = bus.publisher::<JointState>("/j").unwrap();
        for k in 0..3 {
            let js = JointState {
                position: vec![k as f64],
                ..Default::default()
            };
            p.publish(&js).unwrap();
        }
        // Best effort, two deep: the oldest went.
        assert_eq!(bus.dropped(), 1);
        let got = s.recv_timeout(Duration::from_millis(10)).unwrap().unwrap();
        assert_eq!(got.position, [1.0]);
        assert!(matches!(
            bus.publisher::<Progress>("/j"),
            Err(InProcError::TypeMismatch { .. })
        ));
        // Bytes that do not decode are an error for the subscriber.
        p.publish_cdr(&[0, 1, 0, 0, 9]);
        let _ = s.recv_timeout(Duration::from_millis(10));
        assert!(s.recv_timeout(Duration::from_millis(10)).is_err());
    }
}
