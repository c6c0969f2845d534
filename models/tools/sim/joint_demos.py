#!/usr/bin/env python
"""Joint-space demonstrations of the ALOHA cube transfer, finished by the joint sim itself.

    MUJOCO_GL=egl nice -n 10 models/tools/.venv/bin/python models/tools/sim/joint_demos.py \
        --out models/tools/work/aloha_act/demos --episodes 100

As ACT's own data generation (record_sim_episodes.py) does: roll out the scripted end-effector
policy (ACT's PickAndTransferPolicy waypoints and timing, 400 steps at 50 Hz) in the
end-effector sim, take its joint trajectory, and replay it as joint-position commands in
gym-aloha's joint sim (`joint_sim.JointSim`). Replayed plainly, the position servos lag and stop
short against the joints' dry friction (frictionloss 30-60 against kp 10-1600): the grasp lands
high and the cube falls. So the commands are corrected in the same joint sim:

1. the reference is the end-effector rollout's joint trajectory, except the first 30 steps,
   where the end-effector sim snaps the arms from START_ARM_POSE to the first mocap pose within
   3 steps (faster than the joint servos' force limits allow); those become a minimum-jerk
   move from START_ARM_POSE to the reference at step 30;
2. iterative learning control: u_{k+1}(t) = clip(u_k(t) + 0.5 (q_ref(t+1) - q_k(t+1))) on the
   12 arm joints (the grippers keep the scripted command, as ACT's replay does), clipped to the
   actuators' ctrlrange, for `--iterations` passes of the deterministic sim;
3. the pass with the smallest mean tracking error among those the joint sim finishes (contact
   reward 4 on the last 10 steps) is kept; an episode with no such pass is dropped and counted.

Per kept episode OUT/ep_NNNN.npz:
    state    (400, 14) f32   joints before each command (JointSim convention)
    action   (400, 14) f32   the corrected joint-position commands actually sent
    reward   (400,)    i8    contact reward after each command
    frames   (400, H, W, 3) u8  the top camera (rendered 640x480) before each command, resized to the
                             model input by the policy bundle's rule (policy_export.preprocess.resize_frame,
                             antialiased bilinear on float pixels), then rounded to u8 for storage
    calib_frames (k, 480, 640, 3) u8 and calib_steps (k,): every 40th full-size frame, for INT8 calibration
    cube_xy  (2,) f64, seed, ilc_iteration, ilc_mean_error, replay_success (plain replay finished?)

The frames skip the robot's JPEG round trip (encoding 640x480 costs as much as rendering it on
this shared CPU); after the 8x antialiased downscale the difference is a fraction of one grey
level (`jpeg_effect` in summary.json measures it on the first episode's frames).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from multiprocessing import Pool
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import aloha_sim as ee  # noqa: E402
import joint_sim as js  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from policy_export.preprocess import resize_frame  # noqa: E402

EPISODE_STEPS = 400
SMOOTH_START = 30
ILC_GAIN = 0.5
JPEG_QUALITY = 80
CALIB_EVERY = 40
DEMO_SEED_BASE = 1_000_000  # demonstrations use seeds 1_000_000 + k; evaluation uses 0..N


def act_waypoints(obs0, cube_xy, grasp_dz: float = 0.015):
    """ACT's PickAndTransferPolicy (scripted_policy.py): (t, xyz, quat, gripper) per arm.

    The cube rests at z = 0.02 here; ACT's cube starts at z = 0.05 and its grasp goes to
    box_z - 0.015, i.e. 1.5 cm above the resting cube's centre, which `grasp_dz` keeps."""
    L0, R0 = obs0["mocap_pose_left"], obs0["mocap_pose_right"]
    box = np.array([cube_xy[0], cube_xy[1], js.CUBE_Z])
    pick_q = ee.quat_mul(R0[3:], ee.axis_quat([0, 1, 0], -60))
    meet_lq = ee.axis_quat([1, 0, 0], 90)
    meet = np.array([0.0, 0.5, 0.25])
    ident = np.array([1.0, 0, 0, 0])
    left = [(0, L0[:3], L0[3:], 0), (100, meet + [-0.1, 0, -0.02], meet_lq, 1),
            (260, meet + [0.02, 0, -0.02], meet_lq, 1), (310, meet + [0.02, 0, -0.02], meet_lq, 0),
            (360, meet + [-0.1, 0, -0.02], ident, 0), (400, meet + [-0.1, 0, -0.02], ident, 0)]
    right = [(0, R0[:3], R0[3:], 0), (90, box + [0, 0, 0.08], pick_q, 1), (130, box + [0, 0, grasp_dz], pick_q, 1),
             (170, box + [0, 0, grasp_dz], pick_q, 0), (200, meet + [0.05, 0, 0], pick_q, 0), (220, meet, pick_q, 0),
             (310, meet, pick_q, 1), (360, meet + [0.1, 0, 0], pick_q, 1), (400, meet + [0.1, 0, 0], pick_q, 1)]
    return left, right


