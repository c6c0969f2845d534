//! The assembler: camera frames and joint states in, the ticks of the
//! model's clock out, each with its frame and the joint state paired with
//! it, between the marks of the episode they belong to.
//!
//! Camera frames go through the model's frame clock ([`RateGate`], the same
//! as `sarm label`), and each chosen frame is paired with a joint state by
//! stamp ([`Synchronizer`]). The assembler owns the episode's life: it
//! starts with the first frame (or a start command) and ends on command, at
//! the end of a replayed bag, after a silence of the camera (abort), or at
//! `episode.max_frames`. All times are the node clock's.
//!
//! It decodes and scores nothing: the stages after it do (see
//! [`super::reward`]).

use crossbeam_channel::Sender;
use sarm_runtime::clock::{duration_between, nanos};
use sarm_runtime::rate::RateGate;
use sarm_runtime::sync::{Pushed, SyncConfig, Synced, Synchronizer};
use sarm_runtime::Bundle;
use std::sync::Arc;
use std::time::Duration;

use super::inputs::{Arrived, Frame};
use super::stats::NodeStats;
use crate::drops::Drops;
use crate::joints::JointMap;
use crate::msg::{EpisodeEvent, EventKind, JointState};

/// Most joints a bundle may use (joint vectors are fixed-size, no allocation).
pub const MAX_JOINTS: usize = 64;

pub type JointVec = heapless::Vec<f32, MAX_JOINTS>;

/// One tick of the model's clock.
#[derive(Debug, Clone)]
pub struct Observation {
    /// The camera frame the tick takes (shared with every tick that takes it).
    pub frame: Frame,
    /// The joint state paired with it, in the bundle's joint order.
    pub joints: JointVec,
    /// When the tick and its pairing were decided (node clock): how late a
    /// stage takes it up is measured from here, not from the frame's
    /// arrival (the ticks an episode's end decides take a frame that
    /// arrived long before and are not late).
    pub decided_ns: i64,
    /// Arrival of the input whose handling decided the tick (the frame or
    /// joint state that completed it, or for a frame released by its wait
    /// for joints running out, that frame); None for the ticks an
    /// episode's end decides, which answer no input.
    pub trigger_ns: Option<i64>,
}

/// What the assembler hands on, in order.
// Ticks are the common case; boxing them would allocate once per tick.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Assembled {
    EpisodeStart {
        index: i64,
        at_ns: i64,
    },
    Tick(Observation),
    EpisodeEnd {
        index: i64,
        kind: EventKind,
        reason: String,
        at_ns: i64,
    },
}

/// Settings, validated by the config.
#[derive(Debug, Clone)]
pub struct AssemblerConfig {
    pub sync: SyncConfig,
    pub auto_start: bool,
    /// Abort the episode after this long without camera frames (None = never).
    pub inactivity: Option<Duration>,
    /// End the episode after this many ticks.
    pub max_frames: u64,
}

/// What set off the assembler's current work.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    /// A camera frame or joint state, arrived then.
    Input(i64),
    /// The periodic tick, releasing frames whose wait for a joint state ran out.
    Timer,
    /// The episode's end.
    EpisodeEnd,
}

struct Episode {
    index: i64,
    last_camera_ns: i64,
}

pub struct Assembler {
    cfg: AssemblerConfig,
    gate: RateGate,
    sync: Synchronizer<Frame, JointVec>,
    joint_map: JointMap,
    n_joints: usize,
    last_frame: Option<Frame>,
    last_camera_stamp: Option<i64>,
    last_joints: Option<JointVec>,
    trigger: Trigger,
    episode: Option<Episode>,
    next_episode: i64,
    stats: Arc<NodeStats>,
    drops: Drops,
    out: Sender<Assembled>,
}

impl Assembler {
    pub fn new(
        bundle: &Bundle,
        cfg: AssemblerConfig,
        stats: Arc<NodeStats>,
        out: Sender<Assembled>,
    ) -> anyhow::Result<Self> {
        let names = &bundle.manifest.state.joint_names;
        if names.len() > MAX_JOINTS {
            anyhow::bail!(
                "the bundle has {} joints; at most {MAX_JOINTS} are supported",
                names.len()
            );
        }
        let sync = Synchronizer::new(cfg.sync.clone())?;
        Ok(Assembler {
            gate: RateGate::new(bundle.window.fps),
            sync,
            joint_map: JointMap::new(names),
            n_joints: names.len(),
            last_frame: None,
            last_camera_stamp: None,
            last_joints: None,
            trigger: Trigger::EpisodeEnd,
            episode: None,
            next_episode: 0,
            stats,
            drops: Drops::new("sarm run", Duration::from_secs(5)),
            cfg,
            out,
        })
    }

