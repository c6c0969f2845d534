"""Faults in the loop: each scenario is one short lockstep episode (seed 0) of the MuJoCo ALOHA sim
driven by `sarm run` (tests/hil/run.py), with the fault injected by the sim (`ros_robot.py
--fault`) or by the runner (the node killed), and the safety response the design promises
(DESIGN.md, "Commands and safety") asserted on what the sim saw (commands per tick, the node's
sarm_msgs/PolicyEvent) and on the node's counters:

- camera stalls for 500 ms: the node holds (repeats the last safe command) once the newest frame
  is older than `max_obs_age_ms` (100), latches a fault `hold_timeout_ms` later (300 here: with
  the default 500 the stall would end before the latch) and sends nothing after it, also once
  the camera is back (a latched fault needs a reset);
- joint states 200 ms late for 10 ticks: holds, no fault, commands every tick;
- a burst of 3 corrupt JPEG frames: counted, the loop goes on, no fault;
- `/clock` jumping back 1 s: counted, the loop goes on, no fault;
- e-stop mid-motion: no command from the tick it is applied at;
- the policy producing NaN (a copy of models/aloha-act whose graph multiplies its actions by
  NaN, made here with onnx): the first tick holds the measured pose and the fault latches at
  once; no command after it;
- the node killed (SIGKILL) mid-episode and started again: the sim sees commands stop, and the
  new node starts disarmed (auto_arm off, as on a robot) and sends nothing.

    SARM_BIN=target/debug/sarm MUJOCO_GL=egl models/tools/.venv/bin/python -m pytest tests/hil/test_faults.py
"""

import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SARM = Path(os.environ.get("SARM_BIN", ROOT / "target/debug/sarm"))
STEPS = 50
TICK_MS = 20

pytestmark = [
    pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("mujoco", "dm_control", "gym_aloha", "zenoh")),
                       reason="sim packages missing (models/tools/sim/requirements.txt)"),
    pytest.mark.skipif(not SARM.exists(), reason=f"no sarm binary at {SARM} (set SARM_BIN)"),
]


