#!/usr/bin/env python
"""Train LeRobot's ACT on the joint-space ALOHA demonstrations (models/tools/sim/joint_demos.py).

    nice -n 10 models/tools/.venv/bin/python models/tools/sim/train_act.py \
        --demos models/tools/work/aloha_act/demos --out models/tools/work/aloha_act/checkpoint

LeRobot's own model, loss and processors: `ACTPolicy(ACTConfig(...))`, `policy.forward(batch)`
(L1 on the chunk + kl_weight x KL of the VAE latent), `make_act_pre_post_processors(config,
dataset_stats)` normalising the batch, AdamW on `policy.get_optim_params()` with gradient norm
clipping at 10 (LeRobot's training defaults). Batches are built as LeRobot's dataset builds
them for ACT: the observation at step t, the actions t .. t+chunk_size-1, rows past the episode's
end repeat its last action and are flagged in `action_is_pad`. Stats are LeRobot's
`get_feature_stats` (images per channel in [0, 1], a sample of every 4th frame).

Sized for this shared 2-core CPU (README): 60x80 input (the 640x480 camera stretched 8x down),
ResNet-18 from scratch (torchvision weights cannot be downloaded here), dim_model 256,
2 encoder layers, 1 decoder layer, feed-forward 1024, VAE encoder 2 layers. One torch thread.
Resumable: the state (model, optimiser, step, RNGs) is saved every --save-every steps to
OUT/train_state.pt; a rerun continues bit-for-bit. The final checkpoint (save_pretrained with the
pre/post-processors), `training.json` and `limits.json` go to OUT.
"""

from __future__ import annotations

import argparse
import json
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

IMAGE_KEY = "observation.images.top"


def load_demos(folder: Path):
    eps = []
    for p in sorted(folder.glob("ep_*.npz")):
        z = np.load(p)
        eps.append({"frames": z["frames"], "state": z["state"], "action": z["action"], "seed": int(z["seed"]),
                    "calib": z["calib_frames"], "calib_steps": z["calib_steps"]})
    if not eps:
        raise SystemExit(f"train_act: no ep_*.npz in {folder} (run joint_demos.py first)")
    return eps


def dataset_stats(eps) -> dict:
    from lerobot.datasets.compute_stats import get_feature_stats

    imgs = np.concatenate([e["frames"][::4] for e in eps]).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    img = get_feature_stats(imgs, axis=(0, 2, 3), keepdims=True)
    st = get_feature_stats(np.concatenate([e["state"] for e in eps]), axis=0, keepdims=False)
    ac = get_feature_stats(np.concatenate([e["action"] for e in eps]), axis=0, keepdims=False)
    t = lambda d: {k: torch.as_tensor(v, dtype=torch.float32) for k, v in d.items()}  # noqa: E731
    return {IMAGE_KEY: {k: v[0] for k, v in t(img).items()}, "observation.state": t(st), "action": t(ac)}


def make_batch(eps, rng, batch: int, chunk: int) -> dict:
    imgs, states, acts, pads = [], [], [], []
    for _ in range(batch):
        e = eps[rng.integers(len(eps))]
        n = len(e["action"])
        t = int(rng.integers(n))
        idx = np.arange(t, t + chunk)
        pads.append(idx >= n)
        acts.append(e["action"][np.minimum(idx, n - 1)])
        states.append(e["state"][t])
        imgs.append(e["frames"][t])
    img = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).to(torch.float32) / 255.0
    return {IMAGE_KEY: img, "observation.state": torch.from_numpy(np.stack(states)),
            "action": torch.from_numpy(np.stack(acts)), "action_is_pad": torch.from_numpy(np.stack(pads))}


