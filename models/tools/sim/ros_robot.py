#!/usr/bin/env python
"""The MuJoCo ALOHA transfer-cube sim as a ROS 2 robot, over Zenoh with rmw_zenoh keys or over DDS
through a real rclpy node (ROS 2 Kilted on rmw_fastrtps_cpp, Fast DDS).

    MUJOCO_GL=egl models/tools/.venv/bin/python models/tools/sim/ros_robot.py \
        --listen tcp/127.0.0.1:7448 --seeds 0 --mode lockstep --out hil_out/seed_0.json

then, in another shell, the node (launch/hil.toml connects to that endpoint):

    sarm run --config launch/hil.toml

Over DDS (`--transport dds`): rclpy comes from the ROS 2 venv tests/setup.sh builds
(ros/tests/interop/.venv, `--ros-venv`; the sim re-executes itself with that venv's libraries on
LD_LIBRARY_PATH), the node runs launch/hil.toml with `[transport] kind = "dds"`, the same
`domain_id` and `interfaces = ["127.0.0.1"]`; Fast DDS is kept on loopback (a profile whose only
transport is UDPv4 on 127.0.0.1, ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST):

    MUJOCO_GL=egl models/tools/.venv/bin/python models/tools/sim/ros_robot.py \
        --transport dds --domain 42 --seeds 0 --out hil_out/seed_0.json

It wraps `joint_sim.JointSim` (the environment `eval_act.py` drives with LeRobot's own ACT: the
same seeds, 640x480 top camera, JPEG q80 through PIL, 400 ticks at 50 Hz, success = the contact
reward reaches 4 at some tick) and speaks ROS 2 the way an rmw_zenoh_cpp node does: CDR
payloads (rosbags) on `<domain>/<topic>/<pkg>::msg::dds_::<Type>_/<RIHS01 hash>` keys, the
33-byte attachment (sequence number, source timestamp, gid) and liveliness tokens for the node
and each publisher/subscriber, so `ros2 topic list` through rmw_zenohd sees it too.
Over DDS the same CDR bytes (rosbags) go through rclpy's publishers and raw subscriptions, every
topic reliable (a reliable writer also serves best-effort readers such as the node's camera).

Published, all stamped with sim time (the first episode's tick k is at `--t0` + (k + 1) * 20 ms; each
episode starts with a pre-roll /clock one period before its first observation, and sim time runs on
across episodes, never back):
  /camera/top/image_raw/compressed  sensor_msgs/CompressedImage, JPEG q80 (`--camera raw`:
                                    /camera/top/image_raw, sensor_msgs/Image rgb8; `--camera raw-jpeg`:
                                    the same, of the JPEG round trip as PIL decodes it)
  /joint_states                     sensor_msgs/JointState, the 14 ALOHA joints (JOINT_NAMES:
                                    the policy bundle's names; grippers as normalised opening)
  /clock                            rosgraph_msgs/Clock
  /sim/ground_truth                 std_msgs/String, one JSON object per tick: {"seed", "episode",
                                    "tick", "stamp_ns", "reward", "success", "succeeded",
                                    "cube_xyz", "done"} (`succeeded`: reward 4 at some tick so far)
Subscribed:
  --command-topic (/sarm/joint_commands) in `--command-form`, the forms sarm's policy stage
                                    publishes: joint_state (sensor_msgs/JointState, stamped with
                                    the node's tick time), joint_trajectory
                                    (trajectory_msgs/JointTrajectory, the first point's positions,
                                    stamped), float64_multi_array (std_msgs/Float64MultiArray,
                                    JOINT_NAMES order, no stamp)
  /sim/reset                        std_msgs/Int32: start a new episode with this seed (the current
                                    one ends at the next tick); with --serve the sim waits for these
                                    after --seeds until SIGINT (which ends the running episode at
                                    its next tick; its partial result is kept, `interrupted`)

Timing modes:
  lockstep  per tick: publish camera + joints + ground truth at t, wait `--obs-to-clock-ms`
            (the node takes its inputs on their own threads; see README "HIL"), publish /clock t,
            then wait for THE command of tick t (stamped t; float64_multi_array: the first one to
            arrive after /clock t) up to `--command-timeout-s`, apply it, step 20 ms. A tick with
            no command in time holds the previous command (counted: `ticks_without_command`).
            Deterministic given the node's determinism; the sim never runs ahead of the node.
  realtime  the sim steps at 50 Hz of wall time and never waits: each tick applies the newest
            command received; latency (obs published -> the command stamped with that tick's
            time arrives) and ticks without a fresh command are measured.

Operating sarm (`--sarm-control`, what tests/hil/run.py uses): sarm_msgs/PolicyControl ARM on
/sarm/policy_control at each episode's first tick (RESET first after a latched fault), so every
episode starts from a fresh action queue; after its last tick sarm_msgs/EpisodeEvent END on
/sarm/episode_control and DISARM. Always recorded per episode, when a node publishes them: its
sarm_msgs/PolicyEvent (/sarm/policy_event: armed, fault + cause, ...), its /sarm/progress and its
/sarm/episode END events. Lockstep waits only `--stopped-wait-s` for a command while the node
says it is disarmed or faulted.

Faults (`--fault NAME@TICK[:ARG[:ARG2]]`, repeatable, at tick TICK of every episode): camera_stall,
joints_delay, corrupt_frame, clock_back, estop (see --help).

Results: `--out FILE.json` (per episode: success, ticks, commands, timing) and FILE.npz (per seed
the commands applied, `commands_<seed>`, (ticks, 14), and the rewards, `rewards_<seed>`): the
same layout as eval_act.py's npz (`seed_<seed>` there), to compare actions tick by tick.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import os
import queue
import signal
import site
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

import joint_sim as js  # noqa: E402

EPISODE_STEPS = 400  # eval_act.py's episode length
JPEG_QUALITY = 80  # eval_act.py's JPEG round trip
CAMERA_COMPRESSED = "/camera/top/image_raw/compressed"
CAMERA_RAW = "/camera/top/image_raw"
JOINT_TOPIC = "/joint_states"
CLOCK_TOPIC = "/clock"
GROUND_TRUTH_TOPIC = "/sim/ground_truth"
RESET_TOPIC = "/sim/reset"
# sarm's topics (launch/default.toml's names): with --sarm-control the sim arms the policy at each
# episode's first tick and ends the node's episode (and disarms) at its last, as a test bench's
# operator would; it always records the node's policy events and progress when they come.
POLICY_CONTROL_TOPIC = "/sarm/policy_control"
EPISODE_CONTROL_TOPIC = "/sarm/episode_control"
POLICY_EVENT_TOPIC = "/sarm/policy_event"
PROGRESS_TOPIC = "/sarm/progress"
EPISODE_TOPIC = "/sarm/episode"
POLICY_EVENTS = {0: "armed", 1: "disarmed", 2: "fault", 3: "reset", 4: "arm_refused"}
FAULT_CAUSES = {0: "none", 1: "estop", 2: "non_finite_action", 3: "stale_observation", 4: "input_silent",
                5: "deadline_missed", 6: "policy_failed"}
ARM, DISARM, ESTOP = 0, 1, 2  # sarm_msgs/PolicyControl
EPISODE_END = 1  # sarm_msgs/EpisodeEvent
COMMAND_TYPES = {
    "joint_state": "sensor_msgs/msg/JointState",
    "joint_trajectory": "trajectory_msgs/msg/JointTrajectory",
    "float64_multi_array": "std_msgs/msg/Float64MultiArray",
}


@dataclass(frozen=True)
class Fault:
    """A fault the sim injects at tick `tick` of every episode (`--fault NAME@TICK[:ARG[:ARG2]]`)."""
    name: str
    tick: int
    arg: float = 0.0
    arg2: float = 0.0

    HELP = {
        "camera_stall": "camera_stall@TICK:MS  no camera message for MS of sim time from tick TICK",
        "joints_delay": "joints_delay@TICK:MS[:TICKS]  for TICKS ticks (default 10) the joint state sent is the "
                        "one from MS earlier, stamp included (a late driver)",
        "corrupt_frame": "corrupt_frame@TICK:N  N camera messages with garbage image bytes (valid CDR: JPEG "
                         "bytes that do not decode; raw: a data length that does not match)",
        "clock_back": "clock_back@TICK:MS  one /clock MS before the tick's time, then the tick's own /clock",
        "estop": "estop@TICK  sarm_msgs/PolicyControl ESTOP just before the tick's /clock",
    }

    @staticmethod
    def parse(spec: str) -> "Fault":
        name, _, rest = spec.partition("@")
        if name not in Fault.HELP or not rest:
            raise ValueError(f"--fault {spec!r}: expected one of: " + "; ".join(Fault.HELP.values()))
        parts = rest.split(":")
        try:
            tick, args = int(parts[0]), [float(x) for x in parts[1:]]
        except ValueError:
            raise ValueError(f"--fault {spec!r}: {Fault.HELP[name]}") from None
        if tick < 0 or len(args) > 2 or (name != "estop" and not args) or any(a <= 0 for a in args):
            raise ValueError(f"--fault {spec!r}: {Fault.HELP[name]}")
        if name == "joints_delay" and len(args) == 1:
            args.append(10)
        return Fault(name, tick, *args)

    def active(self, k: int) -> bool:
        """Whether tick `k` of an episode is inside this fault."""
        if self.name == "camera_stall":
            return self.tick <= k and (k - self.tick) * js.CONTROL_PERIOD_NS < self.arg * 1e6
        if self.name == "joints_delay":
            return self.tick <= k < self.tick + int(self.arg2)
        if self.name == "corrupt_frame":
            return self.tick <= k < self.tick + int(self.arg)
        return k == self.tick


class CommandError(ValueError):
    """A command message that cannot be applied (wrong joints, wrong length, NaN)."""


# --------------------------------------------------------------------------------------------
# Transports: ROS 2 over Zenoh with rmw_zenoh's key layout, and over DDS through rclpy. Both have
# the same methods (publisher, subscriber, peers_alive, close) and carry rosbags' CDR bytes.
# --------------------------------------------------------------------------------------------


SARM_MSGS = HERE.parents[2] / "ros/sarm_msgs/msg"


def register_sarm_msgs(ts) -> None:
    """sarm's own message types (ros/sarm_msgs/msg/*.msg), parsed by rosbags: the controls the
    sim sends (PolicyControl, EpisodeEvent) and the events and progress it records."""
    from rosbags.typesys import get_types_from_msg

    types = {}
    for f in sorted(SARM_MSGS.glob("*.msg")):
        types.update(get_types_from_msg(f.read_text(), f"sarm_msgs/msg/{f.stem}"))
    ts.register(types)


def _dds_name(type_name: str) -> str:
    pkg, _, t = type_name.split("/")
    return f"{pkg}::msg::dds_::{t}_"


def _mangle(name: str) -> str:
    return name.replace("/", "%")


def decoding(ts, undecodable: dict, topic: str, type_name: str, callback):
    """A CDR payload handler: `callback(msg)` with the message rosbags deserialises; a payload that
    does not deserialise is counted in `undecodable[topic]` (logged the first time) and skipped."""

    def on_cdr(payload: bytes) -> None:
        try:
            msg = ts.deserialize_cdr(payload, type_name)
        except Exception as e:  # a malformed message: counted, never fatal
            undecodable[topic] = undecodable.get(topic, 0) + 1
            if undecodable[topic] == 1:
                print(f"ros_robot: undecodable {type_name} on {topic}: {e}", file=sys.stderr, flush=True)
            return
        callback(msg)

    return on_cdr


class ZenohRmwTransport:
    """ROS 2 topics as rmw_zenoh_cpp lays them out on Zenoh (the key format of
    ros/tests/interop/zenoh_peer.py and sarm's ros/src/zenoh_link/rmw.rs), CDR by rosbags."""

    def __init__(self, listen: list[str], connect: list[str], distro: str = "jazzy", domain: int = 0,
                 node_name: str = "aloha_sim"):
        import zenoh
        from rosbags.typesys import Stores, get_typestore
        from zenoh.ext import Int64, z_serialize

        self._zenoh, self._Int64, self._z_serialize = zenoh, Int64, z_serialize
        self.ts = get_typestore(Stores.ROS2_JAZZY)
        register_sarm_msgs(self.ts)
        self.distro, self.domain, self.node_name = distro, domain, node_name
        c = zenoh.Config()
        c.insert_json5("mode", '"peer"')
        c.insert_json5("scouting/multicast/enabled", "false")
        c.insert_json5("scouting/gossip/enabled", "false")
        c.insert_json5("listen/endpoints", json.dumps(listen))
        c.insert_json5("connect/endpoints", json.dumps(connect))
        self.session = zenoh.open(c)
        self.zid = str(self.session.zid())
        self._next_id = 1
        self._tokens = [self.session.liveliness().declare_token(
            f"@ros2_lv/{domain}/{self.zid}/0/0/NN/%/%/{node_name}")]
        self._entities = []
        self.undecodable: dict[str, int] = {}  # topic -> messages that did not deserialise

    def type_hash(self, type_name: str) -> str:
        return "TypeHashNotSupported" if self.distro == "humble" else self.ts.hash_rihs01(type_name)

    def key(self, topic: str, type_name: str) -> str:
        return f"{self.domain}/{topic.strip('/')}/{_dds_name(type_name)}/{self.type_hash(type_name)}"

    def _token(self, kind: str, topic: str, type_name: str, qos: str) -> None:
        eid = self._next_id
        self._next_id += 1
        self._tokens.append(self.session.liveliness().declare_token(
            f"@ros2_lv/{self.domain}/{self.zid}/0/{eid}/{kind}/%/%/{self.node_name}/{_mangle(topic)}/"
            f"{_dds_name(type_name)}/{self.type_hash(type_name)}/{qos}"))

    def publisher(self, topic: str, type_name: str, reliable: bool = True) -> "ZenohRmwPublisher":
        self._token("MP", topic, type_name, "::,10:,:,:,," if reliable else "2::,1:,:,:,,")
        pub = self.session.declare_publisher(self.key(topic, type_name))
        self._entities.append(pub)
        return ZenohRmwPublisher(self, pub, type_name, os.urandom(16))

    def subscriber(self, topic: str, type_name: str, callback) -> None:
        """`callback(msg)` with the deserialised message (on Zenoh's thread); undecodable payloads
        are counted in `self.undecodable` and skipped."""
        self._token("MS", topic, type_name, "::,10:,:,:,,")

        on_cdr = decoding(self.ts, self.undecodable, topic, type_name, callback)
        self._entities.append(self.session.declare_subscriber(self.key(topic, type_name),
                                                              lambda sample: on_cdr(sample.payload.to_bytes())))

    def peers_alive(self, kind: str, topic: str) -> bool:
        """Whether some other participant has a live `kind` (MP/MS) entity on `topic`."""
        pattern = f"@ros2_lv/{self.domain}/**/{kind}/**/{_mangle(topic)}/**"
        for reply in self.session.liveliness().get(pattern, timeout=1.0):
            ok = getattr(reply, "ok", None)
            if ok is not None and self.zid not in str(ok.key_expr):
                return True
        return False

    def close(self) -> None:
        for t in self._tokens:
            t.undeclare()
        for e in self._entities:
            e.undeclare()
        self.session.close()


class ZenohRmwPublisher:
    def __init__(self, transport: ZenohRmwTransport, pub, type_name: str, gid: bytes):
        self.t, self.pub, self.type_name, self.gid, self.seq = transport, pub, type_name, gid, 0

    def publish(self, msg) -> None:
        self.seq += 1
        att = self.t._z_serialize((self.t._Int64(self.seq), self.t._Int64(time.time_ns()), self.gid))
        self.pub.put(bytes(self.t.ts.serialize_cdr(msg, self.type_name)), attachment=att)


class RclpyTransport:
    """ROS 2 topics over DDS through a real rclpy node (ROS 2 Kilted, rmw_fastrtps_cpp), with
    ZenohRmwTransport's methods. The payloads are rosbags' CDR on both transports: rclpy publishes
    the serialized bytes and hands the subscriptions raw bytes (raw=True); rclpy's own type support
    (ros/tests/interop/.venv, sarm_msgs built there by setup_rclpy.sh) names the types on the wire.
    The process must have been started by `dds_environment` (the libraries, the loopback profile)."""

    QOS_DEPTH = 10

    def __init__(self, domain: int, node_name: str = "aloha_sim"):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from rosbags.typesys import Stores, get_typestore

        self.ts = get_typestore(Stores.ROS2_JAZZY)
        register_sarm_msgs(self.ts)
        self.node_name, self._rclpy = node_name, rclpy
        # Every topic reliable: a reliable writer matches best-effort readers too (the node's
        # camera and /clock subscriptions), and nothing the lockstep waits for is lost to UDP.
        self.qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.QOS_DEPTH,
                              reliability=ReliabilityPolicy.RELIABLE)
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node(node_name, context=self.context)
        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(self.node)
        self._spin = threading.Thread(target=self._executor.spin, daemon=True)
        self._spin.start()
        self.undecodable: dict[str, int] = {}

    @staticmethod
    def _msg_class(type_name: str):
        pkg, _, name = type_name.split("/")
        return getattr(importlib.import_module(f"{pkg}.msg"), name)

    def publisher(self, topic: str, type_name: str, reliable: bool = True) -> "RclpyPublisher":
        del reliable  # see __init__: reliable on DDS
        return RclpyPublisher(self, self.node.create_publisher(self._msg_class(type_name), topic, self.qos), type_name)

    def subscriber(self, topic: str, type_name: str, callback) -> None:
        """As ZenohRmwTransport.subscriber, on rclpy's executor thread."""

        on_cdr = decoding(self.ts, self.undecodable, topic, type_name, callback)
        self.node.create_subscription(self._msg_class(type_name), topic, lambda raw: on_cdr(bytes(raw)), self.qos,
                                      raw=True)

    def peers_alive(self, kind: str, topic: str) -> bool:
        """Whether another node has a subscription (MS) / publisher (MP) on `topic` in the graph,
        and, for a subscription, whether our publisher on it (if any) has matched it."""
        infos = (self.node.get_subscriptions_info_by_topic if kind == "MS"
                 else self.node.get_publishers_info_by_topic)(topic)
        if not any(i.node_name != self.node_name for i in infos):
            return False
        ours = [p for p in self.node.publishers if p.topic_name == topic]
        return kind != "MS" or all(p.get_subscription_count() > 0 for p in ours)

    def close(self) -> None:
        self._executor.shutdown()
        self._spin.join(timeout=5)  # a thread still spinning at exit aborts the process
        self.node.destroy_node()
        self._rclpy.try_shutdown(context=self.context)


