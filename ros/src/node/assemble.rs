//! The node's hot path: camera and joint messages in, scores out.
//!
//! Camera frames go through the model's frame clock ([`RateGate`], the same
//! as `sarm label`), the chosen frames are paired with joint states by stamp
//! ([`Synchronizer`]), decoded into one reused RGB buffer and scored. Frames
//! are decoded and encoded only when the clock picks them and a window reads
//! them. Episodes start with the first frame (or a start command) and end on
//! command, at the end of a replayed bag, or after a silence (abort).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use image::RgbImage;
use sarm_runtime::rate::RateGate;
use sarm_runtime::{Bundle, FrameData, FrameScore, Scorer, ScorerConfig};

use super::stats::{NodeStats, Stage};
use crate::drops::Drops;
use crate::image::{decode_compressed, decode_raw, ImageDecodeError};
use crate::joints::JointMap;
use crate::msg::{CompressedImage, EpisodeEvent, Header, Image, JointState, Time};
use crate::sync::{Pushed, SyncConfig, Synced, Synchronizer};

/// Most joints a bundle may use (joint vectors are fixed-size, no allocation).
pub const MAX_JOINTS: usize = 64;

pub type JointVec = heapless::Vec<f32, MAX_JOINTS>;

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

    fn decode(&self, out: &mut RgbImage) -> Result<(), ImageDecodeError> {
        match self {
            CameraMsg::Compressed(m) => decode_compressed(m, out),
            CameraMsg::Raw(m) => decode_raw(m, out),
        }
    }
}

/// The drop reason of a score the outputs thread had no room for (it never
/// reaches the trainer link; the link reports the count to the sink).
pub const OUTPUT_QUEUE_FULL: &str = "output_queue_full";

/// A message and when it arrived.
#[derive(Debug, Clone)]
pub struct Arrived<T> {
    pub msg: T,
    pub at: Instant,
}

/// What the assembler hands to the publishers.
// Scores are the common case; boxing them would allocate once per frame.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Output {
    Score {
        episode_index: i64,
        stamp_ns: i64,
        /// When the scored frame's camera message arrived.
        arrived: Instant,
        /// When the input that produced this score arrived (see
        /// [`super::stats::Stage::Trigger`]); None for the scores an
        /// episode's end flushes out, which answer no input.
        triggered: Option<Instant>,
        score: FrameScore,
    },
    Event(EpisodeEvent),
}

/// Settings, validated by the config.
#[derive(Debug, Clone)]
pub struct AssemblerConfig {
    pub robot_id: String,
    pub scorer: ScorerConfig,
    pub sync: SyncConfig,
    pub auto_start: bool,
    /// Abort the episode after this long without camera frames (None = never).
    pub inactivity: Option<Duration>,
    /// A frame whose camera message is older than this when its turn comes
    /// is not encoded: the newest cached features stand in (overload).
    pub max_lag: Duration,
}

struct Episode {
    index: i64,
    last_camera: Instant,
    last_progress: f32,
}

/// A received camera frame, shared by the clock's ticks that pick it.
pub type Tick = Arc<Arrived<CameraMsg>>;

/// What set off the assembler's current work, for
/// [`super::stats::Stage::Trigger`].
#[derive(Debug, Clone, Copy)]
enum Trigger {
    /// A camera frame or joint state, arrived then.
    Input(Instant),
    /// The periodic tick, releasing frames whose wait for a joint state ran
    /// out: a score counts from the released frame's own arrival.
    Timer,
    /// The episode's end: what it flushes out answers no input.
    EpisodeEnd,
}