def limits(eps) -> dict:
    import joint_sim as js

    a = np.concatenate([e["action"] for e in eps])
    d = np.concatenate([np.abs(np.diff(e["action"], axis=0)) for e in eps]).max(0)
    return {"names": js.JOINT_NAMES, "lower": js.COMMAND_LOWER.tolist(), "upper": js.COMMAND_UPPER.tolist(),
            "max_step": (2 * d + 0.01).tolist(),
            "demonstration_range": {"min": a.min(0).tolist(), "max": a.max(0).tolist()},
            "source": ("lower/upper: the joint sim's actuator ctrlrange (gym-aloha bimanual_viperx_transfer_cube.xml; "
                       "grippers as normalised opening); max_step: 2x the largest per-tick change of that joint's "
                       "command in the training demonstrations + 0.01")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--demos", type=Path, default=Path("models/tools/work/aloha_act/demos"))
    ap.add_argument("--out", type=Path, default=Path("models/tools/work/aloha_act/checkpoint"))
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--chunk", type=int, default=50)
    ap.add_argument("--n-action-steps", type=int, default=50)
    ap.add_argument("--dim-model", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--save-every", type=int, default=250)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.act.processor_act import make_act_pre_post_processors

    eps = load_demos(args.demos)
    h, w = eps[0]["frames"].shape[1:3]
    print(f"train_act: {len(eps)} episodes, {sum(len(e['action']) for e in eps)} frames of {h}x{w}", flush=True)
    torch.manual_seed(args.seed)
    cfg = ACTConfig(
        input_features={IMAGE_KEY: PolicyFeature(FeatureType.VISUAL, (3, h, w)),
                        "observation.state": PolicyFeature(FeatureType.STATE, (14,))},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (14,))},
        chunk_size=args.chunk, n_action_steps=args.n_action_steps, vision_backbone="resnet18",
        pretrained_backbone_weights=None, dim_model=args.dim_model, n_heads=8, dim_feedforward=4 * args.dim_model,
        n_encoder_layers=2, n_decoder_layers=1, use_vae=True, latent_dim=32, n_vae_encoder_layers=2,
        dropout=0.1, kl_weight=10.0, optimizer_lr=args.lr, optimizer_lr_backbone=args.lr,
        optimizer_weight_decay=1e-4, device="cpu")
    stats = dataset_stats(eps)
    policy = ACTPolicy(cfg)
    pre, post = make_act_pre_post_processors(cfg, dataset_stats=stats)
    opt = torch.optim.AdamW(policy.get_optim_params(), lr=args.lr, weight_decay=cfg.optimizer_weight_decay)
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    state_path = args.out / "train_state.pt"
    step, losses, seconds, cpu = 0, [], 0.0, 0.0
    if state_path.exists():
        st = torch.load(state_path, weights_only=False)
        policy.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step, losses, seconds, cpu = st["step"], st["losses"], st["seconds"], st["cpu_seconds"]
        rng.bit_generator.state = st["rng"]
        torch.set_rng_state(st["torch_rng"])
        print(f"train_act: resumed at step {step}", flush=True)
    policy.train()
    t_last, c_last = time.time(), time.process_time()
    while step < args.steps:
        batch = pre(make_batch(eps, rng, args.batch, args.chunk))
        loss, info = policy.forward(batch)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 10.0)
        opt.step()
        step += 1
        losses.append([step, float(loss.detach()), info.get("l1_loss", 0.0), info.get("kld_loss", 0.0)])
        if step % 50 == 0:
            now, c_now = time.time(), time.process_time()
            seconds, cpu = seconds + now - t_last, cpu + c_now - c_last
            t_last, c_last = now, c_now
            recent = np.mean([x[1] for x in losses[-50:]])
            print(f"step {step}/{args.steps} loss {recent:.4f} l1 {np.mean([x[2] for x in losses[-50:]]):.4f} "
                  f"({seconds / 60:.1f} min wall, {cpu / 60:.1f} min CPU)", flush=True)
        if step % args.save_every == 0 or step == args.steps:
            now, c_now = time.time(), time.process_time()
            seconds, cpu = seconds + now - t_last, cpu + c_now - c_last
            t_last, c_last = now, c_now
            torch.save({"model": policy.state_dict(), "opt": opt.state_dict(), "step": step, "losses": losses,
                        "seconds": seconds, "cpu_seconds": cpu, "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state()},
                       state_path)
    policy.eval()
    policy.save_pretrained(args.out)
    pre.save_pretrained(args.out)
    post.save_pretrained(args.out)
    (args.out / "limits.json").write_text(json.dumps(limits(eps), indent=1) + "\n")
    calib = np.concatenate([e["calib"] for e in eps])
    calib_state = np.concatenate([e["state"][e["calib_steps"]] for e in eps])
    np.savez(args.out / "calibration.npz", frames_top=calib, state=calib_state)
    info = {"episodes": len(eps), "frames": int(sum(len(e["action"]) for e in eps)), "image": [3, int(h), int(w)],
            "demo_seeds": [e["seed"] for e in eps], "steps": step, "batch": args.batch, "lr": args.lr,
            "seed": args.seed, "threads": args.threads, "train_seconds": round(seconds),
            "train_cpu_seconds": round(cpu),
            "first_loss": float(np.mean([x[1] for x in losses[:50]])),
            "final_loss": float(np.mean([x[1] for x in losses[-200:]])),
            "final_l1": float(np.mean([x[2] for x in losses[-200:]])),
            "parameters": int(sum(p.numel() for p in policy.parameters())),
            "exported_parameters": int(sum(p.numel() for n, p in policy.named_parameters() if not n.startswith("model.vae"))),
            "loss_curve_every_50": [[s, round(float(np.mean([x[1] for x in losses[max(0, s - 50):s]])), 5)]
                                    for s in range(50, step + 1, 50)]}
    (args.out / "training.json").write_text(json.dumps(info, indent=1) + "\n")
    demos = json.loads((args.demos / "summary.json").read_text()) if (args.demos / "summary.json").exists() else {}
    prov = {"training": {
        "script": "models/tools/sim/train_act.py", "command": "bash models/tools/sim/reproduce_policy.sh",
        "trainer": "LeRobot ACTPolicy.forward (L1 + 10 x KL), make_act_pre_post_processors, AdamW, grad clip 10",
        **{k: v for k, v in info.items() if k not in ("loss_curve_every_50", "demo_seeds")},
        "demo_seeds": f"{min(info['demo_seeds'])}..{max(info['demo_seeds'])} (kept {len(info['demo_seeds'])})",
        "data": ("models/tools/sim/joint_demos.py: ACT's scripted transfer in the end-effector sim, joint trajectory "
                 "corrected by iterative learning control in the joint sim, only episodes the joint sim finishes"),
        "demonstrations": {k: v for k, v in demos.items() if k != "seconds_this_run"},
    }}
    (args.out / "provenance.json").write_text(json.dumps(prov, indent=1) + "\n")
    print(f"train_act: done, {step} steps in {seconds / 60:.1f} min, final loss {info['final_loss']:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
