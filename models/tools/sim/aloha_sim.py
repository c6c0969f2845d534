"""MuJoCo ALOHA bimanual cube transfer: environment, scripted waypoint policy, ground truth.

The environment is gym-aloha's end-effector transfer-cube task built directly with dm_control
(gym-aloha's own gym env raises NotImplementedError for the end-effector tasks):
`bimanual_viperx_end_effector_transfer_cube.xml` + `TransferCubeEndEffectorTask`, 50 Hz control
(DT = 0.02 s, 10 physics sub-steps of 2 ms). The right arm picks the cube up and hands it to the
left arm; the task's contact reward (0..4) is the sim's own measure: 1 right gripper touches the
cube, 2 lifted by the right gripper, 3 left gripper touches it, 4 held by the left gripper off the
table (success).

The scripted policy is a sequence of end-effector keyframes (the ACT scripted transfer policy's
waypoints, made sequential) with a named subtask per segment, and per-episode variety: cube pose,
per-segment speed 0.7-1.6x, pauses, regrasps, and scripted failures (a grasp that closes on air,
the cube dropped during the lift, the cube dropped at the handover).
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

from dataclasses import dataclass, field  # noqa: E402

import numpy as np  # noqa: E402
from dm_control import mujoco  # noqa: E402
from dm_control.rl import control  # noqa: E402
from gym_aloha.constants import ASSETS_DIR, DT  # noqa: E402
from gym_aloha.tasks.sim_end_effector import TransferCubeEndEffectorTask  # noqa: E402

FPS = 50
WIDTH, HEIGHT = 640, 480
CUBE_Z = 0.02  # where the cube settles on the table (half its 4 cm edge)

# Dense subtasks (one per scripted segment kind) and the sparse stages they make up.
DENSE = ["reach the cube", "grasp the cube", "lift the cube", "move to the handover",
         "hand over to the left arm", "retreat"]
SPARSE = ["pick up the cube with the right arm", "hand the cube over to the left arm", "retreat"]
DENSE_TO_SPARSE = [0, 0, 0, 1, 1, 2]
FAILURES = ("grasp_air", "drop_lift", "drop_handover")


def quat_mul(a, b):
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return np.array([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2])


def axis_quat(axis, degrees):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    h = np.radians(degrees) / 2
    return np.concatenate([[np.cos(h)], np.sin(h) * axis])


class _Task(TransferCubeEndEffectorTask):
    """gym-aloha's task with a seeded cube pose and no per-step rendering in observations."""

    def __init__(self, cube_xy, random=None):
        super().__init__(random=random)
        self.cube_xy = cube_xy

    def initialize_episode(self, physics):
        self.initialize_robots(physics)
        i = physics.model.name2id("red_box_joint", "joint")
        physics.data.qpos[i:i + 7] = [self.cube_xy[0], self.cube_xy[1], CUBE_Z, 1, 0, 0, 0]
        super(TransferCubeEndEffectorTask, self).initialize_episode(physics)

    def get_observation(self, physics):
        obs = {"qpos": self.get_qpos(physics), "env_state": self.get_env_state(physics),
               "mocap_pose_left": np.concatenate([physics.data.mocap_pos[0], physics.data.mocap_quat[0]]).copy(),
               "mocap_pose_right": np.concatenate([physics.data.mocap_pos[1], physics.data.mocap_quat[1]]).copy()}
        return obs


def make_env(cube_xy):
    physics = mujoco.Physics.from_xml_path(str(ASSETS_DIR / "bimanual_viperx_end_effector_transfer_cube.xml"))
    # Stiffen the mocap welds so the grippers follow the keyframes closely.
    physics.model.eq_solimp[:, :2] = (0.95, 0.99)
    # Headless rendering 5-9x faster: no shadow map, no multisampling.
    physics.model.vis.quality.shadowsize = 0
    physics.model.vis.quality.offsamples = 0
    task = _Task(cube_xy)
    return control.Environment(physics, task, time_limit=float("inf"), control_timestep=DT,
                               n_sub_steps=None, flat_observation=False)


@dataclass
class Plan:
    """Keyframes: per step index, left/right pose (xyz+quat) and gripper (1 open, 0 closed)."""
    t: list = field(default_factory=list)
    left: list = field(default_factory=list)
    right: list = field(default_factory=list)
    stage: list = field(default_factory=list)  # dense stage of the segment that ENDS at this keyframe
    events: dict = field(default_factory=dict)

    def add(self, steps, left, right, stage):
        self.t.append(self.t[-1] + max(1, int(round(steps))) if self.t else 0)
        self.left.append(np.asarray(left, float))
        self.right.append(np.asarray(right, float))
        self.stage.append(stage)

    def at(self, step):
        k = int(np.searchsorted(self.t, step, side="right"))
        if k >= len(self.t):
            return self.left[-1], self.right[-1], self.stage[-1]
        a, b = self.t[k - 1], self.t[k]
        w = (step - a) / (b - a)
        lerp = lambda x, y: x + (y - x) * w  # noqa: E731
        return lerp(self.left[k - 1], self.left[k]), lerp(self.right[k - 1], self.right[k]), self.stage[k]

    @property
    def length(self):
        return self.t[-1] + 1


