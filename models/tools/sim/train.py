#!/usr/bin/env python
"""Train LeRobot's SARMRewardModel on the ALOHA dataset and export it as models/aloha-transfer-cube.

Inputs: the LeRobot dataset (make_dataset.py: annotations in meta/episodes, temporal proportions,
stats.json) and each training episode's frozen EfficientNet-lite0 features at the model's 10 Hz
(features.py). The model (both heads: 3 sparse, 6 dense stages) is LeRobot's own
SARMRewardModel built with the dataset's metadata (its _load_temporal_proportions reads the
priors), trained with its own forward (stage cross-entropy + tau MSE, 75/25 teacher forcing).
Batches are assembled the way LeRobot's SARMEncodingProcessorStep does it (processor_sarm.py),
except that the image features are precomputed: centred windows (compute_absolute_indices), rewind
augmentation (apply_rewind_augmentation, p = 0.8, up to 4 steps, zeroed tail), language
perturbation (p = 0.2: a random unrelated instruction, targets zero), targets from
find_stage_and_tau on the episode's annotation, state normalised with the dataset's MEAN_STD
stats and zero-padded to 32. Differences from LeRobot, all deliberate:
  * the model runs at 10 Hz (frame_gap 5 = 0.5 s) on the frames `sarm label` picks from the
    50 Hz camera; targets use the 50 Hz annotation at each picked frame;
  * rewind slots hold the features of the frames whose targets they get (LeRobot 0.4.4 loads the
    images at delta -gap*(i+1) but computes targets at earliest_obs - gap*(i+1));
  * rewind and perturbation are drawn per sample, not once per batch;
  * perturbed instructions come from a fixed list (LeRobot draws words with faker).

    models/tools/.venv/bin/python models/tools/sim/train.py [--steps N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import common  # noqa: E402

SEED = 0
CONFIG = dict(hidden_dim=64, num_heads=4, num_layers=2, n_obs_steps=8, frame_gap=5, max_rewind_steps=4,
              dropout=0.1)
PERTURBED = [
    "open the drawer", "wipe the table", "stack the red blocks", "pour water into the cup",
    "fold the towel", "press the green button", "put the pen in the box", "close the laptop lid",
    "turn the valve", "pick up the sponge", "insert the peg into the socket", "hang the mug on the rack",
]


def log(msg):
    print(f"[train] {msg}", flush=True)


def rel(p: Path) -> str:
    return p.resolve().relative_to(common.REPO).as_posix()


def load_training_set(ds_root: Path):
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

    meta = LeRobotDatasetMetadata("sarm/aloha_sim_transfer_cube_scripted", root=ds_root)
    src = json.loads((ds_root / "meta" / "source_episodes.json").read_text())
    df = meta.episodes.to_pandas()
    eps = []
    for s in src:
        i = s["dataset_episode_index"]
        row = df[df["episode_index"] == i].iloc[0]
        f = np.load(ds_root.parent / s["sim_episode"] / "feat10.npz")
        ann = {h: (list(row[f"{h}_subtask_names"]), [int(v) for v in row[f"{h}_subtask_start_frames"]],
                   [int(v) for v in row[f"{h}_subtask_end_frames"]]) for h in ("sparse", "dense")}
        eps.append({"index": i, "features": f["features"], "joints": f["joints"], "camera_index": f["camera_index"],
                    "length": int(row["length"]), "ann": ann, "success": s["success"], "source": s["sim_episode"]})
    return meta, eps


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", type=Path, default=common.WORK / "lerobot_dataset")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--checkpoint", type=Path, default=common.WORK / "checkpoint")
    ap.add_argument("--no-export", action="store_true")
    args = ap.parse_args(argv)
    t_start = time.time()
    torch.set_num_threads(1)
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)

    from lerobot.policies.sarm.configuration_sarm import SARMConfig
    from lerobot.policies.sarm.modeling_sarm import SARMRewardModel
    from lerobot.policies.sarm.sarm_utils import (apply_rewind_augmentation, compute_absolute_indices,
                                                  find_stage_and_tau)

    from sarm_export import state as state_mod
    from sarm_export.text import embed_tasks

    meta, eps = load_training_set(args.dataset)
    stats = meta.stats["observation.state"]
    mean, std = np.asarray(stats["mean"], np.float32), np.asarray(stats["std"], np.float32)
    cfg = SARMConfig(annotation_mode="dual", image_dim=1280, text_dim=384, max_state_dim=32, device="cpu",
                     **CONFIG)
    model = SARMRewardModel(cfg, dataset_meta=meta)  # reads meta/temporal_proportions_{sparse,dense}.json
    model.to("cpu")
    names = {"sparse": cfg.sparse_subtask_names, "dense": cfg.dense_subtask_names}
    props = {"sparse": dict(zip(cfg.sparse_subtask_names, cfg.sparse_temporal_proportions, strict=True)),
             "dense": dict(zip(cfg.dense_subtask_names, cfg.dense_temporal_proportions, strict=True))}
    log(f"{len(eps)} episodes ({sum(e['success'] for e in eps)} successful), "
        f"{sum(len(e['features']) for e in eps)} frames at {common.MODEL_FPS} Hz; priors {props}")

    texts = embed_tasks([common.TASK] + PERTURBED).astype(np.float32)
    for e in eps:
        e["state"] = state_mod.model_state(e["joints"], mean, std, cfg.max_state_dim)
        k = len(e["features"])
        e["targets"] = {h: np.array([find_stage_and_tau(int(e["camera_index"][i]), e["length"], *e["ann"][h], names[h],
                                                        props[h], return_combined=True) for i in range(k)],
                                    np.float32) for h in ("sparse", "dense")}
    frames = [(ei, i) for ei, e in enumerate(eps) for i in range(len(e["features"]))]
    n_obs, T = cfg.n_obs_steps + 1, cfg.num_frames
    rng = np.random.default_rng(SEED)

    def batch(size):
        video = torch.zeros(size, T, cfg.image_dim)
        state = torch.zeros(size, T, cfg.max_state_dim)
        tg = {h: torch.zeros(size, T) for h in ("sparse", "dense")}
        text = torch.zeros(size, cfg.text_dim)
        lengths = torch.zeros(size, dtype=torch.int32)
        for b, j in enumerate(rng.integers(0, len(frames), size)):
            ei, f = frames[j]
            e = eps[ei]
            k = len(e["features"])
            idx = compute_absolute_indices(f, 0, k, cfg.n_obs_steps, cfg.frame_gap)[0].tolist()
            rw = []
            if random.random() < cfg.rewind_probability:
                _, rw = apply_rewind_augmentation(f, 0, cfg.n_obs_steps, cfg.max_rewind_steps, cfg.frame_gap)
            all_idx = idx + list(rw)
            video[b, :len(all_idx)] = torch.from_numpy(e["features"][all_idx])
            state[b, :len(all_idx)] = torch.from_numpy(e["state"][all_idx])
            lengths[b] = len(all_idx)
            if random.random() < cfg.language_perturbation_probability:
                text[b] = torch.from_numpy(texts[1 + random.randrange(len(PERTURBED))])
            else:
                text[b] = torch.from_numpy(texts[0])
                for h in ("sparse", "dense"):
                    tg[h][b, :len(all_idx)] = torch.from_numpy(e["targets"][h][all_idx])
        return {"video_features": video, "text_features": text, "state_features": state, "lengths": lengths,
                "sparse_targets": tg["sparse"], "dense_targets": tg["dense"]}

    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.05)
    model.train()
    losses = []
    t0 = time.time()
    for step in range(args.steps):
        loss, out = model.forward(batch(args.batch))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if step % 100 == 0 or step == args.steps - 1:
            log(f"step {step}: loss {np.mean(losses[-100:]):.4f} ({(time.time() - t0) / (step + 1):.3f}s/step)")
    model.eval()
    args.checkpoint.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(args.checkpoint))
    train_s = time.time() - t_start
    stats_path = args.checkpoint / "state_stats.json"
    stats_path.write_text(json.dumps({"mean": mean.tolist(), "std": std.tolist()}, indent=1) + "\n")
    # INT8 calibration data: every 4th training episode at the model rate
    calib = {"episodes": [{"frame_features": e["features"].tolist(), "joint_positions": e["joints"].tolist()}
                          for e in eps[::4]]}
    calib_path = args.checkpoint / "calibration_episodes.json"
    calib_path.write_text(json.dumps(calib))
    summary = {"train_seconds": round(train_s), "steps": args.steps, "batch": args.batch, "lr": args.lr,
               "final_loss": float(np.mean(losses[-100:])), "first_loss": float(np.mean(losses[:20])),
               "episodes": len(eps), "successful_episodes": sum(e["success"] for e in eps),
               "frames": len(frames)}
    (args.checkpoint / "train_summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    log(f"trained in {train_s:.0f}s: {summary}")
    if not args.no_export:
        export(args, summary, calib_path, stats_path)
    return 0


def export(args, summary, calib_path, stats_path):
    import lerobot

    from sarm_export import ALOHA_JOINT_NAMES
    from sarm_export import bundle as bundle_mod

    out = common.BUNDLE
    argv = [
        "--checkpoint", rel(args.checkpoint),
        "--out", rel(out),
        "--image-encoder", "efficientnet-lite0",
        "--task", common.TASK,
        "--joint-names", ",".join(ALOHA_JOINT_NAMES),
        "--state-stats", rel(stats_path),
        "--fps", str(common.MODEL_FPS),
        "--window", "centered",
        "--calibration", "512",
        "--calibration-data", rel(calib_path),
        "--seed", str(SEED),
        "--name", "aloha-transfer-cube",
        "--description", "LeRobot SARM (dual heads) trained on scripted MuJoCo ALOHA cube-transfer demonstrations "
                         "(frozen EfficientNet-lite0 features, 10 Hz, centred window)",
    ]
    export_cmd = "models/tools/.venv/bin/python models/tools/export_bundle.py " + " ".join(
        a if (a.startswith("--") or " " not in a) else f'"{a}"' for a in argv)
    ctx = bundle_mod.ExportContext(
        script="models/tools/sim/train.py",
        command="bash models/tools/sim/reproduce.sh",
        source_checkpoint=f"{rel(args.checkpoint)} (git-ignored; rebuilt by models/tools/sim/reproduce.sh)",
        provenance_extra={
            "export_command": export_cmd,
            "training": {
                "data": "models/tools/sim/generate.py (MuJoCo ALOHA, gym-aloha end-effector transfer cube), "
                        "train split seeds 100000+k; LeRobot dataset by models/tools/sim/make_dataset.py",
                "trainer": "models/tools/sim/train.py: LeRobot SARMRewardModel.forward, AdamW + OneCycle, "
                           "rewind p=0.8, language perturbation p=0.2, seed 0, 1 torch thread",
                "config": CONFIG,
                "lerobot": lerobot.__version__,
                "torch": torch.__version__,
                **summary,
            },
        },
    )
    cwd = os.getcwd()
    os.chdir(common.REPO)
    try:
        bundle_mod.export_bundle(bundle_mod.build_parser().parse_args(argv), ctx)
    finally:
        os.chdir(cwd)
    log(f"exported -> {rel(out)}")


if __name__ == "__main__":
    sys.exit(main())
