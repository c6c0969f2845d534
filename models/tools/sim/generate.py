#!/usr/bin/env python
"""Generate ALOHA cube-transfer demonstrations in MuJoCo and record them as rosbag2 MCAP.

    MUJOCO_GL=egl models/tools/.venv/bin/python models/tools/sim/generate.py --out models/tools/work/aloha

Per episode, under OUT/<split>/ep_<NNNN>/:
  bag/            rosbag2 folder (MCAP storage), written with rosbags:
                    /camera/top/image_raw/compressed  sensor_msgs/CompressedImage, JPEG, 640x480, 50 Hz,
                                                      header.frame_id camera_top
                    /joint_states                     sensor_msgs/JointState, 14 ALOHA joints, 50 Hz
                  header stamps (and log times) on the sim clock: frame k at k * 20 ms.
  truth.npz       per 50 Hz frame: scripted dense stage, true dense / sparse stage, sim contact
                  reward (0..4), joints, cube position, end-effector action
  meta.json       the episode's spec (seed, cube pose, speeds, pauses, regrasp, failure),
                  success, subtask annotations (LeRobot's names / start / end frames per head)

Episode k of a split is scripted to fail when k % 4 == 3 (a quarter), cycling through a grasp that
closes on air, the cube dropped during the lift, the cube dropped at the handover. Success is the
sim's own: contact reward 4 (cube held by the left gripper, off the table) on the last frame.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import time
from multiprocessing import Pool
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import aloha_sim as sim  # noqa: E402

CAMERA_TOPIC = "/camera/top/image_raw/compressed"
JOINT_TOPIC = "/joint_states"
SPLIT_SEEDS = {"train": 100_000, "eval": 500_000}


def episode_failure(k: int) -> str | None:
    return sim.FAILURES[(k // 4) % len(sim.FAILURES)] if k % 4 == 3 else None


def write_episode(args):
    split, k, out, quality = args
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    T = ts.types
    Time, Header = T["builtin_interfaces/msg/Time"], T["std_msgs/msg/Header"]
    JointState, CompressedImage = T["sensor_msgs/msg/JointState"], T["sensor_msgs/msg/CompressedImage"]

    def stamp(ns):
        return Time(sec=ns // 10**9, nanosec=ns % 10**9)

    seed = SPLIT_SEEDS[split] + k
    spec = sim.sample_spec(seed, episode_failure(k))
    d = Path(out) / split / f"ep_{k:04d}"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    t0 = time.time()
    with Writer(d / "bag", version=8, storage_plugin=StoragePlugin.MCAP) as w:
        cam = w.add_connection(CAMERA_TOPIC, CompressedImage.__msgtype__, typestore=ts)
        jc = w.add_connection(JOINT_TOPIC, JointState.__msgtype__, typestore=ts)

        def on_frame(step, t_ns, rgb, q):
            buf = io.BytesIO()
            Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
            img = CompressedImage(header=Header(stamp=stamp(t_ns), frame_id="camera_top"), format="jpeg",
                                  data=np.frombuffer(buf.getvalue(), dtype=np.uint8))
            w.write(cam, t_ns, ts.serialize_cdr(img, CompressedImage.__msgtype__))
            js = JointState(header=Header(stamp=stamp(t_ns), frame_id=""), name=sim.JOINT_NAMES,
                            position=np.ascontiguousarray(q, dtype=np.float64),
                            velocity=np.zeros(0), effort=np.zeros(0))
            w.write(jc, t_ns, ts.serialize_cdr(js, JointState.__msgtype__))

        plan, rec = sim.run_episode(spec, on_frame)
    n = plan.length
    # contact reward of the state each frame shows (frame 0: the initial state)
    reward = np.concatenate([[0], rec["reward"][:-1]]).astype(np.int8)
    success = bool(rec["reward"][-1] == 4)
    failure_step = plan.events.get("failure_step") if spec.failure else None
    if spec.failure is not None and success:
        failure_step = None  # the physics saved it: the truth is the sim's
    if spec.failure is None and not success:
        # a scripted success that the physics did not complete: the truth is the sim's, find when
        # the cube was lost (last frame with a right or left grip) and call it a failure there
        held = np.nonzero(reward >= 2)[0]
        failure_step = int(held[-1]) if len(held) else int(plan.events["grasp_end"])
    ann = sim.annotations(plan, n, failure_step)
    np.savez_compressed(d / "truth.npz", scripted_dense_stage=ann["scripted_dense_stage"].astype(np.int8),
                        dense_stage=ann["dense_stage"].astype(np.int8),
                        sparse_stage=ann["sparse_stage"].astype(np.int8), reward=reward, **{
                            k2: rec[k2] for k2 in ("joints", "cube_xyz", "action")})
    meta = {"split": split, "episode": k, "frames": n, "fps": sim.FPS, "jpeg_quality": quality,
            "spec": spec.describe(), "success": success, "scripted_failure": spec.failure,
            "failure_step": failure_step, "final_reward": int(rec["reward"][-1]),
            "max_reward": int(reward.max()),
            "annotations": {h: {"subtask_names": ann[h][0], "subtask_start_frames": ann[h][1],
                                "subtask_end_frames": ann[h][2]} for h in ("sparse", "dense")}}
    (d / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    size = sum(p.stat().st_size for p in (d / "bag").rglob("*") if p.is_file())
    return (f"{split}/ep_{k:04d}: {n} frames, failure={spec.failure}, success={success}, "
            f"max reward {int(reward.max())}, {size / 1e6:.1f} MB, {time.time() - t0:.0f}s")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="models/tools/work/aloha")
    ap.add_argument("--train", type=int, default=80)
    ap.add_argument("--eval", type=int, default=36)
    ap.add_argument("--jpeg-quality", type=int, default=80)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    jobs = [("eval", k, args.out, args.jpeg_quality) for k in range(args.eval)]
    jobs += [("train", k, args.out, args.jpeg_quality) for k in range(args.train)]
    with Pool(args.workers) as pool:
        for line in pool.imap_unordered(write_episode, jobs):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
