#!/usr/bin/env python
"""The training episodes as a LeRobot-format dataset with SARM subtask annotations.

From OUT/train/ep_*/{bag,meta.json,truth.npz}: a LeRobotDataset (v3 layout, 50 fps) at
OUT/lerobot_dataset with
  observation.images.top  video (h264), the bag's JPEG frames decoded with PIL
  observation.state       float32 (14,): the bag's /joint_states in ALOHA joint order
  action                  float32 (16,): the scripted end-effector targets (xyz, quat wxyz, gripper per arm)
and the annotations where LeRobot's SARM reads them (processor_sarm._load_episode_annotations,
data_processing/sarm_annotations/subtask_annotation.save_annotations_to_dataset):
  meta/episodes/*.parquet  {sparse,dense}_subtask_{names,start_times,end_times,start_frames,end_frames}
                           (and the legacy unprefixed sparse columns)
  meta/temporal_proportions_{sparse,dense}.json
                           LeRobot's compute_temporal_proportions formula, mean over the successful
                           episodes of each subtask's share of the episode, normalised, in subtask order.
Frame boundaries are exact frames (LeRobot's annotation tool rounds to whole seconds).

    models/tools/.venv/bin/python models/tools/sim/make_dataset.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402

import aloha_sim as sim  # noqa: E402
import common  # noqa: E402

REPO_ID = "sarm/aloha_sim_transfer_cube_scripted"


def temporal_proportions(anns: list[dict], names: list[str]) -> dict[str, float]:
    """compute_temporal_proportions (SARM formula 1) on frame-exact durations."""
    shares: dict[str, list[float]] = {}
    for a in anns:
        dur: dict[str, float] = {}
        for n, s, e in zip(a["subtask_names"], a["subtask_start_frames"], a["subtask_end_frames"], strict=True):
            dur[n] = dur.get(n, 0) + (e - s + 1)
        total = sum(dur.values())
        for n, d in dur.items():
            shares.setdefault(n, []).append(d / total)
    avg = {n: sum(v) / len(v) for n, v in shares.items()}
    tot = sum(avg.values())
    return {n: avg.get(n, 0.0) / tot for n in names}


def write_annotations(root: Path, metas: list[dict], fps: int) -> None:
    import pandas as pd

    files = sorted((root / "meta" / "episodes").rglob("*.parquet"))
    for path in files:
        df = pd.read_parquet(path)
        for prefix in ("sparse", "dense"):
            cols = [f"{prefix}_subtask_{c}" for c in ("names", "start_times", "end_times", "start_frames",
                                                      "end_frames")]
            for c in cols:
                df[c] = None
            if prefix == "sparse":
                for c in ("names", "start_times", "end_times", "start_frames", "end_frames"):
                    df[f"subtask_{c}"] = None
            for row in df.index:
                a = metas[int(df.loc[row, "episode_index"])]["annotations"][prefix]
                vals = [list(a["subtask_names"]), [s / fps for s in a["subtask_start_frames"]],
                        [e / fps for e in a["subtask_end_frames"]], list(a["subtask_start_frames"]),
                        list(a["subtask_end_frames"])]
                for c, v in zip(cols, vals, strict=True):
                    df.at[row, c] = v
                if prefix == "sparse":
                    for c, v in zip(("names", "start_times", "end_times", "start_frames", "end_frames"), vals,
                                    strict=True):
                        df.at[row, f"subtask_{c}"] = v
        df.to_parquet(path, engine="pyarrow", compression="snappy")
    for prefix, names in (("sparse", sim.SPARSE), ("dense", sim.DENSE)):
        # priors from the successful demonstrations: a failed one repeats its first subtask after the
        # failure, which says nothing about how long the subtasks of a completed transfer take
        props = temporal_proportions([m["annotations"][prefix] for m in metas if m["success"]], names)
        (root / "meta" / f"temporal_proportions_{prefix}.json").write_text(json.dumps(props, indent=2) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, default=common.WORK)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--episodes", type=int, default=None, help="only the first N training episodes")
    args = ap.parse_args(argv)
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from sarm_export import ALOHA_JOINT_NAMES

    out = args.out or args.root / "lerobot_dataset"
    shutil.rmtree(out, ignore_errors=True)
    eps = [e for e in common.episodes("train", args.root) if (e / "meta.json").exists()][: args.episodes]
    features = {
        "observation.images.top": {"dtype": "video", "shape": (sim.HEIGHT, sim.WIDTH, 3),
                                   "names": ["height", "width", "channels"]},
        "observation.state": {"dtype": "float32", "shape": (14,), "names": ALOHA_JOINT_NAMES},
        "action": {"dtype": "float32", "shape": (16,),
                   "names": [f"{s}_{c}" for s in ("left", "right")
                             for c in ("x", "y", "z", "qw", "qx", "qy", "qz", "gripper")]},
    }
    ds = LeRobotDataset.create(REPO_ID, fps=common.CAMERA_FPS, features=features, root=out, robot_type="aloha",
                               use_videos=True, vcodec="h264", streaming_encoding=True, encoder_threads=1)
    metas = []
    for i, ep in enumerate(eps):
        t0 = time.time()
        m = common.meta(ep)
        truth = np.load(ep / "truth.npz")
        jpegs, joints, _ = common.read_bag(ep / "bag")
        for f, data in enumerate(jpegs):
            ds.add_frame({"observation.images.top": common.decode_jpeg(data),
                          "observation.state": joints[f].astype(np.float32),
                          "action": truth["action"][f], "task": common.TASK})
        ds.save_episode()
        m["dataset_episode_index"] = i
        metas.append(m)
        print(f"{ep.name} -> episode {i}: {len(jpegs)} frames, {time.time() - t0:.1f}s", flush=True)
    ds.finalize()
    write_annotations(out, metas, common.CAMERA_FPS)
    (out / "meta" / "source_episodes.json").write_text(json.dumps(
        [{"dataset_episode_index": m["dataset_episode_index"], "sim_episode": f"train/ep_{m['episode']:04d}",
          "seed": m["spec"]["seed"], "success": m["success"], "scripted_failure": m["scripted_failure"]}
         for m in metas], indent=1) + "\n")
    print(f"wrote {len(metas)} episodes to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