@dataclass
class Spec:
    seed: int
    cube_xy: tuple
    failure: str | None
    speeds: list
    pauses: list  # (segment index, steps)
    regrasp: bool
    grasp_offset: np.ndarray
    meet_offset: np.ndarray
    drop_fraction: float

    def describe(self):
        return {"seed": self.seed, "cube_xy": [float(v) for v in self.cube_xy], "failure": self.failure,
                "speeds": [round(float(s), 3) for s in self.speeds],
                "pauses": [[int(a), int(b)] for a, b in self.pauses], "regrasp": self.regrasp,
                "grasp_offset": [round(float(v), 4) for v in self.grasp_offset],
                "meet_offset": [round(float(v), 4) for v in self.meet_offset],
                "drop_fraction": round(float(self.drop_fraction), 3)}


N_SEGMENTS = 16


def sample_spec(seed: int, failure: str | None) -> Spec:
    rng = np.random.default_rng(seed)
    cube_xy = (rng.uniform(0.0, 0.2), rng.uniform(0.4, 0.6))  # gym-aloha's sample_box_pose ranges
    speeds = list(rng.uniform(0.7, 1.6, N_SEGMENTS))
    pauses = []
    for _ in range(rng.choice([0, 0, 1, 1, 2])):
        pauses.append((int(rng.integers(0, N_SEGMENTS)), int(rng.integers(10, 40))))
    regrasp = failure is None and rng.random() < 0.2
    if failure == "grasp_air":
        ang = rng.uniform(0, 2 * np.pi)
        grasp_offset = np.array([0.06 * np.cos(ang), 0.06 * np.sin(ang), rng.uniform(0.0, 0.03)])
    else:
        grasp_offset = np.array([rng.uniform(-0.004, 0.004), rng.uniform(-0.004, 0.004), 0.0])
    meet_offset = np.array([rng.uniform(-0.03, 0.03), rng.uniform(-0.03, 0.03), rng.uniform(-0.02, 0.02)])
    return Spec(seed, cube_xy, failure, speeds, pauses, regrasp, grasp_offset, meet_offset,
                drop_fraction=rng.uniform(0.25, 0.75))


def build_plan(spec: Spec, obs0) -> Plan:
    """Keyframes after the ACT scripted transfer policy, as one sequence of named segments."""
    L0, R0 = obs0["mocap_pose_left"], obs0["mocap_pose_right"]
    box = np.array([spec.cube_xy[0], spec.cube_xy[1], CUBE_Z])
    pick_q = quat_mul(R0[3:], axis_quat([0, 1, 0], -60))
    meet_lq = axis_quat([1, 0, 0], 90)
    meet = np.array([0.0, 0.5, 0.25]) + spec.meet_offset
    grasp_at = box + np.array([0, 0, -0.015]) + spec.grasp_offset
    p = Plan()
    seg = iter(range(N_SEGMENTS))

    def pose(xyz, q, g):
        return np.concatenate([xyz, q, [g]])

    def move(steps, left, right, stage):
        s = next(seg)
        p.add(steps / spec.speeds[s], left, right, stage)
        for ps, n in spec.pauses:
            if ps == s:
                p.add(n, left, right, stage)

    l_wait = pose(meet + [-0.1, 0, -0.02], meet_lq, 1)
    p.add(0, pose(L0[:3], L0[3:], 0), pose(R0[:3], R0[3:], 0), 0)
    # reach: right above the cube; left to its waiting pose next to the meeting point
    move(90, l_wait, pose(box + [0, 0, 0.08], pick_q, 1), 0)
    move(40, l_wait, pose(grasp_at, pick_q, 1), 0)
    # grasp
    move(40, l_wait, pose(grasp_at, pick_q, 0), 1)
    if spec.regrasp:  # open, back off, come down again, close
        move(15, l_wait, pose(grasp_at + [0, 0, 0.03], pick_q, 1), 1)
        move(20, l_wait, pose(grasp_at, pick_q, 1), 1)
        move(30, l_wait, pose(grasp_at, pick_q, 0), 1)
    p.events["grasp_end"] = p.t[-1]
    # lift towards the meeting point
    lift_to = pose(meet + [0.05, 0, 0], pick_q, 0)
    if spec.failure == "drop_lift":
        start = p.right[-1]
        mid = start + (lift_to - start) * spec.drop_fraction
        move(30 * spec.drop_fraction, l_wait, mid, 2)
        mid_open = mid.copy()
        mid_open[7] = 1
        p.add(8, l_wait, mid_open, 2)
        p.events["failure_step"] = p.t[-1]
        lift_to = lift_to.copy()
        lift_to[7] = 1
        move(30 * (1 - spec.drop_fraction), l_wait, lift_to, 2)
    else:
        move(30, l_wait, lift_to, 2)
    # move to the handover: right to the meeting point, then the left gripper comes in
    rg = lift_to[7]
    move(20, l_wait, pose(meet, pick_q, rg), 3)
    l_meet = pose(meet + [0.02, 0, -0.02], meet_lq, 1)
    if spec.failure == "drop_handover":  # the right lets go before the left gripper is there
        p.add(12, l_wait, pose(meet, pick_q, 1), 3)
        p.events["failure_step"] = p.t[-1]
        rg = 1
    move(40, l_meet, pose(meet, pick_q, rg), 3)
    # hand over: the left closes, then the right opens
    move(30, pose(meet + [0.02, 0, -0.02], meet_lq, 0), pose(meet, pick_q, rg), 4)
    move(20, pose(meet + [0.02, 0, -0.02], meet_lq, 0), pose(meet, pick_q, 1), 4)
    # retreat: both arms apart, then hold
    move(50, pose(meet + [-0.1, 0, -0.02], np.array([1.0, 0, 0, 0]), 0), pose(meet + [0.1, 0, 0], pick_q, 1), 5)
    p.add(40, p.left[-1], p.right[-1], 5)
    if spec.failure == "grasp_air":  # closed on air: nothing held from the end of the grasp on
        p.events["failure_step"] = p.events["grasp_end"]
    return p


