"""Thin export wrappers around LeRobot's own SARM modules.

The wrappers do not re-implement the model: they call LeRobot's
``StageTransformer.forward`` / ``SubtaskTransformer.forward`` unchanged, with
``lengths`` equal to the (symbolic) sequence length T so that LeRobot's
key-padding mask is all-False and only its causal mask remains.

To obtain both heads from a single transformer pass, a forward hook on the
``sparse`` head captures the fused features that LeRobot's forward feeds to
the head, and the ``dense`` head (LeRobot's own ``nn.Linear``) is applied to
the same features.  For the subtask model LeRobot's forward applies
``torch.sigmoid(head(fused)).squeeze(-1)``; the dense output repeats exactly
that expression.  Both outputs are checked against LeRobot's forward with
``scheme="sparse"`` / ``scheme="dense"`` in the tests.
"""

from __future__ import annotations

import torch
from torch import nn


def _symbolic_lengths(image_features: torch.Tensor) -> torch.Tensor:
    """(B,) int64 tensor equal to T, derived from the input's shape so that
    the traced graph keeps B and T symbolic."""
    return torch.ones_like(image_features[:, :, 0], dtype=torch.int64).sum(dim=1)


class _CaptureHeadInput:
    """Forward hook that records the input of a head module."""

    def __init__(self) -> None:
        self.value: torch.Tensor | None = None

    def __call__(self, module, args, output):  # noqa: ARG002
        self.value = args[0]


class StageGraph(nn.Module):
    """(image_features (B,T,Di), text_embedding (B,Dt), state (B,T,S)) ->
    sparse_logits (B,T,Cs) [, dense_logits (B,T,Cd)]."""

    def __init__(self, stage_model: nn.Module, dual_heads: bool) -> None:
        super().__init__()
        self.stage_model = stage_model
        self.dual_heads = dual_heads

    def forward(self, image_features, text_embedding, state):
        lengths = _symbolic_lengths(image_features)
        img_seq = image_features.unsqueeze(1)  # (B, 1, T, D): one camera
        cap = _CaptureHeadInput()
        handle = self.stage_model.heads["sparse"].register_forward_hook(cap)
        try:
            sparse_logits = self.stage_model(img_seq, text_embedding, state, lengths, scheme="sparse")
        finally:
            handle.remove()
        if not self.dual_heads:
            return sparse_logits
        dense_logits = self.stage_model.heads["dense"](cap.value)
        return sparse_logits, dense_logits


class SubtaskGraph(nn.Module):
    """(image_features, text_embedding, state, stage_onehot (B,T,C_max)) ->
    sparse_tau (B,T), dense_tau (B,T) (sigmoid applied, as LeRobot)."""

    def __init__(self, subtask_model: nn.Module, c_max: int) -> None:
        super().__init__()
        if subtask_model.d_model < c_max:
            raise ValueError(
                f"d_model ({subtask_model.d_model}) < number of stages ({c_max}): LeRobot's "
                "_stage_to_dmodel would truncate the one-hot; such a model cannot be exported"
            )
        self.subtask_model = subtask_model
        self.c_max = c_max

    def forward(self, image_features, text_embedding, state, stage_onehot):
        lengths = _symbolic_lengths(image_features)
        img_seq = image_features.unsqueeze(1)
        stage_prior = stage_onehot.unsqueeze(1)  # (B, 1, T, C_max); LeRobot pads to d_model
        cap = _CaptureHeadInput()
        handle = self.subtask_model.heads["sparse"].register_forward_hook(cap)
        try:
            sparse_tau = self.subtask_model(
                img_seq, text_embedding, state, lengths, stage_prior, scheme="sparse"
            )
        finally:
            handle.remove()
        dense_tau = torch.sigmoid(self.subtask_model.heads["dense"](cap.value)).squeeze(-1)
        return sparse_tau, dense_tau
