//! `sarm run`: the on-robot node, assembled from small parts with one job
//! each, joined by bounded channels.
//!
//! ```text
//! camera sub ─(latest-wins)─┐
//! joints sub ──(bounded)────┼─> assembler ─(bounded)─> reward stage ─(bounded)─> outputs: sinks
//! control sub ─(bounded)────┘  clock, sync,             decode, encoder,      ┌─> trainer link, ROS 2,
//! /clock sub ─> the node clock  episode life             reward, RA-BC,        │   MCAP, parquet, view;
//! [bag replay] ─> transport (in process)                  verdicts             │   /diagnostics
//!     └─ newest frame and joints ─> policy stage ─> safety layer ─> commands  │
//! policy control sub ─(bounded)──┘  (control rate)                 └─ PolicyEvent
//! ```
//!
//! - [`inputs`]: one thread per subscription (and `/clock` for sim time);
//! - [`assemble`]: the model's frame clock, camera/joint pairing, the
//!   episode's life ([`assemble::Assembled`]);
//! - [`reward`]: scores, online RA-BC weights, episode events and
//!   success/stall verdicts ([`reward::Output`]);
//! - [`policy`]: the policy at its control rate, through the safety layer
//!   to the command publisher (optional: `[policy] bundle`);
//! - [`outputs`]: the sinks, each failing on its own;
//! - [`stats`], [`view`]: counters, latencies, `/diagnostics`, the terminal view.
//!
//! The node wires; the engine (`sarm_runtime`) computes. Everything that
//! decides behaviour reads the node's [`Clock`] (wall or sim time).

pub mod assemble;
pub mod config;
pub mod inputs;
pub mod outputs;
pub mod policy;
pub mod policy_infer;
pub mod reward;
pub mod stats;
pub mod view;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::{bounded, select, Receiver, Sender};
use sarm_runtime::sync::SyncConfig;
use sarm_runtime::{Bundle, Clock, ClockSource, ScorerConfig};

use self::assemble::{Assembled, Assembler, AssemblerConfig};
use self::config::{CameraType, NodeConfig, SourceKind};
use self::inputs::{spawn_clock, Arrived, CameraMsg, Frame, Input, Mapped, WhenFull};
use self::outputs::{run_outputs, OutputSettings, OutputSummary, Sink};
use self::policy::{Latest, PolicyIo, PolicyStage};
use self::reward::{Output, RewardConfig, RewardStage};
use self::stats::{NodeStats, Stage};
use self::view::View;
use crate::dds::DdsConfig;
use crate::msg::{CompressedImage, EpisodeEvent, EventKind, Image, JointState, PolicyControl};
use crate::qos::TopicQos;
use crate::replay::{bag_topics, publishers_for, replay_once, Publishers};
use crate::trainer::{LinkSession, RobotLink, RobotLinkConfig, SpoolConfig};
use crate::transport::{Subscribe, Transport, TransportConfig, TransportKind};
use crate::zenoh_link::ZenohSessionConfig;

/// What a run did, for the closing summary.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub outputs: OutputSummary,
    pub counts: std::collections::BTreeMap<&'static str, u64>,
    pub drops: std::collections::BTreeMap<&'static str, u64>,
    /// (stage, p50 ms, p99 ms, samples)
    pub latency: Vec<(&'static str, f64, f64, u64)>,
}

/// What the node runs on.
pub struct NodeIo {
    pub transport: Transport,
    pub clock: Clock,
}

impl NodeIo {
    /// The transport and clock the config names.
    pub fn open(cfg: &NodeConfig) -> anyhow::Result<Self> {
        let transport =
            Transport::open(cfg.transport.kind, &transport_config(cfg)).context("joining ROS 2")?;
        Ok(NodeIo {
            transport,
            clock: Clock::new(cfg.time.source),
        })
    }
}

