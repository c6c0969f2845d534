//! The node end to end on the in-process transport (the same CDR bytes as
//! DDS and Zenoh, no network), driven by simulated time: deterministic and
//! quick. A test publishes the bag's messages and `/clock` on the bus the
//! node runs on, waits for the node to take each camera frame in, and reads
//! what the node publishes from the same bus.
//!
//! - the node gives exactly what `sarm label` gives, for an episode ended
//!   by the inactivity timer (the ALOHA episode: its last ticks used to be
//!   taken as late and given old features) and by an END command;
//! - `/clock` at half and twice real time gives the same episode, frames
//!   and stamps as at real time;
//! - a results recorder that cannot write (its file is `/dev/full`) is
//!   reported and the ROS 2 outputs and the trainer link still get every
//!   record.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sarm_ros::bag::{read_bag, McapOut};
use sarm_ros::inproc::{Bus, InProcSubscriber};
use sarm_ros::msg::{
    Clock as ClockMsg, CompressedImage, DiagnosticArray, EpisodeEvent, EventKind,
    Float64MultiArray, Header, JointState, PolicyControl, PolicyEvent, Progress, RosMessage,
    SampleWeight, Time,
};
use sarm_ros::node::config::NodeConfig;
use sarm_ros::node::{Node, NodeIo, RunSummary};
use sarm_ros::qos::TopicQos;
use sarm_ros::trainer::log::read_log;
use sarm_ros::trainer::RecordKind;
use sarm_ros::transport::{Publish, Transport};
use sarm_runtime::Clock;

const CAMERA: &str = "/camera/top/image_raw/compressed";
const JOINTS: &str = "/joint_states";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A recorded episode and the bundle that scores it.
#[derive(Clone, Copy)]
enum Case {
    /// The test bundle on the label fixture (30 Hz camera and model, 36 frames).
    Fixture,
    /// The ALOHA bundle on a held-out episode (50 Hz camera, 10 Hz model)
    /// cut after 4 s at a camera frame 20 ms before a tick of the model's
    /// clock, so that the episode's end decides that tick (it takes the
    /// last frame, as offline).
    AlohaCut,
}

impl Case {
    fn bag(self) -> PathBuf {
        match self {
            Case::Fixture => {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/label/bag")
            }
            Case::AlohaCut => {
                static CUT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
                CUT.get_or_init(|| {
                    let dir = tmp("aloha-cut-bag");
                    let path = dir.join("cut.mcap");
                    let mut out = McapOut::create(&path).unwrap();
                    for (stamp, topic, cdr) in messages(Case::AlohaCut) {
                        if topic == CAMERA {
                            let m = CompressedImage::from_cdr(&cdr).unwrap();
                            out.write(&topic, stamp as u64, &m).unwrap();
                        } else {
                            let m = JointState::from_cdr(&cdr).unwrap();
                            out.write(&topic, stamp as u64, &m).unwrap();
                        }
                    }
                    out.finish().unwrap();
                    path
                })
                .clone()
            }
        }
    }

    fn bundle(self) -> PathBuf {
        match self {
            Case::Fixture => root().join("models/sarm-test"),
            Case::AlohaCut => root().join("models/aloha-transfer-cube"),
        }
    }
}

