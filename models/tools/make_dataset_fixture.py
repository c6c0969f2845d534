#!/usr/bin/env python
"""LeRobot datasets for `sarm label --dataset`, written by LeRobot 0.4.4's own LeRobotDataset API.

From the project's real sim episodes (models/aloha-transfer-cube/episodes/*/bag: MuJoCo ALOHA,
50 Hz, 640x480 JPEG camera, 14 joints), with LeRobotDataset.create / add_frame / save_episode /
finalize, exactly as a LeRobot user records one:

  parity  AV1 (libsvtav1, LeRobot's default codec and settings), 3 episodes at 50 fps; the
          video files are capped small so the third episode starts a second mp4 (episodes 0
          and 1 share file-000 with from_timestamp offsets). Frames are resized to --size.
  codecs  per codec (libsvtav1, h264, hevc) a tiny dataset (2 episodes x 12 frames, 128x96,
          sharing one mp4) and `frames.png`: the frames LeRobot itself returns for every dataset
          row (LeRobotDataset.__getitem__, its default torchcodec decoder), stacked vertically,
          uint8 (LeRobot's float/255 x 255, rounded). The Rust tests decode the same rows and
          compare pixels.

    models/tools/.venv/bin/python models/tools/make_dataset_fixture.py parity --out ros/tests/fixtures/lerobot/aloha_av1
    models/tools/.venv/bin/python models/tools/make_dataset_fixture.py codecs --out ros/tests/fixtures/lerobot/codecs
    # a full-size dataset for speed figures (not committed):
    models/tools/.venv/bin/python models/tools/make_dataset_fixture.py parity --size 640x480 \\
        --task "pick up the cube with the right arm and hand it over to the left arm" --out models/tools/work/aloha_av1_full

Needs models/tools/sim/requirements.txt (rosbags, to read the bags) and the system FFmpeg libraries
for torchcodec (tests/setup.sh installs them; torchcodec also wants libavdevice59).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "sim"))

import numpy as np  # noqa: E402

EPISODES = REPO / "models" / "aloha-transfer-cube" / "episodes"
BAGS = ["success_ep_0025", "drop_handover_ep_0011", "drop_lift_ep_0031"]
# The test bundle's task, so models/sarm-test labels the fixture without --task.
TEST_TASK = "transfer the cube from the left arm to the right arm"
REPO_ID = "sarm/aloha_sim_fixture"


def features(width: int, height: int) -> dict:
    from sarm_export import ALOHA_JOINT_NAMES

    return {
        "observation.images.top": {"dtype": "video", "shape": (height, width, 3),
                                   "names": ["height", "width", "channels"]},
        "observation.state": {"dtype": "float32", "shape": (14,), "names": ALOHA_JOINT_NAMES},
    }


def episode_frames(bag: str, width: int, height: int, frames: int | None):
    import common
    from PIL import Image

    jpegs, joints, _ = common.read_bag(EPISODES / bag / "bag")
    n = len(jpegs) if frames is None else min(frames, len(jpegs))
    for f in range(n):
        img = Image.fromarray(common.decode_jpeg(jpegs[f]))
        if img.size != (width, height):
            img = img.resize((width, height), Image.BILINEAR)
        yield np.asarray(img), joints[f].astype(np.float32)


def write_dataset(out: Path, vcodec: str, width: int, height: int, bags: list[str], frames: int | None,
                  task: str, video_mb: int | None, fps: int = 50):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    shutil.rmtree(out, ignore_errors=True)
    ds = LeRobotDataset.create(REPO_ID, fps=fps, features=features(width, height), root=out, robot_type="aloha",
                               use_videos=True, vcodec=vcodec)
    if video_mb is not None:
        ds.meta.update_chunk_settings(video_files_size_in_mb=video_mb)
    for bag in bags:
        for img, q in episode_frames(bag, width, height, frames):
            ds.add_frame({"observation.images.top": img, "observation.state": q, "task": task})
        ds.save_episode()
    ds.finalize()
    return out


def lerobot_frames(root: Path) -> np.ndarray:
    """Every row's camera frame as LeRobot returns it (default decoder), uint8 HWC, stacked."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset(REPO_ID, root=root)
    out = []
    for i in range(len(ds)):
        chw = ds[i]["observation.images.top"].numpy()
        out.append(np.round(np.transpose(chw, (1, 2, 0)) * 255.0).clip(0, 255).astype(np.uint8))
    return np.concatenate(out, axis=0), ds.video_backend


def describe(root: Path) -> dict:
    import pandas as pd

    eps = pd.concat([pd.read_parquet(p) for p in sorted((root / "meta" / "episodes").rglob("*.parquet"))])
    cols = [c for c in eps.columns if c.startswith("videos/") or c in
            ("episode_index", "length", "dataset_from_index", "dataset_to_index")]
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    return {"bytes": size, "episodes": eps[cols].to_dict(orient="records")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["parity", "codecs"])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--size", default="320x240", help="WxH of the parity dataset's frames")
    ap.add_argument("--frames", type=int, default=None, help="at most this many frames per episode")
    ap.add_argument("--task", default=TEST_TASK)
    ap.add_argument("--video-mb", type=int, default=1, help="video_files_size_in_mb (small: several mp4 files)")
    args = ap.parse_args(argv)
    import lerobot

    if args.what == "parity":
        w, h = (int(v) for v in args.size.split("x"))
        root = write_dataset(args.out, "libsvtav1", w, h, BAGS, args.frames, args.task, args.video_mb)
        info = describe(root)
        info["generator"] = (f"models/tools/make_dataset_fixture.py parity (lerobot {lerobot.__version__} "
                             "LeRobotDataset.create/add_frame/save_episode/finalize, vcodec libsvtav1)")
        info["source_bags"] = BAGS
        (root / "meta" / "sarm_fixture.json").write_text(json.dumps(info, indent=1, default=str) + "\n")
        print(json.dumps(info, indent=1, default=str))
    else:
        shutil.rmtree(args.out, ignore_errors=True)
        args.out.mkdir(parents=True)
        from PIL import Image

        for vcodec in ("libsvtav1", "h264", "hevc"):
            root = write_dataset(args.out / vcodec, vcodec, 128, 96, BAGS[:2], 12, args.task, None)
            frames, backend = lerobot_frames(root)
            Image.fromarray(frames).save(root / "frames.png", optimize=True)
            info = describe(root)
            info["generator"] = (f"models/tools/make_dataset_fixture.py codecs (lerobot {lerobot.__version__}, "
                                 f"vcodec {vcodec}); frames.png: every row's frame from LeRobotDataset "
                                 f"({backend}), stacked vertically")
            (root / "meta" / "sarm_fixture.json").write_text(json.dumps(info, indent=1, default=str) + "\n")
            print(vcodec, info["bytes"], "bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