fn transport_config(cfg: &NodeConfig) -> TransportConfig {
    let t = &cfg.transport;
    TransportConfig {
        dds: DdsConfig {
            domain_id: t.domain_id,
            interfaces: t.interfaces.clone(),
            node_name: t.node_name.clone(),
            namespace: t.namespace.clone(),
        },
        zenoh: ZenohSessionConfig {
            file: t.zenoh_config.clone(),
            mode: None,
            listen: t.zenoh_listen.clone(),
            connect: t.zenoh_connect.clone(),
            scouting: (!t.zenoh_scouting).then_some(false),
        },
        distro: t.ros_distro,
    }
}

/// Runs the node until `stop` is set, or, with a bag source, until the
/// bag's episode has been scored, showing the live view.
pub fn run(cfg: &NodeConfig, stop: Arc<AtomicBool>) -> anyhow::Result<RunSummary> {
    run_with_view(cfg, stop, true)
}

/// As [`run`]; `show_view: false` runs without the live view or its
/// periodic log line (benchmarks).
pub fn run_with_view(
    cfg: &NodeConfig,
    stop: Arc<AtomicBool>,
    show_view: bool,
) -> anyhow::Result<RunSummary> {
    cfg.validate()?;
    let io = NodeIo::open(cfg)?;
    Node::start(cfg, io, stop)?.wait(show_view)
}

/// A running node.
pub struct Node {
    stats: Arc<NodeStats>,
    stop: Arc<AtomicBool>,
    assembler: JoinHandle<()>,
    reward: JoinHandle<()>,
    policy: Option<JoinHandle<()>>,
    outputs: JoinHandle<OutputSummary>,
    inputs: Vec<JoinHandle<()>>,
    replay: Option<JoinHandle<anyhow::Result<()>>>,
    /// Kept alive until the node stops: the topics source never ends.
    _keep_done: Option<Sender<u64>>,
    _replay_transport: Option<Transport>,
    transport: Transport,
}