class RclpyPublisher:
    def __init__(self, transport: RclpyTransport, pub, type_name: str):
        self.t, self.pub, self.type_name = transport, pub, type_name

    def publish(self, msg) -> None:
        self.pub.publish(bytes(self.t.ts.serialize_cdr(msg, self.type_name)))


# Fast DDS on loopback only: the profile the interop tests' rclpy peer uses.
FASTDDS_LOOPBACK_PROFILE = HERE.parents[2] / "ros/tests/interop/fastdds_loopback.xml"


def dds_environment(ros_venv: Path) -> None:
    """Make rclpy importable from this (the sim's) venv: re-execute once with the ROS 2 venv's
    libraries on LD_LIBRARY_PATH (what its ros_wheels_bootstrapper does for its own interpreter),
    Fast DDS on loopback only; then add its site-packages after ours (same Python and numpy)."""
    site_packages = ros_venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    if not (site_packages / "rclpy").is_dir():
        sys.exit(f"ros_robot: no rclpy in {ros_venv} (tests/setup.sh builds it: ros/tests/interop/setup_rclpy.sh)")
    if os.environ.get("SARM_SIM_DDS_ENV") != str(ros_venv):  # our own guard: set by the re-exec below
        env = dict(os.environ)
        libs = [str(ros_venv / "lib")] + sorted(str(d) for d in site_packages.glob("ros_*.libs"))
        env["LD_LIBRARY_PATH"] = os.pathsep.join(libs + [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep)
                                                         if p])
        env["_ROS_WHEELS_BOOTSTRAP_COMPLETE"] = "1"  # its .pth must not re-execute us into its venv
        env["SARM_SIM_DDS_ENV"] = str(ros_venv)
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(FASTDDS_LOOPBACK_PROFILE)
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        env["RMW_IMPLEMENTATION"] = "rmw_fastrtps_cpp"
        os.execve(sys.executable, sys.orig_argv, env)
    site.addsitedir(str(site_packages))


