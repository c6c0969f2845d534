//! The node's inputs: one thread per subscription, moving messages into a
//! bounded channel with the node clock's time of arrival.
//!
//! Camera frames are latest-wins (a full channel drops its oldest frame,
//! counted as `stale_input_replaced`); other inputs drop the new message
//! when full (`input_queue_full`). A message that does not decode is
//! counted under its reason and skipped. `/clock` (sim time) is not queued:
//! its thread sets the node's clock directly.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use image::RgbImage;
use sarm_runtime::clock::SimUpdate;
use sarm_runtime::Clock;

use super::stats::NodeStats;
use crate::drops::Drops;
use crate::image::{decode_compressed, decode_raw, ImageDecodeError};
use crate::msg::{CompressedImage, Image};
use crate::transport::Subscribe;

/// A message and when it arrived, on the node's clock.
#[derive(Debug, Clone)]
pub struct Arrived<T> {
    pub msg: T,
    pub at_ns: i64,
}

/// A camera message as received.
#[derive(Debug, Clone)]
pub enum CameraMsg {
    Compressed(CompressedImage),
    Raw(Image),
}

impl CameraMsg {
    pub fn stamp_ns(&self) -> i64 {
        match self {
            CameraMsg::Compressed(m) => m.header.stamp.as_nanos(),
            CameraMsg::Raw(m) => m.header.stamp.as_nanos(),
        }
    }

    /// Decodes into `out` (resized to the image; reused across frames).
    pub fn decode(&self, out: &mut RgbImage) -> Result<(), ImageDecodeError> {
        match self {
            CameraMsg::Compressed(m) => decode_compressed(m, out),
            CameraMsg::Raw(m) => decode_raw(m, out),
        }
    }
}

/// A received camera frame, shared by everything that uses it (the clock's
/// ticks that pick it, the stages).
pub type Frame = Arc<Arrived<CameraMsg>>;

/// How a full input channel makes room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Drop the oldest queued message (camera frames: only the newest matters).
    DropOldest,
    /// Drop the new message.
    DropNew,
}

/// One subscription's thread.
pub struct Input<T, U> {
    pub name: &'static str,
    pub sub: Box<dyn Subscribe<T> + Send>,
    pub tx: Sender<U>,
    /// For `DropOldest`: the receiving end, to take the oldest out.
    pub rx: Option<Receiver<U>>,
    pub when_full: WhenFull,
    /// Wraps what arrived for the channel (camera frames go in an `Arc`
    /// here, next to the message's own allocation, so the stages allocate
    /// nothing per frame).
    pub pack: fn(Arrived<T>) -> U,
    /// Counts every message received (before any is dropped).
    pub received: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// Sees every message before it is queued (the policy stage's newest
    /// frame and joint state).
    pub tap: Option<Tap<U>>,
}

/// See [`Input::tap`].
pub type Tap<U> = Box<dyn Fn(&U) + Send>;

impl<T: Send + 'static, U: Send + 'static> Input<T, U> {
    pub fn spawn(
        self,
        clock: Clock,
        stop: Arc<AtomicBool>,
        stats: Arc<NodeStats>,
    ) -> std::io::Result<JoinHandle<()>> {
        let Input {
            name,
            mut sub,
            tx,
            rx,
            when_full,
            pack,
            received,
            tap,
        } = self;
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let mut drops = Drops::new(name, Duration::from_secs(5));
                while !stop.load(Ordering::Relaxed) {
                    match sub.recv_timeout(Duration::from_millis(50)) {
                        Ok(Some(msg)) => {
                            if let Some(c) = &received {
                                c.fetch_add(1, Ordering::Relaxed);
                            }
                            let mut item = pack(Arrived {
                                msg,
                                at_ns: clock.now_ns(),
                            });
                            if let Some(tap) = &tap {
                                tap(&item);
                            }
                            loop {
                                match tx.try_send(item) {
                                    Ok(()) => break,
                                    Err(TrySendError::Full(back)) => match (&rx, when_full) {
                                        (Some(rx), WhenFull::DropOldest) => {
                                            stats.drop_one("stale_input_replaced");
                                            let _ = rx.try_recv();
                                            item = back;
                                        }
                                        _ => {
                                            stats.drop_one("input_queue_full");
                                            break;
                                        }
                                    },
                                    Err(TrySendError::Disconnected(_)) => return,
                                }
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            stats.drop_one(e.kind());
                            drops.record(e.kind(), e);
                        }
                    }
                }
            })
    }
}

/// The `/clock` subscription of a node on simulated time: each message
/// sets the clock and wakes the assembler, whose timers (the wait for
/// joint states, inactivity) then run at that time, as ROS 2 timers on sim
/// time fire on `/clock`. Time going backwards (a simulator reset) is
/// taken as it is, counted and logged.
pub fn spawn_clock(
    mut sub: Box<dyn Subscribe<crate::msg::Clock> + Send>,
    clock: Clock,
    ticks: Sender<i64>,
    stop: Arc<AtomicBool>,
    stats: Arc<NodeStats>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("sarm-clock".into())
        .spawn(move || {
            let mut drops = Drops::new("/clock", Duration::from_secs(5));
            while !stop.load(Ordering::Relaxed) {
                match sub.recv_timeout(Duration::from_millis(50)) {
                    Ok(Some(m)) => {
                        stats.count("clock_messages", 1);
                        match clock.set_sim_ns(m.clock.as_nanos()) {
                            SimUpdate::Started => tracing::info!(
                                "sim time started at {:.3} s",
                                m.clock.as_nanos() as f64 * 1e-9
                            ),
                            SimUpdate::Backwards => {
                                stats.count("clock_jumped_back", 1);
                                drops.record(
                                    "clock_jumped_back",
                                    format_args!(
                                        "/clock went back to {:.3} s (a simulator reset?)",
                                        m.clock.as_nanos() as f64 * 1e-9
                                    ),
                                );
                            }
                            _ => {}
                        }
                        // Only the newest time matters: a full channel
                        // already holds a wake-up.
                        let _ = ticks.try_send(m.clock.as_nanos());
                    }
                    Ok(None) => {}
                    Err(e) => {
                        stats.drop_one(e.kind());
                        drops.record(e.kind(), e);
                    }
                }
            }
        })
}

/// A subscriber whose messages are wrapped (e.g. into [`CameraMsg`]).
pub struct Mapped<T, U>(pub Box<dyn Subscribe<T> + Send>, pub fn(T) -> U);

impl<T, U> Subscribe<U> for Mapped<T, U> {
    fn recv_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<U>, crate::transport::TransportError> {
        Ok(self.0.recv_timeout(timeout)?.map(self.1))
    }
}