impl Node {
    /// Loads the bundle, joins the topics and starts every part.
    pub fn start(cfg: &NodeConfig, io: NodeIo, stop: Arc<AtomicBool>) -> anyhow::Result<Node> {
        cfg.validate()?;
        let NodeIo {
            mut transport,
            clock,
        } = io;
        let bundle = Bundle::load(&cfg.bundle)
            .with_context(|| format!("loading bundle {}", cfg.bundle.display()))?;
        let stats = Arc::new(NodeStats::new(clock.clone()));
        tracing::info!(
            "sarm run: bundle {} ({}), {} on {}, {} time",
            bundle.name(),
            cfg.precision,
            match &transport {
                Transport::Dds(_) => "DDS",
                Transport::Zenoh { .. } => "Zenoh",
                Transport::InProcess(_) => "in-process",
            },
            cfg.inputs.camera,
            clock.source().as_str(),
        );

        // Subscriptions.
        let queue = cfg.inputs.queue;
        let camera_sub: Box<dyn Subscribe<CameraMsg> + Send> = match cfg.inputs.camera_type {
            CameraType::Raw => Box::new(Mapped(
                transport.subscriber::<Image>(&cfg.inputs.camera, TopicQos::SensorData, 2)?,
                CameraMsg::Raw,
            )),
            CameraType::Compressed => Box::new(Mapped(
                transport.subscriber::<CompressedImage>(
                    &cfg.inputs.camera,
                    TopicQos::SensorData,
                    2,
                )?,
                CameraMsg::Compressed,
            )),
        };
        let joints_sub = transport.subscriber::<JointState>(
            &cfg.inputs.joints,
            TopicQos::BestEffort {
                depth: queue as i32,
            },
            queue,
        )?;
        let control_sub = transport.subscriber::<EpisodeEvent>(
            &cfg.episode.control,
            TopicQos::Reliable { depth: 10 },
            16,
        )?;
        let clock_sub = match clock.source() {
            ClockSource::Sim => Some(transport.subscriber::<crate::msg::Clock>(
                &cfg.time.clock_topic,
                TopicQos::BestEffort { depth: 1 },
                4,
            )?),
            ClockSource::Wall => None,
        };

        // The inference backend, shared by the reward and policy stages.
        let backend = sarm_runtime::Backend::new(&cfg.backend)
            .map_err(|e| anyhow::anyhow!("config key `backend`: {e}"))?;

        // Everything the stages produce goes to the outputs thread.
        let (out_tx, out_rx) = bounded::<Output>(cfg.outputs.queue);

        // The policy stage (optional): its publishers and control topic.
        let latest = Arc::new(Latest::default());
        let policy = match &cfg.policy.bundle {
            Some(_) => {
                let stage = PolicyStage::new(
                    &cfg.policy,
                    &cfg.robot_id,
                    &backend,
                    &mut transport,
                    clock.clone(),
                    stats.clone(),
                    out_tx.clone(),
                )?;
                let controls = transport.subscriber::<PolicyControl>(
                    &cfg.policy.control_topic,
                    TopicQos::Reliable { depth: 10 },
                    16,
                )?;
                Some((stage, controls))
            }
            None => None,
        };
        let tap_policy = policy.is_some();

        // Sinks, the trainer link first: it numbers what the others carry.
        let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
        let mut first_episode = 0;
        if cfg.outputs.trainer_link {
            let link = RobotLink::start(
                trainer_session(cfg, transport.zenoh_session()),
                RobotLinkConfig {
                    robot_id: cfg.robot_id.clone(),
                    spool: SpoolConfig {
                        dir: cfg.spool_dir(),
                        max_bytes: cfg.trainer.spool_max_mb << 20,
                        when_full: cfg.trainer.when_full,
                    },
                    heartbeat: Duration::from_secs_f64(cfg.trainer.heartbeat_s),
                    model: bundle.dir.display().to_string(),
                },
            )
            .context("opening the trainer link")?;
            // Episode indices carry on from the spool: the sink keys rows by them.
            first_episode = link.recovered().next_episode;
            sinks.push(Box::new(outputs::trainer::TrainerSink {
                link,
                stats: stats.clone(),
            }));
        }
        sinks.push(Box::new(outputs::ros::RosSink {
            progress: transport
                .publisher(&cfg.outputs.progress, TopicQos::Reliable { depth: 100 })?,
            weight: transport.publisher(&cfg.outputs.weight, TopicQos::Reliable { depth: 100 })?,
            episode: transport.publisher(&cfg.outputs.episode, TopicQos::Reliable { depth: 10 })?,
            policy: match tap_policy {
                true => Some(
                    transport
                        .publisher(&cfg.policy.event_topic, TopicQos::Reliable { depth: 100 })?,
                ),
                false => None,
            },
        }));
        if let Some(dir) = &cfg.output_dir {
            // A results folder that cannot be made is a bad config: say so now.
            sinks.push(Box::new(
                outputs::recorder::McapRecorder::create(
                    dir,
                    &cfg.outputs.progress,
                    &cfg.outputs.weight,
                    &cfg.outputs.episode,
                )
                .map_err(|e| anyhow::anyhow!("config key `output_dir`: {e}"))?,
            ));
            sinks.push(Box::new(
                outputs::parquet::ParquetWriter::create(
                    dir,
                    bundle.heads.iter().map(|h| h.kind).collect(),
                    &bundle.dir.display().to_string(),
                )
                .map_err(|e| anyhow::anyhow!("config key `output_dir`: {e}"))?,
            ));
        }
        sinks.push(Box::new(outputs::live::LiveView {
            stats: stats.clone(),
            stage_names: bundle
                .heads
                .first()
                .map(|h| h.stage_names.clone())
                .unwrap_or_default(),
        }));
        let diagnostics =
            transport.publisher(&cfg.outputs.diagnostics, TopicQos::Reliable { depth: 1 })?;

        // A bag source replays onto the transport from inside this process:
        // the same session on Zenoh or the in-process bus, a second
        // participant on DDS.
        let mut replay_transport = None;
        let mut replay_job: Option<(Publishers, std::path::PathBuf)> = None;
        if let (SourceKind::Bag, Some(bag)) = (cfg.source.kind, &cfg.source.bag) {
            let topics = bag_topics(bag)?;
            let wanted = vec![cfg.inputs.camera.clone(), cfg.inputs.joints.clone()];
            for w in &wanted {
                if !topics.contains_key(w) {
                    anyhow::bail!(
                        "config key `source.bag`: {} has no topic {w} (it has: {})",
                        bag.display(),
                        topics.keys().cloned().collect::<Vec<_>>().join(", ")
                    );
                }
            }
            let on_dds = matches!(transport, Transport::Dds(_));
            let publishers = match on_dds {
                true => {
                    let mut r = transport_config(cfg);
                    r.dds.node_name = format!("{}_replay", cfg.transport.node_name);
                    let mut t = Transport::open(TransportKind::Dds, &r)
                        .context("joining ROS 2 for the bag replay")?;
                    let p = publishers_for(&mut t, &topics, &wanted)?.0;
                    replay_transport = Some(t);
                    p
                }
                false => publishers_for(&mut transport, &topics, &wanted)?.0,
            };
            replay_job = Some((publishers, bag.clone()));
        }

        // Channels.
        let (camera_tx, camera_rx) = bounded::<Frame>(2);
        let (joints_tx, joints_rx) = bounded::<Arrived<JointState>>(queue);
        let (control_tx, control_rx) = bounded::<Arrived<EpisodeEvent>>(16);
        let control_tx_verdict = control_tx.clone();
        // Operator controls and verdicts to the policy stage.
        let policy_control = bounded::<PolicyControl>(16);
        let (assembled_tx, assembled_rx) = bounded::<Assembled>(8);
        let (done_tx, done_rx) = bounded::<u64>(1);
        let camera_count = Arc::new(AtomicU64::new(0));

        let mut inputs = vec![
            Input {
                name: "sarm-camera",
                sub: camera_sub,
                tx: camera_tx,
                rx: Some(camera_rx.clone()),
                when_full: WhenFull::DropOldest,
                pack: Arc::new,
                received: Some(camera_count.clone()),
                tap: tap_policy.then(|| {
                    let l = latest.clone();
                    Box::new(move |f: &Frame| l.set_camera(f)) as inputs::Tap<Frame>
                }),
            }
            .spawn(clock.clone(), stop.clone(), stats.clone())?,
            Input {
                name: "sarm-joints",
                sub: joints_sub,
                tx: joints_tx,
                rx: None,
                when_full: WhenFull::DropNew,
                pack: std::convert::identity,
                received: None,
                tap: tap_policy.then(|| {
                    let l = latest.clone();
                    Box::new(move |j: &Arrived<JointState>| l.set_joints(j))
                        as inputs::Tap<Arrived<JointState>>
                }),
            }
            .spawn(clock.clone(), stop.clone(), stats.clone())?,
            Input {
                name: "sarm-control",
                sub: control_sub,
                tx: control_tx,
                rx: None,
                when_full: WhenFull::DropNew,
                pack: std::convert::identity,
                received: None,
                tap: None,
            }
            .spawn(clock.clone(), stop.clone(), stats.clone())?,
        ];
        // Sim time wakes the assembler's timers; wall time needs no wake-up.
        let clock_rx = match clock_sub {
            Some(sub) => {
                let (tx, rx) = bounded::<i64>(1);
                inputs.push(spawn_clock(
                    sub,
                    clock.clone(),
                    tx,
                    stop.clone(),
                    stats.clone(),
                )?);
                rx
            }
            None => crossbeam_channel::never(),
        };

        // Outputs.
        let settings = OutputSettings {
            robot_id: cfg.robot_id.clone(),
            node_name: cfg.transport.node_name.clone(),
            heads: bundle.heads.iter().map(|h| h.kind).collect(),
            diagnostics_period: Duration::from_secs_f64(cfg.outputs.diagnostics_period_s),
        };
        let (out_clock, out_stats) = (clock.clone(), stats.clone());
        let outputs = std::thread::Builder::new()
            .name("sarm-outputs".into())
            .spawn(move || {
                run_outputs(out_rx, sinks, diagnostics, settings, out_clock, out_stats)
            })?;

        // The reward stage, on the configured backend.
        if let Some(w) = sarm_runtime::backend::precision_warning(cfg.backend.kind, cfg.precision) {
            tracing::warn!("{w}");
        }
        if let (Some(_), Some(w)) = (
            &cfg.policy.bundle,
            sarm_runtime::backend::precision_warning(cfg.backend.kind, cfg.policy.precision),
        ) {
            tracing::warn!("policy: {w}");
        }
        let mut reward = RewardStage::new(
            &bundle,
            RewardConfig {
                robot_id: cfg.robot_id.clone(),
                scorer: ScorerConfig {
                    precision: cfg.precision,
                    stride: cfg.stride,
                    smoothing: cfg.smoothing.then(Default::default),
                    task: None,
                },
                rabc: cfg.rabc.params(),
                rabc_head: cfg.rabc.head,
                max_lag: Duration::from_secs(1),
                success: cfg.episode.rules().0,
                stall: cfg.episode.rules().1,
            },
            &backend,
            clock.clone(),
            stats.clone(),
            out_tx,
        )?;
        reward.set_verdict_outputs(reward::VerdictOutputs {
            episode: control_tx_verdict,
            policy: cfg
                .policy
                .disarm_on_verdict
                .then(|| policy_control.0.clone()),
        });
        let info = reward.scorer().backend_info();
        tracing::info!("inference: {info}");
        stats.set_static(info.key_values());
        let reward = std::thread::Builder::new()
            .name("sarm-reward".into())
            .spawn(move || {
                for a in assembled_rx {
                    reward.on(a);
                }
            })?;

        // The policy stage, at its own rate on the node clock.
        let policy = match policy {
            Some((stage, controls)) => {
                let io = PolicyIo {
                    latest,
                    controls,
                    control: policy_control,
                    stop: stop.clone(),
                    // A bag's stamps are from its recording.
                    age_from_arrival: cfg.source.kind == SourceKind::Bag,
                };
                Some(
                    std::thread::Builder::new()
                        .name("sarm-policy".into())
                        .spawn(move || stage.run(io))?,
                )
            }
            None => None,
        };

        // The assembler.
        let mut assembler = Assembler::new(
            &bundle,
            AssemblerConfig {
                sync: SyncConfig {
                    cameras: 1,
                    slop_ns: (cfg.inputs.slop_ms * 1e6) as i64,
                    max_wait: Duration::from_secs_f64(cfg.inputs.max_wait_ms / 1e3),
                    queue,
                },
                auto_start: cfg.episode.auto_start,
                inactivity: (cfg.episode.inactivity_s > 0.0)
                    .then(|| Duration::from_secs_f64(cfg.episode.inactivity_s)),
                max_frames: cfg.episode.max_frames,
            },
            stats.clone(),
            assembled_tx,
        )?;
        assembler.set_next_episode(first_episode);
        let (asm_stop, asm_count, asm_clock) = (stop.clone(), camera_count.clone(), clock.clone());
        let asm_inputs = AssemblerInputs {
            camera: camera_rx,
            joints: joints_rx,
            control: control_rx,
            clock: clock_rx,
            done: done_rx,
        };
        let assembler = std::thread::Builder::new()
            .name("sarm-assembler".into())
            .spawn(move || {
                assemble_loop(
                    &mut assembler,
                    asm_inputs,
                    &asm_clock,
                    &asm_stop,
                    &asm_count,
                )
            })?;

        // The in-process replay, after a moment for discovery.
        let mut keep_done = None;
        let replay = match replay_job {
            Some((mut publishers, bag)) => {
                let rate = cfg.source.rate;
                let camera_topic = cfg.inputs.camera.clone();
                let stop = stop.clone();
                let discovery = match &transport {
                    Transport::Dds(_) => Duration::from_millis(1500),
                    Transport::Zenoh { .. } => Duration::from_millis(200),
                    Transport::InProcess(_) => Duration::ZERO,
                };
                Some(
                    std::thread::Builder::new()
                        .name("sarm-replay".into())
                        .spawn(move || -> anyhow::Result<()> {
                            std::thread::sleep(discovery);
                            let stats = replay_once(&bag, rate, &mut publishers, &stop, |_| {})?;
                            let cameras = stats.published.get(&camera_topic).copied().unwrap_or(0);
                            let _ = done_tx.send(cameras);
                            Ok(())
                        })?,
                )
            }
            None => {
                keep_done = Some(done_tx);
                None
            }
        };
        Ok(Node {
            stats,
            stop,
            assembler,
            reward,
            policy,
            outputs,
            inputs,
            replay,
            _keep_done: keep_done,
            _replay_transport: replay_transport,
            transport,
        })
    }

