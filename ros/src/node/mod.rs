//! `sarm run`: the on-robot node.
//!
//! ```text
//! camera sub ─(latest-wins)─┐
//! joints sub ──(bounded)────┼─> assembler: clock, sync, decode, encoder, reward ─(bounded)─> outputs
//! control sub ─(bounded)────┘                                                        (ROS 2, trainer link,
//! [bag replay] ─> transport (in process)                                               diagnostics, files)
//! ```
//! One thread per box, joined by bounded crossbeam channels; nothing queues
//! without bound. The main thread shows the live view and waits.

pub mod assemble;
pub mod config;
pub mod outputs;
pub mod stats;
pub mod view;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::{bounded, select, Receiver, Sender, TrySendError};
use sarm_runtime::{Bundle, HeadKind, Precision, ScorerConfig};

use self::assemble::{Arrived, Assembler, AssemblerConfig, CameraMsg, Output, Tick};
use self::config::NodeConfig;
use self::outputs::{run_outputs, OutputSettings, OutputSummary, Sinks};
use self::stats::{NodeStats, Stage};
use self::view::View;
use crate::dds::DdsConfig;
use crate::drops::Drops;
use crate::msg::{CompressedImage, EpisodeEvent, Image, JointState};
use crate::qos::TopicQos;
use crate::replay::{bag_topics, publishers_for, replay_once};
use crate::sync::SyncConfig;
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
    let bundle = Bundle::load(&cfg.bundle)
        .with_context(|| format!("loading bundle {}", cfg.bundle.display()))?;
    let precision = Precision::parse(&cfg.precision)
        .ok_or_else(|| anyhow::anyhow!("config key `precision`: fp32 or int8"))?;
    let kind = if cfg.transport.kind == "zenoh" {
        TransportKind::Zenoh
    } else {
        TransportKind::Dds
    };
    let tcfg = TransportConfig {
        dds: DdsConfig {
            domain_id: cfg.transport.domain_id,
            interfaces: cfg.transport.interfaces.clone(),
            node_name: cfg.transport.node_name.clone(),
            namespace: cfg.transport.namespace.clone(),
        },
        zenoh: ZenohSessionConfig {
            file: (!cfg.transport.zenoh_config.as_os_str().is_empty())
                .then(|| cfg.transport.zenoh_config.clone()),
            mode: None,
            listen: cfg.transport.zenoh_listen.clone(),
            connect: cfg.transport.zenoh_connect.clone(),
            scouting: (!cfg.transport.zenoh_scouting).then_some(false),
        },
        distro: cfg.ros_distro()?,
    };
    let stats = Arc::new(NodeStats::new());
    let mut transport = Transport::open(kind, &tcfg).context("joining ROS 2")?;
    tracing::info!(
        "sarm run: bundle {} ({}), {} on {}",
        bundle.name(),
        precision,
        match kind {
            TransportKind::Dds => "DDS",
            TransportKind::Zenoh => "Zenoh",
        },
        cfg.inputs.camera
    );

    // Subscriptions.
    let queue = cfg.inputs.queue;
    let camera_sub: Box<dyn Subscribe<CameraMsg> + Send> = if cfg.inputs.camera_type == "raw" {
        Box::new(Mapped(
            transport.subscriber::<Image>(&cfg.inputs.camera, TopicQos::SensorData, 2)?,
            CameraMsg::Raw,
        ))
    } else {
        Box::new(Mapped(
            transport.subscriber::<CompressedImage>(&cfg.inputs.camera, TopicQos::SensorData, 2)?,
            CameraMsg::Compressed,
        ))
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

    // Publishers.
    let mut sinks = Sinks {
        progress: transport.publisher(&cfg.outputs.progress, TopicQos::Reliable { depth: 100 })?,
        episode: transport.publisher(&cfg.outputs.episode, TopicQos::Reliable { depth: 10 })?,
        weight: transport.publisher(&cfg.outputs.weight, TopicQos::Reliable { depth: 100 })?,
        diagnostics: transport
            .publisher(&cfg.outputs.diagnostics, TopicQos::Reliable { depth: 1 })?,
        trainer: None,
        progress_topic: cfg.outputs.progress.clone(),
        episode_topic: cfg.outputs.episode.clone(),
        weight_topic: cfg.outputs.weight.clone(),
    };
    let mut first_episode = 0;
    if cfg.outputs.trainer_link {
        let link_session = trainer_session(cfg, transport.zenoh_session());
        let link = RobotLink::start(
            link_session,
            RobotLinkConfig {
                robot_id: cfg.robot_id.clone(),
                spool: SpoolConfig {
                    dir: cfg.spool_dir(),
                    max_bytes: cfg.trainer.spool_max_mb << 20,
                    when_full: cfg.when_full()?,
                },
                heartbeat: Duration::from_secs_f64(cfg.trainer.heartbeat_s),
                model: bundle.dir.display().to_string(),
            },
        )
        .context("opening the trainer link")?;
        first_episode = link.recovered().next_episode;
        sinks.trainer = Some(link);
    }

    // A bag source replays onto the transport from inside this process: the
    // same session on Zenoh (local delivery), a second participant on DDS.
    let mut replay_transport = None;
    let mut replay_job = None;
    if cfg.source.kind == "bag" {
        let topics = bag_topics(&cfg.source.bag)?;
        let wanted = vec![cfg.inputs.camera.clone(), cfg.inputs.joints.clone()];
        for w in &wanted {
            if !topics.contains_key(w) {
                anyhow::bail!(
                    "source.bag {} has no topic {w} (it has: {})",
                    cfg.source.bag.display(),
                    topics.keys().cloned().collect::<Vec<_>>().join(", ")
                );
            }
        }
        let publishers = match kind {
            TransportKind::Zenoh => publishers_for(&mut transport, &topics, &wanted)?.0,
            TransportKind::Dds => {
                let mut r = tcfg.clone();
                r.dds.node_name = format!("{}_replay", cfg.transport.node_name);
                let mut t =
                    Transport::open(kind, &r).context("joining ROS 2 for the bag replay")?;
                let p = publishers_for(&mut t, &topics, &wanted)?.0;
                replay_transport = Some(t);
                p
            }
        };
        replay_job = Some(publishers);
    }

    // Channels.
    let (camera_tx, camera_rx) = bounded::<Tick>(2);
    let (joints_tx, joints_rx) = bounded::<Arrived<JointState>>(queue);
    let (control_tx, control_rx) = bounded::<Arrived<EpisodeEvent>>(16);
    let (out_tx, out_rx) = bounded::<Output>(cfg.outputs.queue);
    let (done_tx, done_rx) = bounded::<u64>(1);
    let camera_count = Arc::new(AtomicU64::new(0));

    let threads: Vec<JoinHandle<()>> = vec![
        spawn_input(
            "sarm-camera",
            camera_sub,
            camera_tx,
            Some(camera_rx.clone()),
            Arc::new,
            stop.clone(),
            stats.clone(),
            Some(camera_count.clone()),
        )?,
        spawn_input(
            "sarm-joints",
            joints_sub,
            joints_tx,
            Some(joints_rx.clone()),
            std::convert::identity,
            stop.clone(),
            stats.clone(),
            None,
        )?,
        spawn_input(
            "sarm-control",
            control_sub,
            control_tx,
            None,
            std::convert::identity,
            stop.clone(),
            stats.clone(),
            None,
        )?,
    ];

    // Outputs.
    let settings = OutputSettings {
        robot_id: cfg.robot_id.clone(),
        node_name: cfg.transport.node_name.clone(),
        heads: bundle
            .heads
            .iter()
            .map(|h| h.kind)
            .collect::<Vec<HeadKind>>(),
        stage_names: bundle.heads.iter().map(|h| h.stage_names.clone()).collect(),
        output_dir: (!cfg.output_dir.as_os_str().is_empty()).then(|| cfg.output_dir.clone()),
        bundle_dir: bundle.dir.clone(),
        diagnostics_period: Duration::from_secs_f64(cfg.outputs.diagnostics_period_s),
        rabc: cfg.rabc.params(),
        rabc_head: if cfg.rabc.head == "dense" {
            HeadKind::Dense
        } else {
            HeadKind::Sparse
        },
    };
    let out_stats = stats.clone();
    let outputs = std::thread::Builder::new()
        .name("sarm-outputs".into())
        .spawn(move || run_outputs(out_rx, sinks, settings, out_stats))?;

    // The assembler.
    let acfg = AssemblerConfig {
        robot_id: cfg.robot_id.clone(),
        scorer: ScorerConfig {
            precision,
            stride: cfg.stride,
            smoothing: cfg.smoothing.then(Default::default),
            task: None,
        },
        sync: SyncConfig {
            cameras: 1,
            slop_ns: (cfg.inputs.slop_ms * 1e6) as i64,
            max_wait: Duration::from_secs_f64(cfg.inputs.max_wait_ms / 1e3),
            queue,
        },
        auto_start: cfg.episode.auto_start,
        inactivity: (cfg.episode.inactivity_s > 0.0)
            .then(|| Duration::from_secs_f64(cfg.episode.inactivity_s)),
        max_lag: Duration::from_secs(1),
    };
    let mut assembler = Assembler::new(&bundle, acfg, stats.clone(), out_tx)?;
    // Episode indices carry on from the trainer link's spool.
    assembler.set_next_episode(first_episode);
    let asm_stop = stop.clone();
    let asm_count = camera_count.clone();
    let assembler_thread = std::thread::Builder::new()
        .name("sarm-assembler".into())
        .spawn(move || {
            assemble_loop(
                &mut assembler,
                camera_rx,
                joints_rx,
                control_rx,
                done_rx,
                &asm_stop,
                &asm_count,
            )
        })?;

    // The in-process replay, after a moment for discovery.
    let mut keep_done = None;
    let replay_thread = match replay_job {
        Some(mut publishers) => {
            let bag = cfg.source.bag.clone();
            let rate = cfg.source.rate;
            let camera_topic = cfg.inputs.camera.clone();
            let stop = stop.clone();
            Some(
                std::thread::Builder::new()
                    .name("sarm-replay".into())
                    .spawn(move || -> anyhow::Result<()> {
                        std::thread::sleep(Duration::from_millis(if kind == TransportKind::Dds {
                            1500
                        } else {
                            200
                        }));
                        let stats = replay_once(&bag, rate, &mut publishers, &stop, |_| {})?;
                        let cameras = stats.published.get(&camera_topic).copied().unwrap_or(0);
                        let _ = done_tx.send(cameras);
                        Ok(())
                    })?,
            )
        }
        // Topics: the source never ends; the sender stays alive until the
        // node stops, so the assembler never sees the channel close.
        None => {
            keep_done = Some(done_tx);
            None
        }
    };

    // Main thread: the view, until the assembler is done.
    let mut view = show_view.then(View::new);
    while !assembler_thread.is_finished() {
        if let Some(v) = view.as_mut() {
            v.update(&stats);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some(v) = view.as_mut() {
        v.finish();
    }
    let _ = assembler_thread.join();
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = replay_thread {
        if let Ok(Err(e)) = t.join() {
            tracing::warn!("bag replay: {e:#}");
        }
    }
    for t in threads {
        let _ = t.join();
    }
    let summary = outputs
        .join()
        .map_err(|_| anyhow::anyhow!("the output thread panicked"))??;
    drop(keep_done);
    drop(replay_transport);
    drop(transport);
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

/// A subscriber whose messages are wrapped (e.g. into [`CameraMsg`]).
struct Mapped<T, U>(Box<dyn Subscribe<T> + Send>, fn(T) -> U);

impl<T, U> Subscribe<U> for Mapped<T, U> {
    fn recv_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<U>, crate::transport::TransportError> {
        Ok(self.0.recv_timeout(timeout)?.map(self.1))
    }
}

/// Which Zenoh session carries the trainer link: its own when
/// `trainer.zenoh_config` or `trainer.zenoh_connect` is set (opened in the
/// background, retried while the trainer is unreachable), else the ROS 2
/// session on the Zenoh transport, else (DDS) a peer session of its own
/// with Zenoh's defaults.
fn trainer_session(cfg: &NodeConfig, ros_session: Option<&zenoh::Session>) -> LinkSession {
    let t = &cfg.trainer;
    let own = !t.zenoh_config.as_os_str().is_empty() || !t.zenoh_connect.is_empty();
    match ros_session {
        Some(session) if !own => LinkSession::Shared(session.clone()),
        _ => {
            if !own {
                tracing::info!(
                    "trainer link: a Zenoh peer session with Zenoh's defaults (multicast scouting); \
                     set [trainer] zenoh_config or zenoh_connect to choose, or outputs.trainer_link = false"
                );
            }
            LinkSession::Connect {
                config: ZenohSessionConfig {
                    file: (!t.zenoh_config.as_os_str().is_empty()).then(|| t.zenoh_config.clone()),
                    mode: None,
                    listen: Vec::new(),
                    connect: t.zenoh_connect.clone(),
                    scouting: None,
                },
                retry: Duration::from_secs_f64(t.connect_retry_s),
            }
        }
    }
}

/// A thread that moves messages from a subscriber into a channel. With
/// `latest_wins`, a full channel drops its oldest message to make room.
///
/// `pack` wraps what arrived for the channel (camera frames go in an `Arc`
/// here, next to the message's own allocation, so the assembler allocates
/// nothing per frame).
#[allow(clippy::too_many_arguments)]
fn spawn_input<T: Send + 'static, U: Send + 'static>(
    name: &'static str,
    mut sub: Box<dyn Subscribe<T> + Send>,
    tx: Sender<U>,
    latest_wins: Option<Receiver<U>>,
    pack: fn(Arrived<T>) -> U,
    stop: Arc<AtomicBool>,
    stats: Arc<NodeStats>,
    counter: Option<Arc<AtomicU64>>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let mut drops = Drops::new(name, Duration::from_secs(5));
            while !stop.load(Ordering::Relaxed) {
                match sub.recv_timeout(Duration::from_millis(50)) {
                    Ok(Some(msg)) => {
                        if let Some(c) = &counter {
                            c.fetch_add(1, Ordering::Relaxed);
                        }
                        let mut item = pack(Arrived {
                            msg,
                            at: Instant::now(),
                        });
                        loop {
                            match tx.try_send(item) {
                                Ok(()) => break,
                                Err(TrySendError::Full(back)) => {
                                    stats.drop_one(if latest_wins.is_some() {
                                        "stale_input_replaced"
                                    } else {
                                        "input_queue_full"
                                    });
                                    match &latest_wins {
                                        Some(rx) => {
                                            let _ = rx.try_recv();
                                            item = back;
                                        }
                                        None => break,
                                    }
                                }
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

fn assemble_loop(
    asm: &mut Assembler,
    camera: Receiver<Tick>,
    joints: Receiver<Arrived<JointState>>,
    control: Receiver<Arrived<EpisodeEvent>>,
    done: Receiver<u64>,
    stop: &AtomicBool,
    cameras_received: &AtomicU64,
) {
    loop {
        select! {
            recv(camera) -> m => if let Ok(m) = m {
                // Joint states first: they may pair with this frame.
                while let Ok(j) = joints.try_recv() { asm.on_joints(j); }
                asm.on_camera(m)
            },
            recv(joints) -> m => if let Ok(m) = m { asm.on_joints(m) },
            recv(control) -> m => if let Ok(m) = m { asm.on_control(&m.msg) },
            recv(done) -> m => {
                // Ok: the replay is over. Err: it failed (logged by its thread).
                if let Ok(published) = m {
                    // The replay is over: take in what is still on its way
                    // (up to 2 s), then end the episode.
                    let deadline = Instant::now() + Duration::from_secs(2);
                    while Instant::now() < deadline
                        && (cameras_received.load(Ordering::Relaxed) < published
                            || !camera.is_empty() || !joints.is_empty())
                    {
                        while let Ok(j) = joints.try_recv() { asm.on_joints(j); }
                        if let Ok(c) = camera.recv_timeout(Duration::from_millis(10)) {
                            asm.on_camera(c);
                        }
                    }
                    while let Ok(j) = joints.try_recv() { asm.on_joints(j); }
                }
                asm.end_episode(false, "end of the recorded episode");
                return;
            },
            default(Duration::from_millis(10)) => {},
        }
        asm.tick(Instant::now());
        if stop.load(Ordering::Relaxed) {
            asm.end_episode(true, "the node was stopped");
            return;
        }
    }
}