fn tmp(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sarm-inproc-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `sarm label` on the case's bag, as Progress keyed by (frame, head).
fn labelled(dir: &Path, case: Case) -> BTreeMap<(i64, String), Progress> {
    let msgs = common::labelled_progress(&case.bag(), &case.bundle(), dir);
    assert!(msgs.len() >= 72, "at least 36 frames, two heads");
    msgs
}

/// The case's camera and joint messages in log-time order: (stamp, topic, CDR).
fn messages(case: Case) -> Vec<(i64, String, Vec<u8>)> {
    let source = match case {
        Case::Fixture => case.bag(),
        Case::AlohaCut => root().join("models/aloha-transfer-cube/episodes/success_ep_0025/bag"),
    };
    let mut v = Vec::new();
    read_bag(&source, |m| {
        v.push((m.log_time as i64, m.topic.to_string(), m.data.to_vec()))
    })
    .unwrap();
    v.sort_by_key(|m| m.0);
    if let Case::AlohaCut = case {
        const MS: i64 = 1_000_000;
        let t0 = v[0].0;
        let cut = v
            .iter()
            .find(|m| m.1 == CAMERA && m.0 - t0 > 4000 * MS && (m.0 - t0) % (100 * MS) == 80 * MS)
            .map(|m| m.0)
            .expect("a camera frame 20 ms before a tick");
        v.retain(|m| m.0 <= cut);
    }
    v
}

/// A node on simulated time; no trainer link unless `extra` asks for one.
fn config(case: Case, extra: &str) -> NodeConfig {
    let text = format!(
        "robot_id = \"inproc\"\nbundle = \"{}\"\n\n[time]\nsource = \"sim\"\n\n\
         [episode]\ninactivity_s = 0.5\n\n[outputs]\ndiagnostics_period_s = 0.05\n\
         trainer_link = {}\n\n{extra}",
        case.bundle().display(),
        extra.contains("[trainer]"),
    );
    NodeConfig::parse(&text).unwrap()
}

/// A node on a bus, with the test's ends of its topics.
struct Rig {
    bus: Bus,
    clock: Clock,
    node: Option<Node>,
    stop: Arc<AtomicBool>,
    clock_pub: Box<dyn Publish<ClockMsg>>,
    progress: InProcSubscriber<Progress>,
    weights: InProcSubscriber<SampleWeight>,
    episodes: InProcSubscriber<EpisodeEvent>,
    diagnostics: InProcSubscriber<DiagnosticArray>,
    /// The node runs a policy: lockstep waits for its ticks too.
    policy: bool,
}

impl Rig {
    fn start(cfg: &NodeConfig) -> Rig {
        let bus = Bus::new();
        let reliable = TopicQos::Reliable { depth: 100 };
        let progress = bus.subscriber("/sarm/progress", reliable, 10_000).unwrap();
        let weights = bus.subscriber("/sarm/weight", reliable, 10_000).unwrap();
        let episodes = bus.subscriber("/sarm/episode", reliable, 100).unwrap();
        let diagnostics = bus
            .subscriber("/diagnostics", TopicQos::BestEffort { depth: 1 }, 1)
            .unwrap();
        let clock = Clock::sim();
        let stop = Arc::new(AtomicBool::new(false));
        let node = Node::start(
            cfg,
            NodeIo {
                transport: Transport::InProcess(bus.clone()),
                clock: clock.clone(),
            },
            stop.clone(),
        )
        .unwrap();
        let clock_pub = Box::new(bus.publisher::<ClockMsg>("/clock").unwrap());
        Rig {
            bus,
            clock,
            node: Some(node),
            stop,
            clock_pub,
            progress,
            weights,
            episodes,
            diagnostics,
            policy: cfg.policy.bundle.is_some(),
        }
    }

    fn node(&self) -> &Node {
        self.node.as_ref().unwrap()
    }

    /// Publishes `/clock` and waits, as a lockstep simulator does, until
    /// the node has done its timed work at that time and scored what is due.
    fn set_time(&mut self, ns: i64) {
        self.clock_pub
            .publish(&ClockMsg {
                clock: Time::from_nanos(ns),
            })
            .unwrap();
        let stats = self.node().stats().clone();
        let policy = self.policy;
        wait_for("the node to follow /clock", || {
            self.clock.now_ns() == ns
                && stats.assembled_until() >= ns
                && (!policy || stats.policy_until() >= ns)
        });
        self.settle();
    }

    /// Waits until the reward stage has taken up every tick handed on.
    fn settle(&self) {
        let stats = self.node().stats().clone();
        wait_for("the reward stage to catch up", || {
            stats.reward_backlog() == 0
        });
    }

    fn count(&self, key: &str) -> u64 {
        self.node().stats().counts().get(key).copied().unwrap_or(0)
    }

    /// Publishes the bag at its stamps, each message once the clock shows
    /// its time, and waits for the node to take each in and score what is
    /// due: lockstep, as a simulator that waits for the robot.
    fn play(&mut self, case: Case) {
        self.play_messages(&messages(case), 0);
    }

    /// [`Self::play`] for some messages; with `step_ns` > 0 the clock also
    /// moves in steps of at most that between them (a control-rate
    /// simulator's ticks).
    fn play_messages(&mut self, msgs: &[(i64, String, Vec<u8>)], step_ns: i64) {
        let camera = self
            .bus
            .publisher::<sarm_ros::msg::CompressedImage>(CAMERA)
            .unwrap();
        let joints = self
            .bus
            .publisher::<sarm_ros::msg::JointState>(JOINTS)
            .unwrap();
        for (stamp, topic, cdr) in msgs {
            let stamp = *stamp;
            if step_ns > 0 {
                self.advance_to(stamp, step_ns);
            }
            self.set_time(stamp);
            let (key, before) = if topic == CAMERA {
                ("camera_messages", self.count("camera_messages"))
            } else {
                ("joint_messages", self.count("joint_messages"))
            };
            if topic == CAMERA {
                camera.publish_cdr(cdr);
            } else {
                joints.publish_cdr(cdr);
            }
            wait_for("the node to take the message in", || {
                self.count(key) > before
            });
            self.settle();
        }
    }

    /// Moves the clock to `t` in steps of at most `step_ns`.
    fn advance_to(&mut self, t: i64, step_ns: i64) {
        if !self.clock.started() {
            return;
        }
        let mut now = self.clock.now_ns();
        while now < t {
            now = (now + step_ns).min(t);
            self.set_time(now);
        }
    }

    /// Advances simulated time in 50 ms steps until the node reports the
    /// episode's end (or `limit_s` of simulated time pass). `rate`:
    /// simulated seconds per wall second (0: as fast as the node follows).
    /// Returns the events and the wall time it took.
    fn run_until_end(&mut self, limit_s: f64, rate: f64) -> (Vec<EpisodeEvent>, Duration) {
        let mut events = Vec::new();
        let start = self.clock.now_ns();
        let wall = Instant::now();
        loop {
            while let Some(e) = self.episodes.try_recv().unwrap() {
                events.push(e);
            }
            if events.iter().any(EpisodeEvent::closes) {
                return (events, wall.elapsed());
            }
            let t = self.clock.now_ns() + 50_000_000;
            assert!(
                (t - start) as f64 * 1e-9 < limit_s,
                "no end of episode within {limit_s} s of simulated time: {events:?}; \
                 counts {:?}, drops {:?}, backlog {}, assembled until {}",
                self.node().stats().counts(),
                self.node().stats().drops(),
                self.node().stats().reward_backlog(),
                self.node().stats().assembled_until(),
            );
            if rate > 0.0 {
                let due = wall + Duration::from_secs_f64((t - start) as f64 * 1e-9 / rate);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            self.set_time(t);
        }
    }

    fn finish(
        mut self,
    ) -> (
        RunSummary,
        BTreeMap<(i64, String), Progress>,
        Vec<SampleWeight>,
    ) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let summary = self.node.take().unwrap().wait(false).unwrap();
        let mut got = BTreeMap::new();
        while let Some(p) = self.progress.try_recv().unwrap() {
            assert!(
                got.insert((p.frame_index, p.head.clone()), p).is_none(),
                "a frame published twice"
            );
        }
        let mut weights = Vec::new();
        while let Some(w) = self.weights.try_recv().unwrap() {
            weights.push(w);
        }
        (summary, got, weights)
    }
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn assert_same_as_label(
    expected: &BTreeMap<(i64, String), Progress>,
    got: &BTreeMap<(i64, String), Progress>,
) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "scored frames differ from sarm label's"
    );
    for (k, e) in expected {
        let g = &got[k];
        assert_eq!(g.stage, e.stage, "{k:?}: stage");
        assert_eq!(g.header.stamp, e.header.stamp, "{k:?}: stamp");
        for (name, a, b) in [
            ("progress", g.progress, e.progress),
            ("stage_progress", g.stage_progress, e.stage_progress),
            ("stage_confidence", g.stage_confidence, e.stage_confidence),
            ("reward", g.reward, e.reward),
        ] {
            assert!((a - b).abs() <= 1e-6, "{k:?}: {name} {a} vs label {b}");
        }
    }
}

