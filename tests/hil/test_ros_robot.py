"""The sim's ROS 2 side (models/tools/sim/ros_robot.py) without sarm: a small lockstep node
written here on the Zenoh Python API answers each `/clock` with a command stamped with it, in
each of the three forms sarm's policy stage publishes, then asks for a second episode on
`/sim/reset`. Checked: the sim applies exactly the commands sent, tick for tick; camera, joints
and ground truth carry the tick's stamp; sim time never goes back across the reset; the cube
pose follows the seed (joint_sim.cube_xy_for_seed); a malformed command is counted and skipped.

    MUJOCO_GL=egl models/tools/.venv/bin/python -m pytest tests/hil/test_ros_robot.py

Skipped without the sim packages (models/tools/sim/requirements.txt); CI runs it through
ros/tests/hil_loop.rs (which fails on a skip). ~10 s.
"""

import importlib.util
import io
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SIM = ROOT / "models/tools/sim"

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("mujoco", "dm_control", "gym_aloha", "zenoh", "rosbags")),
    reason="sim packages missing (models/tools/sim/requirements.txt)")

STEPS = 8
PERIOD = 20_000_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LockstepNode:
    """Subscribes to camera, joints, ground truth and /clock; for each /clock t whose joint state
    (stamped t) has arrived, commands that joint state with left_waist moved by +0.01 per tick."""

    def __init__(self, endpoint: str, form: str, topic: str):
        sys.path.insert(0, str(SIM))
        import ros_robot as rr

        self.rr, self.form = rr, form
        self.t = rr.ZenohRmwTransport([], [endpoint], node_name="test_node")
        T = self.t.ts.types
        self.T = T
        self.clocks: queue.Queue[int] = queue.Queue()
        self.clock_log, self.truth, self.images, self.joints = [], [], {}, {}
        self.sent: dict[int, np.ndarray] = {}
        self.lock = threading.Lock()
        self.t.subscriber("/clock", "rosgraph_msgs/msg/Clock", lambda m: (
            self.clock_log.append(self.ns(m.clock)), self.clocks.put(self.ns(m.clock))))
        self.t.subscriber("/camera/top/image_raw/compressed", "sensor_msgs/msg/CompressedImage", self.on_image)
        self.t.subscriber("/joint_states", "sensor_msgs/msg/JointState", self.on_joints)
        self.t.subscriber("/sim/ground_truth", "std_msgs/msg/String", lambda m: self.truth.append(json.loads(m.data)))
        self.cmd = self.t.publisher(topic, rr.COMMAND_TYPES[form])
        self.reset = self.t.publisher("/sim/reset", "std_msgs/msg/Int32")
        self.stop = threading.Event()
        self.worker = threading.Thread(target=self.run, daemon=True)
        self.worker.start()

    @staticmethod
    def ns(t) -> int:
        return int(t.sec) * 1_000_000_000 + int(t.nanosec)

    def on_image(self, m):
        from PIL import Image

        with self.lock:
            self.images[self.ns(m.header.stamp)] = (m.format, np.asarray(Image.open(io.BytesIO(bytes(m.data)))).shape)

    def on_joints(self, m):
        with self.lock:
            self.joints[self.ns(m.header.stamp)] = (list(m.name), np.asarray(m.position, np.float64))

    def run(self):
        T = self.T
        while not self.stop.is_set():
            try:
                t = self.clocks.get(timeout=0.1)
            except queue.Empty:
                continue
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                with self.lock:
                    j = self.joints.get(t)
                if j is not None:
                    break
                time.sleep(0.002)
            if j is None:
                continue  # a pre-roll /clock: no observation at this time, nothing to command
            names, q = j
            target = q.copy()
            target[names.index("left_waist")] += 0.01 * (1 + len(self.sent) % 3)
            self.sent[t] = target
            stamp = T["builtin_interfaces/msg/Time"](sec=t // 1_000_000_000, nanosec=t % 1_000_000_000)
            hdr = T["std_msgs/msg/Header"](stamp=stamp, frame_id="")
            if self.form == "joint_state":
                msg = T["sensor_msgs/msg/JointState"](header=hdr, name=names, position=target, velocity=np.zeros(0),
                                                      effort=np.zeros(0))
            elif self.form == "joint_trajectory":
                pt = T["trajectory_msgs/msg/JointTrajectoryPoint"](
                    positions=target, velocities=np.zeros(0), accelerations=np.zeros(0), effort=np.zeros(0),
                    time_from_start=T["builtin_interfaces/msg/Duration"](sec=0, nanosec=PERIOD))
                msg = T["trajectory_msgs/msg/JointTrajectory"](header=hdr, joint_names=names, points=[pt])
            else:
                dim = T["std_msgs/msg/MultiArrayDimension"](label="joints", size=14, stride=14)
                msg = T["std_msgs/msg/Float64MultiArray"](
                    layout=T["std_msgs/msg/MultiArrayLayout"](dim=[dim], data_offset=0), data=target)
            self.cmd.publish(msg)

    def send_bad_command(self):
        T = self.T
        msg = T["sensor_msgs/msg/JointState"](header=T["std_msgs/msg/Header"](
            stamp=T["builtin_interfaces/msg/Time"](sec=0, nanosec=0), frame_id=""), name=["left_waist"],
            position=np.zeros(1), velocity=np.zeros(0), effort=np.zeros(0))
        self.cmd.publish(msg)

    def close(self):
        self.stop.set()
        self.worker.join(timeout=2)
        self.t.close()


def wait_until(what, cond, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("form", ["joint_state", "joint_trajectory", "float64_multi_array"])
def test_lockstep_commands_stamps_and_reset(tmp_path, form):
    sys.path.insert(0, str(SIM))
    import joint_sim as js

    endpoint = f"tcp/127.0.0.1:{free_port()}"
    out = tmp_path / "sim.json"
    sim = subprocess.Popen([sys.executable, str(SIM / "ros_robot.py"), "--listen", endpoint, "--seeds", "1",
                            "--serve", "--steps", str(STEPS), "--width", "160", "--height", "120",
                            "--command-form", form, "--obs-to-clock-ms", "5", "--command-timeout-s", "5",
                            "--out", str(out)], cwd=ROOT, env=dict(os.environ, MUJOCO_GL=os.environ.get(
                                "MUJOCO_GL", "egl")), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    node = LockstepNode(endpoint, form, "/sarm/joint_commands")
    try:
        wait_until("the first episode", lambda: any(g["done"] for g in node.truth))
        if form == "joint_state":
            node.send_bad_command()
        node.reset.publish(node.T["std_msgs/msg/Int32"](data=2))
        wait_until("the second episode", lambda: sum(g["done"] for g in node.truth) == 2)
    finally:
        sim.send_signal(signal.SIGINT)
        log = sim.communicate(timeout=30)[0]
        node.close()
    assert sim.returncode == 0, log
    res = json.loads(out.read_text())
    arrays = np.load(out.with_suffix(".npz"))
    assert [r["seed"] for r in res["results"]] == [1, 2], log
    for r in res["results"]:
        assert r["ticks"] == STEPS and r["ticks_without_command"] == 0 and r["stale_commands"] == 0, r
    assert res["bad_commands"] == (1 if form == "joint_state" else 0)

    # tick k of each episode: observation, ground truth and command share the stamp; the sim
    # applied exactly the command sent for that stamp
    truth = [g for g in node.truth if not g["done"]]
    assert [g["tick"] for g in truth] == list(range(STEPS)) * 2
    assert [g["seed"] for g in truth] == [1] * STEPS + [2] * STEPS
    stamps = [g["stamp_ns"] for g in truth]
    for ep, seed in enumerate((1, 2)):
        applied = arrays[f"commands_{seed}"]
        for k in range(STEPS):
            t = stamps[ep * STEPS + k]
            np.testing.assert_array_equal(applied[k], node.sent[t])
            assert node.images[t] == ("jpeg", (120, 160, 3))
            assert node.joints[t][0] == js.JOINT_NAMES
        cube = truth[ep * STEPS]["cube_xyz"]
        assert cube[:2] == pytest.approx(js.cube_xy_for_seed(seed), abs=1e-4)
        assert cube[2] == pytest.approx(0.02, abs=1e-3)
    # one control period per tick; sim time never goes back, also across the reset
    assert all(b - a == PERIOD for a, b in zip(stamps[:STEPS], stamps[1:STEPS]))
    assert all(b > a for a, b in zip(node.clock_log, node.clock_log[1:])), node.clock_log
    # the position servos followed the commanded left_waist (+0.01..0.03 rad per tick)
    first_q = node.joints[stamps[0]][1]
    last_q = node.joints[stamps[STEPS - 1]][1]
    assert last_q[0] - first_q[0] > 0.01