def run(tmp_path: Path, *extra: str, steps: int = STEPS) -> tuple[dict, dict, dict]:
    """One episode; returns (the sim's episode, the report's config, the node's counters)."""
    out = tmp_path / "report"
    r = subprocess.run([sys.executable, str(ROOT / "tests/hil/run.py"), "--sarm", str(SARM), "--seeds", "0",
                        "--steps", str(steps), "--precisions", "fp32", "--out", str(out), *extra],
                       cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl")))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (ep,) = json.loads((out / "tract-fp32/sim.json").read_text())["results"]
    (cfg,) = json.loads((out / "report.json").read_text())["configs"]
    assert ep["ticks"] == steps
    return ep, cfg, cfg["node_counters"]


def tick_of(ep: dict, stamp_ns: int) -> int:
    return (stamp_ns - ep["t_first_ns"]) // (TICK_MS * 1_000_000)


def events(ep: dict) -> list[str]:
    return [e["event"] for e in ep["policy_events"]]


def test_camera_stall_holds_then_latches_and_stays_latched(tmp_path):
    ep, cfg, c = run(tmp_path, "--fault", "camera_stall@20:500", "--set", "policy.safety.hold_timeout_ms=300",
                     "--sim-arg=--command-timeout-s=1")
    assert events(ep) == ["armed", "fault"], ep["policy_events"]
    fault = ep["policy_events"][1]
    assert fault["cause"] in ("stale_observation", "input_silent")
    # the last frame is from tick 19; older than 100 ms from tick 25 on; held 300 ms: tick 40
    t = tick_of(ep, fault["stamp_ns"])
    assert 19 + 100 // TICK_MS + 300 // TICK_MS - 1 <= t <= 19 + 100 // TICK_MS + 300 // TICK_MS + 1, t
    assert ep["missing_ticks"] == list(range(t, STEPS))  # held (commands) until the latch, nothing after
    assert c["safety_faults"] == 1 and c["policy_hold_ticks"] >= 300 // TICK_MS
    assert c["safety_trip_stale_observation"] + c.get("safety_trip_input_silent", 0) >= 1


def test_late_joint_states_hold_without_a_fault(tmp_path):
    ep, cfg, c = run(tmp_path, "--fault", "joints_delay@20:200:10")
    assert events(ep) == ["armed", "disarmed"], ep["policy_events"]
    assert ep["missing_ticks"] == []
    assert c["safety_trip_stale_observation"] >= 1 and c["policy_hold_ticks"] >= 1
    assert c.get("safety_faults", 0) == 0


def test_corrupt_jpeg_burst_is_counted_and_the_loop_goes_on(tmp_path):
    ep, cfg, c = run(tmp_path, "--fault", "corrupt_frame@20:3")
    assert events(ep) == ["armed", "disarmed"], ep["policy_events"]
    assert ep["missing_ticks"] == []
    assert cfg["node_dropped"].get("dropped_policy_undecodable_frame") == 3, cfg["node_dropped"]
    assert c.get("safety_faults", 0) == 0
    assert 1 <= c["policy_hold_ticks"] <= 3  # the ticks whose newest frame did not decode


def test_clock_jumping_back_is_counted_and_the_loop_goes_on(tmp_path):
    ep, cfg, c = run(tmp_path, "--fault", "clock_back@20:1000", "--sim-arg=--command-timeout-s=1")
    assert events(ep) == ["armed", "disarmed"], ep["policy_events"]
    assert c["clock_jumped_back"] == 1
    assert ep["missing_ticks"] == []
    assert c.get("safety_faults", 0) == 0


def test_estop_stops_commands_at_the_tick_it_arrives(tmp_path):
    ep, cfg, c = run(tmp_path, "--fault", "estop@20")
    assert events(ep) == ["armed", "fault"], ep["policy_events"]
    fault = ep["policy_events"][1]
    assert fault["cause"] == "estop" and tick_of(ep, fault["stamp_ns"]) == 20
    assert ep["missing_ticks"] == list(range(20, STEPS))
    assert c["safety_trip_estop"] == 1


def nan_policy_bundle(dst: Path) -> Path:
    """models/aloha-act with every action multiplied by NaN at the end of its fp32 graph."""
    import shutil

    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    shutil.copytree(ROOT / "models/aloha-act", dst, ignore=shutil.ignore_patterns("episodes", "eval"))
    m = onnx.load(dst / "model.fp32.onnx")
    out = m.graph.output[0].name
    for node in m.graph.node:
        node.output[:] = [f"{o}_finite" if o == out else o for o in node.output]
    m.graph.initializer.append(numpy_helper.from_array(np.array(np.nan, np.float32), "nan_scale"))
    m.graph.node.append(helper.make_node("Mul", [f"{out}_finite", "nan_scale"], [out], name="nan_scale_mul"))
    onnx.save(m, dst / "model.fp32.onnx")
    # the manifest names the file's size and digest: this is a different model now
    data = (dst / "model.fp32.onnx").read_bytes()
    manifest = (dst / "bundle.toml").read_text()
    fp32 = manifest.index("[precision.fp32]")
    head, tail = manifest[:fp32], manifest[fp32:]
    tail = re.sub(r'sha256 = "[0-9a-f]{64}"', f'sha256 = "{hashlib.sha256(data).hexdigest()}"', tail, count=1)
    tail = re.sub(r"bytes = \d+", f"bytes = {len(data)}", tail, count=1)
    (dst / "bundle.toml").write_text(head + tail)
    return dst


def test_policy_producing_nan_latches_at_the_first_action(tmp_path):
    bundle = nan_policy_bundle(tmp_path / "aloha-act-nan")
    ep, cfg, c = run(tmp_path, "--set", f'policy.bundle="{bundle}"', "--sim-arg=--command-timeout-s=1", steps=20)
    assert events(ep) == ["armed", "fault"], ep["policy_events"]
    fault = ep["policy_events"][1]
    assert fault["cause"] == "non_finite_action" and tick_of(ep, fault["stamp_ns"]) == 0
    # that tick holds where the arm is (no safe command before it), nothing after
    assert ep["missing_ticks"] == list(range(1, 20))
    sys.path.insert(0, str(ROOT / "models/tools/sim"))
    import joint_sim
    import numpy as np

    start = joint_sim.JointSim(width=64, height=48).reset(seed=0).joints
    first = np.load(tmp_path / "report/tract-fp32/sim.npz")["commands_0"][0]
    assert np.abs(first - start).max() < 1e-6
    assert c["safety_trip_non_finite_action"] == 1 and c["policy_hold_ticks"] == 1


def test_node_killed_mid_episode_restarts_disarmed(tmp_path):
    steps = 30
    ep, cfg, c = run(tmp_path, "--kill-node-after-s", "1.0", "--set", "policy.safety.auto_arm=false",
                     "--sim-arg=--command-timeout-s=1", steps=steps)
    missing = ep["missing_ticks"]
    assert missing and missing[0] > 0, missing  # commands until the kill
    assert missing == list(range(missing[0], steps))  # and none after it
    restarted = cfg["restarted_node_counters"]
    assert restarted.get("policy_ticks", 0) > 0 and restarted.get("policy_commands", 0) == 0, restarted
    log = (tmp_path / "report/tract-fp32/sarm-restarted.log").read_text()
    assert "starts disarmed" in log
