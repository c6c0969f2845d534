#!/usr/bin/env python
"""Build models/act-test/: a small randomly initialised LeRobot ACT, its bundle and goldens.

    models/tools/.venv/bin/python models/tools/make_act_test_bundle.py      # ~1 min on 2 cores

1. Two synthetic episodes (200 steps each, 50 Hz) of a 56x42 RGB camera ("top": a moving red
   cube, two grey arms, a lit table) and 14 smooth ALOHA joint trajectories; the action is the
   state 3 steps ahead (as a joint-position command would lead the joints).
2. LeRobot's ACTPolicy(ACTConfig(...)) with torch.manual_seed(0): 1 camera at 3x36x48 (the robot
   frames are resized 56x42 -> 48x36 by the bundle's rule), 14-joint state and action, chunk 20,
   n_action_steps 10, dim_model 32, 4 heads, 2 encoder / 1 decoder layers, VAE latent 8, and the
   `resnet_tiny` backbone (policy_export/tiny_backbone.py) instead of resnet18 so the bundle stays
   small. The frozen BatchNorm buffers get random statistics so that path is exercised. No training.
   Normalisation (LeRobot's processors, stats from the episodes by LeRobot's get_feature_stats):
   VISUAL MEAN_STD, STATE MIN_MAX, ACTION MEAN_STD, so the goldens cover two modes.
   Saved with save_pretrained (model + pre/post-processors) to models/act-test/lerobot_checkpoint/.
3. export_policy.py -> models/act-test/{bundle.toml, model.fp32.onnx, model.int8.onnx}.
4. Goldens (models/act-test/golden/): LeRobot's own predict_action/select_action over both
   episodes, in the queue mode (chunk 20, n_action_steps 10) and with temporal ensembling
   (coeff 0.01, n_action_steps 1).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))
REPO = TOOLS.parent.parent

import json  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from policy_export import bundle as bundle_mod  # noqa: E402
from policy_export import goldens, tiny_backbone  # noqa: E402
from policy_export.preprocess import CameraSpec, resize_frame  # noqa: E402
from sarm_export import ALOHA_JOINT_NAMES  # noqa: E402

OUT = REPO / "models" / "act-test"
CKPT = OUT / "lerobot_checkpoint"
WORK = TOOLS / "work" / "act-test"
SRC_W, SRC_H = 56, 42
MODEL_H, MODEL_W = 36, 48
EPISODE_STEPS = (200, 200)
FPS = 50.0
UNITS = ",".join(["normalized" if n.endswith("gripper") else "rad" for n in ALOHA_JOINT_NAMES])


def scene(t: int, n: int, seed: int) -> np.ndarray:
    """A 56x42 frame: table gradient, a red cube that is carried across, two grey arms."""
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 1)
    y, x = np.mgrid[0:SRC_H, 0:SRC_W].astype(np.float32)
    img = np.stack([60 + 40 * y / SRC_H, 70 + 30 * x / SRC_W, 80 + 20 * (x + y) / (SRC_W + SRC_H)], -1)
    s = t / max(1, n - 1)
    cx = 8 + 40 * s + 3 * np.sin(6.28 * (s + phase))
    cy = 27 - 12 * np.sin(3.14 * s)
    for side, bx in ((0, 5), (1, 51)):
        ex = bx + (cx - bx) * (0.4 + 0.5 * np.sin(3.14 * s + side))
        ey = 8 + 10 * np.cos(3.14 * s + side)
        for k in np.linspace(0, 1, 30):
            px, py = int(bx + (ex - bx) * k), int(4 + (ey - 4) * k)
            img[max(0, py - 1):py + 2, max(0, px - 1):px + 2] = (150, 150, 160)
    img[int(cy) - 3:int(cy) + 3, int(cx) - 3:int(cx) + 3] = (220, 30, 30)
    noise = rng.normal(0, 2.0, img.shape)  # sensor noise, fixed per episode seed and step
    img = img + np.roll(noise, t, axis=1)
    return np.clip(img, 0, 255).astype(np.uint8)


def joints(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    t = np.arange(n)[:, None] / FPS
    base = np.array([0, -0.96, 1.16, 0, -0.3, 0, 0.5] * 2, np.float32)
    amp = np.array([0.3, 0.4, 0.3, 0.2, 0.4, 0.3, 0.45] * 2) * rng.uniform(0.6, 1.0, 14)
    freq = rng.uniform(0.2, 0.6, 14)
    ph = rng.uniform(0, 6.28, 14)
    return (base + amp * np.sin(6.28 * freq * t + ph)).astype(np.float32)


def episodes() -> list[dict]:
    eps = []
    for i, n in enumerate(EPISODE_STEPS):
        seed = 100 + i
        states = joints(n + 3, seed)
        eps.append({"name": f"ep{i}", "seed": seed,
                    "frames": [{"top": scene(t, n, seed)} for t in range(n)],
                    "states": states[:n], "actions": states[3:n + 3]})
    return eps


def build_checkpoint(eps: list[dict], dest: Path = CKPT) -> None:
    from lerobot.configs.types import FeatureType, NormalizationMode, PolicyFeature
    from lerobot.datasets.compute_stats import get_feature_stats
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.act.processor_act import make_act_pre_post_processors

    tiny_backbone.register()
    torch.manual_seed(0)
    cfg = ACTConfig(
        input_features={"observation.images.top": PolicyFeature(FeatureType.VISUAL, (3, MODEL_H, MODEL_W)),
                        "observation.state": PolicyFeature(FeatureType.STATE, (14,))},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (14,))},
        chunk_size=20, n_action_steps=10, vision_backbone=tiny_backbone.NAME, pretrained_backbone_weights=None,
        dim_model=32, n_heads=4, dim_feedforward=64, n_encoder_layers=2, n_decoder_layers=1, latent_dim=8,
        n_vae_encoder_layers=1, device="cpu",
        normalization_mapping={"VISUAL": NormalizationMode.MEAN_STD, "STATE": NormalizationMode.MIN_MAX,
                               "ACTION": NormalizationMode.MEAN_STD})
    policy = ACTPolicy(cfg)
    g = torch.Generator().manual_seed(1)
    for m in policy.model.backbone.modules():
        if type(m).__name__ == "FrozenBatchNorm2d":
            n = m.weight.shape[0]
            m.weight.copy_(torch.empty(n).uniform_(0.6, 1.4, generator=g))
            m.bias.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.empty(n).uniform_(0.5, 2.0, generator=g))
    imgs = np.stack([resize_frame(f["top"], MODEL_H, MODEL_W) for e in eps for f in e["frames"]])
    imgs = imgs.transpose(0, 3, 1, 2) / 255.0  # what LeRobot's dataset holds: (N, C, H, W) in [0, 1]
    img_stats = get_feature_stats(imgs, axis=(0, 2, 3), keepdims=True)
    stats = {
        "observation.images.top": {k: torch.as_tensor(v[0], dtype=torch.float32) for k, v in img_stats.items()},
        "observation.state": {k: torch.as_tensor(v, dtype=torch.float32) for k, v in get_feature_stats(
            np.concatenate([e["states"] for e in eps]), axis=0, keepdims=False).items()},
        "action": {k: torch.as_tensor(v, dtype=torch.float32) for k, v in get_feature_stats(
            np.concatenate([e["actions"] for e in eps]), axis=0, keepdims=False).items()},
    }
    pre, post = make_act_pre_post_processors(cfg, dataset_stats=stats)
    shutil.rmtree(dest, ignore_errors=True)
    policy.save_pretrained(dest)
    pre.save_pretrained(dest)
    post.save_pretrained(dest)


def limits(eps: list[dict]) -> dict:
    a = np.concatenate([e["actions"] for e in eps])
    d = np.abs(np.diff(np.stack([e["actions"] for e in eps[:1]])[0], axis=0)).max(0)
    return {"names": ALOHA_JOINT_NAMES, "lower": (a.min(0) - 0.1).tolist(), "upper": (a.max(0) + 0.1).tolist(),
            "max_step": (2 * d + 0.01).tolist(),
            "source": "synthetic test data: observed action range +-0.1, max step 2x the largest observed + 0.01"}


def main() -> int:
    torch.set_num_threads(1)
    eps = episodes()
    build_checkpoint(eps)
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "limits.json").write_text(json.dumps(limits(eps), indent=1) + "\n")
    np.savez_compressed(WORK / "calibration.npz", frames_top=np.stack([f["top"] for f in eps[0]["frames"]]),
                        state=eps[0]["states"])
    np.savez_compressed(WORK / "held_out.npz", frames_top=np.stack([f["top"] for f in eps[1]["frames"]]),
                        state=eps[1]["states"])
    rel = lambda p: str(Path(p).relative_to(REPO))  # noqa: E731
    argv = ["--checkpoint", rel(CKPT), "--out", rel(OUT), "--fps", str(FPS), "--limits", rel(WORK / "limits.json"),
            "--calibration-data", rel(WORK / "calibration.npz"), "--eval-data", rel(WORK / "held_out.npz"),
            "--calibration", "200", "--camera-source", f"top={SRC_W}x{SRC_H}", "--action-units", UNITS,
            "--name", "act-test",
            "--description", "randomly initialised LeRobot ACT (resnet_tiny, dim 32) for the runtime's policy tests"]
    ctx = bundle_mod.ExportContext(
        command=shlex.join(["models/tools/.venv/bin/python", "models/tools/make_act_test_bundle.py"]),
        provenance_extra={"test_model": {
            "init": "ACTPolicy(ACTConfig) with torch.manual_seed(0), no training; FrozenBatchNorm2d buffers drawn "
                    "from torch.Generator seed 1 (weight U(0.6,1.4), bias N(0,0.1), mean N(0,0.1), var U(0.5,2))",
            "backbone": "resnet_tiny: torchvision ResNet(BasicBlock, [1,1,1,1]) with widths 8/16/32/64 "
                        "(policy_export/tiny_backbone.py), registered as torchvision.models.resnet_tiny",
            "data": "synthetic 56x42 scenes and sinusoidal joints (make_act_test_bundle.py); action = state 3 steps ahead",
        }})
    os.chdir(REPO)
    rc = bundle_mod.main(argv, ctx)
    if rc:
        return rc
    cams = [CameraSpec(key="observation.images.top", camera="top", height=MODEL_H, width=MODEL_W,
                       source_height=SRC_H, source_width=SRC_W)]

    def inputs_writer(w, ep):
        frames = np.stack([f["top"] for f in ep["frames"]])
        w.add(f"inputs/{ep['name']}/frames_top", frames, "u8")
        return {"frames": {"top": f"inputs/{ep['name']}/frames_top"}, "frame_format": "raw RGB u8 (steps, H, W, 3)"}

    meta = {
        "format": "sarm policy golden v1 (models/tools/README.md, 'Policy goldens')",
        "bundle": "models/act-test",
        "generator": "models/tools/make_act_test_bundle.py (LeRobot 0.4.4 predict_action -> ACTPolicy.select_action)",
        "checkpoint": rel(CKPT),
        "fps": FPS,
        "tolerance": {"fp32_action_abs": 1e-4},
    }
    doc = goldens.write_goldens(bundle_dir=OUT, checkpoint=CKPT, golden_dir=OUT / "golden", episodes=eps,
                                modes=[{"name": goldens.QUEUE, "n_action_steps": 10},
                                       {"name": goldens.ENSEMBLE, "coeff": 0.01}],
                                cameras=cams, inputs_writer=inputs_writer, meta=meta,
                                runners=("onnxruntime", "tract"), log=print)
    print(json.dumps(doc["summary_max_abs_diff_action_units"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
