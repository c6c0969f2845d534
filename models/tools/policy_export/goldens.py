"""Goldens from LeRobot's own ACT stepping: `predict_action` -> `ACTPolicy.select_action`.

Each step feeds LeRobot exactly what a LeRobot robot loop feeds it (lerobot.utils.control_utils.
predict_action: prepare_observation_for_inference, the checkpoint's pre-processor,
select_action, the post-processor), after the bundle's resize rule. What LeRobot computes
inside is captured, never recomputed:
- the normalised inputs and the normalised chunk of every model call: a forward hook on
  `policy.model` (ACT.forward);
- whether the model ran this step: that hook fired;
- the temporal ensembler's state: every attribute LeRobot's ACTTemporalEnsembler.update assigns is
  recorded (a subclass that only observes `__setattr__`); the state just before it consumes the
  first entry is the full per-time-step average and its prediction counts, entry 0 being the
  action returned this step.
"""

from __future__ import annotations

import numpy as np
import torch

from . import act as act_mod
from .preprocess import CameraSpec, robot_observation

QUEUE = "queue"
ENSEMBLE = "temporal_ensemble"


def load_mode(checkpoint, mode: str, n_action_steps: int | None = None, coeff: float = 0.01):
    """LeRobot's ACTPolicy from the checkpoint with the stepping mode set in its config, the way a
    user sets `--policy.n_action_steps` / `--policy.temporal_ensemble_coeff`."""
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors

    from . import tiny_backbone

    tiny_backbone.register()
    cfg = PreTrainedConfig.from_pretrained(str(checkpoint), local_files_only=True)
    cfg.device = "cpu"
    if mode == QUEUE:
        cfg.temporal_ensemble_coeff = None
        if n_action_steps is not None:
            cfg.n_action_steps = n_action_steps
    elif mode == ENSEMBLE:
        cfg.temporal_ensemble_coeff = coeff
        cfg.n_action_steps = 1
    else:
        raise ValueError(f"mode {mode!r}")
    cfg.__post_init__()  # LeRobot's own checks of the combination
    policy = ACTPolicy.from_pretrained(str(checkpoint), config=cfg, local_files_only=True)
    policy.to("cpu").eval()
    pre, post = make_pre_post_processors(cfg, pretrained_path=str(checkpoint))
    return policy, pre, post


class _Trace:
    def __init__(self):
        self.items: list[tuple[str, torch.Tensor]] = []


def _observe_ensembler(ens) -> _Trace:
    trace = _Trace()
    base = type(ens)

    class Observed(base):  # only observes assignments; the arithmetic is LeRobot's
        def __setattr__(self, name, value):
            if name in ("ensembled_actions", "ensembled_actions_count") and value is not None:
                trace.items.append((name, value.detach().clone()))
            super().__setattr__(name, value)

    ens.__class__ = Observed
    return trace