pub struct Assembler {
    cfg: AssemblerConfig,
    scorer: Scorer,
    gate: RateGate,
    sync: Synchronizer<Tick, JointVec>,
    joint_map: JointMap,
    n_joints: usize,
    rgb: RgbImage,
    decoded: Option<Tick>,
    features: Vec<f32>,
    last_frame: Option<Tick>,
    last_camera_stamp: Option<i64>,
    last_joints: Option<JointVec>,
    /// Stamp and arrival of each frame given to the scorer, until scored.
    pending: VecDeque<(usize, i64, Instant)>,
    /// What set off the work being done (the trigger of what it scores).
    trigger: Trigger,
    episode: Option<Episode>,
    next_episode: i64,
    stats: Arc<NodeStats>,
    drops: Drops,
    out: Sender<Output>,
}

impl Assembler {
    pub fn new(
        bundle: &Bundle,
        cfg: AssemblerConfig,
        stats: Arc<NodeStats>,
        out: Sender<Output>,
    ) -> anyhow::Result<Self> {
        let names = &bundle.manifest.state.joint_names;
        if names.len() > MAX_JOINTS {
            anyhow::bail!(
                "the bundle has {} joints; at most {MAX_JOINTS} are supported",
                names.len()
            );
        }
        let scorer = Scorer::new(bundle, &cfg.scorer)?;
        let sync = Synchronizer::new(cfg.sync.clone())?;
        Ok(Assembler {
            gate: RateGate::new(bundle.window.fps),
            sync,
            joint_map: JointMap::new(names),
            n_joints: names.len(),
            rgb: RgbImage::new(1, 1),
            decoded: None,
            features: vec![0.0; bundle.manifest.model.image_dim],
            last_frame: None,
            last_camera_stamp: None,
            last_joints: None,
            pending: VecDeque::with_capacity(1024),
            trigger: Trigger::EpisodeEnd,
            episode: None,
            next_episode: 0,
            stats,
            drops: Drops::new("sarm run", Duration::from_secs(5)),
            scorer,
            cfg,
            out,
        })
    }

    pub fn in_episode(&self) -> bool {
        self.episode.is_some()
    }

    fn drop_input(&mut self, reason: &'static str, detail: impl std::fmt::Display) {
        self.stats.drop_one(reason);
        self.drops.record(reason, detail);
    }

    /// A camera message arrived.
    pub fn on_camera(&mut self, frame: Tick) {
        self.trigger = Trigger::Input(frame.at);
        self.stats.count("camera_messages", 1);
        if self.episode.is_none() {
            if !self.cfg.auto_start {
                self.drop_input(
                    "outside_episode",
                    "camera frame before an episode start command",
                );
                return;
            }
            self.start_episode(frame.at);
        }
        let stamp = frame.msg.stamp_ns();
        if self.last_camera_stamp.is_some_and(|last| stamp < last) {
            self.drop_input("camera_stamp_backwards", format_args!("stamp {stamp} ns"));
            return;
        }
        self.last_camera_stamp = Some(stamp);
        if let Some(e) = self.episode.as_mut() {
            e.last_camera = frame.at;
        }
        let ticks = self.gate.push(stamp);
        if ticks.gaps > 0 {
            self.stats.count("camera_gaps", ticks.gaps as u64);
        }
        if let Some(prev) = self.last_frame.clone() {
            for _ in 0..ticks.previous {
                self.push_tick(prev.clone());
            }
        }
        for _ in 0..ticks.current {
            self.push_tick(frame.clone());
        }
        self.last_frame = Some(frame);
        self.drain(Instant::now());
    }

    fn push_tick(&mut self, tick: Tick) {
        let stamp = tick.msg.stamp_ns();
        // The wait for joints counts from now, not from the frame's arrival:
        // a busy scorer must not make joint states still queued look late.
        let now = Instant::now();
        if let Some(Pushed::QueuedDroppedOldest) = self.sync.push_camera(0, stamp, now, tick) {
            self.drop_input(
                "sync_queue_full",
                "a frame waited too long for its joint state",
            );
        }
    }

