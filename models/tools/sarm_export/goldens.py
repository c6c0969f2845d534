"""Golden vectors for the Rust side, produced by LeRobot's / PyTorch's own code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from . import state as state_mod
from . import windows as win
from .encoders import ImageEncoder
from .smoother import ConfidenceSmoother
from .tomlw import f32


def _f32list(a) -> list:
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == 0:
        return float(a)
    return [_f32list(x) for x in a] if a.ndim > 1 else [float(v) for v in a.tolist()]


def lerobot_windows(model, text_emb: np.ndarray, feats: np.ndarray, state: np.ndarray,
                    index_lists: list[list[int]], head: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """calculate_rewards exactly as LeRobot runs it at inference: a 13-frame sequence
    (9 observation frames + 4 zeroed rewind placeholders), lengths = 9."""
    cfg = model.config
    n_obs = cfg.n_obs_steps + 1
    total = cfg.num_frames
    B = len(index_lists)
    video = np.zeros((B, total, feats.shape[1]), np.float32)
    st = np.zeros((B, total, state.shape[1]), np.float32)
    for b, idx in enumerate(index_lists):
        video[b, :n_obs] = feats[idx]
        st[b, :n_obs] = state[idx]
    text = np.repeat(text_emb[None].astype(np.float32), B, axis=0)
    lengths = np.full((B,), n_obs, dtype=np.int32)
    rewards, probs, conf = model.calculate_rewards(
        text, video, st, lengths, return_all_frames=True, return_stages=True, return_confidence=True,
        head_mode=head,
    )
    return rewards[:, :n_obs], probs[:, :n_obs], conf[:, :n_obs]


def reward_golden(model, heads: list[str], text_emb: np.ndarray, task: str, episodes: list[dict],
                  mean, std, anchored_frames: dict[int, list[int]]) -> dict:
    import lerobot

    cfg = model.config
    n, g = cfg.n_obs_steps, cfg.frame_gap
    out_eps = []
    for ei, e in enumerate(episodes):
        feats = np.asarray(e["frame_features"], np.float32)
        joints = np.asarray(e["joint_positions"], np.float32)
        length = len(feats)
        state = state_mod.model_state(joints, mean, std, cfg.max_state_dim)
        specs = []
        for f in range(length):
            specs.append(("centered", f, win.frame_indices(f, length, "centered", n, g), win.readout("centered", n)))
        for f in range(length):
            specs.append(("causal", f, win.frame_indices(f, length, "causal", n, g), win.readout("causal", n)))
        for f in anchored_frames.get(ei, []):
            specs.append(("causal_anchored", f, win.frame_indices(f, length, "causal", n, g, anchor_first=True),
                          win.readout("causal", n)))
        per_head = {h: lerobot_windows(model, text_emb, feats, state, [s[2] for s in specs], h) for h in heads}
        windows = []
        for b, (layout, f, idx, ro) in enumerate(specs):
            windows.append({
                "layout": layout,
                "scored_frame": f,
                "frame_indices": idx,
                "readout": ro,
                "heads": {
                    h: {
                        "stage_probs": _f32list(per_head[h][1][b]),
                        "confidence": _f32list(per_head[h][2][b]),
                        "progress": _f32list(per_head[h][0][b]),
                    }
                    for h in heads
                },
            })
        out_eps.append({
            "episode_index": ei,
            "length": length,
            "frame_features": _f32list(feats),
            "joint_positions": _f32list(joints),
            "windows": windows,
        })
    return {
        "generator": "models/tools/make_test_bundle.py (sarm_export.goldens.reward_golden): "
                     "SARMRewardModel.calculate_rewards on 13-frame sequences (9 window frames + 4 zeroed "
                     "rewind placeholders), lengths=[9], return_all_frames/stages/confidence, per head_mode",
        "lerobot_version": lerobot.__version__,
        "task": task,
        "state_preprocessing": "(x - mean) / (std + eps) with bundle.toml [state] mean/std/eps, float32, then "
                               "zero padding to model_dim (lerobot pad_state_to_max_dim)",
        "episodes": out_eps,
    }


def encoder_golden(enc: ImageEncoder, images: list[tuple[str, "PIL.Image.Image"]], out_dir: Path) -> dict:  # noqa: F821
    img_dir = out_dir / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for name, im in images:
        path = img_dir / name
        im.save(path, format="PNG", optimize=True)
        from PIL import Image

        rgb = np.asarray(Image.open(path).convert("RGB"))
        x = enc.preprocess.to_tensor(rgb)
        with torch.no_grad():
            feat = enc.module(x[None])[0].numpy()
        records.append({
            "file": f"images/{name}",
            "width": int(rgb.shape[1]),
            "height": int(rgb.shape[0]),
            "preprocessed_channel_mean": [f32(v) for v in x.mean(dim=(1, 2)).tolist()],
            "preprocessed_channel_std": [f32(v) for v in x.std(dim=(1, 2)).tolist()],
            "features": _f32list(feat),
        })
    pre = enc.preprocess
    return {
        "generator": "models/tools/make_test_bundle.py (sarm_export.goldens.encoder_golden): PyTorch encoder on "
                     "torchvision-preprocessed PNGs",
        "encoder": enc.kind,
        "preprocessing": {
            "description": "decode PNG to RGB uint8 -> float32 0..255 -> if size differs: resize shorter side to "
                           f"{pre.height} (long side = floor(long * {pre.height} / short)) with torchvision "
                           f"resize({pre.filter}, antialias=True) on float32 -> center_crop({pre.height}, {pre.width}) "
                           "-> x * scale -> (x - mean) / std",
            "resize": pre.resize,
            "filter": pre.filter,
            "scale": f32(pre.scale),
            "mean": [f32(v) for v in pre.mean],
            "std": [f32(v) for v in pre.std],
            "height": pre.height,
            "width": pre.width,
        },
        "images": records,
    }


def smoother_golden(seed: int = 0, steps: int = 200) -> dict:
    rng = np.random.default_rng(seed)
    params = {"window": 10, "beta": 3.0, "eps": 1e-6, "threshold": 0.9}
    sm = ConfidenceSmoother(**params)
    t = np.arange(steps)
    values = np.clip(t / steps + 0.05 * np.sin(t / 7.0) + rng.normal(0, 0.03, steps), 0, 1)
    conf = rng.uniform(0.9, 1.0, steps)
    low = rng.random(steps) < 0.3
    conf[low] = rng.uniform(0.0, 0.9, int(low.sum()))
    # a few out-of-range confidences exercise the clamp
    conf[5], conf[77], conf[150] = 1.2, -0.1, 1.0
    outputs = [sm.update(float(v), float(c)) for v, c in zip(values, conf, strict=True)]
    return {
        "generator": "models/tools/make_test_bundle.py (sarm_export.smoother.ConfidenceSmoother)",
        "description": "keep the last `window` accepted (value, confidence); c clamped to [0,1]; weights "
                       "max(eps,c)^beta; mean = sum(w v) / (sum(w) + eps); first call seeds the previous output "
                       "with the history mean (or v if empty); c < threshold returns the previous output and is "
                       "not added; otherwise append and return the new weighted mean",
        "params": params,
        "low_confidence_fraction": float(np.mean(np.clip(conf, 0, 1) < params["threshold"])),
        "steps": [{"value": float(v), "confidence": float(c), "expected": float(o)}
                  for v, c, o in zip(values, conf, outputs, strict=True)],
    }


def write_json(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, separators=(",", ":")) + "\n")