def record_episode(policy, pre, post, cameras: list[CameraSpec], frames: list[dict[str, np.ndarray]],
                   states: np.ndarray, image_calls: int = 4) -> tuple[dict[str, np.ndarray], list[dict]]:
    """Steps LeRobot over one episode (policy.reset() first).

    Returns the per-step records (arrays for the golden files) and, per model call, the exact
    normalised tensors ACT.forward received, keyed by the graph's input names (not written out
    in full: the images of every call would be too large for the repository)."""
    from lerobot.utils.control_utils import predict_action

    cfg = policy.config
    ensemble = cfg.temporal_ensemble_coeff is not None
    policy.reset()
    calls: list[dict] = []

    def hook(_module, args, output):
        batch = args[0]
        rec = {"chunk": output[0].detach().cpu().numpy().astype(np.float32)[0]}
        if act_mod.OBS_STATE in batch:
            rec["state"] = batch[act_mod.OBS_STATE].detach().cpu().numpy().astype(np.float32)[0]
        if act_mod.OBS_ENV_STATE in batch:
            rec["env_state"] = batch[act_mod.OBS_ENV_STATE].detach().cpu().numpy().astype(np.float32)[0]
        rec["images"] = [im.detach().cpu().numpy().astype(np.float32)[0] for im in batch.get("observation.images", [])]
        calls.append(rec)

    handle = policy.model.register_forward_hook(hook)
    trace = _observe_ensembler(policy.temporal_ensembler) if ensemble else None
    actions, ran, call_step, queue_before = [], [], [], []
    ens_count, ens_actions = [], []
    try:
        for t, (fr, st) in enumerate(zip(frames, states, strict=True)):
            n_calls = len(calls)
            queue_before.append(-1 if ensemble else len(policy._action_queue))
            if trace is not None:
                trace.items.clear()
            obs = robot_observation(fr, st, cameras)
            a = predict_action(obs, policy, torch.device("cpu"), pre, post, use_amp=False)
            actions.append(a.detach().cpu().numpy().reshape(-1).astype(np.float32))
            fired = len(calls) - n_calls
            if fired not in (0, 1):
                raise RuntimeError(f"step {t}: the model ran {fired} times")
            ran.append(fired)
            if fired:
                call_step.append(t)
            if trace is not None:
                # update() ends with the consume: (ensembled_actions, count) = (x[:, 1:], c[1:]); the values
                # assigned just before it are the full averages whose entry 0 was returned this step
                acts = [v for n, v in trace.items if n == "ensembled_actions"]
                cnts = [v for n, v in trace.items if n == "ensembled_actions_count"]
                full_a, full_c = acts[-2], cnts[-2]
                if full_a.shape[1] != cfg.chunk_size or full_c.shape[0] != cfg.chunk_size:
                    raise RuntimeError(f"step {t}: unexpected ensembler state {tuple(full_a.shape)} {tuple(full_c.shape)}")
                ens_actions.append(full_a[0].numpy().astype(np.float32))
                ens_count.append(full_c.reshape(-1).numpy().astype(np.int32))
    finally:
        handle.remove()
    out = {
        "action": np.stack(actions),
        "model_ran": np.asarray(ran, np.uint8),
        "call_step": np.asarray(call_step, np.int32),
        "chunk": np.stack([c["chunk"] for c in calls]),
    }
    if not ensemble:
        out["queue_len_before"] = np.asarray(queue_before, np.int32)
    if calls and "state" in calls[0]:
        out["call_state_normalized"] = np.stack([c["state"] for c in calls])
    if calls and "env_state" in calls[0]:
        out["call_env_state_normalized"] = np.stack([c["env_state"] for c in calls])
    feeds = []
    for c in calls:
        f = {}
        if "state" in c:
            f[act_mod.OBS_STATE] = c["state"][None]
        if "env_state" in c:
            f[act_mod.OBS_ENV_STATE] = c["env_state"][None]
        for cam, im in zip(cameras, c["images"], strict=True):
            f[cam.key] = im[None]
        feeds.append(f)
    for i, cam in enumerate(cameras):
        out[f"call_image_normalized_{cam.camera}"] = np.stack([c["images"][i] for c in calls[:image_calls]])
    if ensemble:
        out["ensemble_count"] = np.stack(ens_count)
        out["ensemble_average"] = np.stack(ens_actions)
        out["ensemble_weights"] = policy.temporal_ensembler.ensemble_weights.detach().cpu().numpy().astype(np.float32)
        out["ensemble_weights_cumsum"] = (
            policy.temporal_ensembler.ensemble_weights_cumsum.detach().cpu().numpy().astype(np.float32))
        w = out["ensemble_weights"]
        cs = out["ensemble_weights_cumsum"]
        used = np.zeros((len(actions), cfg.chunk_size), np.float32)
        for t, c in enumerate(out["ensemble_count"]):
            n = int(c[0])
            used[t, :n] = w[:n] / cs[n - 1]  # LeRobot's tensors, indexed: the weights of entry 0's n predictions
        out["ensemble_weights_used"] = used
    return out, feeds


# --------------------------------------------------------------------------- golden folders


def _stepped(bundle_dir, precision, runner, mode_kw, cameras, frames, states):
    """Actions of the manifest-driven stepper (reference.BundlePolicy) over one episode."""
    from .reference import BundlePolicy

    bp = BundlePolicy(bundle_dir, precision=precision, runner=runner, **mode_kw)
    acts, ran, counts = [], [], []
    for fr, st in zip(frames, states, strict=True):
        a, r = bp.step(fr, st)
        acts.append(a)
        ran.append(r)
        if bp.coeff is not None:
            counts.append(bp.pre_consume_count)
    return np.stack(acts), np.asarray(ran, np.uint8), (np.stack(counts) if counts else None)


