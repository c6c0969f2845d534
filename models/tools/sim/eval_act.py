#!/usr/bin/env python
"""Closed loop: LeRobot's own ACT (in process, PyTorch) drives the joint-position ALOHA sim.

    MUJOCO_GL=egl nice -n 10 models/tools/.venv/bin/python models/tools/sim/eval_act.py \
        --checkpoint models/tools/work/aloha_act/checkpoint --seeds 0:20 --out eval.json

Per seed: `JointSim.reset(seed)` (the cube pose from the seed; evaluation seeds 0.. never
overlap the demonstrations' 1_000_000 + k), then 400 control ticks at 50 Hz. Each tick the top
camera is rendered at 640x480 and sent through a JPEG round trip (quality 80, PIL), as the
robot publishes it; LeRobot's `predict_action` (prepare_observation_for_inference, the
checkpoint's pre-processor, `ACTPolicy.select_action`, the post-processor) gets that frame after
the bundle's resize rule plus the joint positions as float32, and its action goes to
`JointSim.step` unchanged (MuJoCo clamps it to the actuators' ctrlrange, as a robot's driver
clamps to its limits). The policy is reset at every episode start.

Success is ACT's and LeRobot's measure: the sim's contact reward reaches 4 (the left gripper
holds the cube off the table) at some tick. `final_success` (reward 4 on the last tick) is
reported too. The rate's 95 % interval is Wilson's.

--record-bags DIR writes the chosen seeds' episodes as rosbag2 MCAP (the JPEG bytes the policy
saw, the joint states, sim-clock stamps: models/tools/sim/README.md conventions).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import joint_sim as js  # noqa: E402

CAMERA_TOPIC = "/camera/top/image_raw/compressed"
JOINT_TOPIC = "/joint_states"
EPISODE_STEPS = 400
JPEG_QUALITY = 80


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def jpeg_roundtrip(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> tuple[bytes, np.ndarray]:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    data = buf.getvalue()
    return data, decode_jpeg(data)


def decode_jpeg(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def cameras_of(policy, source=(js.HEIGHT, js.WIDTH)):
    from policy_export.preprocess import CameraSpec, camera_name

    cams = []
    for key, ft in policy.config.image_features.items():
        _, h, w = ft.shape
        cams.append(CameraSpec(key=key, camera=camera_name(key), height=h, width=w, source_height=source[0],
                               source_width=source[1]))
    return cams


def limit_trips(actions: np.ndarray, first_state: np.ndarray, limits: dict) -> dict:
    """Ticks where LeRobot's raw action lies outside [lower, upper] or moves more than max_step from
    the previous tick's action (the first tick: from the joint state): what a safety layer with the
    bundle's limits would clamp. Informative only; the sim receives the raw action."""
    lo, hi, step = (np.asarray(limits[k]) for k in ("lower", "upper", "max_step"))
    prev = np.concatenate([first_state[None], actions[:-1]])
    return {"outside_position_limits": int(np.any((actions < lo) | (actions > hi), axis=1).sum()),
            "over_max_step": int(np.any(np.abs(actions - prev) > step, axis=1).sum())}


def run_episode(policy, pre, post, cams, seed: int, steps: int = EPISODE_STEPS, record=False) -> dict:
    from lerobot.utils.control_utils import predict_action

    from policy_export.preprocess import robot_observation

    sim = js.JointSim()
    obs = sim.reset(seed=seed)
    sim_first_state = obs.joints.copy()
    policy.reset()
    rewards, actions, jpegs, joints = [], [], [], []
    for _ in range(steps):
        data, frame = jpeg_roundtrip(sim.render())
        state = obs.joints.astype(np.float32)
        a = predict_action(robot_observation({"top": frame}, state, cams), policy, torch.device("cpu"), pre, post,
                           use_amp=False)
        a = a.detach().cpu().numpy().reshape(-1).astype(np.float64)
        if record:
            jpegs.append(data)
            joints.append(obs.joints.copy())
        obs = sim.step(a)
        rewards.append(obs.reward)
        actions.append(a.astype(np.float32))
    r = np.asarray(rewards)
    hit = np.nonzero(r == 4)[0]
    first_state = sim_first_state
    out = {"seed": seed, "cube_xy": [round(v, 5) for v in sim.cube_xy], "success": bool(len(hit)),
           "final_success": bool(r[-1] == 4), "max_reward": int(r.max()),
           "first_success_step": int(hit[0]) if len(hit) else None, "first_state": first_state,
           "rewards": r.astype(np.int8),
           "actions": np.stack(actions)}
    if record:
        out["jpegs"], out["joints"] = jpegs, np.stack(joints)
    return out