    pub fn stats(&self) -> &Arc<NodeStats> {
        &self.stats
    }

    /// Whether the node has stopped taking input (stop set, or a bag
    /// source's episode done); [`Node::wait`] then returns promptly.
    pub fn is_finished(&self) -> bool {
        self.assembler.is_finished()
    }

    /// Waits until the node stops (on `stop`, or at the end of a bag
    /// source's episode), showing the live view if asked, and shuts every
    /// part down in order: assembler, inputs, policy stage (disarming it),
    /// reward stage, sinks.
    pub fn wait(self, show_view: bool) -> anyhow::Result<RunSummary> {
        let mut view = show_view.then(View::new);
        while !self.assembler.is_finished() {
            if let Some(v) = view.as_mut() {
                v.update(&self.stats);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(v) = view.as_mut() {
            v.finish();
        }
        let _ = self.assembler.join();
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.replay {
            if let Ok(Err(e)) = t.join() {
                tracing::warn!("bag replay: {e:#}");
            }
        }
        for t in self.inputs {
            let _ = t.join();
        }
        if let Some(p) = self.policy {
            if p.join().is_err() {
                anyhow::bail!("the policy stage panicked");
            }
        }
        if self.reward.join().is_err() {
            anyhow::bail!("the reward stage panicked");
        }
        let summary = self
            .outputs
            .join()
            .map_err(|_| anyhow::anyhow!("the output thread panicked"))?;
        drop(self._keep_done);
        drop(self._replay_transport);
        drop(self.transport);
        let stats = &self.stats;
        Ok(RunSummary {
            outputs: summary,
            counts: stats.counts(),
            drops: stats.drops(),
            latency: Stage::ALL
                .iter()
                .map(|s| {
                    let (p50, p99, n) = stats.percentiles(*s);
                    (s.name(), p50, p99, n)
                })
                .collect(),
        })
    }
}

/// Which Zenoh session carries the trainer link: its own when
/// `trainer.zenoh_config` or `trainer.zenoh_connect` is set (opened in the
/// background, retried while the trainer is unreachable), else the ROS 2
/// session on the Zenoh transport, else (DDS) a peer session of its own.
fn trainer_session(cfg: &NodeConfig, ros_session: Option<&zenoh::Session>) -> LinkSession {
    let t = &cfg.trainer;
    let own = t.zenoh_config.is_some() || !t.zenoh_connect.is_empty();
    match ros_session {
        Some(session) if !own => LinkSession::Shared(session.clone()),
        _ => {
            // A DDS robot restricted to some interfaces keeps its trainer
            // link's peer on them too (listening and scouting there only).
            // (transport.interfaces is a DDS key: a Zenoh transport ignores it.)
            let interfaces: &[std::net::IpAddr] = match cfg.transport.kind {
                crate::transport::TransportKind::Dds => &cfg.transport.interfaces,
                _ => &[],
            };
            let config = match &t.zenoh_config {
                Some(file) => ZenohSessionConfig {
                    file: Some(file.clone()),
                    mode: None,
                    listen: Vec::new(),
                    connect: t.zenoh_connect.clone(),
                    scouting: None,
                },
                None if !interfaces.is_empty() => {
                    tracing::info!(
                        "trainer link: a Zenoh peer session on transport.interfaces {interfaces:?} only{}",
                        if t.zenoh_connect.is_empty() {
                            " (no multicast scouting on loopback: set [trainer] zenoh_connect to reach a trainer)"
                        } else {
                            ""
                        }
                    );
                    ZenohSessionConfig::peer_on_interfaces(interfaces, t.zenoh_connect.clone())
                }
                None => {
                    if !own {
                        tracing::info!(
                            "trainer link: a Zenoh peer session with Zenoh's defaults (multicast scouting); \
                             set [trainer] zenoh_config or zenoh_connect to choose, or outputs.trainer_link = false"
                        );
                    }
                    ZenohSessionConfig {
                        file: None,
                        mode: None,
                        listen: Vec::new(),
                        connect: t.zenoh_connect.clone(),
                        scouting: None,
                    }
                }
            };
            LinkSession::Connect {
                config,
                retry: Duration::from_secs_f64(t.connect_retry_s),
            }
        }
    }
}

/// The assembler's channels.
struct AssemblerInputs {
    camera: Receiver<Frame>,
    joints: Receiver<Arrived<JointState>>,
    control: Receiver<Arrived<EpisodeEvent>>,
    /// Sim time moved (wakes the timers).
    clock: Receiver<i64>,
    /// A bag source is done: how many camera frames it published.
    done: Receiver<u64>,
}

fn assemble_loop(
    asm: &mut Assembler,
    inputs: AssemblerInputs,
    clock: &Clock,
    stop: &AtomicBool,
    cameras_received: &AtomicU64,
) {
    let AssemblerInputs {
        camera,
        joints,
        control,
        clock: clock_ticks,
        done,
    } = inputs;
    let stats = asm.stats();
    loop {
        select! {
            recv(camera) -> m => if let Ok(m) = m {
                // Joint states first: they may pair with this frame.
                while let Ok(j) = joints.try_recv() { asm.on_joints(j, clock.now_ns()); }
                asm.on_camera(m, clock.now_ns())
            },
            recv(joints) -> m => if let Ok(m) = m { asm.on_joints(m, clock.now_ns()) },
            recv(control) -> m => if let Ok(m) = m { asm.on_control(&m.msg, clock.now_ns()) },
            recv(clock_ticks) -> _ => {},
            recv(done) -> m => {
                // Ok: the replay is over. Err: it failed (logged by its thread).
                if let Ok(published) = m {
                    // Take in what is still on its way (up to 2 s), then
                    // end the episode.
                    let deadline = Instant::now() + Duration::from_secs(2);
                    while Instant::now() < deadline
                        && (cameras_received.load(Ordering::Relaxed) < published
                            || !camera.is_empty() || !joints.is_empty())
                    {
                        while let Ok(j) = joints.try_recv() { asm.on_joints(j, clock.now_ns()); }
                        if let Ok(c) = camera.recv_timeout(Duration::from_millis(10)) {
                            asm.on_camera(c, clock.now_ns());
                        }
                    }
                    while let Ok(j) = joints.try_recv() { asm.on_joints(j, clock.now_ns()); }
                }
                asm.end_episode(EventKind::End, "end of the recorded episode", clock.now_ns());
                return;
            },
            default(Duration::from_millis(10)) => {},
        }
        let now = clock.now_ns();
        asm.tick(now);
        stats.set_assembled_until(now);
        if stop.load(Ordering::Relaxed) {
            asm.end_episode(EventKind::Abort, "the node was stopped", clock.now_ns());
            return;
        }
    }
}
