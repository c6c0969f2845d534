//! The reward stage: the assembler's ticks in, scores, online RA-BC weights
//! and episode events out.
//!
//! Each tick's frame is decoded into one reused RGB buffer (once, however
//! many ticks take the same frame) and fed to the engine's [`Scorer`]. A
//! tick taken up more than `max_lag` after it was decided means the node
//! cannot keep up: the frame is not encoded and the newest cached features
//! stand in (counted as `overload_frame_not_encoded`), so every tick is
//! still scored. At an episode's end the frames still waiting are scored
//! with their windows clamped to the last frame, and the last weights are
//! flushed before the END/ABORT event.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use image::RgbImage;
use sarm_runtime::clock::duration_between;
use sarm_runtime::episode::{RabcDriver, StampedWeight};
use sarm_runtime::judge::{EpisodeJudge, StallRule, SuccessRule};
use sarm_runtime::rabc::RabcParams;
use sarm_runtime::{Backend, Bundle, Clock, FrameData, FrameScore, HeadKind, Scorer, ScorerConfig};

use super::assemble::{Assembled, Observation};
use super::inputs::{Arrived, Frame};
use super::stats::{NodeStats, Stage};
use crate::drops::Drops;
use crate::msg::{EpisodeEvent, EventKind, Header, PolicyControl, Time};

/// The drop reason of an output the outputs thread had no room for (it
/// never reaches the trainer link; the link reports the count to the sink).
pub const OUTPUT_QUEUE_FULL: &str = "output_queue_full";

/// The longest look-ahead of a window (frames scored later than pushed).
pub const MAX_LOOK_AHEAD: usize = 256;

/// What the reward stage hands to the outputs.
// Scores are the common case; boxing them would allocate once per frame.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Output {
    Score {
        episode_index: i64,
        /// The scored frame's camera stamp.
        stamp_ns: i64,
        /// When the scored frame's camera message arrived (node clock).
        arrived_ns: i64,
        /// See [`Observation::trigger_ns`].
        triggered_ns: Option<i64>,
        score: FrameScore,
    },
    Weight {
        episode_index: i64,
        chunk_size: u32,
        weight: StampedWeight,
    },
    Event(EpisodeEvent),
    /// From the policy stage: its safety layer changed state.
    Policy(crate::msg::PolicyEvent),
}

#[derive(Debug, Clone)]
pub struct RewardConfig {
    pub robot_id: String,
    pub scorer: ScorerConfig,
    pub rabc: RabcParams,
    pub rabc_head: HeadKind,
    /// A tick taken up later than this after it was decided is not encoded.
    pub max_lag: Duration,
    /// Ending the episode on its progress (`rabc_head`'s).
    pub success: Option<SuccessRule>,
    pub stall: Option<StallRule>,
}

/// Where a success or stall verdict goes: an END command to the
/// assembler (which owns the episode's life), and a disarm to the policy.
pub struct VerdictOutputs {
    pub episode: Sender<Arrived<EpisodeEvent>>,
    pub policy: Option<Sender<PolicyControl>>,
}

struct Episode {
    index: i64,
    last_progress: f32,
}

pub struct RewardStage {
    cfg: RewardConfig,
    clock: Clock,
    scorer: Scorer,
    rabc: RabcDriver,
    rgb: RgbImage,
    decoded: Option<Frame>,
    features: Vec<f32>,
    /// Stamp and arrival of each frame given to the scorer, until scored
    /// (at most the window's look-ahead plus one).
    pending: heapless::Deque<(usize, i64, i64), MAX_LOOK_AHEAD>,
    episode: Option<Episode>,
    judge: EpisodeJudge,
    verdicts: Option<VerdictOutputs>,
    stats: Arc<NodeStats>,
    drops: Drops,
    out: Sender<Output>,
}

