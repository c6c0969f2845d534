"""A short lockstep closed loop: the sim (ros_robot.py) driven by `sarm run` over Zenoh on
loopback for 60 ticks of seed 0, with PIL's decode of the JPEG round trip sent as raw images
(the pixels LeRobot saw in eval_act.py). The first action chunk must agree with LeRobot's own
actions on that seed (models/aloha-act/eval, through an independent re-statement of the safety
limits) within the bundle's fp32 golden tolerance, and no tick may go without a command.

    SARM_BIN=target/debug/sarm MUJOCO_GL=egl models/tools/.venv/bin/python -m pytest tests/hil

Skipped without the sim packages (models/tools/sim/requirements.txt) or a built `sarm`. Not in
CI (CI does not install the sim packages); about 15 s with a debug build.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SARM = Path(os.environ.get("SARM_BIN", ROOT / "target/debug/sarm"))

pytestmark = [
    pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("mujoco", "dm_control", "gym_aloha", "zenoh")),
                       reason="sim packages missing (models/tools/sim/requirements.txt)"),
    pytest.mark.skipif(not SARM.exists(), reason=f"no sarm binary at {SARM} (set SARM_BIN)"),
]


def raw_config(tmp_path: Path) -> Path:
    text = (ROOT / "launch/hil.toml").read_text()
    for old, new in (('camera = "/camera/top/image_raw/compressed"', 'camera = "/camera/top/image_raw"'),
                     ('camera_type = "compressed"', 'camera_type = "raw"')):
        assert old in text, f"launch/hil.toml no longer has {old!r}"
        text = text.replace(old, new)
    p = tmp_path / "hil_raw.toml"
    p.write_text(text)
    return p


def test_first_chunk_matches_lerobot_in_closed_loop(tmp_path):
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, str(ROOT / "tests/hil/closed_loop.py"), "--sarm", str(SARM),
                        "--config", str(raw_config(tmp_path)), "--seed", "0", "--steps", "60", "--compare", "50",
                        "--out", str(out), "--check"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl")))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["sarm"]["ticks"] == 60
    assert report["sarm"]["ticks_without_command"] == 0
    assert report["compared_ticks"] == 50
    assert report["vs_lerobot_limited"]["max_abs"] <= report["tolerance_fp32_action_abs"]
    # the safety layer is in the loop: tick 0's left_wrist_angle step exceeds max_step, so the raw
    # LeRobot action differs there and the limited one does not
    assert 0 in report["vs_lerobot_raw"]["ticks_over_tolerance"]
    assert report["node_counters"].get("policy_commands", 0) >= 60