# --------------------------------------------------------------------------------------------
# The robot: the sim's observations out, commands in.
# --------------------------------------------------------------------------------------------


@dataclass
class Command:
    stamp_ns: int | None  # the node's tick time (None for float64_multi_array: no header)
    positions: np.ndarray  # (14,) JOINT_NAMES order
    arrived_ns: int  # wall clock (time.monotonic_ns) at arrival


def command_from(form: str, msg) -> Command:
    """The 14 joint targets of a command message, in JOINT_NAMES order."""
    now = time.monotonic_ns()
    if form == "float64_multi_array":
        pos = np.asarray(msg.data, np.float64)
        if pos.shape != (14,):
            raise CommandError(f"Float64MultiArray has {pos.size} values, expected 14 ({', '.join(js.JOINT_NAMES)})")
        stamp = None
    else:
        if form == "joint_state":
            names, pos, h = list(msg.name), np.asarray(msg.position, np.float64), msg.header
        else:
            if not msg.points:
                raise CommandError("JointTrajectory without points")
            names, pos, h = list(msg.joint_names), np.asarray(msg.points[0].positions, np.float64), msg.header
        if len(names) != len(pos):
            raise CommandError(f"{len(names)} joint names but {len(pos)} positions")
        missing = [n for n in js.JOINT_NAMES if n not in names]
        if missing:
            raise CommandError(f"command lacks joints {missing}")
        pos = pos[[names.index(n) for n in js.JOINT_NAMES]]
        stamp = int(h.stamp.sec) * 1_000_000_000 + int(h.stamp.nanosec)
    if not np.all(np.isfinite(pos)):
        raise CommandError(f"command has NaN/Inf: {pos.tolist()}")
    return Command(stamp, pos, now)