/// Fault found by testing: the last ticks of an episode ended by the
/// inactivity timer took a frame that had arrived long before, were
/// treated as overload, and reused old features. Now they are scored as
/// `sarm label` scores them.
#[test]
fn an_episode_ended_by_inactivity_is_what_label_gives() {
    let dir = tmp("inactivity");
    let expected = labelled(&dir, Case::AlohaCut);
    let mut cfg = config(Case::AlohaCut, "");
    // The default timeout: longer than the 1 s after which a tick counts as
    // late, so the episode's last ticks take a frame 2 s old.
    cfg.episode.inactivity_s = 2.0;
    let mut rig = Rig::start(&cfg);
    rig.play(Case::AlohaCut);
    let (events, _) = rig.run_until_end(60.0, 0.0);
    let end = events.iter().find(|e| e.closes()).unwrap();
    assert_eq!(end.kind(), Some(EventKind::Abort), "{end:?}");
    assert!(end.reason.contains("no camera frames"), "{end:?}");
    let frames = expected.keys().map(|k| k.0).max().unwrap() + 1;
    assert_eq!(end.frames, frames as u64);
    // Ended at the first /clock step (50 ms) past 2 s of simulated time
    // without a camera frame.
    let last_camera = messages(Case::AlohaCut)
        .iter()
        .filter(|m| m.1 == CAMERA)
        .map(|m| m.0)
        .max()
        .unwrap();
    let waited = end.header.stamp.as_nanos() - last_camera;
    assert!(
        waited > 2_000_000_000 && waited <= 2_050_000_000,
        "ended {waited} ns after the last camera frame"
    );
    let (summary, got, weights) = rig.finish();
    assert_same_as_label(&expected, &got);
    assert_eq!(
        summary.drops.get("overload_frame_not_encoded"),
        None,
        "nothing was overloaded: {:?}",
        summary.drops
    );
    // A weight for every scored frame, the tail flushed at the end.
    let mut weighted: Vec<i64> = weights.iter().map(|w| w.frame_index).collect();
    weighted.sort_unstable();
    assert_eq!(weighted, (0..frames).collect::<Vec<_>>());
}

