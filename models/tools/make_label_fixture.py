"""Reference for `sarm label`: a short recorded episode and LeRobot's progress for it.

Renders 36 camera frames (320x240 PNG, a cube handed from the left arm to
the right arm) and a 14-joint ALOHA trajectory at the bundle's 30 fps, then
computes every frame's progress the way LeRobot does it offline: PyTorch
EfficientNet-lite0 features (the exporter's torchvision preprocessing), then
SARMRewardModel.calculate_rewards on LeRobot's centred windows
(compute_absolute_indices), read at the centre, both heads.

Writes ros/tests/fixtures/label/{frames/*.png, reference.json}. The bag
itself is written from these by ros/tests/fixtures/make_label_bag.py with
rosbags (an independent rosbag2 writer).

    models/tools/.venv/bin/python models/tools/make_label_fixture.py
(needs models/tools/work/sarm-test-checkpoint from make_test_bundle.py)
"""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from lerobot.policies.sarm.modeling_sarm import SARMRewardModel  # noqa: E402
from lerobot.policies.sarm.sarm_utils import compute_absolute_indices  # noqa: E402

from sarm_export import goldens, scene  # noqa: E402
from sarm_export import state as state_mod  # noqa: E402
from sarm_export.encoders import load_efficientnet_lite0  # noqa: E402

REPO = HERE.parent.parent
BUNDLE = REPO / "models" / "sarm-test"
CHECKPOINT = HERE / "work" / "sarm-test-checkpoint"
OUT = REPO / "ros" / "tests" / "fixtures" / "label"
N = 36
W, H = 320, 240


def frame(i: int) -> Image.Image:
    square = scene.render_transfer_frame(i / (N - 1), size=H, variant=1)
    canvas = Image.new("RGB", (W, H), (60, 64, 70))
    canvas.paste(square, ((W - H) // 2, 0))
    return canvas


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    manifest = tomllib.loads((BUNDLE / "bundle.toml").read_text())
    st = manifest["state"]
    task = manifest["text"]["default_task"]
    text = np.asarray(next(t["embedding"] for t in manifest["text"]["tasks"] if t["text"] == task), np.float32)

    model = SARMRewardModel.from_pretrained(str(CHECKPOINT))
    model.eval()
    enc = load_efficientnet_lite0()

    (OUT / "frames").mkdir(parents=True, exist_ok=True)
    feats = []
    for i in range(N):
        img = frame(i)
        img.save(OUT / "frames" / f"{i:03d}.png", optimize=True)
        # Encode the PNG as decoded back, so both sides see the same pixels.
        rgb = np.asarray(Image.open(OUT / "frames" / f"{i:03d}.png").convert("RGB"))
        with torch.no_grad():
            feats.append(enc.module(enc.preprocess.to_tensor(rgb)[None]).numpy()[0])
    feats = np.stack(feats).astype(np.float32)
    joints = scene.joint_trajectory(N, seed=7).astype(np.float32)
    state = state_mod.model_state(joints, st["mean"], st["std"], manifest["state"]["model_dim"])

    cfg = model.config
    index_lists = [compute_absolute_indices(f, 0, N, cfg.n_obs_steps, cfg.frame_gap)[0].tolist() for f in range(N)]
    centre = cfg.n_obs_steps // 2
    heads = ["sparse", "dense"] if cfg.uses_dual_heads else ["sparse"]
    progress = {}
    stage = {}
    for head in heads:
        rewards, probs, _ = goldens.lerobot_windows(model, text, feats, state, index_lists, head)
        progress[head] = [float(v) for v in rewards[:, centre]]
        stage[head] = [int(v) for v in probs[:, centre].argmax(-1)]

    fps = manifest["window"]["fps"]
    t0 = 1_700_000_000 * 10**9
    ref = {
        "generator": "models/tools/make_label_fixture.py: PyTorch EfficientNet-lite0 + LeRobot "
                     "SARMRewardModel.calculate_rewards on compute_absolute_indices windows",
        "fps": fps,
        "task": task,
        "frames": N,
        "stamps_ns": [t0 + round(i * 1e9 / fps) for i in range(N)],
        "joint_names": st["joint_names"],
        "joint_positions": [[float(v) for v in row] for row in joints],
        "progress": progress,
        "stage": stage,
    }
    (OUT / "reference.json").write_text(json.dumps(ref, indent=1) + "\n")
    print(f"wrote {N} frames and reference.json to {OUT}")


if __name__ == "__main__":
    main()