def _interp(wps, t):
    for a, b in zip(wps[:-1], wps[1:], strict=True):
        if t < b[0] or b is wps[-1]:
            w = min(1.0, (t - a[0]) / (b[0] - a[0]))
            return np.concatenate([a[1] + (b[1] - a[1]) * w, a[2] + (b[2] - a[2]) * w, [a[3] + (b[3] - a[3]) * w]])
    raise AssertionError("unreachable")


def ee_rollout(cube_xy, n=EPISODE_STEPS):
    """Joint trajectory (n+1, 14) and gripper commands (n, 2) of the scripted end-effector rollout."""
    env = ee.make_env(cube_xy)
    ts = env.reset()
    left, right = act_waypoints(ts.observation, cube_xy)
    q, grip = [ts.observation["qpos"].copy()], []
    for t in range(n):
        a = np.concatenate([_interp(left, t), _interp(right, t)])
        ts = env.step(a)
        q.append(ts.observation["qpos"].copy())
        grip.append([a[7], a[15]])
    return np.array(q), np.array(grip)


def smooth_start(q_ref: np.ndarray, start: np.ndarray, steps: int = SMOOTH_START) -> np.ndarray:
    q = q_ref.copy()
    s = np.linspace(0.0, 1.0, steps + 1)
    mj = 10 * s**3 - 15 * s**4 + 6 * s**5  # minimum jerk
    for t in range(steps + 1):
        q[t, js.ARM] = start[js.ARM] + (q_ref[steps, js.ARM] - start[js.ARM]) * mj[t]
    return q


def replay(cube_xy, u, render: bool = False):
    sim = js.JointSim()
    o = sim.reset(cube_xy=cube_xy)
    states, rewards, frames = [], [], []
    for t in range(len(u)):
        states.append(o.joints)
        if render:
            frames.append(sim.render())
        o = sim.step(u[t])
        rewards.append(o.reward)
    states.append(o.joints)
    return np.array(states), np.array(rewards), frames


def finished(rewards) -> bool:
    return bool(np.all(rewards[-10:] == 4))