#[test]
fn an_episode_ended_by_command_is_what_label_gives() {
    let dir = tmp("command");
    let expected = labelled(&dir, Case::Fixture);
    let cfg = config(Case::Fixture, "");
    let mut rig = Rig::start(&cfg);
    rig.play(Case::Fixture);
    let mut control = rig
        .bus
        .publisher::<EpisodeEvent>("/sarm/episode_control")
        .unwrap();
    control
        .publish(&EpisodeEvent {
            header: Header::default(),
            event: EventKind::End.code(),
            reason: "operator".into(),
            ..Default::default()
        })
        .unwrap();
    let mut events = Vec::new();
    wait_for("the END event", || {
        while let Some(e) = rig.episodes.try_recv().unwrap() {
            events.push(e);
        }
        events.iter().any(EpisodeEvent::closes)
    });
    let end = events.iter().find(|e| e.closes()).unwrap();
    assert_eq!(
        (end.kind(), end.reason.as_str()),
        (Some(EventKind::End), "operator")
    );
    let (_, got, _) = rig.finish();
    assert_same_as_label(&expected, &got);
}

/// `/clock` at half and at twice real time gives the episode real time
/// gives: the same frames and values, the same event stamps. The bag is
/// played in lockstep (deterministic scoring); then simulated time runs on
/// at the given rate, and the inactivity timer fires after the same
/// simulated time, i.e. after twice or half the wall time.
#[test]
fn sim_time_at_half_and_twice_real_time_gives_the_same_episode() {
    let mut runs = Vec::new();
    for rate in [1.0, 2.0, 0.5] {
        let mut rig = Rig::start(&config(Case::Fixture, ""));
        rig.play(Case::Fixture);
        let last = rig.clock.now_ns();
        let (events, idle) = rig.run_until_end(60.0, rate);
        let (_, got, _) = rig.finish();
        let stamps: Vec<(Option<EventKind>, i64, u64)> = events
            .iter()
            .map(|e| (e.kind(), e.header.stamp.as_nanos(), e.frames))
            .collect();
        eprintln!(
            "rate {rate}: abort {:.3} s of sim time and {:.3} s of wall time after the last message",
            (stamps[1].1 - last) as f64 * 1e-9,
            idle.as_secs_f64()
        );
        runs.push((rate, idle, stamps, got));
    }
    let (_, idle_1x, stamps, got) = &runs[0];
    assert_eq!(got.len(), 72);
    for (rate, idle, s, g) in &runs[1..] {
        assert_eq!(s, stamps, "rate {rate}: episode events differ from 1x");
        assert_eq!(g, got, "rate {rate}: Progress differs from 1x");
        // The 0.5 s inactivity timeout followed simulated time: the wall
        // time it took scales with 1/rate.
        let ratio = idle.as_secs_f64() / idle_1x.as_secs_f64();
        let want = 1.0 / rate;
        assert!(
            ratio > want * 0.7 && ratio < want * 1.4,
            "rate {rate}: idle {idle:?} vs {idle_1x:?} at 1x (ratio {ratio:.2}, want {want})"
        );
    }
}

