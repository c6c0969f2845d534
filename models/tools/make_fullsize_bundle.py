#!/usr/bin/env python
"""Build a full-size LeRobot SARM bundle for benchmarks: LeRobot's default transformer size
(SARMConfig: hidden_dim 768, 12 heads, 8 layers), dual heads (3 sparse, 5 dense stages), random
weights, EfficientNet-lite0 features (image_dim 1280) and MiniLM text (384), exported by the same
code as export_bundle.py in fp32 and int8 (transformers and image encoder). Not a reward model:
it exists so anyone can reproduce the full-size figures of `sarm bench`.

    models/tools/.venv/bin/python models/tools/make_fullsize_bundle.py   # -> models/tools/work/sarm-fullsize
    cargo run --release -- bench models/tools/work/sarm-fullsize --backend tract,ort
    # for labelling speed against LeRobot's loop on a 50 fps dataset (an integer rate ratio):
    models/tools/.venv/bin/python models/tools/make_fullsize_bundle.py --fps 10 --out models/tools/work/sarm-fullsize-10hz

Output is git-ignored (models/tools/work/). About 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent.parent
sys.path.insert(0, str(TOOLS))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from sarm_export import bundle as bundle_mod  # noqa: E402
from sarm_export.encoder_int8 import add_int8_encoder  # noqa: E402
from sarm_export.scene import render_transfer_frame  # noqa: E402

SEED = 0
WORK = TOOLS / "work"
CHECKPOINT = WORK / "sarm-fullsize-checkpoint"
OUT = WORK / "sarm-fullsize"
TASK = "transfer the cube from the left arm to the right arm"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fps", type=float, default=30.0,
                    help="the bundle's clock ([window] fps); 10 for a 50 fps dataset against LeRobot's loop")
    ap.add_argument("--out", type=Path, default=OUT, help="bundle folder to write")
    opts = ap.parse_args(argv)
    out = opts.out
    from lerobot.policies.sarm.configuration_sarm import SARMConfig
    from lerobot.policies.sarm.modeling_sarm import SARMRewardModel

    torch.set_num_threads(1)
    defaults = SARMConfig()
    cfg = SARMConfig(
        annotation_mode="dual",
        num_sparse_stages=3, sparse_subtask_names=["pick", "hand over", "retreat"],
        sparse_temporal_proportions=[0.4, 0.4, 0.2],
        num_dense_stages=5, dense_subtask_names=["reach", "grasp", "lift", "hand over", "retreat"],
        dense_temporal_proportions=[0.2] * 5,
        # LeRobot's default transformer size
        hidden_dim=defaults.hidden_dim, num_heads=defaults.num_heads, num_layers=defaults.num_layers,
        image_dim=1280, text_dim=384, max_state_dim=defaults.max_state_dim,
        n_obs_steps=defaults.n_obs_steps, frame_gap=3, device="cpu",
    )
    print(f"[fullsize] SARM hidden {cfg.hidden_dim}, {cfg.num_heads} heads, {cfg.num_layers} layers; "
          f"random weights (torch.manual_seed({SEED}))", flush=True)
    torch.manual_seed(SEED)
    model = SARMRewardModel(cfg).to("cpu").eval()
    WORK.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(CHECKPOINT))
    argv = [
        "--checkpoint", str(CHECKPOINT), "--out", str(out), "--task", TASK, "--fps", f"{opts.fps:g}",
        "--calibration", "32", "--seed", str(SEED), "--skip-tract-check", "--name", "sarm-fullsize",
        "--description", "LeRobot SARM at its default size with random weights, for benchmarks only",
    ]
    ctx = bundle_mod.ExportContext(script="models/tools/make_fullsize_bundle.py",
                                   command="models/tools/.venv/bin/python models/tools/make_fullsize_bundle.py")
    args = bundle_mod.build_parser().parse_args(argv)
    bundle_mod.export_bundle(args, ctx)
    frames = [np.asarray(render_transfer_frame(i / 47, variant=v)) for v in (0, 1) for i in range(0, 48, 3)]
    add_int8_encoder(out, frames, "rendered synthetic frames (scene.render_transfer_frame)", 64, SEED)
    print(f"[fullsize] wrote {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