    /// A joint state arrived.
    pub fn on_joints(&mut self, js: Arrived<JointState>) {
        self.trigger = Trigger::Input(js.at);
        self.stats.count("joint_messages", 1);
        let mut q = JointVec::new();
        let _ = q.resize(self.n_joints, 0.0);
        if let Err(e) = self.joint_map.reorder(&js.msg, &mut q) {
            self.drop_input(e.kind(), e);
            return;
        }
        let stamp = js.msg.header.stamp.as_nanos();
        match self.sync.push_joints(stamp, js.at, q) {
            Pushed::StampWentBackwards => {
                self.drop_input("joints_stamp_backwards", format_args!("stamp {stamp} ns"))
            }
            Pushed::QueuedDroppedOldest => self.stats.count("joints_overflow", 1),
            Pushed::Queued => {}
        }
        self.drain(Instant::now());
    }

    /// Scores every frame whose pairing is decided.
    fn drain(&mut self, now: Instant) {
        while let Some(s) = self.sync.poll(now) {
            self.score_tick(s);
        }
    }

    fn score_tick(&mut self, s: Synced<Tick, JointVec>) {
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
        self.stats.record(
            Stage::Queue,
            Instant::now().saturating_duration_since(frame.at),
        );
        let lagging = frame.at.elapsed() > self.cfg.max_lag;
        let needed = self.scorer.next_frame_needed();
        let use_features = lagging && needed && self.scorer.latest_features().is_some();
        if use_features {
            if let Some(f) = self.scorer.latest_features() {
                self.features.copy_from_slice(f);
            }
            self.stats.drop_one("overload_frame_not_encoded");
        } else if !self
            .decoded
            .as_ref()
            .is_some_and(|d| Arc::ptr_eq(d, &frame))
        {
            let started = Instant::now();
            if let Err(e) = frame.msg.decode(&mut self.rgb) {
                self.drop_input(e.kind(), e);
                return;
            }
            self.stats.record(Stage::Decode, started.elapsed());
            self.decoded = Some(frame.clone());
        }
        let index = self.scorer.frames_received();
        if self.pending.len() == self.pending.capacity() {
            self.pending.pop_front();
        }
        self.pending
            .push_back((index, frame.msg.stamp_ns(), frame.at));
        let data = if use_features {
            FrameData::Features(&self.features)
        } else {
            FrameData::Image(&self.rgb)
        };
        // A push scores at most one frame (more only after a stride gap);
        // the fixed buffer keeps this path free of allocation.
        let mut scored: heapless::Vec<FrameScore, 8> = heapless::Vec::new();
        let mut overflow = false;
        let result = self.scorer.push(data, &joints, &mut |score| {
            overflow |= scored.push(score.clone()).is_err();
        });
        if overflow {
            self.stats.drop_one("score_buffer_full");
        }
        self.record_timings();
        if let Err(e) = result {
            self.pending.pop_back();
            self.drop_input("score_error", e);
            return;
        }
        for score in scored {
            self.emit(score, Some(frame.at));
        }
    }

    fn record_timings(&mut self) {
        let t = self.scorer.take_timings();
        if !t.encode.is_zero() {
            self.stats.record(Stage::Encode, t.encode);
        }
        if !t.reward.is_zero() {
            self.stats.record(Stage::Reward, t.reward);
        }
    }

    /// `pushed`: arrival of the frame whose push produced the score.
    fn emit(&mut self, score: FrameScore, pushed: Option<Instant>) {
        let Some(episode) = self.episode.as_mut() else {
            return;
        };
        while self
            .pending
            .front()
            .is_some_and(|(i, _, _)| *i < score.frame_index)
        {
            self.pending.pop_front();
        }
        let (stamp_ns, arrived) = match self.pending.front() {
            Some(&(i, stamp, at)) if i == score.frame_index => (stamp, at),
            _ => (0, Instant::now()),
        };
        if let Some(h) = score.heads.first() {
            episode.last_progress = h.progress;
        }
        self.stats.count("frames_scored", 1);
        let output = Output::Score {
            episode_index: episode.index,
            stamp_ns,
            arrived,
            triggered: match self.trigger {
                Trigger::Input(at) => Some(at),
                Trigger::Timer => pushed,
                Trigger::EpisodeEnd => None,
            },
            score,
        };
        if self.out.try_send(output).is_err() {
            self.stats.drop_one(OUTPUT_QUEUE_FULL);
        }
    }