/// A results recorder that cannot write (its file is `/dev/full`: every
/// write fails with ENOSPC, as on a full disk) is reported on
/// `/diagnostics` and in the summary; the ROS 2 outputs and the trainer
/// link still get every record.
#[test]
fn a_failing_recorder_stops_alone() {
    let dir = tmp("full-disk");
    let expected = labelled(&dir, Case::Fixture);
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::os::unix::fs::symlink("/dev/full", out.join("progress.mcap")).unwrap();
    let zenoh = dir.join("trainer.json5");
    std::fs::write(
        &zenoh,
        "{ mode: \"peer\", listen: { endpoints: [\"tcp/127.0.0.1:0\"] },\n  \
         scouting: { multicast: { enabled: false }, gossip: { enabled: false } } }\n",
    )
    .unwrap();
    let spool = dir.join("spool");
    let mut cfg = config(
        Case::Fixture,
        &format!(
            "[trainer]\nzenoh_config = \"{}\"\nspool_dir = \"{}\"\n",
            zenoh.display(),
            spool.display()
        ),
    );
    cfg.output_dir = Some(out.clone());
    let mut rig = Rig::start(&cfg);
    rig.play(Case::Fixture);
    rig.run_until_end(60.0, 0.0);
    // /diagnostics names the failed sink.
    let mut diag = None;
    wait_for("/diagnostics reporting the recorder", || {
        rig.set_time(rig.clock.now_ns() + 10_000_000);
        while let Some(d) = rig.diagnostics.try_recv().unwrap() {
            diag = Some(d);
        }
        diag.as_ref()
            .and_then(|d| d.status.first())
            .is_some_and(|s| s.level == 2 && s.message.contains("mcap_recorder"))
    });
    let (summary, got, weights) = rig.finish();
    eprintln!("counts {:?}\ndrops {:?}", summary.counts, summary.drops);
    assert!(
        summary
            .outputs
            .sink_errors
            .iter()
            .any(|(name, n)| *name == "mcap_recorder" && *n >= 1),
        "{:?}",
        summary.outputs.sink_errors
    );
    // ROS 2: every record.
    assert_same_as_label(&expected, &got);
    assert_eq!(weights.len(), 36);
    // The trainer link: every record numbered and spooled, in order.
    let mut spooled = Vec::new();
    for f in std::fs::read_dir(&spool).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "spool") {
            spooled.extend(read_log(&p).unwrap().records);
        }
    }
    spooled.sort_by_key(|r| r.seq);
    let kinds = |k: RecordKind| spooled.iter().filter(|r| r.kind == k).count();
    assert_eq!(kinds(RecordKind::Progress), 72);
    assert_eq!(kinds(RecordKind::Weight), 36);
    assert_eq!(kinds(RecordKind::Episode), 2);
    assert!(spooled.iter().enumerate().all(|(i, r)| r.seq == i as u64));
    // The parquet writer, a sink of its own, was not stopped by the recorder.
    assert!(out.join("sarm_progress.parquet").exists());
}