def annotations(plan: Plan, n: int, failure_step: int | None):
    """Per-step dense stage, and LeRobot-style (names, start, end) subtask lists per head.

    A success's segments are its scripted subtasks. In a failed demonstration the task is back at
    its start once the failure happens (the cube lies on the table again, or was never picked
    up): the frames after the failure are annotated as the first subtask again, so the
    ground-truth progress falls back instead of claiming stages that were never done."""
    dense = np.array([plan.at(s)[2] for s in range(n)])
    stage_true = dense.copy()
    if failure_step is not None:
        stage_true[failure_step:] = 0

    def runs(labels, names):
        out_n, out_s, out_e = [], [], []
        start = 0
        for i in range(1, n + 1):
            if i == n or labels[i] != labels[start]:
                out_n.append(names[labels[start]])
                out_s.append(start)
                out_e.append(i - 1)
                start = i
        return out_n, out_s, out_e

    sparse_true = np.array([DENSE_TO_SPARSE[d] for d in stage_true])
    if failure_step is not None:
        sparse_true[failure_step:] = 0
    return {
        "scripted_dense_stage": dense,
        "dense_stage": stage_true,
        "sparse_stage": sparse_true,
        "dense": runs(stage_true, DENSE),
        "sparse": runs(sparse_true, SPARSE),
    }


JOINT_NAMES = [f"{s}_{j}" for s in ("left", "right") for j in
               ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper")]


def run_episode(spec: Spec, on_frame):
    """Runs one episode; on_frame(step, stamp_ns, rgb, joints14) per 50 Hz frame.

    joints14: the six arm joint angles (rad) and the normalised gripper opening (0 closed, 1 open,
    gym-aloha's observation convention) of each arm. Returns per-step arrays and the plan."""
    env = make_env(spec.cube_xy)
    ts = env.reset()
    physics = env.physics
    plan = build_plan(spec, ts.observation)
    n = plan.length
    rewards, joints, cube, actions = [], [], [], []
    for step in range(n):
        q = ts.observation["qpos"].astype(np.float64)
        stamp = int(round(physics.data.time * 1e9))
        assert abs(stamp - step * 20_000_000) < 1000, (stamp, step)
        rgb = physics.render(height=HEIGHT, width=WIDTH, camera_id="top")
        on_frame(step, step * 20_000_000, rgb, q)
        joints.append(q)
        cube.append(ts.observation["env_state"][:3].copy())
        left, right, _ = plan.at(step + 1)
        a = np.concatenate([left, right])
        actions.append(a)
        ts = env.step(a)
        rewards.append(ts.reward)
    return plan, {"reward": np.array(rewards, np.int8), "joints": np.array(joints, np.float32),
                  "cube_xyz": np.array(cube, np.float32), "action": np.array(actions, np.float32)}
