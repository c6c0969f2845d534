"""Joint-state preprocessing: LeRobot MEAN_STD normalisation then zero padding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

EPS = 1e-8  # lerobot NormalizerProcessorStep default eps


def normalize(joints: np.ndarray, mean, std, eps: float = EPS) -> np.ndarray:
    """(x - mean) / (std + eps) in float32, as lerobot's NormalizerProcessorStep (MEAN_STD)."""
    x = torch.as_tensor(np.asarray(joints, dtype=np.float32))
    m = torch.as_tensor(np.asarray(mean, dtype=np.float32))
    s = torch.as_tensor(np.asarray(std, dtype=np.float32))
    return ((x - m) / (s + eps)).numpy()


def model_state(joints: np.ndarray, mean, std, model_dim: int, eps: float = EPS) -> np.ndarray:
    """Normalised and zero-padded (LeRobot's pad_state_to_max_dim) float32 state."""
    from lerobot.policies.sarm.sarm_utils import pad_state_to_max_dim

    x = torch.from_numpy(normalize(joints, mean, std, eps))
    return pad_state_to_max_dim(x, model_dim).numpy()


def load_stats(path: str | Path | None, joint_names: list[str]) -> tuple[list[float], list[float]]:
    """Per-joint mean/std from JSON.

    Accepted forms: {"mean": [...], "std": [...]};
    LeRobot stats ({"observation.state": {"mean": [...], "std": [...]}, ...});
    {"<joint>": {"mean": m, "std": s}, ...}.  None -> mean 0, std 1.
    """
    n = len(joint_names)
    if path is None:
        return [0.0] * n, [1.0] * n
    data = json.loads(Path(path).read_text())
    if "observation.state" in data:
        data = data["observation.state"]
    if "mean" in data and "std" in data:
        mean, std = list(map(float, np.ravel(data["mean"]))), list(map(float, np.ravel(data["std"])))
    elif all(j in data for j in joint_names):
        mean = [float(data[j]["mean"]) for j in joint_names]
        std = [float(data[j]["std"]) for j in joint_names]
    else:
        raise ValueError(
            f"--state-stats {path}: expected keys 'mean'/'std', 'observation.state', or one entry per joint"
        )
    if len(mean) != n or len(std) != n:
        raise ValueError(f"--state-stats {path}: {len(mean)} means / {len(std)} stds for {n} joints")
    if any(s < 0 for s in std):
        raise ValueError(f"--state-stats {path}: negative std")
    return mean, std