/// A policy (the act-test bundle) on the label fixture, lockstep at 10 ms
/// steps: nothing is commanded until armed; every command is inside the
/// bundle's joint limits and within `max_step` of the one before; an
/// e-stop stops commands at the next control tick and latches a fault
/// that needs a reset; camera and joints going quiet hold the last
/// command, then latch a fault after `hold_timeout_ms`, shown as ERROR
/// on /diagnostics.
#[test]
fn a_policy_commands_only_through_the_safety_layer() {
    const MS: i64 = 1_000_000;
    let case = Case::Fixture;
    let act = root().join("models/act-test");
    let dir = tmp("policy");
    let zenoh = dir.join("trainer.json5");
    std::fs::write(
        &zenoh,
        "{ mode: \"peer\", listen: { endpoints: [\"tcp/127.0.0.1:0\"] },\n  \
         scouting: { multicast: { enabled: false }, gossip: { enabled: false } } }\n",
    )
    .unwrap();
    let spool = dir.join("spool");
    let cfg = config(
        case,
        &format!(
            "[policy]\nbundle = \"{}\"\n\n[policy.safety]\nmax_obs_age_ms = 100\n\
             max_silence_ms = 200\nhold_timeout_ms = 300\n\n\
             [trainer]\nzenoh_config = \"{}\"\nspool_dir = \"{}\"\n",
            act.display(),
            zenoh.display(),
            spool.display()
        ),
    );
    let bundle = sarm_runtime::policy::PolicyBundle::load(&act).unwrap();
    let (lower, upper, max_step) = bundle.limits();
    let (lower, upper, max_step) = (lower.to_vec(), upper.to_vec(), max_step.to_vec());
    let mut rig = Rig::start(&cfg);
    let reliable = TopicQos::Reliable { depth: 100 };
    let commands = rig
        .bus
        .subscriber::<Float64MultiArray>("/sarm/joint_commands", reliable, 100_000)
        .unwrap();
    let events = rig
        .bus
        .subscriber::<PolicyEvent>("/sarm/policy_event", reliable, 100)
        .unwrap();
    let mut control = rig
        .bus
        .publisher::<PolicyControl>("/sarm/policy_control")
        .unwrap();
    let mut controls_sent = 0;
    let mut send = |rig: &mut Rig, command: u8| {
        control
            .publish(&PolicyControl {
                robot_id: "inproc".into(),
                command,
                reason: "test".into(),
                ..Default::default()
            })
            .unwrap();
        controls_sent += 1;
        let stats = rig.node().stats().clone();
        wait_for("the policy stage to take the control in", || {
            stats.counts().get("policy_controls_received").copied() == Some(controls_sent)
        });
    };
    let drain_commands = || {
        let mut v = Vec::new();
        while let Some(c) = commands.try_recv().unwrap() {
            v.push(c.data);
        }
        v
    };
    let all_events = std::cell::RefCell::new(Vec::new());
    // PolicyEvents reach the topic through the outputs thread, after the
    // tick that made them: wait for the `n` a phase expects.
    let drain_events = |n: usize| {
        let mut v = Vec::new();
        wait_for("the policy events", || {
            while let Some(e) = events.try_recv().unwrap() {
                v.push(e);
            }
            v.len() >= n
        });
        all_events.borrow_mut().extend(v.iter().cloned());
        v
    };
    let check = |cmds: &[Vec<f64>], prev: Option<&Vec<f64>>| {
        let mut prev = prev.cloned();
        for c in cmds {
            assert_eq!(c.len(), 14);
            for j in 0..14 {
                assert!(
                    c[j] >= lower[j] as f64 && c[j] <= upper[j] as f64,
                    "joint {j}: {} outside [{}, {}]",
                    c[j],
                    lower[j],
                    upper[j]
                );
                if let Some(p) = &prev {
                    assert!(
                        (c[j] - p[j]).abs() <= max_step[j] as f64 + 1e-9,
                        "joint {j}: step {} > max_step {}",
                        (c[j] - p[j]).abs(),
                        max_step[j]
                    );
                }
            }
            prev = Some(c.clone());
        }
    };

    let msgs = messages(case);
    let t0 = msgs[0].0;
    let upto = |ms: i64| {
        msgs.iter()
            .filter(|m| m.0 >= t0 + (ms - 400) * MS && m.0 < t0 + ms * MS)
            .cloned()
            .collect::<Vec<_>>()
    };

    // Disarmed: nothing commanded, however long.
    rig.play_messages(&upto(400), 10 * MS);
    assert!(drain_commands().is_empty(), "commands while disarmed");
    assert!(rig.count("policy_ticks") >= 15, "the policy ticks at 50 Hz");

    // Armed: commands inside the limits, each within max_step.
    send(&mut rig, PolicyControl::ARM);
    rig.play_messages(&upto(800), 10 * MS);
    let ev = drain_events(1);
    assert_eq!(
        ev.first().map(|e| e.event),
        Some(PolicyEvent::ARMED),
        "{ev:?}"
    );
    let armed = drain_commands();
    assert!(
        armed.len() >= 15,
        "{} commands in 400 ms at 50 Hz",
        armed.len()
    );
    check(&armed, None);
    assert!(rig.count("policy_model_calls") >= 2, "the queue refilled");

    // E-stop: the next control tick publishes nothing, and nothing after.
    send(&mut rig, PolicyControl::ESTOP);
    let now = rig.clock.now_ns();
    rig.advance_to(now + 20 * MS, 10 * MS);
    rig.advance_to(now + 300 * MS, 10 * MS);
    assert!(drain_commands().is_empty(), "a command after the e-stop");
    let ev = drain_events(1);
    assert!(
        ev.iter()
            .any(|e| e.event == PolicyEvent::FAULT && e.cause == 1 && e.detail.contains("e-stop")),
        "{ev:?}"
    );
    // Arming while faulted is refused until a reset.
    send(&mut rig, PolicyControl::ARM);
    rig.advance_to(rig.clock.now_ns() + 20 * MS, 10 * MS);
    assert!(drain_commands().is_empty());
    let ev = drain_events(1);
    assert_eq!(
        ev.iter().map(|e| e.event).collect::<Vec<_>>(),
        [PolicyEvent::ARM_REFUSED]
    );
    send(&mut rig, PolicyControl::RESET);
    send(&mut rig, PolicyControl::ARM);
    let rest: Vec<_> = msgs
        .iter()
        .filter(|m| m.0 > rig.clock.now_ns())
        .cloned()
        .collect();
    assert!(!rest.is_empty(), "the bag has messages left to rearm on");
    rig.play_messages(&rest, 10 * MS);
    let ev = drain_events(2);
    assert_eq!(
        ev.iter().map(|e| e.event).collect::<Vec<_>>(),
        [PolicyEvent::RESET, PolicyEvent::ARMED],
        "{ev:?}"
    );
    let rearmed = drain_commands();
    assert!(!rearmed.is_empty(), "commands after reset and arm");
    check(&rearmed, None);

    // The inputs go quiet: hold the last command, then latch a fault.
    let last = rearmed.last().unwrap().clone();
    let quiet = rig.clock.now_ns();
    rig.advance_to(quiet + 600 * MS, 10 * MS);
    let held = drain_commands();
    assert!(!held.is_empty(), "the last command is held first");
    check(&held, Some(&last));
    // Once the hold began, every command is the same.
    let first_hold = held
        .iter()
        .position(|c| *c == *held.last().unwrap())
        .unwrap();
    assert!(held[first_hold..].iter().all(|c| *c == held[first_hold]));
    let ev = drain_events(1);
    let fault = ev
        .iter()
        .find(|e| e.event == PolicyEvent::FAULT)
        .unwrap_or_else(|| panic!("no fault latched: {ev:?}"));
    assert!(
        [3, 4].contains(&fault.cause),
        "cause stale observation (3) or input silent (4): {fault:?}"
    );
    assert!(
        (fault.held_s - 0.3).abs() < 0.0251,
        "held {} s",
        fault.held_s
    );
    assert!(rig.count("safety_trip_estop") >= 1);
    assert!(rig.count("policy_hold_ticks") >= 10);
    rig.advance_to(rig.clock.now_ns() + 100 * MS, 10 * MS);
    assert!(drain_commands().is_empty(), "commands after the fault");
    wait_for("/diagnostics to show the fault", || {
        let mut last = None;
        while let Some(d) = rig.diagnostics.try_recv().unwrap() {
            last = Some(d);
        }
        last.is_some_and(|d| {
            let s = &d.status[0];
            s.level == 2
                && s.message.contains("policy fault latched")
                && s.values
                    .iter()
                    .any(|kv| kv.key == "policy_state" && kv.value == "faulted")
        })
    });
    let (summary, _, _) = rig.finish();
    drain_events(0);
    // The trainer link carries the same PolicyEvents, numbered with the rest.
    let mut spooled = Vec::new();
    for f in std::fs::read_dir(&spool).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "spool") {
            spooled.extend(read_log(&p).unwrap().records);
        }
    }
    spooled.sort_by_key(|r| r.seq);
    let linked: Vec<PolicyEvent> = spooled
        .iter()
        .filter(|r| r.kind == RecordKind::Policy)
        .map(|r| PolicyEvent::from_cdr(&r.cdr).unwrap())
        .collect();
    assert_eq!(
        linked,
        *all_events.borrow(),
        "trainer link vs /sarm/policy_event"
    );
    assert!(linked.len() >= 6, "{linked:?}");
    // Every command published is counted once, as new or held.
    assert_eq!(
        summary.counts["policy_commands"] + summary.counts["policy_hold_ticks"],
        (armed.len() + rearmed.len() + held.len()) as u64,
        "{:?}",
        summary.counts
    );
}

