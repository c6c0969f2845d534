"""The short lockstep closed loop CI runs: tests/hil/run.py drives the MuJoCo ALOHA sim
(ros_robot.py) with `sarm run` over Zenoh on loopback for two episodes (seeds 0 and 1, 60 ticks
each, PIL's decode of the JPEG round trip sent raw: the pixels LeRobot saw in eval_act.py), and
seed 0 again over DDS (the sim an rclpy node on Fast DDS).

Checked: in each episode the first action chunk agrees with LeRobot's own actions on that seed
(models/aloha-act/eval, through an independent re-statement of the safety limits) within the
bundle's fp32 golden tolerance, which also shows the arm between episodes gave the second
episode a fresh action queue; no tick went without a command; the node armed and disarmed once
per episode and ended one episode of its own per sim episode; the report folder holds report.md
and its three figures.

    SARM_BIN=target/debug/sarm MUJOCO_GL=egl models/tools/.venv/bin/python -m pytest tests/hil

Skipped without the sim packages (models/tools/sim/requirements.txt, installed by tests/setup.sh)
or a built `sarm`.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SARM = Path(os.environ.get("SARM_BIN", ROOT / "target/debug/sarm"))
SEEDS = (0, 1)
STEPS = 60

pytestmark = [
    pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("mujoco", "dm_control", "gym_aloha", "zenoh")),
                       reason="sim packages missing (models/tools/sim/requirements.txt)"),
    pytest.mark.skipif(not SARM.exists(), reason=f"no sarm binary at {SARM} (set SARM_BIN)"),
]


def run_hil(out: Path, seeds, *extra: str) -> None:
    r = subprocess.run([sys.executable, str(ROOT / "tests/hil/run.py"), "--sarm", str(SARM),
                        "--seeds", ",".join(map(str, seeds)), "--steps", str(STEPS), "--precisions", "fp32",
                        "--camera", "raw-jpeg", "--out", str(out), *extra], cwd=ROOT, capture_output=True, text=True,
                       timeout=600, env=dict(os.environ, MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl")))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


@pytest.fixture(scope="module")
def zenoh_report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hil") / "report"
    run_hil(out, SEEDS)
    return out


def test_two_lockstep_episodes_match_lerobot_and_write_a_report(zenoh_report):
    out = zenoh_report
    report = json.loads((out / "report.json").read_text())
    (cfg,) = report["configs"]
    tol = report["tolerance_fp32_action_abs"]
    assert cfg["episodes"] == len(SEEDS) and cfg["ticks"] == len(SEEDS) * STEPS
    assert cfg["ticks_without_command"] == 0
    assert [p["seed"] for p in cfg["parity"]] == list(SEEDS)
    for p in cfg["parity"]:
        assert p["compared_ticks"] == 50
        assert p["first_chunk_max_abs"] <= tol, p
    assert cfg["latency_ms"]["n"] == len(SEEDS) * STEPS and cfg["latency_ms"]["p50"] > 0
    assert cfg["node_counters"]["policy_commands"] >= len(SEEDS) * STEPS
    sim = json.loads((out / "tract-fp32/sim.json").read_text())
    for ep in sim["results"]:
        assert [e["event"] for e in ep["policy_events"]] == ["armed", "disarmed"], ep["policy_events"]
        assert ep["policy_events"][0]["stamp_ns"] == ep["t_first_ns"]  # armed at the episode's first tick
        (node_ep,) = ep["node_episodes"]
        assert node_ep["event"] == "end" and node_ep["frames"] >= STEPS // 5 - 1  # 10 Hz reward model
        assert 0.0 <= node_ep["final_progress"] <= 1.0
        assert len(ep["progress"]) > 0
    text = (out / "report.md").read_text()
    assert "sarm tract fp32" in text and "LeRobot ACTPolicy" in text
    for png in ("progress.png", "latency.png", "safety.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, png


ROS_SITE = ROOT / "ros/tests/interop/.venv/lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


@pytest.mark.skipif(not (ROS_SITE / "rclpy").is_dir(),
                    reason="no rclpy venv (ros/tests/interop/setup_rclpy.sh, tests/setup.sh)")
def test_dds_loop_commands_what_the_zenoh_loop_does(zenoh_report, tmp_path):
    """The same episode over DDS (the sim an rclpy node on Fast DDS, the node on ros2-client): the
    lockstep loop does not depend on the transport, so seed 0's commands match the Zenoh run's."""
    out = tmp_path / "report"
    run_hil(out, SEEDS[:1], "--transport", "dds")
    report = json.loads((out / "report.json").read_text())
    (cfg,) = report["configs"]
    assert cfg["ticks"] == STEPS and cfg["ticks_without_command"] == 0
    (p,) = cfg["parity"]
    assert p["first_chunk_max_abs"] <= report["tolerance_fp32_action_abs"], p
    dds = np.load(out / "tract-fp32/sim.npz")[f"commands_{SEEDS[0]}"]
    zenoh = np.load(zenoh_report / "tract-fp32/sim.npz")[f"commands_{SEEDS[0]}"]
    assert dds.shape == zenoh.shape == (STEPS, 14)
    np.testing.assert_allclose(dds, zenoh, rtol=0, atol=1e-6)
    (ep,) = json.loads((out / "tract-fp32/sim.json").read_text())["results"]
    assert [e["event"] for e in ep["policy_events"]] == ["armed", "disarmed"], ep["policy_events"]
    assert len(ep["progress"]) > 0 and len(ep["node_episodes"]) == 1
