"""SARM checkpoints of LeRobot 0.4/0.5 (lerobot.policies.sarm) and 0.6+ (lerobot.rewards.sarm).

The 0.6 folder is built the way LeRobot 0.6.1 writes one (read from its source, not run here:
RewardModelConfig._save_pretrained = draccus.encode(self, RewardModelConfig) -> config.json with
the reward-model base fields: no use_amp / use_peft, plus pretrained_revision; the weights in
model.safetensors under the same state-dict names; lerobot-train's checkpoint step layout
checkpoints/<step>/pretrained_model/ with train_config.json holding `reward_model`)."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import small_sarm

from sarm_export import bundle as bm
from sarm_export import checkpoint as ck


def _as_lerobot06(ckpt04: Path, run: Path) -> Path:
    """A lerobot-train (0.6) output folder holding the same model."""
    step = run / "checkpoints" / "000200" / "pretrained_model"
    step.mkdir(parents=True)
    cfg = json.loads((ckpt04 / "config.json").read_text())
    for k in ("use_amp", "use_peft"):  # PreTrainedConfig-only fields
        assert k in cfg, f"0.4.4 writes {k}"
        del cfg[k]
    cfg["pretrained_revision"] = None  # RewardModelConfig adds it
    cfg["push_to_hub"] = False
    (step / "config.json").write_text(json.dumps(cfg, indent=4))
    shutil.copy(ckpt04 / "model.safetensors", step / "model.safetensors")
    (step / "train_config.json").write_text(json.dumps({"reward_model": cfg, "policy": None}, indent=4))
    (run / "checkpoints" / "last").symlink_to("000200")
    return step


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("layouts")
    model = small_sarm(dual=True, image_dim=512, seed=7)
    ckpt04 = tmp / "ckpt04"
    model.save_pretrained(str(ckpt04))
    step = _as_lerobot06(ckpt04, tmp / "run06")
    return model, ckpt04, step, tmp / "run06"


def test_layouts_are_recognised(checkpoints):
    _, ckpt04, step, _ = checkpoints
    assert ck.detect_layout(json.loads((ckpt04 / "config.json").read_text())) == ck.LAYOUT_POLICIES
    assert ck.detect_layout(json.loads((step / "config.json").read_text())) == ck.LAYOUT_REWARDS


@pytest.mark.parametrize("where", ["step", "pretrained_model", "run"])
def test_a_lerobot06_checkpoint_loads_as_the_same_model(checkpoints, where):
    model, ckpt04, step, run = checkpoints
    path = {"step": step.parent, "pretrained_model": step, "run": run}[where]
    m04, info04 = ck.load(ckpt04)
    m06, info06 = ck.load(path)
    assert not info04["translated"] and info06["translated"]
    assert info06["layout"] == ck.LAYOUT_REWARDS
    sd04, sd06 = m04.state_dict(), m06.state_dict()
    assert sd04.keys() == sd06.keys() == model.state_dict().keys()
    for k in sd04:
        assert torch.equal(sd04[k], sd06[k]), k
    for f in ("annotation_mode", "n_obs_steps", "frame_gap", "hidden_dim", "num_layers", "image_dim",
              "sparse_subtask_names", "sparse_temporal_proportions", "dense_subtask_names",
              "dense_temporal_proportions", "max_state_dim"):
        assert getattr(m04.config, f) == getattr(m06.config, f) == getattr(model.config, f), f
    rng = np.random.default_rng(0)
    img = torch.from_numpy(rng.standard_normal((2, 9, 512)).astype(np.float32))
    txt = torch.from_numpy(rng.standard_normal((2, 384)).astype(np.float32))
    st = torch.from_numpy(rng.standard_normal((2, 9, 32)).astype(np.float32))
    for head in ("sparse", "dense"):
        a = model.calculate_rewards(txt, img, st, return_all_frames=True, head_mode=head)
        b = m06.calculate_rewards(txt, img, st, return_all_frames=True, head_mode=head)
        np.testing.assert_array_equal(a, b)


def test_unknown_fields_and_missing_weights_are_refused(checkpoints, tmp_path):
    _, ckpt04, step, _ = checkpoints
    bad = tmp_path / "bad"
    shutil.copytree(step, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["progress_temperature"] = 2.0  # a SARM field this LeRobot does not have
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ck.CheckpointError, match="progress_temperature"):
        ck.load(bad)
    from safetensors.torch import load_file, save_file

    partial = tmp_path / "partial"
    shutil.copytree(ckpt04, partial)
    sd = load_file(str(partial / "model.safetensors"))
    sd.pop(sorted(sd)[0])
    save_file(sd, str(partial / "model.safetensors"))
    with pytest.raises(ck.CheckpointError, match="missing"):
        ck.load(partial)
    with pytest.raises(ck.CheckpointError, match="no config.json"):
        ck.load(tmp_path)


def test_export_bundle_takes_a_lerobot06_run(checkpoints, tmp_path):
    """The exporter end to end on a 0.6 training run folder: it verifies its fp32 graphs against
    LeRobot's forward itself, and records the source layout."""
    from test_clip import _save_clip
    from transformers import CLIPConfig

    _, _, _, run = checkpoints
    clip_cfg = CLIPConfig(
        vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           image_size=224, patch_size=32),
        text_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4),
        projection_dim=512,
    )
    clip_dir = _save_clip(tmp_path / "clip", clip_cfg)
    out = tmp_path / "bundle"
    rc = bm.main(["--checkpoint", str(run), "--out", str(out), "--image-encoder", "clip", "--clip-model",
                  str(clip_dir), "--task", "pick the cube", "--calibration", "8", "--skip-tract-check"])
    assert rc == 0
    m = tomllib.loads((out / "bundle.toml").read_text())
    assert m["provenance"]["source_lerobot_layout"] == ck.LAYOUT_REWARDS
    assert m["provenance"]["checks"]["fp32_max_abs_diff_vs_lerobot"] < 1e-4
    assert m["image_encoder"]["cameras"] == ["top"]
    assert m["window"]["offsets"] == [-12, -9, -6, -3, 0, 3, 6, 9, 12]