/// A rollout whose progress does not rise (the stall rule, made strict: a
/// rise of 0.5 within 0.3 s) ends its episode with a "stall" reason, and
/// the policy, armed by itself, is disarmed by the verdict.
#[test]
fn a_stalled_rollout_ends_its_episode_and_disarms_the_policy() {
    const MS: i64 = 1_000_000;
    let case = Case::Fixture;
    let mut cfg = config(
        case,
        &format!(
            "[policy]\nbundle = \"{}\"\ndisarm_on_verdict = true\n\n[policy.safety]\nauto_arm = true\n",
            root().join("models/act-test").display()
        ),
    );
    cfg.episode.end_on_stall = true;
    cfg.episode.stall_delta = 0.5;
    cfg.episode.stall_s = 0.3;
    cfg.validate().unwrap();
    assert!(cfg.episode.end_on_stall && cfg.policy.disarm_on_verdict);
    let mut rig = Rig::start(&cfg);
    let events = rig
        .bus
        .subscriber::<PolicyEvent>("/sarm/policy_event", TopicQos::Reliable { depth: 100 }, 100)
        .unwrap();
    rig.play_messages(&messages(case), 10 * MS);
    let (episodes, _) = rig.run_until_end(5.0, 0.0);
    let end = episodes.iter().find(|e| e.closes()).unwrap();
    assert!(end.reason.starts_with("stall"), "{end:?}");
    assert!(end.frames < 36, "ended before the bag did: {end:?}");
    let mut got = Vec::new();
    wait_for("ARMED and DISARMED", || {
        while let Some(e) = events.try_recv().unwrap() {
            got.push(e.event);
        }
        got.len() >= 2
    });
    assert_eq!(
        got[..2],
        [PolicyEvent::ARMED, PolicyEvent::DISARMED],
        "{got:?}"
    );
    assert_eq!(rig.count("episode_stall"), 1);
    // (Not finish(): the frames after the verdict start episode 1, whose
    // frame indices repeat episode 0's.)
    rig.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    rig.node.take().unwrap().wait(false).unwrap();
}

