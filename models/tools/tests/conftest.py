"""Shared fixtures for the models/tools tests.

Run:  models/tools/.venv/bin/python -m pytest models/tools/tests -q
"""

from __future__ import annotations

import json
import os
import sys
import tomllib
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

TOOLS = Path(__file__).resolve().parent.parent
REPO = TOOLS.parent.parent
BUNDLE = REPO / "models" / "sarm-test"
sys.path.insert(0, str(TOOLS))

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)  # 2-core machine; more threads only spin


@pytest.fixture(scope="session")
def bundle_dir() -> Path:
    if not (BUNDLE / "bundle.toml").is_file():
        pytest.skip("models/sarm-test not built (run models/tools/make_test_bundle.py)")
    return BUNDLE


@pytest.fixture(scope="session")
def manifest(bundle_dir) -> dict:
    with open(bundle_dir / "bundle.toml", "rb") as f:
        return tomllib.load(f)


@pytest.fixture(scope="session")
def reward_golden(bundle_dir) -> dict:
    return json.loads((bundle_dir / "golden" / "reward.json").read_text())


def small_sarm(dual: bool = True, image_dim: int = 96, seed: int = 0):
    """A small random LeRobot SARM (LeRobot's own classes)."""
    from lerobot.policies.sarm.configuration_sarm import SARMConfig
    from lerobot.policies.sarm.modeling_sarm import SARMRewardModel

    kw = dict(hidden_dim=32, num_heads=4, num_layers=2, image_dim=image_dim, text_dim=384, max_state_dim=32,
              n_obs_steps=8, frame_gap=3, device="cpu")
    if dual:
        kw.update(annotation_mode="dual", num_sparse_stages=3, sparse_subtask_names=["a", "b", "c"],
                  sparse_temporal_proportions=[0.2, 0.5, 0.3], num_dense_stages=5,
                  dense_subtask_names=["p", "q", "r", "s", "t"], dense_temporal_proportions=[0.2] * 5)
    else:
        kw.update(annotation_mode="single_stage")
    torch.manual_seed(seed)
    model = SARMRewardModel(SARMConfig(**kw))
    with torch.no_grad():
        for sub in (model.stage_model, model.subtask_model):
            sub.first_pos.normal_(0, 0.5)
    return model.to("cpu").eval()


def window_feeds(reward: dict, manifest: dict, episode: dict, windows: list[dict]) -> dict[str, np.ndarray]:
    """T=9 model inputs (no padding) for golden windows, using the manifest's preprocessing."""
    from sarm_export import state as state_mod

    feats = np.asarray(episode["frame_features"], np.float32)
    st = state_mod.model_state(np.asarray(episode["joint_positions"], np.float32), manifest["state"]["mean"],
                               manifest["state"]["std"], manifest["state"]["model_dim"],
                               manifest["state"]["eps"])
    text = np.asarray(manifest["text"]["tasks"][0]["embedding"], np.float32)
    idx = np.asarray([w["frame_indices"] for w in windows])
    return {
        "image_features": feats[idx],
        "text_embedding": np.repeat(text[None], len(windows), 0),
        "state": st[idx],
    }


def heads_of(manifest: dict) -> dict:
    return {h: {"stage_names": v["stage_names"], "temporal_proportions": v["temporal_proportions"],
                "num_stages": len(v["stage_names"])} for h, v in manifest["heads"].items()}
