#!/usr/bin/env python
"""Build the small test bundle models/sarm-test/ and its goldens, deterministically.

    models/tools/.venv/bin/python models/tools/make_test_bundle.py

1. a randomly initialised LeRobot SARM (dual heads, 3 sparse / 5 dense stages, hidden 64,
   2 layers, 4 heads, EfficientNet-lite0 1280-d image features, MiniLM 384-d text, 32-d state),
   saved with save_pretrained to models/tools/work/sarm-test-checkpoint/;
2. synthetic episodes (rendered cube-transfer frames -> EfficientNet-lite0 features; smooth
   ALOHA joint trajectories), written to models/tools/work/ for INT8 calibration;
3. export_bundle (the same code path as export_bundle.py) -> models/sarm-test/;
4. goldens in models/sarm-test/golden/: reward.json (LeRobot calculate_rewards),
   encoder.json + images/ (PyTorch EfficientNet-lite0), smoother.json.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent.parent
sys.path.insert(0, str(TOOLS))

import json  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from sarm_export import ALOHA_JOINT_NAMES  # noqa: E402
from sarm_export import bundle as bundle_mod  # noqa: E402
from sarm_export import goldens  # noqa: E402
from sarm_export.encoder_int8 import add_int8_encoder  # noqa: E402
from sarm_export.scene import joint_trajectory, render_transfer_frame, shapes_image  # noqa: E402

SEED = 0
TASK = "transfer the cube from the left arm to the right arm"
SPARSE = (["grasp cube with left arm", "hand over to right arm", "place cube"], [0.3, 0.45, 0.25])
DENSE = (
    ["reach cube", "grasp and lift", "move to handover", "handover", "retract and place"],
    [0.15, 0.2, 0.2, 0.25, 0.2],
)
# A purely random SARM predicts the same sparse stage for every frame (the head bias dominates:
# fused features barely change across frames). So the random model is briefly fitted with
# LeRobot's own training forward (SARMRewardModel.forward: stage CE + tau MSE, 75/25 teacher
# forcing) on the synthetic episodes' stage annotations: the stage argmax then follows the
# episode and top-1 margins look like a trained model's (small only near stage boundaries).
FIT_STEPS = 100
FIT_LR = 1e-3
FIT_BATCH = 16
FIRST_POS_STD = 0.5  # LeRobot inits first_pos to zeros; non-zero values exercise that path
EPISODE_LENGTHS = (48, 10)
EPISODE_T_END = (1.0, 0.4)
ANCHORED_FRAMES = {0: [0, 1, 4, 12, 20, 24, 33, 47], 1: [0, 5, 9]}
WORK = TOOLS / "work"
CHECKPOINT = WORK / "sarm-test-checkpoint"
OUT = REPO / "models" / "sarm-test"


def log(msg: str) -> None:
    print(f"[make_test_bundle] {msg}", flush=True)


def build_model():
    from lerobot.policies.sarm.configuration_sarm import SARMConfig
    from lerobot.policies.sarm.modeling_sarm import SARMRewardModel

    cfg = SARMConfig(
        annotation_mode="dual",
        num_sparse_stages=len(SPARSE[0]),
        sparse_subtask_names=SPARSE[0],
        sparse_temporal_proportions=SPARSE[1],
        num_dense_stages=len(DENSE[0]),
        dense_subtask_names=DENSE[0],
        dense_temporal_proportions=DENSE[1],
        hidden_dim=64,
        num_heads=4,
        num_layers=2,
        image_dim=1280,
        text_dim=384,
        max_state_dim=32,
        n_obs_steps=8,
        frame_gap=3,
        device="cpu",
    )
    torch.manual_seed(SEED)
    model = SARMRewardModel(cfg)
    g = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for sub in (model.stage_model, model.subtask_model):
            sub.first_pos.copy_(torch.randn(sub.first_pos.shape, generator=g) * FIRST_POS_STD)
    model.to("cpu")
    model.eval()
    return model


def stage_annotations(length: int, t_end: float, names: list[str], props: list[float]):
    """Subtask (names, start_frames, end_frames) of an episode that covers task time 0..t_end."""
    bounds = np.concatenate([[0.0], np.cumsum(props)])
    out_n, out_s, out_e = [], [], []
    for k, name in enumerate(names):
        a, b = bounds[k], bounds[k + 1]
        if a >= t_end:
            break
        start = int(round(a / t_end * (length - 1)))
        end = int(round(min(b, t_end) / t_end * (length - 1)))
        out_n.append(name)
        out_s.append(start)
        out_e.append(end)
    return out_n, out_s, out_e


def fit_briefly(model, episodes: list[dict], text_emb: np.ndarray, stats: dict) -> list[float]:
    """A few hundred steps of LeRobot's own training forward on the synthetic episodes."""
    import random

    from lerobot.policies.sarm.sarm_utils import find_stage_and_tau

    from sarm_export import state as state_mod
    from sarm_export import windows as win

    cfg = model.config
    random.seed(SEED)
    rng = np.random.default_rng(SEED)
    g = torch.Generator().manual_seed(SEED + 2)
    samples = []
    for ei, e in enumerate(episodes):
        length = len(e["frame_features"])
        t_end = EPISODE_T_END[ei]
        st = state_mod.model_state(e["joint_positions"], stats["mean"], stats["std"], cfg.max_state_dim)
        ann = {h: stage_annotations(length, t_end, *spec) for h, spec in (("sparse", SPARSE), ("dense", DENSE))}
        for f in range(length):
            for layout in ("centered", "causal"):
                idx = win.frame_indices(f, length, layout, cfg.n_obs_steps, cfg.frame_gap)
                tg = {}
                for h, spec in (("sparse", SPARSE), ("dense", DENSE)):
                    tg[h] = [find_stage_and_tau(i, length, *ann[h], spec[0], dict(zip(*spec, strict=True)),
                                                return_combined=True) for i in idx]
                samples.append((e["frame_features"][idx], st[idx], tg["sparse"], tg["dense"]))
    T, n = cfg.num_frames, cfg.n_obs_steps + 1
    opt = torch.optim.AdamW(model.parameters(), lr=FIT_LR, weight_decay=1e-3)
    model.train()
    losses = []
    for step in range(FIT_STEPS):
        pick = rng.integers(0, len(samples), FIT_BATCH)
        video = torch.zeros(FIT_BATCH, T, cfg.image_dim)
        state = torch.zeros(FIT_BATCH, T, cfg.max_state_dim)
        sp = torch.zeros(FIT_BATCH, T)
        de = torch.zeros(FIT_BATCH, T)
        for b, i in enumerate(pick):
            f, s, ts, td = samples[i]
            video[b, :n] = torch.from_numpy(f) + 0.02 * torch.randn(f.shape, generator=g)
            state[b, :n] = torch.from_numpy(s)
            sp[b, :n] = torch.tensor(ts)
            de[b, :n] = torch.tensor(td)
        batch = {
            "video_features": video,
            "text_features": torch.from_numpy(np.repeat(text_emb[None], FIT_BATCH, 0)),
            "state_features": state,
            "lengths": torch.full((FIT_BATCH,), n, dtype=torch.int32),
            "sparse_targets": sp,
            "dense_targets": de,
        }
        loss, _ = model.forward(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def episode_frames(ei: int, length: int):
    # episode 1 is a short, partial attempt (task time only reaches 0.4)
    t_end = EPISODE_T_END[ei]
    return [render_transfer_frame(t_end * i / max(length - 1, 1), variant=ei) for i in range(length)]


def make_episodes(enc) -> list[dict]:
    episodes = []
    for ei, length in enumerate(EPISODE_LENGTHS):
        t_end = EPISODE_T_END[ei]
        frames = episode_frames(ei, length)
        x = torch.stack([enc.preprocess.to_tensor(np.asarray(f)) for f in frames])
        with torch.no_grad():
            feats = enc.module(x).numpy().astype(np.float32)
        joints = joint_trajectory(length, seed=100 + ei, duration_scale=t_end)
        episodes.append({"frame_features": feats, "joint_positions": joints})
    return episodes


def state_stats() -> dict:
    # plausible per-joint statistics (radians), as a dataset's stats.json would carry
    q = joint_trajectory(2000, seed=7)
    return {"mean": [float(np.float32(v)) for v in q.mean(0)],
            "std": [float(np.float32(v)) for v in q.std(0)]}


def rel(p: Path) -> str:
    return p.resolve().relative_to(REPO).as_posix()


def main() -> int:
    t0 = time.time()
    torch.set_num_threads(1)
    WORK.mkdir(parents=True, exist_ok=True)

    from sarm_export.encoders import load_efficientnet_lite0
    from sarm_export.text import embed_tasks

    enc = load_efficientnet_lite0()
    log("rendering synthetic episodes and encoding them with EfficientNet-lite0 (PyTorch)")
    episodes = make_episodes(enc)
    stats = state_stats()

    log(f"building the test SARM model (seed {SEED}), fitting it briefly ({FIT_STEPS} steps)")
    model = build_model()
    fit_losses = fit_briefly(model, episodes, embed_tasks([TASK])[0], stats)
    log(f"  loss {fit_losses[0]:.3f} -> {np.mean(fit_losses[-10:]):.3f}; saving -> {rel(CHECKPOINT)}")
    model.save_pretrained(str(CHECKPOINT))
    calib_path = WORK / "golden_episodes.json"
    goldens.write_json({"episodes": [{k: v.tolist() for k, v in e.items()} for e in episodes]}, calib_path)
    stats_path = WORK / "state_stats.json"
    stats_path.write_text(json.dumps(stats, indent=1) + "\n")

    argv = [
        "--checkpoint", rel(CHECKPOINT),
        "--out", rel(OUT),
        "--image-encoder", "efficientnet-lite0",
        "--task", TASK,
        "--joint-names", ",".join(ALOHA_JOINT_NAMES),
        "--state-stats", rel(stats_path),
        "--fps", "30",
        "--window", "centered",
        "--calibration", "256",
        "--calibration-data", rel(calib_path),
        "--seed", str(SEED),
        "--name", "sarm-test",
        "--description", f"Tiny LeRobot SARM (dual heads; random init + {FIT_STEPS}-step fit on synthetic episodes) "
                         "for runtime tests; not a useful reward model",
    ]
    export_cmd = "models/tools/.venv/bin/python models/tools/export_bundle.py " + " ".join(
        a if (a.startswith("--") or " " not in a) else f'"{a}"' for a in argv
    )
    ctx = bundle_mod.ExportContext(
        script="models/tools/make_test_bundle.py",
        command="models/tools/.venv/bin/python models/tools/make_test_bundle.py",
        source_checkpoint=(
            f"{rel(CHECKPOINT)} (SARMRewardModel, random init with torch.manual_seed({SEED}) then a "
            f"{FIT_STEPS}-step fit on synthetic episodes; git-ignored, rebuilt by make_test_bundle.py)"
        ),
        provenance_extra={
            "export_command": export_cmd,
            "test_model": {
                "init": f"SARMRewardModel(SARMConfig(...)) after torch.manual_seed({SEED})",
                "first_pos": f"normal(0, {FIRST_POS_STD}) (torch.Generator seed {SEED + 1}) instead of zeros",
                "fit": (f"{FIT_STEPS} AdamW steps (lr {FIT_LR}, batch {FIT_BATCH}) of LeRobot's own "
                        "SARMRewardModel.forward (stage CE + tau MSE) on the synthetic golden episodes' stage "
                        "annotations, so the stage argmax follows the episode; a purely random init predicts "
                        "one sparse stage everywhere"),
                "fit_final_loss": float(np.mean(fit_losses[-10:])),
                "stage_head_weight_scale": 1.0,
                "dropout": "SARMConfig default (active during the fit, inactive in eval)",
            },
        },
    )
    cwd = os.getcwd()
    os.chdir(REPO)  # argv paths are repository-relative
    try:
        args = bundle_mod.build_parser().parse_args(argv)
        res = bundle_mod.export_bundle(args, ctx)
    finally:
        os.chdir(cwd)

    log("int8 image encoder, calibrated on the rendered episode frames")
    calib = [np.asarray(f) for ei, n in enumerate(EPISODE_LENGTHS) for f in episode_frames(ei, n)]
    add_int8_encoder(OUT, calib, "the rendered episode frames (make_test_bundle.py episode_frames)", 64, SEED)

    gdir = OUT / "golden"
    log("goldens: reward.json (LeRobot calculate_rewards)")
    reward = goldens.reward_golden(model, list(res["heads"]), res["text_embedding"][0], TASK, episodes,
                                   res["mean"], res["std"], ANCHORED_FRAMES)
    goldens.write_json(reward, gdir / "reward.json")

    log("goldens: encoder.json + images/ (PyTorch EfficientNet-lite0)")
    images = [
        ("shapes_224_a.png", shapes_image(224, 224, 1)),
        ("scene_224_b.png", render_transfer_frame(0.5, size=224, variant=2)),
        ("shapes_640x480_c.png", shapes_image(640, 480, 3)),
        ("shapes_640x480_d.png", shapes_image(640, 480, 4)),
        ("scene_640x480_e.png", render_transfer_frame(0.3, size=480, variant=1).resize((640, 480))),
        ("shapes_480x640_f.png", shapes_image(480, 640, 6)),
    ]
    enc_golden = goldens.encoder_golden(enc, images, gdir)
    goldens.write_json(enc_golden, gdir / "encoder.json")

    log("goldens: smoother.json")
    goldens.write_json(goldens.smoother_golden(seed=SEED), gdir / "smoother.json")

    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    log(f"done in {time.time() - t0:.0f}s; {rel(OUT)} holds {total / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