    pub fn in_episode(&self) -> bool {
        self.episode.is_some()
    }

    pub fn stats(&self) -> Arc<NodeStats> {
        self.stats.clone()
    }

    fn drop_input(&mut self, reason: &'static str, detail: impl std::fmt::Display) {
        self.stats.drop_one(reason);
        self.drops.record(reason, detail);
    }

    /// Hands on (waiting for room: the stages after are lossless, so a
    /// slow stage holds the assembler back and stale camera frames are
    /// replaced at the input instead).
    fn send(&self, a: Assembled) {
        let _ = self.out.send(a);
    }

    /// A camera message arrived.
    pub fn on_camera(&mut self, frame: Frame, now_ns: i64) {
        self.trigger = Trigger::Input(frame.at_ns);
        self.stats.count("camera_messages", 1);
        if self.episode.is_none() {
            if !self.cfg.auto_start {
                self.drop_input(
                    "outside_episode",
                    "camera frame before an episode start command",
                );
                return;
            }
            self.start_episode(frame.at_ns);
        }
        let stamp = frame.msg.stamp_ns();
        if self.last_camera_stamp.is_some_and(|last| stamp < last) {
            self.drop_input("camera_stamp_backwards", format_args!("stamp {stamp} ns"));
            return;
        }
        self.last_camera_stamp = Some(stamp);
        if let Some(e) = self.episode.as_mut() {
            e.last_camera_ns = frame.at_ns;
        }
        let ticks = self.gate.push(stamp);
        if ticks.gaps > 0 {
            self.stats.count("camera_gaps", ticks.gaps as u64);
        }
        if let Some(prev) = self.last_frame.clone() {
            for _ in 0..ticks.previous {
                self.push_tick(prev.clone(), now_ns);
            }
        }
        for _ in 0..ticks.current {
            self.push_tick(frame.clone(), now_ns);
        }
        self.last_frame = Some(frame);
        self.drain(now_ns);
        self.check_length(now_ns);
    }

    fn push_tick(&mut self, tick: Frame, now_ns: i64) {
        let stamp = tick.msg.stamp_ns();
        // The wait for joints counts from now, not from the frame's arrival:
        // a busy node must not make joint states still queued look late.
        if let Some(Pushed::QueuedDroppedOldest) = self.sync.push_camera(0, stamp, now_ns, tick) {
            self.drop_input(
                "sync_queue_full",
                "a frame waited too long for its joint state",
            );
        }
    }

    /// A joint state arrived.
    pub fn on_joints(&mut self, js: Arrived<JointState>, now_ns: i64) {
        self.trigger = Trigger::Input(js.at_ns);
        self.stats.count("joint_messages", 1);
        let mut q = JointVec::new();
        let _ = q.resize(self.n_joints, 0.0);
        if let Err(e) = self.joint_map.reorder(&js.msg, &mut q) {
            self.drop_input(e.kind(), e);
            return;
        }
        let stamp = js.msg.header.stamp.as_nanos();
        match self.sync.push_joints(stamp, js.at_ns, q) {
            Pushed::StampWentBackwards => {
                self.drop_input("joints_stamp_backwards", format_args!("stamp {stamp} ns"))
            }
            Pushed::QueuedDroppedOldest => self.stats.count("joints_overflow", 1),
            Pushed::Queued => {}
        }
        self.drain(now_ns);
    }

    /// Hands on every tick whose pairing is decided at `now`.
    fn drain(&mut self, now_ns: i64) {
        self.release(now_ns, now_ns);
    }

    /// Hands on every tick whose pairing would be decided at `poll_ns`
    /// (at an episode's end: all of them), decided now.
    fn release(&mut self, poll_ns: i64, now_ns: i64) {
        while let Some(s) = self.sync.poll(poll_ns) {
            self.hand_on(s, now_ns);
        }
    }

