"""A policy stepper driven by bundle.toml alone: what the runtime has to do, in numpy.

A separate implementation from the bundle schema (models/tools/README.md) and the algorithm
LeRobot documents (ACTPolicy.select_action, ACTTemporalEnsembler); it never calls LeRobot, so
the goldens (recorded from LeRobot's own `select_action`) check both the manifest's completeness
and this description of the numerics. Per control tick:

1. each camera frame -> the bundle's resize rule -> pixel / 255 -> the image normalisation ->
   NCHW; the joint state -> the state normalisation (float32 throughout);
2. when the stepper needs a chunk (queue empty, or every tick with temporal ensembling): run the
   graph -> normalised chunk (1, chunk_size, A);
3. action queue: keep the first n_action_steps of the chunk and pop one per tick;
   temporal ensembling (ACT's Algorithm 2 as LeRobot implements it online): weights
   w_i = exp(-coeff * i), i = 0 for the oldest prediction of a time step; every tick the new
   chunk is averaged into the running per-time-step averages, the first entry is returned;
4. the returned (normalised) action -> the action unnormalisation -> action units.
"""

from __future__ import annotations

import tomllib
from collections import deque
from pathlib import Path

import numpy as np

from .preprocess import resize_frame


def normalise(x: np.ndarray, norm: dict, channel_axis: int | None = None) -> np.ndarray:
    """LeRobot's normalisation as the manifest states it (float32)."""
    x = np.asarray(x, np.float32)
    mode, eps = norm["mode"], np.float32(norm["eps"])

    def stat(k):
        v = np.asarray(norm[k], np.float32)
        if channel_axis is not None:
            shape = [1] * x.ndim
            shape[channel_axis] = -1
            v = v.reshape(shape)
        return v

    if mode == "IDENTITY":
        return x
    if mode == "MEAN_STD":
        return (x - stat("mean")) / (stat("std") + eps)
    lo, hi = {"MIN_MAX": ("min", "max"), "QUANTILES": ("q01", "q99"), "QUANTILE10": ("q10", "q90")}[mode]
    denom = stat(hi) - stat(lo)
    denom = np.where(denom == 0, eps, denom).astype(np.float32)
    return np.float32(2) * (x - stat(lo)) / denom - np.float32(1)


def unnormalise(x: np.ndarray, norm: dict) -> np.ndarray:
    x = np.asarray(x, np.float32)
    mode, eps = norm["mode"], np.float32(norm["eps"])
    if mode == "IDENTITY":
        return x
    if mode == "MEAN_STD":
        return x * np.asarray(norm["std"], np.float32) + np.asarray(norm["mean"], np.float32)
    lo, hi = {"MIN_MAX": ("min", "max"), "QUANTILES": ("q01", "q99"), "QUANTILE10": ("q10", "q90")}[mode]
    lo = np.asarray(norm[lo], np.float32)
    denom = np.asarray(norm[hi], np.float32) - lo
    denom = np.where(denom == 0, eps, denom).astype(np.float32)
    return (x + np.float32(1)) / np.float32(2) * denom + lo


class BundlePolicy:
    """Steps a policy bundle: `step(frames, state)` -> (action in action units, model ran)."""

    def __init__(self, bundle_dir: Path, precision: str = "fp32", runner: str = "onnxruntime",
                 n_action_steps: int | None = None, temporal_ensemble_coeff: float | None | str = "bundle"):
        self.dir = Path(bundle_dir)
        self.m = tomllib.loads((self.dir / "bundle.toml").read_text())
        pol = self.m["policy"]
        self.chunk_size = pol["chunk_size"]
        self.coeff = pol.get("temporal_ensemble_coeff") if temporal_ensemble_coeff == "bundle" else temporal_ensemble_coeff
        self.n_action_steps = n_action_steps or (1 if self.coeff is not None else pol["n_action_steps"])
        path = self.dir / self.m["precision"][precision]["path"]
        if runner == "onnxruntime":
            from sarm_export.onnx_utils import ort_session

            sess = ort_session(path, optimize=precision == "fp32")  # int8: exact QDQ (what tract computes)
            out = self.m["graph"]["output"]
            self.run = lambda feeds: sess.run([out], feeds)[0]
        elif runner == "tract":
            from sarm_export.onnx_utils import TractRunner

            tr = TractRunner(path)
            self.run = lambda feeds: tr(feeds)[self.m["graph"]["output"]]
        else:
            raise ValueError(f"runner {runner!r}")
        if self.coeff is not None:
            self.weights = np.exp(-self.coeff * np.arange(self.chunk_size)).astype(np.float32)
            self.cumsum = np.cumsum(self.weights).astype(np.float32)
        self.reset()

    def reset(self):
        self.queue: deque = deque()
        self.ens: np.ndarray | None = None  # (n, A) running averages, normalised
        self.count: np.ndarray | None = None  # (n,) how many predictions each average holds
        self.last_feeds: dict | None = None
        self.last_chunk: np.ndarray | None = None

    def feeds(self, frames: dict[str, np.ndarray], state: np.ndarray | None) -> dict[str, np.ndarray]:
        feeds = {}
        obs = self.m["observation"]
        if "state" in obs:
            feeds[obs["state"]["tensor"]] = normalise(np.asarray(state, np.float32)[None], obs["state"]["normalization"])
        for img in obs["images"]:
            x = resize_frame(frames[img["camera"]], img["height"], img["width"])  # HWC float32 0..255
            x = np.transpose(x, (2, 0, 1))[None] / np.float32(img["pixel_divisor"])
            feeds[img["tensor"]] = normalise(x, img["normalization"], channel_axis=1)
        return {k: np.ascontiguousarray(v, np.float32) for k, v in feeds.items()}

    def step(self, frames: dict[str, np.ndarray], state: np.ndarray | None) -> tuple[np.ndarray, bool]:
        ran = False
        if self.coeff is not None or not self.queue:
            self.last_feeds = self.feeds(frames, state)
            chunk = np.asarray(self.run(self.last_feeds), np.float32)[0]  # (chunk_size, A)
            self.last_chunk = chunk
            ran = True
            if self.coeff is None:
                self.queue.extend(chunk[: self.n_action_steps])
        if self.coeff is None:
            a = self.queue.popleft()
        else:
            a = self._ensemble(self.last_chunk)
        return unnormalise(a, self.m["action"]["normalization"]), ran

    def _ensemble(self, chunk: np.ndarray) -> np.ndarray:
        if self.ens is None:
            self.ens = chunk.copy()
            self.count = np.ones(self.chunk_size, np.int64)
        else:
            c = self.count
            self.ens = (self.ens * self.cumsum[c - 1][:, None] + chunk[:-1] * self.weights[c][:, None]) / self.cumsum[c][:, None]
            self.count = np.minimum(c + 1, self.chunk_size)
            self.ens = np.concatenate([self.ens, chunk[-1:]], axis=0)
            self.count = np.concatenate([self.count, [1]])
        self.pre_consume_count = self.count.copy()
        self.pre_consume = self.ens.copy()
        a, self.ens, self.count = self.ens[0], self.ens[1:], self.count[1:]
        return a
