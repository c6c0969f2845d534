#!/usr/bin/env python
"""Frozen EfficientNet-lite0 features of every episode at the model's frame rate.

For each OUT/<split>/ep_*/bag: the camera frames `sarm label` would pick at MODEL_FPS (10 Hz of
the 50 Hz camera), JPEG-decoded with PIL and encoded by the PyTorch EfficientNet-lite0 with the
exporter's torchvision preprocessing (shorter side to 224 bilinear antialiased, centre crop,
(x-127)/128) -> ep_*/feat10.npz: features (K,1280) f32, joints (K,14), camera_index (K,).

    models/tools/.venv/bin/python models/tools/sim/features.py [--split train --split eval]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import common  # noqa: E402


def encode_episode(enc, ep: Path, batch: int = 16) -> dict:
    jpegs, joints, _stamps = common.read_bag(ep / "bag")
    idx = common.model_frames(len(jpegs))
    feats = []
    for s in range(0, len(idx), batch):
        x = torch.stack([enc.preprocess.to_tensor(common.decode_jpeg(jpegs[i])) for i in idx[s:s + batch]])
        with torch.no_grad():
            feats.append(enc.module(x).numpy())
    return {"features": np.concatenate(feats).astype(np.float32), "joints": joints[idx].astype(np.float32),
            "camera_index": np.asarray(idx, np.int32)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, default=common.WORK)
    ap.add_argument("--split", action="append", default=None)
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--reverse", action="store_true", help="last episode first (to run two at once)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from sarm_export.encoders import load_efficientnet_lite0

    enc = load_efficientnet_lite0()
    for split in args.split or ["eval", "train"]:
        for ep in common.episodes(split, args.root)[:: -1 if args.reverse else 1]:
            out = ep / "feat10.npz"
            if out.exists() and not args.force:
                continue
            if not (ep / "meta.json").exists():
                continue  # still being generated
            t0 = time.time()
            np.savez(out, **encode_episode(enc, ep))
            print(f"{split}/{ep.name}: {time.time() - t0:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