impl RewardStage {
    pub fn new(
        bundle: &Bundle,
        cfg: RewardConfig,
        backend: &Backend,
        clock: Clock,
        stats: Arc<NodeStats>,
        out: Sender<Output>,
    ) -> anyhow::Result<Self> {
        let scorer = Scorer::with_backend(bundle, &cfg.scorer, backend)?;
        let look_ahead = scorer.window().delay() + 1;
        if look_ahead > MAX_LOOK_AHEAD {
            anyhow::bail!(
                "the bundle's window looks {look_ahead} frames ahead; at most {MAX_LOOK_AHEAD} are supported"
            );
        }
        Ok(RewardStage {
            rabc: RabcDriver::new(cfg.rabc, cfg.rabc_head)?,
            rgb: RgbImage::new(1, 1),
            decoded: None,
            features: vec![0.0; bundle.manifest.model.image_dim],
            pending: heapless::Deque::new(),
            episode: None,
            judge: EpisodeJudge::new(cfg.success, cfg.stall),
            verdicts: None,
            drops: Drops::new("sarm run", Duration::from_secs(5)),
            scorer,
            clock,
            stats,
            cfg,
            out,
        })
    }

    /// Where success and stall verdicts go (without: they are not acted on).
    pub fn set_verdict_outputs(&mut self, v: VerdictOutputs) {
        self.verdicts = Some(v);
    }

    fn drop_input(&mut self, reason: &'static str, detail: impl std::fmt::Display) {
        self.stats.drop_one(reason);
        self.drops.record(reason, detail);
    }

    /// Takes what the assembler handed on.
    pub fn on(&mut self, a: Assembled) {
        match a {
            Assembled::EpisodeStart { index, at_ns } => self.start(index, at_ns),
            Assembled::Tick(obs) => {
                self.stats.tick_taken();
                self.tick(obs)
            }
            Assembled::EpisodeEnd {
                index,
                kind,
                reason,
                at_ns,
            } => self.end(index, kind, &reason, at_ns),
        }
    }

    fn start(&mut self, index: i64, at_ns: i64) {
        if self.episode.is_some() {
            // The assembler always ends an episode first; be safe anyway.
            self.end(index - 1, EventKind::End, "a new episode started", at_ns);
        }
        self.scorer.reset_episode();
        self.judge.reset();
        self.pending.clear();
        self.episode = Some(Episode {
            index,
            last_progress: 0.0,
        });
        self.event(index, EventKind::Start, 0, 0.0, "", at_ns);
        tracing::info!("episode {index} started");
    }