@dataclass
class EpisodeResult:
    seed: int
    cube_xy: list
    ticks: int = 0
    success: bool = False  # reward 4 at some tick (eval_act.py's `success`)
    final_success: bool = False
    max_reward: int = 0
    first_success_step: int | None = None
    ticks_without_command: int = 0
    stale_commands: int = 0  # commands stamped before the tick they arrived in (lockstep)
    bad_commands: int = 0
    interrupted: str | None = None  # "reset" (/sim/reset mid-episode) or "signal" (SIGINT): fewer ticks
    t_first_ns: int = 0  # sim time of the first tick's observation
    t_last_ns: int = 0  # sim time of the final (done) observation
    wall_s: float = 0.0
    overrun_ticks: int = 0  # realtime: ticks that started more than a period late (render, JPEG, CDR)
    latency_ms_p50: float | None = None  # realtime: obs published -> command of that tick arrived
    latency_ms_p99: float | None = None
    faults: list = field(default_factory=list)  # [{"tick", "fault"}] as injected
    policy_events: list = field(default_factory=list)  # the node's sarm_msgs/PolicyEvent during the episode
    node_episodes: list = field(default_factory=list)  # the node's sarm_msgs/EpisodeEvent END/ABORT
    commands: list = field(default_factory=list)
    rewards: list = field(default_factory=list)
    latencies_ms: list = field(default_factory=list)  # per tick with a command (see --mode)
    missing_ticks: list = field(default_factory=list)  # the ticks without a command
    progress: list = field(default_factory=list)  # (stamp_ns, head, stage, progress) from /sarm/progress


