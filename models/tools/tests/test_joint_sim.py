"""The joint-position ALOHA sim wrapper (models/tools/sim/joint_sim.py) that the HIL robot imports.

Needs the sim packages (models/tools/sim/requirements.txt); skipped where they are not installed
(CI installs only models/tools/requirements.txt)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from conftest import TOOLS

pytest.importorskip("mujoco")
pytest.importorskip("dm_control")
pytest.importorskip("gym_aloha")
sys.path.insert(0, str(TOOLS / "sim"))


def _rollout(seed, steps=30):
    import joint_sim as js

    sim = js.JointSim(width=64, height=48)
    obs = sim.reset(seed=seed)
    cmd = obs.joints.copy()
    cmd[js.GRIPPERS] = 1.0
    out = []
    for k in range(steps):
        cmd[1] = -0.96 + 0.01 * k  # the left shoulder moves
        obs = sim.step(cmd)
        out.append((obs.joints.copy(), obs.reward, obs.stamp_ns))
    return out, sim.render(), sim


def test_same_seed_same_commands_same_everything():
    a, img_a, sim = _rollout(3)
    b, img_b, _ = _rollout(3)
    for (qa, ra, ta), (qb, rb, tb) in zip(a, b, strict=True):
        assert np.array_equal(qa, qb) and ra == rb and ta == tb
    assert np.array_equal(img_a, img_b) and img_a.shape == (48, 64, 3) and img_a.dtype == np.uint8
    assert a[-1][2] == 30 * 20_000_000  # sim clock: 20 ms per tick
    c, _, sim_c = _rollout(4)
    assert sim_c.cube_xy != sim.cube_xy  # the seed moves the cube


def test_bad_commands_are_named():
    import joint_sim as js

    sim = js.JointSim(width=64, height=48)
    with pytest.raises(RuntimeError, match="reset"):
        sim.step(np.zeros(14))
    sim.reset(seed=0)
    with pytest.raises(ValueError, match="14 values"):
        sim.step(np.zeros(13))
    with pytest.raises(ValueError, match="NaN"):
        sim.step(np.full(14, np.nan))
    assert np.all(js.COMMAND_LOWER < js.COMMAND_UPPER)