    fn tick(&mut self, obs: Observation) {
        if self.episode.is_none() {
            return;
        }
        let now = self.clock.now_ns();
        let lagging = duration_between(obs.decided_ns, now) > self.cfg.max_lag;
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
            .is_some_and(|d| Arc::ptr_eq(d, &obs.frame))
        {
            let started = Instant::now();
            if let Err(e) = obs.frame.msg.decode(&mut self.rgb) {
                self.decoded = None;
                self.drop_input(e.kind(), e);
                return;
            }
            self.stats.record(Stage::Decode, started.elapsed());
            self.decoded = Some(obs.frame.clone());
        }
        let index = self.scorer.frames_received();
        if self.pending.is_full() {
            self.pending.pop_front();
        }
        let _ = self
            .pending
            .push_back((index, obs.frame.msg.stamp_ns(), obs.frame.at_ns));
        let data = if use_features {
            FrameData::Features(&self.features)
        } else {
            FrameData::Image(&self.rgb)
        };
        // A push scores at most one frame (more only after a stride gap);
        // the fixed buffer keeps this path free of allocation.
        let mut scored: heapless::Vec<FrameScore, 8> = heapless::Vec::new();
        let mut overflow = false;
        let result = self.scorer.push(data, &obs.joints, &mut |score| {
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
            self.emit(score, obs.trigger_ns);
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

    /// `trigger`: what set off the push that produced the score (None at
    /// an episode's end).
    fn emit(&mut self, score: FrameScore, trigger: Option<i64>) {
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
        let (stamp_ns, arrived_ns) = match self.pending.front() {
            Some(&(i, stamp, at)) if i == score.frame_index => (stamp, at),
            _ => (0, self.clock.now_ns()),
        };
        if let Some(h) = score.heads.first() {
            episode.last_progress = h.progress;
        }
        let episode_index = episode.index;
        if let Some(h) = score.heads.iter().find(|h| h.kind == self.cfg.rabc_head) {
            if let Some(v) = self.judge.push(stamp_ns, h.progress) {
                let reason = v.reason(self.judge.success_rule(), self.judge.stall_rule());
                self.verdict(episode_index, &reason);
            }
        }
        self.stats.count("frames_scored", 1);
        let chunk_size = self.rabc.chunk_size() as u32;
        let mut weights: heapless::Vec<StampedWeight, 4> = heapless::Vec::new();
        self.rabc.push(&score, stamp_ns, &mut |w| {
            let _ = weights.push(w);
        });
        self.send(Output::Score {
            episode_index,
            stamp_ns,
            arrived_ns,
            triggered_ns: trigger,
            score,
        });
        for weight in weights {
            self.send(Output::Weight {
                episode_index,
                chunk_size,
                weight,
            });
        }
    }

    /// Acts on a verdict: ends the episode (through the assembler) and
    /// disarms the policy if asked.
    fn verdict(&mut self, episode_index: i64, reason: &str) {
        let kind = if reason.starts_with("success") {
            "episode_success"
        } else {
            "episode_stall"
        };
        self.stats.count(kind, 1);
        tracing::info!("episode {episode_index}: {reason}");
        let Some(v) = &self.verdicts else {
            return;
        };
        let now = self.clock.now_ns();
        let end = EpisodeEvent {
            header: Header {
                stamp: Time::from_nanos(now),
                frame_id: String::new(),
            },
            robot_id: self.cfg.robot_id.clone(),
            episode_index,
            event: EventKind::End.code(),
            frames: 0,
            final_progress: 0.0,
            reason: reason.to_string(),
        };
        if v.episode
            .try_send(Arrived {
                msg: end,
                at_ns: now,
            })
            .is_err()
        {
            self.stats.drop_one("verdict_not_delivered");
        }
        if let Some(p) = &v.policy {
            let disarm = PolicyControl {
                header: Header::default(),
                robot_id: String::new(),
                command: PolicyControl::DISARM,
                reason: reason.to_string(),
            };
            if p.try_send(disarm).is_err() {
                self.stats.drop_one("verdict_not_delivered");
            }
        }
    }

    /// Outputs never wait: a full queue drops them, counted (the trainer
    /// link reports the count to the sink).
    fn send(&self, o: Output) {
        if self.out.try_send(o).is_err() {
            self.stats.drop_one(OUTPUT_QUEUE_FULL);
        }
    }

    fn end(&mut self, index: i64, kind: EventKind, reason: &str, at_ns: i64) {
        let Some(ep) = self.episode.as_ref() else {
            return;
        };
        let ep_index = ep.index;
        // The frames flushed below belong to an episode already ending: a
        // verdict on them would end the next one.
        self.judge.close();
        if ep_index != index {
            tracing::warn!("episode {index} ended while {ep_index} was running");
        }
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
        // The last weights (deltas clamped to the last frame) before the event.
        let chunk_size = self.rabc.chunk_size() as u32;
        let mut tail = Vec::new();
        self.rabc.finish(&mut |w| tail.push(w));
        for weight in tail {
            self.send(Output::Weight {
                episode_index: ep_index,
                chunk_size,
                weight,
            });
        }
        let last_progress = self.episode.take().map_or(0.0, |e| e.last_progress);
        self.event(ep_index, kind, frames, last_progress, reason, at_ns);
        tracing::info!(
            "episode {ep_index} {} after {frames} frames ({reason}), final progress {last_progress:.3}",
            if kind == EventKind::Abort {
                "aborted"
            } else {
                "ended"
            },
        );
        self.decoded = None;
        self.pending.clear();
    }

    fn event(
        &self,
        index: i64,
        kind: EventKind,
        frames: u64,
        final_progress: f32,
        reason: &str,
        at_ns: i64,
    ) {
        let msg = EpisodeEvent {
            header: Header {
                stamp: Time::from_nanos(at_ns),
                frame_id: String::new(),
            },
            robot_id: self.cfg.robot_id.clone(),
            episode_index: index,
            event: kind.code(),
            frames,
            final_progress,
            reason: reason.to_string(),
        };
        // Events are rare and must not be lost: wait for room.
        let _ = self.out.send(Output::Event(msg));
    }

    /// The engine's scorer (benchmarks and tests).
    pub fn scorer(&self) -> &Scorer {
        &self.scorer
    }
}
