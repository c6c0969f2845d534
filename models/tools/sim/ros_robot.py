#!/usr/bin/env python
"""The MuJoCo ALOHA transfer-cube sim as a ROS 2 robot, over Zenoh with rmw_zenoh keys.

    MUJOCO_GL=egl models/tools/.venv/bin/python models/tools/sim/ros_robot.py \
        --listen tcp/127.0.0.1:7448 --seeds 0 --mode lockstep --out hil_out/seed_0.json

then, in another shell, the node (launch/hil.toml connects to that endpoint):

    sarm run --config launch/hil.toml

It wraps `joint_sim.JointSim` (the environment `eval_act.py` drives with LeRobot's own ACT: the
same seeds, 640x480 top camera, JPEG q80 through PIL, 400 ticks at 50 Hz, success = the contact
reward reaches 4 at some tick) and speaks ROS 2 the way an rmw_zenoh_cpp node does: CDR
payloads (rosbags) on `<domain>/<topic>/<pkg>::msg::dds_::<Type>_/<RIHS01 hash>` keys, the
33-byte attachment (sequence number, source timestamp, gid) and liveliness tokens for the node
and each publisher/subscriber, so `ros2 topic list` through rmw_zenohd sees it too.

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

Results: `--out FILE.json` (per episode: success, ticks, commands, timing) and FILE.npz (per seed
the commands applied, `commands_<seed>`, (ticks, 14), and the rewards, `rewards_<seed>`): the
same layout as eval_act.py's npz (`seed_<seed>` there), to compare actions tick by tick.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import queue
import signal
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
COMMAND_TYPES = {
    "joint_state": "sensor_msgs/msg/JointState",
    "joint_trajectory": "trajectory_msgs/msg/JointTrajectory",
    "float64_multi_array": "std_msgs/msg/Float64MultiArray",
}


class CommandError(ValueError):
    """A command message that cannot be applied (wrong joints, wrong length, NaN)."""


# --------------------------------------------------------------------------------------------
# Transport: ROS 2 over Zenoh with rmw_zenoh's key layout. Small on purpose: an rclpy or Cyclone
# DDS class with the same three methods (publisher, subscriber, close) can replace it.
# --------------------------------------------------------------------------------------------


def _dds_name(type_name: str) -> str:
    pkg, _, t = type_name.split("/")
    return f"{pkg}::msg::dds_::{t}_"


def _mangle(name: str) -> str:
    return name.replace("/", "%")


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

        def on_sample(sample):
            try:
                msg = self.ts.deserialize_cdr(sample.payload.to_bytes(), type_name)
            except Exception as e:  # a malformed message: counted, never fatal
                self.undecodable[topic] = self.undecodable.get(topic, 0) + 1
                if self.undecodable[topic] == 1:
                    print(f"ros_robot: undecodable {type_name} on {topic}: {e}", file=sys.stderr, flush=True)
                return
            callback(msg)

        self._entities.append(self.session.declare_subscriber(self.key(topic, type_name), on_sample))

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
    wall_s: float = 0.0
    overrun_ticks: int = 0  # realtime: ticks that started more than a period late (render, JPEG, CDR)
    latency_ms_p50: float | None = None  # realtime: obs published -> command of that tick arrived
    latency_ms_p99: float | None = None
    commands: list = field(default_factory=list)
    rewards: list = field(default_factory=list)


class RosRobot:
    def __init__(self, transport, width: int, height: int, camera: str, command_form: str, command_topic: str,
                 t0_ns: int):
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

    def publish_observation(self, obs: js.Observation, r: EpisodeResult, episode: int, done: bool) -> None:
        from PIL import Image as PILImage

        T, stamp = self.T, self._stamp(self.t_ns)
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
        self.cam_pub.publish(img)
        self.joint_pub.publish(T["sensor_msgs/msg/JointState"](
            header=T["std_msgs/msg/Header"](stamp=stamp, frame_id=""), name=js.JOINT_NAMES,
            position=np.ascontiguousarray(obs.joints, np.float64),
            velocity=np.ascontiguousarray(obs.velocities, np.float64), effort=np.zeros(0)))
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
            time.sleep(obs_to_clock_s)
        self.t_ns += js.CONTROL_PERIOD_NS
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
            self.publish_observation(obs, r, episode, done=False)
            if mode == "lockstep" and obs_to_clock_s > 0:
                time.sleep(obs_to_clock_s)
            published_at[self.t_ns] = time.monotonic_ns()
            self.publish_clock()
            cmd = self._command_lockstep(command_timeout_s, r) if mode == "lockstep" else self._command_realtime(
                published_at, latencies)
            if cmd is None:
                r.ticks_without_command += 1
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
        self.publish_observation(obs, r, episode, done=True)
        if mode == "lockstep" and obs_to_clock_s > 0:
            time.sleep(obs_to_clock_s)
        self.publish_clock()
        self.t_ns += js.CONTROL_PERIOD_NS  # the next episode's pre-roll is later still
        r.wall_s = round(time.monotonic() - t_start, 2)
        if latencies:
            r.latency_ms_p50 = round(float(np.percentile(latencies, 50)), 3)
            r.latency_ms_p99 = round(float(np.percentile(latencies, 99)), 3)
        return r

    def _command_lockstep(self, timeout_s: float, r: EpisodeResult) -> Command | None:
        """The command for the tick at self.t_ns: stamped with it, or (no stamp) the first one."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                c = self.commands.get(timeout=left)
            except queue.Empty:
                return None
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


def wait_for_node(transport: ZenohRmwTransport, command_topic: str, camera_topic: str, timeout_s: float) -> None:
    """Until a node subscribes to /clock and the camera and publishes commands (liveliness)."""
    deadline = time.monotonic() + timeout_s
    want = [("MS", CLOCK_TOPIC), ("MS", camera_topic), ("MS", JOINT_TOPIC), ("MP", command_topic)]
    while time.monotonic() < deadline:
        missing = [w for w in want if not transport.peers_alive(*w)]
        if not missing:
            time.sleep(0.5)  # let the subscriptions' declarations settle
            return
        time.sleep(0.2)
    raise TimeoutError(f"no node within {timeout_s} s: nothing alive for {missing} "
                       "(is `sarm run --config launch/hil.toml` connecting to --listen?)")


def parse_seeds(s: str) -> list[int]:
    if not s:
        return []
    if ":" in s:
        a, b = s.split(":")
        return list(range(int(a), int(b)))
    return [int(x) for x in s.split(",")]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", action="append", default=[], help="Zenoh endpoint to listen on (repeatable)")
    ap.add_argument("--connect", action="append", default=[], help="Zenoh endpoint to connect to (repeatable)")
    ap.add_argument("--distro", default="jazzy", choices=["humble", "jazzy"], help="rmw_zenoh key format")
    ap.add_argument("--domain", type=int, default=0)
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
    args = ap.parse_args(argv)
    if not args.listen and not args.connect:
        ap.error("give --listen and/or --connect (loopback endpoints, e.g. tcp/127.0.0.1:7448)")

    transport = ZenohRmwTransport(args.listen, args.connect, args.distro, args.domain)
    robot = RosRobot(transport, args.width, args.height, args.camera, args.command_form, args.command_topic,
                     int(round(args.t0 * 1e9)))
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
        wait_for_node(transport, args.command_topic, camera_topic, args.node_timeout_s)
        print("ros_robot: node found", flush=True)
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
            print(json.dumps(d), flush=True)
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
