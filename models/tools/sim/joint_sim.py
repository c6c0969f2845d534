"""The ALOHA transfer-cube sim commanded in joint positions, as the real ALOHA is.

This is gym-aloha's joint-position environment (`bimanual_viperx_transfer_cube.xml` with
`TransferCubeTask`, the sim ACT's own data generation replays joint trajectories in), built
directly with dm_control so that nothing renders unless asked for:

    from joint_sim import JointSim
    sim = JointSim()                      # 640x480 top camera, 50 Hz control
    obs = sim.reset(seed=7)               # cube pose drawn from the seed
    for _ in range(400):
        rgb = sim.render()                # (480, 640, 3) uint8, the top camera
        obs = sim.step(command)           # command: 14 joint positions (see JOINT_NAMES)
    obs.reward, obs.success               # the sim's contact reward (0..4), reward == 4

Conventions (the same as the recorded bags of models/tools/sim, the reward bundle and the
policy bundle `models/aloha-act`):
- 14 joints in `JOINT_NAMES` order: per arm (left, then right) waist, shoulder, elbow,
  forearm_roll, wrist_angle, wrist_rotate in radians, then the gripper as gym-aloha's
  normalised finger opening (0 closed, 1 open; the finger slide position mapped linearly from
  PUPPET_GRIPPER_POSITION_CLOSE..OPEN).
- A command is the same 14 numbers: arm joint position targets (rad) for MuJoCo's position
  servos and the normalised gripper target. MuJoCo clamps targets to the actuators' ctrlrange
  (`COMMAND_LOWER`/`COMMAND_UPPER` in the same units).
- One `step` is one control tick: 20 ms of sim time (10 physics steps of 2 ms).
- Determinism: the same seed and the same command sequence give bit-identical joints, rewards
  and images (MuJoCo is deterministic on one thread; rendering does not touch the physics).
- Reward: gym-aloha's contact reward, 1 right gripper touches the cube, 2 lifted by the right
  gripper, 3 the left gripper touches it, 4 held by the left gripper off the table. `success`
  is reward == 4 at this step.
- The cube starts at rest (z = 0.02, half its 4 cm edge) at x ~ U(0, 0.2), y ~ U(0.4, 0.6),
  gym-aloha's `sample_box_pose` ranges, drawn with `numpy.random.default_rng(seed)`.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

from dataclasses import dataclass  # noqa: E402

import numpy as np  # noqa: E402
from dm_control import mujoco  # noqa: E402
from dm_control.rl import control  # noqa: E402
from gym_aloha.constants import (  # noqa: E402
    ASSETS_DIR,
    DT,
    PUPPET_GRIPPER_POSITION_CLOSE,
    PUPPET_GRIPPER_POSITION_OPEN,
    START_ARM_POSE,
)
from gym_aloha.tasks import sim as gym_sim  # noqa: E402

FPS = 50
CONTROL_PERIOD_NS = 20_000_000
WIDTH, HEIGHT = 640, 480
CUBE_Z = 0.02
CUBE_X_RANGE = (0.0, 0.2)
CUBE_Y_RANGE = (0.4, 0.6)
XML = ASSETS_DIR / "bimanual_viperx_transfer_cube.xml"

JOINT_NAMES = [f"{s}_{j}" for s in ("left", "right") for j in
               ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper")]
ARM = np.array([i for i in range(14) if i % 7 != 6])
GRIPPERS = np.array([6, 13])


def gripper_to_normalised(finger_pos):
    return (finger_pos - PUPPET_GRIPPER_POSITION_CLOSE) / (PUPPET_GRIPPER_POSITION_OPEN - PUPPET_GRIPPER_POSITION_CLOSE)


def _command_range() -> tuple[np.ndarray, np.ndarray]:
    """The actuators' ctrlrange in command units (arm rad, normalised gripper)."""
    physics = mujoco.Physics.from_xml_path(str(XML))
    rng = physics.model.actuator_ctrlrange.copy()  # 16 actuators: 8 per arm (2 finger slides)
    lo, hi = np.zeros(14), np.zeros(14)
    for arm in range(2):
        a, c = 8 * arm, 7 * arm
        lo[c:c + 6], hi[c:c + 6] = rng[a:a + 6, 0], rng[a:a + 6, 1]
        lo[c + 6], hi[c + 6] = gripper_to_normalised(rng[a + 6, 0]), gripper_to_normalised(rng[a + 6, 1])
    return lo, hi


COMMAND_LOWER, COMMAND_UPPER = _command_range()