    fn event(&self, index: i64, event: u8, frames: u64, final_progress: f32, reason: &str) {
        let msg = EpisodeEvent {
            header: Header {
                stamp: Time::from_nanos(crate::zenoh_link::now_ns()),
                frame_id: String::new(),
            },
            robot_id: self.cfg.robot_id.clone(),
            episode_index: index,
            event,
            frames,
            final_progress,
            reason: reason.to_string(),
        };
        // Events are rare and must not be lost: wait for room.
        let _ = self.out.send(Output::Event(msg));
    }

    /// Starts an episode (ending the current one first, if any).
    pub fn start_episode(&mut self, now: Instant) {
        if self.episode.is_some() {
            self.end_episode(false, "a new episode started");
        }
        let index = self.next_episode;
        self.next_episode += 1;
        self.episode = Some(Episode {
            index,
            last_camera: now,
            last_progress: 0.0,
        });
        self.event(index, 0, 0, 0.0, "");
        tracing::info!("episode {index} started");
    }

    /// Ends the episode: scores what is still waiting (windows clamped to
    /// the last frame), then reports END or ABORT.
    pub fn end_episode(&mut self, abort: bool, reason: &str) {
        if self.episode.is_none() {
            return;
        }
        self.trigger = Trigger::EpisodeEnd;
        // Frames still waiting for joints go out with what there is.
        let far = Instant::now() + Duration::from_secs(3600);
        self.drain(far);
        // The clock's last ticks take the last frame, as offline.
        let extra = self.gate.finish();
        if let Some(last) = self.last_frame.clone() {
            for _ in 0..extra {
                self.push_tick(last.clone());
            }
        }
        self.drain(far);
        let frames = self.scorer.frames_received() as u64;
        let mut scored: Vec<FrameScore> = Vec::new();
        let result = self.scorer.finish(&mut |s| scored.push(s.clone()));
        self.record_timings();
        if let Err(e) = result {
            self.drop_input("score_error", e);
        }
        for s in scored {
            self.emit(s, None);
        }
        let Some(ep) = self.episode.take() else {
            return;
        };
        self.event(
            ep.index,
            if abort { 2 } else { 1 },
            frames,
            ep.last_progress,
            reason,
        );
        tracing::info!(
            "episode {} {} after {frames} frames ({reason}), final progress {:.3}",
            ep.index,
            if abort { "aborted" } else { "ended" },
            ep.last_progress
        );
        self.gate.reset();
        self.sync.reset();
        self.last_frame = None;
        self.last_camera_stamp = None;
        self.decoded = None;
        self.pending.clear();
    }

    /// Periodic work: frames whose joint state is late, and inactivity.
    pub fn tick(&mut self, now: Instant) {
        self.trigger = Trigger::Timer;
        self.drain(now);
        if let (Some(limit), Some(ep)) = (self.cfg.inactivity, self.episode.as_ref()) {
            if now.saturating_duration_since(ep.last_camera) > limit {
                let reason = format!("no camera frames for {:.1} s", limit.as_secs_f64());
                self.end_episode(true, &reason);
            }
        }
    }

    /// Handles an EpisodeEvent command from the control topic.
    pub fn on_control(&mut self, cmd: &EpisodeEvent) {
        match cmd.event {
            0 => self.start_episode(Instant::now()),
            1 => self.end_episode(
                false,
                if cmd.reason.is_empty() {
                    "end command"
                } else {
                    &cmd.reason
                },
            ),
            2 => self.end_episode(
                true,
                if cmd.reason.is_empty() {
                    "abort command"
                } else {
                    &cmd.reason
                },
            ),
            other => self.drop_input("control_event", format_args!("unknown event {other}")),
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