def write_goldens(*, bundle_dir, checkpoint, golden_dir, episodes: list[dict], modes: list[dict],
                  cameras: list[CameraSpec], inputs_writer, meta: dict, runners=("onnxruntime",),
                  int8: bool = True, log=print) -> dict:
    """Records LeRobot over `episodes` in each mode and writes golden_dir (golden.json + binaries).

    episodes: [{"name", "frames": [{camera: (H,W,3) u8}], "states": (T,S) f32, ...}];
    modes: [{"name": "queue", "n_action_steps": 10} | {"name": "temporal_ensemble", "coeff": 0.01}], each with
        an optional "image_calls" (how many model calls keep their normalised image tensors; default 4);
    inputs_writer(writer, episode) -> dict: writes the raw inputs, returns their description."""
    from .goldenio import GoldenWriter
    from .reference import BundlePolicy

    w = GoldenWriter(golden_dir)
    doc = dict(meta)
    doc["episodes"] = []
    for ep in episodes:
        d = {"name": ep["name"], "steps": len(ep["states"]), **inputs_writer(w, ep)}
        w.add(f"inputs/{ep['name']}/state", ep["states"], "f32")
        d["state"] = f"inputs/{ep['name']}/state"
        doc["episodes"].append(d)
    doc["modes"] = []
    summary = {}
    for mode in modes:
        name = mode["name"]
        policy, pre, post = load_mode(checkpoint, name, mode.get("n_action_steps"), mode.get("coeff", 0.01))
        cfg = policy.config
        mode_kw = ({"temporal_ensemble_coeff": cfg.temporal_ensemble_coeff} if name == ENSEMBLE
                   else {"n_action_steps": cfg.n_action_steps, "temporal_ensemble_coeff": None})
        mdoc = {"name": name, "chunk_size": cfg.chunk_size, "n_action_steps": cfg.n_action_steps,
                "temporal_ensemble_coeff": cfg.temporal_ensemble_coeff, "episodes": []}
        probe = BundlePolicy(bundle_dir, "fp32", "onnxruntime", **mode_kw)
        for ep in episodes:
            rec, feeds = record_episode(policy, pre, post, cameras, ep["frames"], ep["states"],
                                        image_calls=mode.get("image_calls", 4))
            prefix = f"{name}/{ep['name']}"
            call_diff = np.asarray([float(np.abs(probe.run(f)[0] - c).max()) for f, c in zip(feeds, rec["chunk"],
                                                                                             strict=True)], np.float32)
            rec["onnx_fp32_call_max_abs_diff"] = call_diff
            files = {}
            for k, v in rec.items():
                dt = {np.uint8: "u8", np.int32: "i32"}.get(v.dtype.type, "f32")
                w.add(f"{prefix}/{k}", v, dt)
                files[k] = f"{prefix}/{k}"
            e = {"episode": ep["name"], "steps": len(rec["action"]), "model_calls": int(rec["model_ran"].sum()),
                 "arrays": files, "onnx_fp32_call_max_abs_diff_normalized": float(call_diff.max())}
            # the manifest-driven stepper vs LeRobot, per precision and runner
            agree = {}
            for prec in ("fp32", "int8") if int8 else ("fp32",):
                for runner in runners:
                    acts, ran, counts = _stepped(bundle_dir, prec, runner, mode_kw, cameras, ep["frames"], ep["states"])
                    diff = np.abs(acts - rec["action"])
                    r = {"max_abs_diff_action_units": float(diff.max()),
                         "mean_abs_diff_action_units": float(diff.mean()),
                         "max_abs_diff_per_joint": [float(x) for x in diff.max(0)],
                         "model_ran_identical": bool(np.array_equal(ran, rec["model_ran"]))}
                    if counts is not None:
                        r["ensemble_counts_identical"] = bool(np.array_equal(counts, rec["ensemble_count"]))
                    agree[f"{prec}/{runner}"] = r
                    summary.setdefault(f"{name}/{prec}/{runner}", []).append(r["max_abs_diff_action_units"])
                    log(f"  {name} {ep['name']} {prec} {runner}: max |action - LeRobot| "
                        f"{r['max_abs_diff_action_units']:.3g} (mean {r['mean_abs_diff_action_units']:.3g}), "
                        f"refills identical {r['model_ran_identical']}")
            e["bundle_stepper_vs_lerobot"] = agree
            log(f"  {name} {ep['name']}: {e['model_calls']} model calls, ONNX fp32 vs LeRobot chunk max |diff| "
                f"{e['onnx_fp32_call_max_abs_diff_normalized']:.2e} (normalised)")
            mdoc["episodes"].append(e)
        doc["modes"].append(mdoc)
    doc["summary_max_abs_diff_action_units"] = {k: max(v) for k, v in summary.items()}
    if int8:
        measured = max(v for k, v in doc["summary_max_abs_diff_action_units"].items() if "/int8/" in k)
        doc.setdefault("tolerance", {})["int8_action_abs_measured"] = measured
        doc["tolerance"]["int8_action_abs"] = float(f"{2 * measured:.1e}")  # the stated bound: 2x the measured
    w.finish(doc)
    return doc