def cube_xy_for_seed(seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    return float(rng.uniform(*CUBE_X_RANGE)), float(rng.uniform(*CUBE_Y_RANGE))


class _Task(gym_sim.TransferCubeTask):
    """gym-aloha's TransferCubeTask with the cube pose given, and no rendering in observations."""

    def __init__(self, cube_xy):
        super().__init__(random=0)
        self.cube_xy = cube_xy

    def initialize_episode(self, physics):
        with physics.reset_context():
            physics.named.data.qpos[:16] = START_ARM_POSE
            np.copyto(physics.data.ctrl, START_ARM_POSE)
            physics.named.data.qpos[-7:] = [self.cube_xy[0], self.cube_xy[1], CUBE_Z, 1, 0, 0, 0]
        super(gym_sim.TransferCubeTask, self).initialize_episode(physics)

    def get_observation(self, physics):
        return {"qpos": self.get_qpos(physics), "qvel": self.get_qvel(physics),
                "env_state": self.get_env_state(physics)}


@dataclass
class Observation:
    """What the robot side sees after a reset or a step."""
    step: int  # control ticks since reset
    stamp_ns: int  # sim time: step * 20 ms
    joints: np.ndarray  # (14,) float64, JOINT_NAMES order
    velocities: np.ndarray  # (14,) float64 (arm rad/s, gripper normalised units/s)
    reward: int  # contact reward 0..4 of the current state (0 after reset)
    success: bool  # reward == 4
    cube_xyz: np.ndarray  # (3,) ground truth, not something the policy may see


class JointSim:
    """One deterministic joint-position ALOHA transfer-cube environment (see the module doc)."""

    def __init__(self, width: int = WIDTH, height: int = HEIGHT, camera: str = "top", fast_render: bool = True):
        self.width, self.height, self.camera = width, height, camera
        self._fast_render = fast_render
        self._env = None
        self._obs: Observation | None = None
        self.seed: int | None = None
        self.cube_xy: tuple[float, float] | None = None

    @property
    def physics(self):
        if self._env is None:
            raise RuntimeError("JointSim: call reset(seed) first")
        return self._env.physics

    def reset(self, seed: int | None = None, cube_xy: tuple[float, float] | None = None) -> Observation:
        """A fresh episode: arms at gym-aloha's START_ARM_POSE, the cube from `seed` (or `cube_xy`)."""
        if (seed is None) == (cube_xy is None):
            raise ValueError("JointSim.reset: give exactly one of seed or cube_xy")
        self.seed = seed
        self.cube_xy = cube_xy_for_seed(seed) if seed is not None else (float(cube_xy[0]), float(cube_xy[1]))
        physics = mujoco.Physics.from_xml_path(str(XML))
        if self._fast_render:
            # no shadow map, no multisampling: headless rendering 5-9x faster, physics unchanged
            physics.model.vis.quality.shadowsize = 0
            physics.model.vis.quality.offsamples = 0
        self._env = control.Environment(physics, _Task(self.cube_xy), time_limit=float("inf"),
                                        control_timestep=DT, n_sub_steps=None, flat_observation=False)
        ts = self._env.reset()
        self._obs = self._observation(ts, 0, 0)
        return self._obs

    def step(self, command) -> Observation:
        """Applies one joint-position command for one control tick (20 ms)."""
        if self._obs is None:
            raise RuntimeError("JointSim: call reset(seed) first")
        cmd = np.asarray(command, dtype=np.float64).reshape(-1)
        if cmd.shape != (14,):
            raise ValueError(f"JointSim.step: command must have 14 values ({', '.join(JOINT_NAMES)}), got {cmd.shape}")
        if not np.all(np.isfinite(cmd)):
            raise ValueError(f"JointSim.step: command has NaN/Inf: {cmd.tolist()}")
        ts = self._env.step(cmd)
        self._obs = self._observation(ts, self._obs.step + 1, int(ts.reward or 0))
        return self._obs

    def render(self) -> np.ndarray:
        """The camera image of the current state, (height, width, 3) uint8 RGB."""
        return self.physics.render(height=self.height, width=self.width, camera_id=self.camera)

    @property
    def observation(self) -> Observation:
        if self._obs is None:
            raise RuntimeError("JointSim: call reset(seed) first")
        return self._obs

    def _observation(self, ts, step: int, reward: int) -> Observation:
        o = ts.observation
        stamp = step * CONTROL_PERIOD_NS
        assert abs(int(round(self._env.physics.data.time * 1e9)) - stamp) < 1000, "sim clock drifted from the tick count"
        return Observation(step=step, stamp_ns=stamp, joints=np.asarray(o["qpos"], np.float64).copy(),
                           velocities=np.asarray(o["qvel"], np.float64).copy(), reward=reward,
                           success=reward == 4, cube_xyz=np.asarray(o["env_state"][:3], np.float64).copy())
