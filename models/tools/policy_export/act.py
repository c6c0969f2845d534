"""LeRobot ACT checkpoints: loading, the processors' normalisation, the exported graph.

Everything numeric here is LeRobot's own: `ACTPolicy.from_pretrained`, the pre/post-processor
pipelines `make_pre_post_processors(config, pretrained_path=...)` loads from the files saved
beside the checkpoint, and `ACT.forward` (eval mode) as the graph.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

OBS_STATE = "observation.state"
OBS_ENV_STATE = "observation.environment_state"
ACTION = "action"
# The stats each LeRobot normalisation mode reads (normalize_processor.py, lerobot 0.4.4).
MODE_STATS = {
    "MEAN_STD": ("mean", "std"),
    "MIN_MAX": ("min", "max"),
    "QUANTILES": ("q01", "q99"),
    "QUANTILE10": ("q10", "q90"),
    "IDENTITY": (),
}


class CheckpointError(RuntimeError):
    """A checkpoint folder that is not a LeRobot ACT checkpoint with its processors."""


def load(checkpoint: Path):
    """(policy, preprocessor, postprocessor) from an `ACTPolicy.save_pretrained` folder."""
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors

    checkpoint = Path(checkpoint)
    if not checkpoint.is_dir():
        raise CheckpointError(f"--checkpoint {checkpoint}: not a directory")
    for f in ("config.json", "model.safetensors", "policy_preprocessor.json", "policy_postprocessor.json"):
        if not (checkpoint / f).is_file():
            raise CheckpointError(
                f"--checkpoint {checkpoint}: no {f} (expected ACTPolicy.save_pretrained output with the "
                "policy_preprocessor/policy_postprocessor files LeRobot saves beside it)")
    kind = json.loads((checkpoint / "config.json").read_text()).get("type")
    if kind != "act":
        raise CheckpointError(f"--checkpoint {checkpoint}: config type is {kind!r}, not 'act'")
    from . import tiny_backbone

    tiny_backbone.register()  # only the test bundle's config names it; harmless otherwise
    cfg = PreTrainedConfig.from_pretrained(str(checkpoint), local_files_only=True)
    if not isinstance(cfg, ACTConfig):
        raise CheckpointError(f"--checkpoint {checkpoint}: config is {type(cfg).__name__}, not ACTConfig")
    cfg.device = "cpu"
    policy = ACTPolicy.from_pretrained(str(checkpoint), config=cfg, local_files_only=True)
    policy.to("cpu").eval()
    pre, post = make_pre_post_processors(cfg, pretrained_path=str(checkpoint))
    return policy, pre, post


def _step_of(pipeline, class_name: str):
    found = [s for s in pipeline.steps if type(s).__name__ == class_name]
    if len(found) != 1:
        raise CheckpointError(f"expected exactly one {class_name} in {pipeline.name}, found {len(found)}: "
                              f"{[type(s).__name__ for s in pipeline.steps]}")
    return found[0]


def normalization_of(step, key: str) -> dict:
    """The (un)normalisation LeRobot applies to `key`: mode, the stats that mode reads, eps."""
    feature = step.features.get(key)
    if feature is None:
        raise CheckpointError(f"{type(step).__name__} has no feature {key!r} (has {sorted(step.features)})")
    mode = step.norm_map.get(feature.type)
    mode = "IDENTITY" if mode is None else str(mode.value if hasattr(mode, "value") else mode)
    stats = step._tensor_stats.get(key)  # what LeRobot's _apply_transform reads
    if mode != "IDENTITY" and stats is None:
        mode = "IDENTITY"  # LeRobot: `key not in self._tensor_stats` -> returned unchanged
    if mode not in MODE_STATS:
        raise CheckpointError(f"{key}: normalisation mode {mode} is not supported by the policy bundle")
    out = {"mode": mode}
    for name in MODE_STATS[mode]:
        if name not in stats:
            raise CheckpointError(f"{key}: mode {mode} needs stat {name!r}, the processor has {sorted(stats)}")
        out[name] = stats[name].detach().to(torch.float32).cpu().numpy()
    out["eps"] = float(step.eps)
    return out


def processor_normalization(pre, post, policy) -> dict:
    """{feature key: normalisation} for every model input (pre-processor) and the action (post)."""
    cfg = policy.config
    normaliser = _step_of(pre, "NormalizerProcessorStep")
    unnormaliser = _step_of(post, "UnnormalizerProcessorStep")
    out = {}
    for key in cfg.input_features:
        out[key] = normalization_of(normaliser, key)
    out[ACTION] = normalization_of(unnormaliser, ACTION)
    return out


def image_keys(policy) -> list[str]:
    return list(policy.config.image_features)


class ACTGraph(nn.Module):
    """Normalised observations -> normalised action chunk: LeRobot's `ACT.forward` in eval mode.

    In eval mode ACT feeds the transformer a zero latent (the VAE encoder is training-only), so
    the graph has no latent input and the VAE encoder is not in it."""

    def __init__(self, policy):
        super().__init__()
        cfg = policy.config
        self.model = policy.model
        self.has_state = cfg.robot_state_feature is not None
        self.has_env_state = cfg.env_state_feature is not None
        self.n_images = len(cfg.image_features)

    def forward(self, *inputs):
        i = 0
        batch = {}
        if self.has_state:
            batch[OBS_STATE] = inputs[i]
            i += 1
        if self.has_env_state:
            batch[OBS_ENV_STATE] = inputs[i]
            i += 1
        if self.n_images:
            batch["observation.images"] = list(inputs[i:i + self.n_images])
        actions, _ = self.model(batch)
        return actions


def graph_input_names(policy) -> list[str]:
    cfg = policy.config
    names = []
    if cfg.robot_state_feature is not None:
        names.append(OBS_STATE)
    if cfg.env_state_feature is not None:
        names.append(OBS_ENV_STATE)
    names += image_keys(policy)
    return names


def graph_inputs_from_batch(batch: dict, policy) -> dict[str, np.ndarray]:
    """The ONNX feeds from the batch ACT.forward received (normalised tensors)."""
    feeds = {}
    cfg = policy.config
    if cfg.robot_state_feature is not None:
        feeds[OBS_STATE] = batch[OBS_STATE].detach().cpu().numpy().astype(np.float32)
    if cfg.env_state_feature is not None:
        feeds[OBS_ENV_STATE] = batch[OBS_ENV_STATE].detach().cpu().numpy().astype(np.float32)
    for key, img in zip(image_keys(policy), batch.get("observation.images", []), strict=False):
        feeds[key] = img.detach().cpu().numpy().astype(np.float32)
    return feeds
