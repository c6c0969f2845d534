"""SARM checkpoints written by LeRobot 0.4.x, 0.5.x and 0.6+.

The model itself (SARMConfig's fields, StageTransformer/SubtaskTransformer and their state-dict
names in model.safetensors) is the same in all of them. What changed:

- 0.4.x and 0.5.x: `lerobot.policies.sarm`, SARMConfig(PreTrainedConfig). config.json carries the
  policy base fields (`use_amp`, `use_peft`, `push_to_hub`, ...). Training:
  `lerobot-train --policy.type=sarm`.
- 0.6+: `lerobot.rewards.sarm`, SARMConfig(RewardModelConfig) (lerobot/configs/rewards.py).
  config.json carries the reward-model base fields instead: no `use_amp` / `use_peft`, and
  `pretrained_revision`. Training: `lerobot-train --reward_model.type=sarm`; its checkpoints are
  `outputs/train/<run>/checkpoints/<step>/pretrained_model/`.

A checkpoint of the other layout is translated for the LeRobot installed here: its base-class
fields are mapped (dropped when this LeRobot has no such field), the SARM fields are kept as they
are, and model.safetensors is loaded with a strict key check (LeRobot's own loader is not strict).
A field this LeRobot's SARMConfig does not know that is not a base-class field is an error: it
could change the numerics.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path

# Fields of the two base classes (PreTrainedConfig in 0.4/0.5, RewardModelConfig in 0.6+) that
# SARM checkpoints carry; none of them affects the model's outputs.
BASE_FIELDS = {
    "type", "n_obs_steps", "input_features", "output_features", "device", "use_amp", "use_peft",
    "push_to_hub", "repo_id", "private", "tags", "license", "pretrained_path", "pretrained_revision",
    "normalization_mapping",
}

LAYOUT_POLICIES = "lerobot 0.4/0.5 (lerobot.policies.sarm, PreTrainedConfig)"
LAYOUT_REWARDS = "lerobot 0.6+ (lerobot.rewards.sarm, RewardModelConfig)"


class CheckpointError(RuntimeError):
    pass


def sarm_classes():
    """(base config class, SARMConfig, SARMRewardModel, module path) of the installed LeRobot."""
    try:
        from lerobot.configs.policies import PreTrainedConfig
        from lerobot.policies.sarm.configuration_sarm import SARMConfig
        from lerobot.policies.sarm.modeling_sarm import SARMRewardModel

        return PreTrainedConfig, SARMConfig, SARMRewardModel, LAYOUT_POLICIES
    except ImportError:
        from lerobot.configs.rewards import RewardModelConfig
        from lerobot.rewards.sarm.configuration_sarm import SARMConfig
        from lerobot.rewards.sarm.modeling_sarm import SARMRewardModel

        return RewardModelConfig, SARMConfig, SARMRewardModel, LAYOUT_REWARDS


def resolve_dir(path: Path) -> Path:
    """The folder with config.json: the path itself, its `pretrained_model/` (a lerobot-train
    checkpoint step), or `checkpoints/last/pretrained_model/` (a training run's output)."""
    for cand in (path, path / "pretrained_model", path / "checkpoints" / "last" / "pretrained_model"):
        if (cand / "config.json").is_file():
            return cand
    raise CheckpointError(f"--checkpoint {path}: no config.json (expected a SARM save_pretrained folder, "
                          "a lerobot-train checkpoint step with pretrained_model/, or a training output folder)")


def detect_layout(config: dict) -> str:
    if "use_amp" in config or "use_peft" in config:
        return LAYOUT_POLICIES
    return LAYOUT_REWARDS


def translate_config(config: dict, sarm_config_cls) -> dict:
    """config.json of either layout -> one the installed SARMConfig parses."""
    accepted = {f.name for f in dataclasses.fields(sarm_config_cls)} | {"type"}
    unknown = sorted(set(config) - accepted - BASE_FIELDS)
    if unknown:
        raise CheckpointError(f"config.json has fields the installed LeRobot's SARMConfig does not know: {unknown} "
                              "(a newer SARM? export it with the LeRobot version that wrote it)")
    out = {k: v for k, v in config.items() if k in accepted}
    # Base fields this LeRobot has and the checkpoint lacks keep their defaults.
    return out


def load(path: Path):
    """Loads a SARM checkpoint of any supported layout. Returns (model, info)."""
    base_cls, sarm_config_cls, model_cls, installed = sarm_classes()
    ckpt = resolve_dir(path)
    raw = json.loads((ckpt / "config.json").read_text())
    if raw.get("type", "sarm") != "sarm":
        raise CheckpointError(f"--checkpoint {ckpt}: config type is {raw.get('type')!r}, not 'sarm'")
    if not (ckpt / "model.safetensors").is_file():
        raise CheckpointError(f"--checkpoint {ckpt}: no model.safetensors")
    layout = detect_layout(raw)
    translated = translate_config(raw, sarm_config_cls)
    tmp = None
    load_dir = ckpt
    if translated != raw:
        tmp = Path(tempfile.mkdtemp(prefix="sarm-ckpt-"))
        (tmp / "config.json").write_text(json.dumps(translated, indent=4))
        (tmp / "model.safetensors").symlink_to((ckpt / "model.safetensors").resolve())
        load_dir = tmp
    try:
        cfg = base_cls.from_pretrained(str(load_dir), local_files_only=True)
        if not isinstance(cfg, sarm_config_cls):
            raise CheckpointError(f"--checkpoint {ckpt}: config is {type(cfg).__name__}, not SARMConfig")
        cfg.device = "cpu"
        model = model_cls.from_pretrained(str(load_dir), config=cfg, local_files_only=True)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    from safetensors import safe_open

    with safe_open(str(ckpt / "model.safetensors"), framework="pt") as f:
        stored = set(f.keys())
    expected = set(model.state_dict().keys())
    if stored != expected:
        raise CheckpointError(f"--checkpoint {ckpt}: model.safetensors does not match SARMRewardModel: "
                              f"missing {sorted(expected - stored)[:8]}, unexpected {sorted(stored - expected)[:8]}")
    model.to("cpu")
    model.eval()
    return model, {"dir": str(ckpt), "layout": layout, "installed": installed, "translated": load_dir != ckpt}