def write_bag(path: Path, jpegs: list[bytes], joints: np.ndarray) -> None:
    """rosbag2 MCAP with the conventions of models/tools/sim (generate.py): message k at k * 20 ms."""
    import shutil

    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    T = ts.types
    Time, Header = T["builtin_interfaces/msg/Time"], T["std_msgs/msg/Header"]
    JointState, CompressedImage = T["sensor_msgs/msg/JointState"], T["sensor_msgs/msg/CompressedImage"]
    shutil.rmtree(path, ignore_errors=True)
    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as w:
        cam = w.add_connection(CAMERA_TOPIC, CompressedImage.__msgtype__, typestore=ts)
        jc = w.add_connection(JOINT_TOPIC, JointState.__msgtype__, typestore=ts)
        for k, (data, q) in enumerate(zip(jpegs, joints, strict=True)):
            ns = k * js.CONTROL_PERIOD_NS
            stamp = Time(sec=ns // 10**9, nanosec=ns % 10**9)
            img = CompressedImage(header=Header(stamp=stamp, frame_id="camera_top"), format="jpeg",
                                  data=np.frombuffer(data, dtype=np.uint8))
            w.write(cam, ns, ts.serialize_cdr(img, CompressedImage.__msgtype__))
            msg = JointState(header=Header(stamp=stamp, frame_id=""), name=js.JOINT_NAMES,
                             position=np.ascontiguousarray(q, dtype=np.float64), velocity=np.zeros(0), effort=np.zeros(0))
            w.write(jc, ns, ts.serialize_cdr(msg, JointState.__msgtype__))


def read_bag(path: Path) -> tuple[list[bytes], np.ndarray]:
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    jpegs, joints = [], []
    with Reader(path) as r:
        for conn, _t, raw in r.messages():
            msg = ts.deserialize_cdr(raw, conn.msgtype)
            if conn.topic == CAMERA_TOPIC:
                jpegs.append(bytes(msg.data))
            elif conn.topic == JOINT_TOPIC:
                order = [list(msg.name).index(n) for n in js.JOINT_NAMES]
                joints.append(np.asarray(msg.position, np.float64)[order])
    return jpegs, np.stack(joints)


def parse_seeds(s: str) -> list[int]:
    if ":" in s:
        a, b = s.split(":")
        return list(range(int(a), int(b)))
    return [int(x) for x in s.split(",")]


def main(argv=None) -> int:
    from policy_export import goldens

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--seeds", default="0:20", help="A:B (range) or a,b,c")
    ap.add_argument("--mode", choices=["checkpoint", goldens.QUEUE, goldens.ENSEMBLE], default="checkpoint",
                    help="the checkpoint's own stepping, or override")
    ap.add_argument("--n-action-steps", type=int, default=None, help="queue mode override")
    ap.add_argument("--coeff", type=float, default=0.01, help="temporal_ensemble_coeff with --mode temporal_ensemble")
    ap.add_argument("--out", type=Path, required=True, help="results JSON (per-seed actions go beside it as .npz)")
    ap.add_argument("--record-bags", type=Path, default=None, help="write these seeds' episodes as rosbag2 MCAP here")
    ap.add_argument("--record-seeds", default="", help="seeds to record (comma-separated)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from policy_export import act as act_mod

    if args.mode == "checkpoint":
        policy, pre, post = act_mod.load(args.checkpoint)
    else:
        policy, pre, post = goldens.load_mode(args.checkpoint, args.mode, args.n_action_steps, args.coeff)
    cams = cameras_of(policy)
    seeds = parse_seeds(args.seeds)
    lim_path = args.checkpoint / "limits.json"
    limits = json.loads(lim_path.read_text()) if lim_path.exists() else None
    record = {int(s) for s in args.record_seeds.split(",") if s}
    results, actions = [], {}
    t0 = time.time()
    for seed in seeds:
        t1 = time.time()
        r = run_episode(policy, pre, post, cams, seed, record=seed in record)
        actions[f"seed_{seed}"] = r.pop("actions")
        actions[f"rewards_{seed}"] = r.pop("rewards")
        first = r.pop("first_state")
        if limits is not None:
            r["limit_trips"] = limit_trips(actions[f"seed_{seed}"], first, limits)
        if seed in record:
            write_bag(args.record_bags / f"seed_{seed}" / "bag", r.pop("jpegs"), r.pop("joints"))
        r["seconds"] = round(time.time() - t1, 1)
        results.append(r)
        print(json.dumps(r), flush=True)
    k = sum(r["success"] for r in results)
    kf = sum(r["final_success"] for r in results)
    cfg = policy.config
    summary = {
        "policy": "LeRobot ACTPolicy in process (PyTorch fp32), predict_action per tick",
        "checkpoint": str(args.checkpoint),
        "mode": {"chunk_size": cfg.chunk_size, "n_action_steps": cfg.n_action_steps,
                 "temporal_ensemble_coeff": cfg.temporal_ensemble_coeff},
        "sim": "joint_sim.JointSim (gym-aloha bimanual_viperx_transfer_cube.xml, TransferCubeTask), 640x480 top "
               f"camera, JPEG q{JPEG_QUALITY} round trip, {EPISODE_STEPS} ticks at 50 Hz",
        "seeds": seeds, "episodes": len(results), "successes": k,
        "success_rate": k / len(results), "success_rate_wilson95": wilson(k, len(results)),
        "final_successes": kf, "final_success_rate": kf / len(results),
        "limit_trips_note": ("ticks where LeRobot's action is outside the bundle limits (checkpoint/limits.json) or "
                             "moves more than max_step from the previous action; the sim got the raw action"),
        "seconds": round(time.time() - t0),
        "command": " ".join(["models/tools/.venv/bin/python", "models/tools/sim/eval_act.py"] + list(argv or sys.argv[1:])),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    np.savez_compressed(args.out.with_suffix(".npz"), **actions)
    lo, hi = summary["success_rate_wilson95"]
    print(f"eval_act: {k}/{len(results)} successes ({100 * k / len(results):.0f} %, 95 % CI {100 * lo:.0f}-{100 * hi:.0f} %), "
          f"final {kf}/{len(results)}, {summary['seconds']} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