    fn hand_on(&mut self, s: Synced<Frame, JointVec>, now_ns: i64) {
        let Some(Some(frame)) = s.cameras.first().cloned() else {
            return;
        };
        let joints = match s.joints {
            Some(j) => j,
            None => match self.last_joints.clone() {
                Some(j) => {
                    // As `sarm label`: the nearest state is used, and counted.
                    self.stats.count("joints_outside_slop", 1);
                    j
                }
                None => {
                    self.drop_input("no_joint_state", "no joint state received yet");
                    return;
                }
            },
        };
        self.last_joints = Some(joints.clone());
        self.stats
            .record_between(super::stats::Stage::Queue, frame.at_ns, now_ns);
        let trigger_ns = match self.trigger {
            Trigger::Input(at) => Some(at),
            Trigger::Timer => Some(frame.at_ns),
            Trigger::EpisodeEnd => None,
        };
        self.stats.tick_handed_on();
        self.send(Assembled::Tick(Observation {
            frame,
            joints,
            decided_ns: now_ns,
            trigger_ns,
        }));
    }

    fn check_length(&mut self, now_ns: i64) {
        if self.episode.is_some() && self.gate.ticks() >= self.cfg.max_frames {
            let reason = format!("episode.max_frames ({}) reached", self.cfg.max_frames);
            self.end_episode(EventKind::End, &reason, now_ns);
        }
    }

    /// Starts an episode (ending the current one first, if any).
    pub fn start_episode(&mut self, now_ns: i64) {
        if self.episode.is_some() {
            self.end_episode(EventKind::End, "a new episode started", now_ns);
        }
        let index = self.next_episode;
        self.next_episode += 1;
        self.episode = Some(Episode {
            index,
            last_camera_ns: now_ns,
        });
        self.send(Assembled::EpisodeStart {
            index,
            at_ns: now_ns,
        });
    }

    /// Ends the episode: hands on what is still waiting (the clock's last
    /// ticks take the last frame, as offline), then the end mark.
    pub fn end_episode(&mut self, kind: EventKind, reason: &str, now_ns: i64) {
        let Some(ep) = self.episode.take() else {
            return;
        };
        self.trigger = Trigger::EpisodeEnd;
        // Frames still waiting for joints go out with what there is,
        // decided now: what is handed on is not late.
        let far = now_ns.saturating_add(nanos(Duration::from_secs(3600)));
        self.release(far, now_ns);
        let extra = self.gate.finish();
        if let Some(last) = self.last_frame.clone() {
            for _ in 0..extra {
                self.push_tick(last.clone(), now_ns);
            }
        }
        self.release(far, now_ns);
        self.send(Assembled::EpisodeEnd {
            index: ep.index,
            kind,
            reason: reason.to_string(),
            at_ns: now_ns,
        });
        self.gate.reset();
        self.sync.reset();
        self.last_frame = None;
        self.last_camera_stamp = None;
    }

    /// Periodic work: frames whose joint state is late, and inactivity.
    pub fn tick(&mut self, now_ns: i64) {
        self.trigger = Trigger::Timer;
        self.drain(now_ns);
        if let (Some(limit), Some(ep)) = (self.cfg.inactivity, self.episode.as_ref()) {
            if duration_between(ep.last_camera_ns, now_ns) > limit {
                let reason = format!("no camera frames for {:.1} s", limit.as_secs_f64());
                self.end_episode(EventKind::Abort, &reason, now_ns);
            }
        }
    }

    /// Handles an EpisodeEvent command from the control topic.
    pub fn on_control(&mut self, cmd: &EpisodeEvent, now_ns: i64) {
        let reason = |default: &str| {
            if cmd.reason.is_empty() {
                default.to_string()
            } else {
                cmd.reason.clone()
            }
        };
        match cmd.kind() {
            Some(EventKind::Start) => self.start_episode(now_ns),
            Some(EventKind::End) => {
                self.end_episode(EventKind::End, &reason("end command"), now_ns)
            }
            Some(EventKind::Abort) => {
                self.end_episode(EventKind::Abort, &reason("abort command"), now_ns)
            }
            None => self.drop_input("control_event", format_args!("unknown event {}", cmd.event)),
        }
    }

    /// The index the next episode gets (episode indices must not repeat
    /// across runs: the sink keys rows by them).
    pub fn set_next_episode(&mut self, index: i64) {
        self.next_episode = index;
    }

    pub fn next_episode_index(&self) -> i64 {
        self.next_episode
    }
}
