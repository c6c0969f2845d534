#!/usr/bin/env python
"""One closed-loop episode: the MuJoCo ALOHA sim (models/tools/sim/ros_robot.py) driven by
`sarm run --config launch/hil.toml` over Zenoh on loopback, compared with LeRobot's own ACT on
the same seed (models/aloha-act/eval/lerobot_checkpoint_mode.{json,npz}, from eval_act.py).

    CARGO_TARGET_DIR=... cargo build -p sarm-ros --bin sarm
    MUJOCO_GL=egl models/tools/.venv/bin/python tests/hil/closed_loop.py \
        --sarm target/debug/sarm --seed 0 --out sarm_out/hil_seed0 [--check]

Writes OUT/report.json (and OUT/sim.json, OUT/sim.npz, OUT/sarm.log). The comparison:
- `lerobot_raw`: LeRobot's action clipped to the actuators' ctrlrange (what the sim applied in
  eval_act.py: MuJoCo clamps targets to it);
- `lerobot_limited`: LeRobot's actions through an independent re-statement of the bundle's
  safety limits (numpy here, not sarm's code): each joint moves at most `max_step` from the
  previous command (the first tick: from the measured start state), then is clamped to
  [lower, upper]. sarm's safety layer does this on the robot; eval_act.py's sim got raw actions.
The first `--compare` ticks (default 50: the first action chunk, computed from the identical first
observation) should agree with `lerobot_limited` within the bundle's fp32 golden tolerance
(golden/golden.json `tolerance.fp32_action_abs`); later ticks drift apart as the trajectories do.
`--check` exits 1 when a tick went without a command or the first chunk disagrees.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SIM = ROOT / "models/tools/sim"
sys.path.insert(0, str(SIM))


def limited(actions: np.ndarray, start: np.ndarray, lower, upper, max_step) -> np.ndarray:
    """Step limit from the previous command (first: the start state), then clamp."""
    out = np.empty_like(actions)
    prev = start
    for k, a in enumerate(actions):
        c = np.clip(np.clip(a, prev - max_step, prev + max_step), lower, upper)
        out[k] = c
        prev = c
    return out


def stop_node(node: subprocess.Popen) -> None:
    """SIGINT (the node writes its summary and results), SIGKILL if it has not exited in 30 s."""
    node.send_signal(signal.SIGINT)
    try:
        node.wait(timeout=30)
    except subprocess.TimeoutExpired:
        node.kill()


def counters(log: str) -> dict:
    """The `name: value` counters of `sarm run`'s closing summary."""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^\s+([a-z_0-9]+): (\d+)$", log, re.M)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sarm", type=Path, default=ROOT / "target/debug/sarm")
    ap.add_argument("--config", type=Path, default=ROOT / "launch/hil.toml")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--compare", type=int, default=50, help="ticks compared with LeRobot's actions")
    ap.add_argument("--reference", type=Path, default=ROOT / "models/aloha-act/eval/lerobot_checkpoint_mode.json")
    ap.add_argument("--timeout-s", type=float, default=600.0)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--sim-arg", action="append", default=[], help="extra argument for ros_robot.py (repeatable)")
    ap.add_argument("--raw-camera", choices=["raw", "raw-jpeg"], default="raw-jpeg",
                    help="the sim's camera when the config takes raw images (inputs.camera_type = raw)")
    args = ap.parse_args(argv)

    import joint_sim as js

    cfg = tomllib.loads(args.config.read_text())
    connect = cfg["transport"]["zenoh_connect"]
    if len(connect) != 1 or not connect[0].startswith("tcp/127.0.0.1:"):
        sys.exit(f"{args.config}: transport.zenoh_connect must be one loopback endpoint, got {connect}")
    bundle = tomllib.loads((ROOT / cfg["policy"]["bundle"] / "bundle.toml").read_text())
    lim = bundle["action"]["limits"]
    lower, upper, max_step = (np.asarray(lim[k], np.float64) for k in ("lower", "upper", "max_step"))
    if bundle["action"]["names"] != js.JOINT_NAMES:
        sys.exit("the policy bundle's action names are not the sim's JOINT_NAMES")
    golden = json.loads((ROOT / cfg["policy"]["bundle"] / "golden/golden.json").read_text())
    tol = float(golden["tolerance"]["fp32_action_abs"])

    args.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
    sim_cmd = [sys.executable, str(SIM / "ros_robot.py"), "--listen", connect[0], "--seeds", str(args.seed),
               "--steps", str(args.steps), "--command-form", cfg["policy"].get("command", "float64_multi_array"),
               "--camera", "compressed" if cfg["inputs"]["camera_type"] == "compressed" else args.raw_camera,
               "--out", str(args.out / "sim.json")] + args.sim_arg
    sarm_cmd = [str(args.sarm), "run", "--config", str(args.config), "--output-dir", str(args.out / "sarm")]
    t0 = time.monotonic()
    with open(args.out / "sim.log", "w") as sim_log, open(args.out / "sarm.log", "w") as sarm_log:
        sim = subprocess.Popen(sim_cmd, cwd=ROOT, env=env, stdout=sim_log, stderr=subprocess.STDOUT)
        time.sleep(2.0)  # the sim listens before the node connects
        node = subprocess.Popen(sarm_cmd, cwd=ROOT, stdout=sarm_log, stderr=subprocess.STDOUT)
        try:
            rc = sim.wait(timeout=args.timeout_s)
        except subprocess.TimeoutExpired:
            sim.kill()
            rc = "timeout"
        finally:
            stop_node(node)
    wall = time.monotonic() - t0
    if rc != 0:
        sys.exit(f"the sim failed ({rc}); see {args.out / 'sim.log'} and {args.out / 'sarm.log'}")
    res = json.loads((args.out / "sim.json").read_text())["results"][0]
    cmds = np.load(args.out / "sim.npz")[f"commands_{args.seed}"]

    ref = json.loads(args.reference.read_text())
    ref_res = next(r for r in ref["results"] if r["seed"] == args.seed)
    ref_actions = np.load(args.reference.with_suffix(".npz"))[f"seed_{args.seed}"].astype(np.float64)
    start = js.JointSim(width=64, height=48).reset(seed=args.seed).joints
    n = min(args.compare, len(cmds), len(ref_actions))
    raw = np.clip(ref_actions[:n], js.COMMAND_LOWER, js.COMMAND_UPPER)
    lim_ref = limited(ref_actions, start, lower, upper, max_step)[:n]
    d_raw, d_lim = np.abs(cmds[:n] - raw), np.abs(cmds[:n] - lim_ref)
    ctr = counters((args.out / "sarm.log").read_text())
    report = {
        "seed": args.seed,
        "sarm": {k: res[k] for k in ("success", "final_success", "max_reward", "first_success_step", "ticks",
                                     "ticks_without_command", "stale_commands", "bad_commands", "wall_s")},
        "lerobot": {k: ref_res[k] for k in ("success", "final_success", "max_reward", "first_success_step")},
        "compared_ticks": n,
        "vs_lerobot_limited": {"max_abs": float(d_lim.max()), "mean_abs": float(d_lim.mean()),
                               "ticks_over_tolerance": np.nonzero(d_lim.max(1) > tol)[0].tolist()},
        "vs_lerobot_raw": {"max_abs": float(d_raw.max()), "mean_abs": float(d_raw.mean()),
                           "ticks_over_tolerance": np.nonzero(d_raw.max(1) > tol)[0].tolist()},
        "tolerance_fp32_action_abs": tol,
        "node_counters": ctr,
        "wall_s_total": round(wall, 1),
        "commands": {"sim": " ".join(sim_cmd), "sarm": " ".join(sarm_cmd)},
    }
    (args.out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    if args.check:
        problems = []
        if res["ticks_without_command"]:
            problems.append(f"{res['ticks_without_command']} ticks without a command")
        if report["vs_lerobot_limited"]["ticks_over_tolerance"]:
            problems.append(f"first {n} commands differ from LeRobot's (limited) by up to "
                            f"{report['vs_lerobot_limited']['max_abs']:.3g} > {tol}")
        if problems:
            print("closed_loop: FAIL: " + "; ".join(problems), file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
