#!/usr/bin/env python
"""Goldens of the trained ALOHA ACT: LeRobot's select_action over recorded closed-loop episodes.

    models/tools/.venv/bin/python models/tools/sim/make_act_golden.py --bundle models/aloha-act \
        --checkpoint models/tools/work/aloha_act/checkpoint --bags models/tools/work/aloha_act/eval_bags \
        --episodes seed_0,seed_1

The episodes are closed-loop runs of LeRobot's own policy in the joint sim (eval_act.py
--record-bags): the JPEG frames exactly as the robot published them and the joint states, as
rosbag2 MCAP. They are copied to BUNDLE/episodes/<name>/bag and replayed open loop: every step
the frame is decoded with PIL (libjpeg-turbo) and fed, with the joint positions as float32, to
LeRobot's predict_action, in the queue mode (the bundle's own chunk_size / n_action_steps) and
with temporal ensembling (coeff 0.01, n_action_steps 1). policy_export.goldens.write_goldens
writes BUNDLE/golden/ (format: models/tools/README.md, "Policy goldens").

`decoded_sha256[k]` per episode lets a runtime check that its JPEG decoder matched PIL bit for
bit; `pixel_pm1_sensitivity` measures how far the fp32 actions move when 1 LSB of noise is added
to 20 % of the decoded pixels (what a different JPEG decoder does), i.e. the tolerance a
runtime whose decoder differs needs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tomllib
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
REPO = HERE.parent.parent.parent

import numpy as np  # noqa: E402
import torch  # noqa: E402

import eval_act  # noqa: E402


def pm1_sensitivity(bundle: Path, frames, states, mode_kw: dict, seed: int = 0) -> dict:
    """fp32 stepper actions with 1-LSB noise on 20 % of the decoded pixels vs without."""
    from policy_export.reference import BundlePolicy

    rng = np.random.default_rng(seed)
    a = BundlePolicy(bundle, "fp32", **mode_kw)
    b = BundlePolicy(bundle, "fp32", **mode_kw)
    worst = []
    for fr, st in zip(frames, states, strict=True):
        f = fr["top"].astype(np.int16)
        noise = rng.choice([-1, 0, 0, 0, 0, 0, 0, 0, 0, 1], size=f.shape).astype(np.int16)
        g = np.clip(f + noise, 0, 255).astype(np.uint8)
        x, _ = a.step(fr, st)
        y, _ = b.step({"top": g}, st)
        worst.append(float(np.abs(x - y).max()))
    return {"max_abs_action_diff": max(worst), "mean_of_step_max": float(np.mean(worst)),
            "noise": "+-1 grey level on 20 % of the decoded pixels (10 % each way), numpy seed 0"}


def main(argv=None) -> int:
    from PIL import __version__ as pil_version
    from PIL import features

    from policy_export import goldens
    from policy_export.preprocess import CameraSpec

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", type=Path, default=Path("models/aloha-act"))
    ap.add_argument("--checkpoint", type=Path, default=Path("models/tools/work/aloha_act/checkpoint"))
    ap.add_argument("--bags", type=Path, default=Path("models/tools/work/aloha_act/eval_bags"))
    ap.add_argument("--episodes", default="seed_0,seed_1")
    ap.add_argument("--coeff", type=float, default=0.01)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--image-calls", type=int, default=8,
                    help="model calls per mode x episode whose normalised image tensors are kept (a runtime feeds "
                         "them to the model to check it without the JPEG decoder's differences)")
    ap.add_argument("--max-steps", type=int, default=None, help="use only the first N steps (quick checks)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    m = tomllib.loads((args.bundle / "bundle.toml").read_text())
    img = m["observation"]["images"][0]
    cams = [CameraSpec(key=img["key"], camera=img["camera"], height=img["height"], width=img["width"],
                       source_height=img["source_height"], source_width=img["source_width"])]
    eps = []
    for name in args.episodes.split(","):
        src = args.bags / name / "bag"
        dst = args.bundle / "episodes" / name / "bag"
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst)
        jpegs, joints = eval_act.read_bag(dst)
        if args.max_steps:
            jpegs, joints = jpegs[:args.max_steps], joints[:args.max_steps]
        frames = [{"top": eval_act.decode_jpeg(j)} for j in jpegs]
        eps.append({"name": name, "frames": frames, "states": joints.astype(np.float32), "jpegs": jpegs})
        print(f"{name}: {len(jpegs)} steps from {dst}", flush=True)

    decoder = f"PIL {pil_version} (libjpeg-turbo {features.version('libjpeg_turbo')}), Image.open(...).convert('RGB')"

    def inputs_writer(w, ep):
        rel = f"episodes/{ep['name']}/bag"
        return {"bag": rel, "camera_topic": eval_act.CAMERA_TOPIC, "joint_topic": eval_act.JOINT_TOPIC,
                "message_k_is_step_k": True, "decoder": decoder,
                "decoded_sha256": [hashlib.sha256(f["top"].tobytes()).hexdigest() for f in ep["frames"]],
                "state_from": "JointState.position (float64) in observation.state.names order, cast to float32"}

    queue_steps = m["policy"]["n_action_steps"] if "temporal_ensemble_coeff" not in m["policy"] else 25
    meta = {
        "format": "sarm policy golden v1 (models/tools/README.md, 'Policy goldens')",
        "bundle": str(args.bundle),
        "generator": "models/tools/sim/make_act_golden.py (LeRobot 0.4.4 predict_action -> ACTPolicy.select_action)",
        "checkpoint": "models/tools/work/aloha_act/checkpoint (git-ignored; rebuilt by models/tools/sim/reproduce_policy.sh)",
        "fps": m["policy"]["fps"],
        "episode_source": "closed-loop runs of LeRobot's policy in the joint sim (eval_act.py --record-bags), replayed open loop",
        "tolerance": {"fp32_action_abs": 1e-4},
    }
    doc = goldens.write_goldens(
        bundle_dir=args.bundle, checkpoint=args.checkpoint, golden_dir=args.bundle / "golden", episodes=eps,
        modes=[{"name": goldens.QUEUE, "n_action_steps": queue_steps, "image_calls": args.image_calls},
               {"name": goldens.ENSEMBLE, "coeff": args.coeff, "image_calls": args.image_calls}],
        cameras=cams, inputs_writer=inputs_writer, meta=meta, runners=("onnxruntime", "tract"), log=print)
    sens = {}
    for mode in doc["modes"]:
        kw = ({"temporal_ensemble_coeff": mode["temporal_ensemble_coeff"]} if mode["temporal_ensemble_coeff"]
              else {"n_action_steps": mode["n_action_steps"], "temporal_ensemble_coeff": None})
        sens[mode["name"]] = pm1_sensitivity(args.bundle, eps[0]["frames"], eps[0]["states"], kw)
        print(f"pixel +-1 sensitivity ({mode['name']}, {eps[0]['name']}): {sens[mode['name']]}", flush=True)
    path = args.bundle / "golden" / "golden.json"
    d = json.loads(path.read_text())
    d["pixel_pm1_sensitivity"] = {"episode": eps[0]["name"], **sens}
    path.write_text(json.dumps(d, indent=1) + "\n")
    print(json.dumps(d["summary_max_abs_diff_action_units"], indent=1))
    print(json.dumps(d["tolerance"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