/// A model call slower than its deadline (models/aloha-act's ResNet-18,
/// tens of ms a call here, against `inference_deadline_ms = 1`) does not
/// stall the control ticks: they go on at the control rate, holding (a
/// missed deadline, counted as late) until the chunk arrives, and then
/// command from it; a hold shorter than `hold_timeout_ms` latches nothing.
#[test]
fn a_late_model_call_holds_the_ticks_until_its_chunk_arrives() {
    const MS: i64 = 1_000_000;
    let case = Case::Fixture;
    let cfg = config(
        case,
        &format!(
            "[policy]\nbundle = \"{}\"\ninference_deadline_ms = 1\n\n\
             [policy.safety]\nauto_arm = true\nhold_timeout_ms = 10000\n\
             max_obs_age_ms = 10000\nmax_silence_ms = 10000\n",
            root().join("models/aloha-act").display()
        ),
    );
    let mut rig = Rig::start(&cfg);
    let commands = rig
        .bus
        .subscriber::<Float64MultiArray>(
            "/sarm/joint_commands",
            TopicQos::Reliable { depth: 100 },
            100_000,
        )
        .unwrap();
    rig.play_messages(&messages(case), 10 * MS);
    let (ticks, published) = (rig.count("policy_ticks"), rig.count("policy_commands"));
    let held = rig.count("policy_hold_ticks");
    let late = rig.count("policy_inference_late");
    let calls = rig.count("policy_model_calls");
    let trips = rig.count("safety_trip_deadline_missed");
    eprintln!(
        "{ticks} ticks: {published} commands, {held} holds, {late} late model calls, \
         {calls} model calls, {trips} deadline trips"
    );
    assert!(calls >= 1, "a model call finished");
    assert!(late >= 1 && trips >= 1, "the 1 ms deadline was missed");
    assert!(held >= 1, "the ticks held while the chunk was late");
    assert!(
        published > held,
        "commands from the late chunk followed the hold"
    );
    assert_eq!(
        rig.count("safety_faults"),
        0,
        "no fault within hold_timeout_ms"
    );
    assert_eq!(
        published + held + rig.count("policy_silent_ticks"),
        ticks,
        "every tick commanded, held or (before arming) stayed silent: none waited out"
    );
    let mut got = 0;
    wait_for("the commands on the topic", || {
        while commands.try_recv().unwrap().is_some() {
            got += 1;
        }
        got >= published + held
    });
    rig.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    rig.node.take().unwrap().wait(false).unwrap();
}