class RosRobot:
    def __init__(self, transport, width: int, height: int, camera: str, command_form: str, command_topic: str,
                 t0_ns: int, sarm_control: bool = False, faults: tuple = (), robot_id: str = "",
                 stopped_wait_s: float = 0.2):
        T = transport.ts.types
        self.T, self.transport, self.camera_kind, self.form = T, transport, camera, command_form
        self.sim = js.JointSim(width=width, height=height)
        self.t_ns = t0_ns  # sim time, continuous across episodes (no /clock jump back on reset)
        self.cam_pub = transport.publisher(CAMERA_COMPRESSED if camera == "compressed" else CAMERA_RAW,
                                           "sensor_msgs/msg/CompressedImage" if camera == "compressed"
                                           else "sensor_msgs/msg/Image")
        self.joint_pub = transport.publisher(JOINT_TOPIC, "sensor_msgs/msg/JointState")
        self.clock_pub = transport.publisher(CLOCK_TOPIC, "rosgraph_msgs/msg/Clock", reliable=False)
        self.truth_pub = transport.publisher(GROUND_TRUTH_TOPIC, "std_msgs/msg/String")
        self.commands: queue.Queue[Command] = queue.Queue(maxsize=1000)
        self.resets: queue.Queue[int] = queue.Queue(maxsize=100)
        self.bad_commands = 0
        self.stop = threading.Event()  # SIGINT: end the episode at the next tick, then exit
        transport.subscriber(command_topic, COMMAND_TYPES[command_form], self._on_command)
        transport.subscriber(RESET_TOPIC, "std_msgs/msg/Int32", lambda m: self._offer(self.resets, int(m.data)))
        self.command_topic = command_topic
        self.sarm_control, self.faults, self.robot_id = sarm_control, tuple(faults), robot_id
        self.stopped_wait_s = stopped_wait_s
        if sarm_control or any(f.name == "estop" for f in self.faults):
            self.policy_control_pub = transport.publisher(POLICY_CONTROL_TOPIC, "sarm_msgs/msg/PolicyControl")
            self.episode_control_pub = transport.publisher(EPISODE_CONTROL_TOPIC, "sarm_msgs/msg/EpisodeEvent")
        # What the node says, recorded into the running episode (Zenoh's thread appends; list.append
        # is atomic). `node_state`: the safety layer's state from its last event ("unknown" first).
        self.current: EpisodeResult | None = None
        self.node_state = "unknown"
        transport.subscriber(POLICY_EVENT_TOPIC, "sarm_msgs/msg/PolicyEvent", self._on_policy_event)
        transport.subscriber(PROGRESS_TOPIC, "sarm_msgs/msg/Progress", self._on_progress)
        transport.subscriber(EPISODE_TOPIC, "sarm_msgs/msg/EpisodeEvent", self._on_node_episode)
        self._history: list = []  # recent (stamp_ns, obs) for joints_delay

    @staticmethod
    def _ns(stamp) -> int:
        return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)

    def _on_policy_event(self, m) -> None:
        name = POLICY_EVENTS.get(int(m.event), f"event_{m.event}")
        if name != "arm_refused":  # a refused arm leaves the state as it was
            self.node_state = {"armed": "armed", "fault": "faulted"}.get(name, "disarmed")
        r = self.current
        if r is not None:
            r.policy_events.append({"stamp_ns": self._ns(m.header.stamp), "event": name,
                                    "cause": FAULT_CAUSES.get(int(m.cause), str(m.cause)), "detail": m.detail,
                                    "hold_ticks": int(m.hold_ticks), "faults": int(m.faults)})

    def _on_progress(self, m) -> None:
        r = self.current
        if r is not None:
            r.progress.append((self._ns(m.header.stamp), m.head, int(m.stage), float(m.progress)))

    def _on_node_episode(self, m) -> None:
        r = self.current
        if r is not None and int(m.event) != 0:
            r.node_episodes.append({"stamp_ns": self._ns(m.header.stamp), "episode_index": int(m.episode_index),
                                    "event": "end" if int(m.event) == EPISODE_END else "abort",
                                    "frames": int(m.frames), "final_progress": float(m.final_progress),
                                    "reason": m.reason})

    def send_policy_control(self, command: int, reason: str, robot_id: str | None = None) -> None:
        T = self.T
        self.policy_control_pub.publish(T["sarm_msgs/msg/PolicyControl"](
            header=T["std_msgs/msg/Header"](stamp=self._stamp(self.t_ns), frame_id=""),
            robot_id=self.robot_id if robot_id is None else robot_id, command=command, reason=reason))

    def end_node_episode(self, reason: str) -> None:
        T = self.T
        self.episode_control_pub.publish(T["sarm_msgs/msg/EpisodeEvent"](
            header=T["std_msgs/msg/Header"](stamp=self._stamp(self.t_ns), frame_id=""), robot_id=self.robot_id,
            episode_index=-1, event=EPISODE_END, frames=0, final_progress=0.0, reason=reason))

    @staticmethod
    def _offer(q: queue.Queue, item) -> None:
        try:
            q.put_nowait(item)
        except queue.Full:  # bounded; the oldest is the least useful
            try:
                q.get_nowait()
            except queue.Empty:
                pass
            q.put_nowait(item)

    def _on_command(self, msg) -> None:
        try:
            self._offer(self.commands, command_from(self.form, msg))
        except CommandError as e:
            self.bad_commands += 1
            if self.bad_commands == 1:
                print(f"ros_robot: bad command ignored: {e}", file=sys.stderr, flush=True)

    def _stamp(self, ns: int):
        return self.T["builtin_interfaces/msg/Time"](sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)

    def publish_observation(self, obs: js.Observation, r: EpisodeResult, episode: int, done: bool,
                            k: int | None = None) -> None:
        from PIL import Image as PILImage

        T, stamp = self.T, self._stamp(self.t_ns)
        active = {f.name: f for f in self.faults if k is not None and f.active(k)}
        for f in active.values():
            if f.tick == k:
                r.faults.append({"tick": k, "stamp_ns": self.t_ns, "fault": f.name, "arg": f.arg, "arg2": f.arg2})
        self._history.append((self.t_ns, obs))
        del self._history[:-200]
        rgb = self.sim.render()
        if self.camera_kind != "raw":
            buf = io.BytesIO()
            PILImage.fromarray(rgb).save(buf, format="JPEG", quality=JPEG_QUALITY)
        if self.camera_kind == "raw-jpeg":  # the pixels eval_act.py's LeRobot saw: PIL's decode
            rgb = np.asarray(PILImage.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        if self.camera_kind == "compressed":
            img = T["sensor_msgs/msg/CompressedImage"](
                header=T["std_msgs/msg/Header"](stamp=stamp, frame_id="camera_top"), format="jpeg",
                data=np.frombuffer(buf.getvalue(), dtype=np.uint8))
        else:
            h, w, _ = rgb.shape
            img = T["sensor_msgs/msg/Image"](
                header=T["std_msgs/msg/Header"](stamp=stamp, frame_id="camera_top"), height=h, width=w,
                encoding="rgb8", is_bigendian=0, step=3 * w, data=np.ascontiguousarray(rgb).reshape(-1))
        if "corrupt_frame" in active:  # valid CDR, image bytes no decoder accepts
            garbage = np.frombuffer(b"\xff\xd8\xff\xe0" + os.urandom(512), dtype=np.uint8)
            img.data = garbage if self.camera_kind == "compressed" else garbage[:-1]
        if "camera_stall" not in active:
            self.cam_pub.publish(img)
        j_ns, j_obs = self.t_ns, obs
        if "joints_delay" in active:  # the state (and stamp) from `arg` ms ago
            want = self.t_ns - int(active["joints_delay"].arg * 1e6)
            j_ns, j_obs = min(self._history, key=lambda h: abs(h[0] - want))
        self.joint_pub.publish(T["sensor_msgs/msg/JointState"](
            header=T["std_msgs/msg/Header"](stamp=self._stamp(j_ns), frame_id=""), name=js.JOINT_NAMES,
            position=np.ascontiguousarray(j_obs.joints, np.float64),
            velocity=np.ascontiguousarray(j_obs.velocities, np.float64), effort=np.zeros(0)))
        self.truth_pub.publish(T["std_msgs/msg/String"](data=json.dumps({
            "seed": r.seed, "episode": episode, "tick": obs.step, "stamp_ns": self.t_ns, "reward": obs.reward,
            "success": obs.success, "succeeded": r.success, "cube_xyz": [round(float(v), 5) for v in obs.cube_xyz],
            "done": done})))

    def publish_clock(self) -> None:
        self.clock_pub.publish(self.T["rosgraph_msgs/msg/Clock"](clock=self._stamp(self.t_ns)))

    def _drain(self) -> None:
        while True:
            try:
                self.commands.get_nowait()
            except queue.Empty:
                return

    def run_episode(self, seed: int, episode: int, steps: int, mode: str, obs_to_clock_s: float,
                    command_timeout_s: float) -> EpisodeResult:
        obs = self.sim.reset(seed=seed)
        r = EpisodeResult(seed=seed, cube_xy=[round(v, 5) for v in self.sim.cube_xy])
        self.current = r
        hold = obs.joints.copy()  # START_ARM_POSE in command units: what the servos hold at reset
        self._drain()
        bad0 = self.bad_commands
        published_at: dict[int, int] = {}
        latencies = []
        # Pre-roll: /clock one control period before the first observation. sarm stamps each
        # input's arrival with its clock; before the first /clock that is 0, and the first tick
        # would see camera and joints as silent for the whole of t0 (a hold instead of the
        # policy's first action). The node ticks once at the pre-roll time without inputs
        # (nothing is commanded: it is not armed yet).
        self.publish_clock()
        if obs_to_clock_s > 0:
            # Long enough for the node's pre-roll tick to be over before this episode's first
            # observation exists (a late pre-roll tick would see it "from the future").
            time.sleep(max(obs_to_clock_s, 0.1))
        self.t_ns += js.CONTROL_PERIOD_NS
        r.t_first_ns = self.t_ns
        t_start = time.monotonic()
        period_s = js.CONTROL_PERIOD_NS / 1e9
        for k in range(steps):
            if not self.resets.empty() or self.stop.is_set():
                r.interrupted = "signal" if self.stop.is_set() else "reset"
                break
            tick_wall = t_start + k * period_s
            if mode == "realtime":
                delay = tick_wall - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                elif -delay > period_s:
                    r.overrun_ticks += 1  # the sim itself fell a period behind wall time
            self.publish_observation(obs, r, episode, done=False, k=k)
            if k == 0 and self.sarm_control:
                # The operator's arm, applied at this tick: a fresh action queue on this episode's
                # first observation (after a latched fault, a reset first).
                if self.node_state == "faulted":
                    self.send_policy_control(3, "sim: new episode after a fault")
                self.send_policy_control(ARM, f"sim: episode {episode} (seed {seed})")
                self.node_state = "arming"
                # The node's control thread hands the arm to the tick loop: give it time to be
                # in before this tick's /clock (20 ms was not always enough for the first one).
                time.sleep(0.1)
            if any(f.name == "estop" and f.tick == k for f in self.faults):
                self.send_policy_control(ESTOP, f"sim: injected e-stop at tick {k}")
            clock_back = next((f for f in self.faults if f.name == "clock_back" and f.tick == k), None)
            if clock_back is not None:
                if obs_to_clock_s > 0:
                    time.sleep(obs_to_clock_s)
                self.clock_pub.publish(self.T["rosgraph_msgs/msg/Clock"](
                    clock=self._stamp(self.t_ns - int(clock_back.arg * 1e6))))
            if mode == "lockstep" and obs_to_clock_s > 0:
                time.sleep(obs_to_clock_s)
            published_at[self.t_ns] = time.monotonic_ns()
            self.publish_clock()
            cmd = self._command_lockstep(command_timeout_s, r) if mode == "lockstep" else self._command_realtime(
                published_at, latencies)
            if cmd is not None and mode == "lockstep":
                latencies.append((cmd.arrived_ns - published_at[self.t_ns]) / 1e6)
            if cmd is None:
                r.ticks_without_command += 1
                r.missing_ticks.append(k)
            else:
                hold = cmd.positions
            obs = self.sim.step(hold)
            self.t_ns += js.CONTROL_PERIOD_NS
            r.ticks += 1
            r.commands.append(hold.astype(np.float64).copy())
            r.rewards.append(obs.reward)
            if obs.reward == 4 and not r.success:
                r.success, r.first_success_step = True, k
            r.max_reward = max(r.max_reward, obs.reward)
            published_at = {t: w for t, w in published_at.items() if t > self.t_ns - 50 * js.CONTROL_PERIOD_NS}
        r.final_success = bool(r.rewards and r.rewards[-1] == 4)
        r.bad_commands = self.bad_commands - bad0
        # The state after the last command, so the node (and the reward stage) see the outcome.
        r.t_last_ns = self.t_ns
        self.publish_observation(obs, r, episode, done=True)
        if self.sarm_control:  # the operator ends the node's episode and disarms
            self.end_node_episode(f"sim: episode {episode} done")
            self.send_policy_control(DISARM, f"sim: episode {episode} done")
        if mode == "lockstep" and obs_to_clock_s > 0:
            time.sleep(obs_to_clock_s)
        self.publish_clock()
        if self.sarm_control:  # the node's END and DISARMED, recorded with this episode
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline and not (r.node_episodes and self.node_state != "armed"):
                time.sleep(0.01)
        self.t_ns += js.CONTROL_PERIOD_NS  # the next episode's pre-roll is later still
        r.wall_s = round(time.monotonic() - t_start, 2)
        r.latencies_ms = [round(x, 3) for x in latencies]
        if latencies:
            r.latency_ms_p50 = round(float(np.percentile(latencies, 50)), 3)
            r.latency_ms_p99 = round(float(np.percentile(latencies, 99)), 3)
        return r

    def _command_lockstep(self, timeout_s: float, r: EpisodeResult) -> Command | None:
        """The command for the tick at self.t_ns: stamped with it, or (no stamp) the first one."""
        start = time.monotonic()
        while True:
            # A node that says it is disarmed or faulted sends nothing: wait only `stopped_wait_s`.
            limit = self.stopped_wait_s if self.node_state in ("disarmed", "faulted") else timeout_s
            left = start + limit - time.monotonic()
            if left <= 0:
                return None
            try:
                c = self.commands.get(timeout=min(left, 0.05))
            except queue.Empty:
                continue
            if c.stamp_ns is None or c.stamp_ns == self.t_ns:
                return c
            if c.stamp_ns < self.t_ns:
                r.stale_commands += 1
            # a command from the future cannot exist in lockstep: ignore it, counted as stale
            else:
                r.stale_commands += 1

    def _command_realtime(self, published_at: dict, latencies: list) -> Command | None:
        """The newest command received so far (None: nothing new since the last tick)."""
        newest = None
        while True:
            try:
                c = self.commands.get_nowait()
            except queue.Empty:
                break
            if c.stamp_ns is not None and c.stamp_ns in published_at:
                latencies.append((c.arrived_ns - published_at[c.stamp_ns]) / 1e6)
            newest = c
        return newest


def wait_for_node(transport, command_topic: str, camera_topic: str, timeout_s: float,
                  sarm_control: bool = False) -> None:
    """Until a node subscribes to /clock and the camera and publishes commands (liveliness); with
    `sarm_control`, also until it subscribes to the policy and episode controls."""
    deadline = time.monotonic() + timeout_s
    want = [("MS", CLOCK_TOPIC), ("MS", camera_topic), ("MS", JOINT_TOPIC), ("MP", command_topic)]
    if sarm_control:
        want += [("MS", POLICY_CONTROL_TOPIC), ("MS", EPISODE_CONTROL_TOPIC)]
    while time.monotonic() < deadline:
        missing = [w for w in want if not transport.peers_alive(*w)]
        if not missing:
            time.sleep(0.5)  # let the subscriptions' declarations settle
            return
        time.sleep(0.2)
    raise TimeoutError(f"no node within {timeout_s} s: nothing alive for {missing} "
                       "(is `sarm run --config launch/hil.toml` connecting to --listen, or on DDS in the same domain?)")


def parse_seeds(s: str) -> list[int]:
    if not s:
        return []
    if ":" in s:
        a, b = s.split(":")
        return list(range(int(a), int(b)))
    return [int(x) for x in s.split(",")]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--transport", choices=["zenoh", "dds"], default="zenoh",
                    help="zenoh: rmw_zenoh keys (--listen/--connect); dds: an rclpy node on Fast DDS, loopback only")
    ap.add_argument("--ros-venv", type=Path, default=HERE.parents[2] / "ros/tests/interop/.venv",
                    help="dds: the venv with rclpy and sarm_msgs (tests/setup.sh)")
    ap.add_argument("--listen", action="append", default=[], help="Zenoh endpoint to listen on (repeatable)")
    ap.add_argument("--connect", action="append", default=[], help="Zenoh endpoint to connect to (repeatable)")
    ap.add_argument("--distro", default="jazzy", choices=["humble", "jazzy"], help="rmw_zenoh key format")
    ap.add_argument("--domain", type=int, default=0, help="ROS_DOMAIN_ID (both transports)")
    ap.add_argument("--seeds", default="0", help="A:B (range) or a,b,c; empty with --serve")
    ap.add_argument("--serve", action="store_true", help="after --seeds, run episodes on /sim/reset until killed")
    ap.add_argument("--steps", type=int, default=EPISODE_STEPS)
    ap.add_argument("--mode", choices=["lockstep", "realtime"], default="lockstep")
    ap.add_argument("--camera", choices=["compressed", "raw", "raw-jpeg"], default="compressed",
                    help="compressed: JPEG q80; raw: sensor_msgs/Image of the render; raw-jpeg: sensor_msgs/Image of "
                         "the JPEG round trip decoded by PIL (eval_act.py's exact pixels: no JPEG decoder in between)")
    ap.add_argument("--width", type=int, default=js.WIDTH)
    ap.add_argument("--height", type=int, default=js.HEIGHT)
    ap.add_argument("--command-form", choices=sorted(COMMAND_TYPES), default="joint_state")
    ap.add_argument("--command-topic", default="/sarm/joint_commands")
    ap.add_argument("--obs-to-clock-ms", type=float, default=20.0,
                    help="lockstep: wall pause between a tick's observation and its /clock")
    ap.add_argument("--command-timeout-s", type=float, default=10.0, help="lockstep: wait for a tick's command")
    ap.add_argument("--t0", type=float, default=1.0,
                    help="sim time of the first /clock (the pre-roll), seconds; the first tick is 20 ms later")
    ap.add_argument("--node-timeout-s", type=float, default=120.0, help="wait this long for the node to appear")
    ap.add_argument("--out", type=Path, default=None, help="results JSON (commands and rewards beside it as .npz)")
    ap.add_argument("--sarm-control", action="store_true",
                    help=f"operate sarm as a test bench does: {POLICY_CONTROL_TOPIC} ARM at each episode's first tick "
                         f"(RESET first after a fault), {EPISODE_CONTROL_TOPIC} END and DISARM after its last")
    ap.add_argument("--robot-id", default="", help="robot_id of the controls sent (empty: every node)")
    ap.add_argument("--stopped-wait-s", type=float, default=0.2,
                    help="lockstep: how long a tick waits for a command while the node says it is disarmed/faulted")
    ap.add_argument("--fault", action="append", default=[], metavar="NAME@TICK[:ARG[:ARG2]]",
                    help="inject a fault at tick TICK of every episode (repeatable): " + "; ".join(Fault.HELP.values()))
    args = ap.parse_args(argv)
    if args.transport == "zenoh" and not args.listen and not args.connect:
        ap.error("give --listen and/or --connect (loopback endpoints, e.g. tcp/127.0.0.1:7448)")
    try:
        faults = [Fault.parse(f) for f in args.fault]
    except ValueError as e:
        ap.error(str(e))

    if args.transport == "dds":
        dds_environment(args.ros_venv.resolve())
        transport = RclpyTransport(args.domain)
    else:
        transport = ZenohRmwTransport(args.listen, args.connect, args.distro, args.domain)
    robot = RosRobot(transport, args.width, args.height, args.camera, args.command_form, args.command_topic,
                     int(round(args.t0 * 1e9)), sarm_control=args.sarm_control, faults=faults,
                     robot_id=args.robot_id, stopped_wait_s=args.stopped_wait_s)
    camera_topic = CAMERA_COMPRESSED if args.camera == "compressed" else CAMERA_RAW

    def on_sigint(_sig, _frame):
        if robot.stop.is_set():
            raise KeyboardInterrupt
        robot.stop.set()

    signal.signal(signal.SIGINT, on_sigint)
    results, arrays = [], {}
    try:
        print(f"ros_robot: waiting for a node ({args.mode}, commands {args.command_form} on {args.command_topic})",
              flush=True)
        wait_for_node(transport, args.command_topic, camera_topic, args.node_timeout_s, args.sarm_control)
        print("ros_robot: node found", flush=True)
        if args.sarm_control:
            # The first message on a new route (Zenoh; DDS until discovery settles) can take longer than a tick's pause to
            # arrive: open the control route with a control addressed to another robot (the node
            # ignores and counts it). Not a DISARM: one that arrived in the same tick as the first
            # ARM would win over it (disarm beats arm), and the node would never arm.
            robot.send_policy_control(DISARM, "sim: opening the control route", robot_id="sim-route-warmup")
            time.sleep(0.5)
        seeds = parse_seeds(args.seeds)
        episode = 0
        while True:
            # A /sim/reset comes first (it also ends a running episode), then --seeds, then (--serve)
            # the next /sim/reset.
            try:
                seed = robot.resets.get_nowait()
            except queue.Empty:
                seed = None
            if seed is None and seeds:
                seed = seeds.pop(0)
            while seed is None and args.serve and not robot.stop.is_set():
                try:
                    seed = robot.resets.get(timeout=0.2)
                except queue.Empty:
                    pass
            if seed is None or robot.stop.is_set():
                break
            r = robot.run_episode(seed, episode, args.steps, args.mode, args.obs_to_clock_ms / 1e3,
                                  args.command_timeout_s)
            suffix = f"{seed}" if f"commands_{seed}" not in arrays else f"{seed}_episode{episode}"
            episode += 1
            arrays[f"commands_{suffix}"] = np.stack(r.commands) if r.commands else np.zeros((0, 14))
            arrays[f"rewards_{suffix}"] = np.asarray(r.rewards, np.int8)
            d = {k: v for k, v in r.__dict__.items() if k not in ("commands", "rewards")}
            results.append(d)
            print(json.dumps({k: v for k, v in d.items() if k not in ("latencies_ms", "progress")}), flush=True)
    except KeyboardInterrupt:  # a second Ctrl-C: out at once; what finished is still written
        print("ros_robot: interrupted", flush=True)
    finally:
        undecodable = dict(transport.undecodable)
        transport.close()
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        k = sum(r["success"] for r in results)
        args.out.write_text(json.dumps({
            "sim": f"joint_sim.JointSim {args.width}x{args.height} top camera ({args.camera}, JPEG q{JPEG_QUALITY}), "
                   f"{args.steps} ticks at 50 Hz, mode {args.mode}",
            "command_form": args.command_form, "episodes": len(results), "successes": k,
            "undecodable": undecodable, "bad_commands": robot.bad_commands,
            "command": " ".join(["models/tools/.venv/bin/python", "models/tools/sim/ros_robot.py"]
                                + list(argv if argv is not None else sys.argv[1:])),
            "results": results}, indent=1) + "\n")
        np.savez_compressed(args.out.with_suffix(".npz"), **arrays)
    return 0


if __name__ == "__main__":
    sys.exit(main())