def make_episode(args):
    k, out, iterations, size = args
    import torch

    torch.set_num_threads(1)

    seed = DEMO_SEED_BASE + k
    cube = js.cube_xy_for_seed(seed)
    t0 = time.time()
    q_ee, grip = ee_rollout(cube)
    start = js.JointSim().reset(cube_xy=cube).joints
    q_ref = smooth_start(q_ee, start)
    u = q_ref[1:].copy()
    u[:, 6], u[:, 13] = grip[:, 0], grip[:, 1]
    u = np.clip(u, js.COMMAND_LOWER, js.COMMAND_UPPER)
    best, replay_ok, log = None, None, []
    for it in range(iterations + 1):
        q, r, _ = replay(cube, u)
        err = q_ref[1:] - q[1:]
        mean_err = float(np.abs(err[:, js.ARM]).mean())
        ok = finished(r)
        if it == 0:
            replay_ok = ok
        log.append((it, round(mean_err, 4), ok))
        if ok and (best is None or mean_err < best[1]):
            best = (it, mean_err, u.copy())
        u[:, js.ARM] = np.clip(u[:, js.ARM] + ILC_GAIN * err[:, js.ARM], js.COMMAND_LOWER[js.ARM],
                               js.COMMAND_UPPER[js.ARM])
    if best is None:
        (Path(out) / f"ep_{k:04d}.dropped").write_text(json.dumps({"seed": seed, "passes": log}) + "\n")
        return k, False, f"ep {k} seed {seed}: no ILC pass finished the task {log} ({time.time() - t0:.0f}s)", {}
    it, mean_err, u = best
    states, rewards, frames = replay(cube, u, render=True)
    assert finished(rewards), "the kept pass must replay identically (the sim is deterministic)"
    small = np.stack([np.clip(np.round(resize_frame(f, *size)), 0, 255).astype(np.uint8) for f in frames])
    calib_steps = np.arange(0, len(frames), CALIB_EVERY)
    path = Path(out) / f"ep_{k:04d}.npz"
    np.savez_compressed(path, state=states[:-1].astype(np.float32), action=u.astype(np.float32),
                        reward=rewards.astype(np.int8), frames=small, calib_frames=np.stack([frames[i] for i in calib_steps]),
                        calib_steps=calib_steps, cube_xy=np.array(cube), seed=seed, ilc_iteration=it,
                        ilc_mean_error=mean_err, replay_success=replay_ok)
    extra = {"jpeg_effect": jpeg_effect(frames[::50], size)} if k == 0 else {}
    return k, True, (f"ep {k} seed {seed}: kept ILC pass {it} (mean |err| {mean_err:.4f} rad), plain replay "
                     f"{'finished' if replay_ok else 'failed'}, {time.time() - t0:.0f}s"), extra


def jpeg_effect(frames, size) -> dict:
    """How far the resized frame moves when the robot's JPEG round trip (quality 80) comes first."""
    from PIL import Image

    d = []
    for f in frames:
        buf = io.BytesIO()
        Image.fromarray(f).save(buf, format="JPEG", quality=JPEG_QUALITY)
        g = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        d.append(np.abs(resize_frame(g, *size) - resize_frame(f, *size)))
    d = np.stack(d)
    return {"frames": len(frames), "mean_abs_grey_levels": float(d.mean()), "p99_abs_grey_levels":
            float(np.percentile(d, 99)), "max_abs_grey_levels": float(d.max())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("models/tools/work/aloha_act/demos"))
    ap.add_argument("--episodes", type=int, default=100, help="episodes attempted (seeds 1_000_000 + k)")
    ap.add_argument("--iterations", type=int, default=4, help="ILC passes after the plain replay")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--size", default="60x80", help="stored frame size HxW (the policy's input)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    size = tuple(int(v) for v in args.size.split("x"))
    jobs = [(k, str(args.out), args.iterations, size) for k in range(args.episodes)
            if not (args.out / f"ep_{k:04d}.npz").exists() and not (args.out / f"ep_{k:04d}.dropped").exists()]
    kept = dropped = replay_ok = 0
    t0 = time.time()
    with Pool(args.workers) as pool:
        for k, ok, line, extra in pool.imap_unordered(make_episode, jobs):
            print(line, flush=True)
            if extra:
                (args.out / "jpeg_effect.json").write_text(json.dumps(extra["jpeg_effect"], indent=1) + "\n")
            kept += ok
            dropped += not ok
    for p in sorted(args.out.glob("ep_*.npz")):
        replay_ok += bool(np.load(p)["replay_success"])
    n = len(list(args.out.glob("ep_*.npz")))
    summary = {"attempted": args.episodes, "kept": n, "dropped": len(list(args.out.glob("ep_*.dropped"))),
               "plain_replay_finished_of_kept": replay_ok, "seconds_this_run": round(time.time() - t0),
               "ilc_gain": ILC_GAIN, "ilc_iterations": args.iterations, "smooth_start_steps": SMOOTH_START,
               "frame_size": list(size)}
    if (args.out / "jpeg_effect.json").exists():
        summary["jpeg_effect"] = json.loads((args.out / "jpeg_effect.json").read_text())
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
