"""Write a sarm policy bundle (bundle.toml + ONNX graphs) from a LeRobot ACT checkpoint."""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import io
import json
import os
import shlex
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch

from sarm_export import ALOHA_JOINT_NAMES
from sarm_export.onnx_utils import FORBIDDEN_OPS, TractRunner, _clean, file_entry, op_counts, ort_session, tract_available
from sarm_export.tomlw import dumps, f32

from . import __version__
from . import act as act_mod
from . import manifest as schema
from .preprocess import CameraSpec, camera_name, robot_observation
from .quantize import quantize

OPSET = 17
FILES = {"fp32": "model.fp32.onnx", "int8": "model.int8.onnx"}
# Ops the ACT graph may contain (TorchScript export of ACT.forward + onnxscript constant folding).
ACT_OPS = {
    "Add", "Cast", "Concat", "Constant", "ConstantOfShape", "Conv", "Cos", "CumSum", "Div", "Expand", "Gather",
    "Gemm", "Identity", "LayerNormalization", "MatMul", "MaxPool", "Mul", "Pow", "Range", "Relu", "Reshape",
    "Shape", "Sin", "Slice", "Softmax", "Split", "Sqrt", "Squeeze", "Sub", "Transpose", "Unsqueeze", "Where",
}
QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}
INT8_OPS = ("Conv", "MatMul", "Gemm")


class ExportError(RuntimeError):
    """A problem with the export's inputs, reported without a traceback by the CLI."""


def log(msg: str) -> None:
    print(f"[export_policy] {msg}", flush=True)


# --------------------------------------------------------------------------- inputs


@dataclass
class Limits:
    lower: list[float]
    upper: list[float]
    max_step: list[float]
    source: str

    @staticmethod
    def from_json(path: Path, names: list[str]) -> Limits:
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ExportError(f"--limits {path}: {e}") from e
        for k in ("lower", "upper", "max_step"):
            if k not in d:
                raise ExportError(f"--limits {path}: no {k!r} (needs lower, upper, max_step, source)")
            if len(d[k]) != len(names):
                raise ExportError(f"--limits {path}: {k} has {len(d[k])} values, the action has {len(names)}")
        if "names" in d and list(d["names"]) != list(names):
            raise ExportError(f"--limits {path}: names {d['names']} differ from the action names {names}")
        return Limits([float(v) for v in d["lower"]], [float(v) for v in d["upper"]],
                      [float(v) for v in d["max_step"]], str(d.get("source", str(path))))


def load_frames(path: Path, cameras: list[CameraSpec], n_state: int) -> dict[str, np.ndarray]:
    """An .npz with `frames_<camera>` (N, H, W, 3) uint8 robot frames and `state` (N, S)."""
    try:
        z = np.load(path)
    except (OSError, ValueError) as e:
        raise ExportError(f"{path}: {e}") from e
    out = {}
    for cam in cameras:
        k = f"frames_{cam.camera}"
        if k not in z:
            raise ExportError(f"{path}: no array {k!r} (has {sorted(z.files)})")
        a = z[k]
        if a.ndim != 4 or a.shape[3] != 3 or a.dtype != np.uint8:
            raise ExportError(f"{path}: {k} must be (N, H, W, 3) uint8, found {a.shape} {a.dtype}")
        out[cam.camera] = a
    if "state" not in z:
        raise ExportError(f"{path}: no array 'state'")
    out["state"] = np.asarray(z["state"], np.float32)
    if out["state"].ndim != 2 or out["state"].shape[1] != n_state:
        raise ExportError(f"{path}: state must be (N, {n_state}), found {out['state'].shape}")
    n = {len(v) for v in out.values()}
    if len(n) != 1:
        raise ExportError(f"{path}: arrays have different lengths {n}")
    return out


def normalised_batches(policy, pre, cameras, data: dict[str, np.ndarray], limit: int | None, rng) -> list[dict]:
    """LeRobot's own preprocessing of robot frames: resize rule, prepare_observation_for_inference, pre."""
    from lerobot.policies.utils import prepare_observation_for_inference

    n = len(data["state"])
    idx = np.arange(n) if limit is None or limit >= n else np.sort(rng.choice(n, size=limit, replace=False))
    out = []
    for i in idx:
        obs = robot_observation({c.camera: data[c.camera][i] for c in cameras}, data["state"][i], cameras)
        batch = pre(prepare_observation_for_inference(obs, torch.device("cpu")))
        out.append(batch)
    return out


# --------------------------------------------------------------------------- graph


def export_fp32(policy, path: Path) -> dict:
    cfg = policy.config
    graph = act_mod.ACTGraph(policy).eval()
    names = act_mod.graph_input_names(policy)
    example = []
    if cfg.robot_state_feature is not None:
        example.append(torch.zeros(1, *cfg.robot_state_feature.shape))
    if cfg.env_state_feature is not None:
        example.append(torch.zeros(1, *cfg.env_state_feature.shape))
    for key in act_mod.image_keys(policy):
        example.append(torch.zeros(1, *cfg.image_features[key].shape))
    prev = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, tuple(example), str(path), input_names=names, output_names=[act_mod.ACTION],
                              opset_version=OPSET, dynamo=False, do_constant_folding=True)
    finally:
        torch.backends.mha.set_fastpath_enabled(prev)
    import logging

    import onnxscript.optimizer

    logging.getLogger("onnxscript").setLevel(logging.ERROR)
    model = onnxscript.optimizer.optimize(onnx.load(str(path)))  # folds the constant position embeddings
    model = _clean(model)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    counts = op_counts(model)
    bad = sorted(set(counts) & FORBIDDEN_OPS)
    unknown = sorted(set(counts) - ACT_OPS)
    if bad or unknown:
        raise RuntimeError(f"{path}: ops the runtime does not accept: forbidden={bad} unexpected={unknown}")
    return {"inputs": names, "ops": dict(sorted(counts.items()))}


def feeds_of(batch: dict, policy) -> dict[str, np.ndarray]:
    return act_mod.graph_inputs_from_batch({**batch, "observation.images": [batch[k] for k in act_mod.image_keys(policy)]},
                                           policy)


def lerobot_chunk(policy, batch) -> np.ndarray:
    """LeRobot's normalised chunk for one preprocessed batch (predict_action_chunk)."""
    return policy.predict_action_chunk(batch).detach().cpu().numpy().astype(np.float32)


def unnormalise(post, chunk: np.ndarray) -> np.ndarray:
    """LeRobot's post-processor on a (1, chunk, A) normalised chunk -> action units."""
    return post(torch.from_numpy(chunk)).detach().cpu().numpy()


def compare(runner, policy, post, batches, ref_chunks) -> dict:
    worst_n = worst_a = 0.0
    mean_a = []
    for b, ref in zip(batches, ref_chunks, strict=True):
        got = runner(feeds_of(b, policy))[act_mod.ACTION]
        dn = np.abs(got - ref)
        da = np.abs(unnormalise(post, got) - unnormalise(post, ref))
        worst_n, worst_a = max(worst_n, float(dn.max())), max(worst_a, float(da.max()))
        mean_a.append(float(da.mean()))
    return {"samples": len(batches), "max_abs_diff_normalized": worst_n, "max_abs_diff_action_units": worst_a,
            "mean_abs_diff_action_units": float(np.mean(mean_a)) if mean_a else 0.0}


class OrtRunner:
    def __init__(self, path, optimize=True):
        self.sess = ort_session(path, optimize=optimize)

    def __call__(self, feeds):
        names = [o.name for o in self.sess.get_outputs()]
        return dict(zip(names, self.sess.run(names, feeds), strict=True))


# --------------------------------------------------------------------------- manifest


def library_versions() -> dict:
    def v(name):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    out = {k: v(k) for k in ("lerobot", "torch", "torchvision", "onnx", "onnxruntime", "onnxscript", "numpy")}
    out["torch"] = torch.__version__
    if tract_available():
        out["tract"] = v("tract")
    return out


def utc_now() -> str:
    import datetime as dt

    if os.environ.get("SOURCE_DATE_EPOCH"):
        t = dt.datetime.fromtimestamp(int(os.environ["SOURCE_DATE_EPOCH"]), tz=dt.UTC)
    else:
        t = dt.datetime.now(tz=dt.UTC).replace(microsecond=0)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def norm_table(norm: dict) -> dict:
    t = {"mode": norm["mode"]}
    for k in schema.NORM_MODES[norm["mode"]]:
        t[k] = [f32(x) for x in np.asarray(norm[k]).reshape(-1)]
    t["eps"] = float(norm["eps"])
    return t


MANIFEST_HEADER = """sarm policy bundle manifest (kind = "policy", schema_version 1). Generated by
models/tools/export_policy.py; do not edit by hand. Schema: models/tools/README.md ("Policy bundles").
Floats are float32 values written as their shortest round-trip decimal."""

MANIFEST_COMMENTS = {
    "policy.fps": "control rate: one action per tick",
    "policy.stepper_space": "LeRobot queues / ensembles the normalised chunk; unnormalise each action after",
    "policy.latent": "ACT's VAE latent is zero at inference (inside the graph; the VAE encoder is not exported)",
    "graph.inputs": "normalised tensors, in this order",
    "observation.images.pixel_divisor": "LeRobot: pixel / 255 (float32 division), HWC -> CHW",
    "action.limits.max_step": "per control tick, action units",
}


def build_manifest(*, name, description, policy, cameras, state_names, action_names, action_units, norms,
                   limits: Limits, fps, out: Path, provenance: dict, int8_desc: dict | None) -> dict:
    cfg = policy.config
    pol = {"type": "act", "fps": float(fps), "chunk_size": int(cfg.chunk_size),
           "n_action_steps": int(cfg.n_action_steps)}
    if cfg.temporal_ensemble_coeff is not None:
        pol["temporal_ensemble_coeff"] = float(cfg.temporal_ensemble_coeff)
    pol["stepper_space"] = "normalized"
    pol["latent"] = "zero"
    inputs = act_mod.graph_input_names(policy)
    obs: dict = {}
    if cfg.robot_state_feature is not None:
        obs["state"] = {"key": act_mod.OBS_STATE, "tensor": act_mod.OBS_STATE, "names": list(state_names),
                        "shape": [1, int(cfg.robot_state_feature.shape[0])],
                        "normalization": norm_table(norms[act_mod.OBS_STATE])}
    if cfg.env_state_feature is not None:
        obs["environment_state"] = {"key": act_mod.OBS_ENV_STATE, "tensor": act_mod.OBS_ENV_STATE,
                                    "shape": [1, int(cfg.env_state_feature.shape[0])],
                                    "normalization": norm_table(norms[act_mod.OBS_ENV_STATE])}
    obs["images"] = [{
        "key": c.key, "camera": c.camera, "tensor": c.key, "channels": 3, "height": c.height, "width": c.width,
        "layout": "NCHW", "color": "RGB", "source_height": c.source_height, "source_width": c.source_width,
        "resize": c.resize, "filter": c.filter, "antialias": c.antialias, "pixel_divisor": 255.0,
        "normalization": norm_table(norms[c.key]),
    } for c in cameras]
    n_act = int(cfg.action_feature.shape[0])
    precision = {"fp32": {**file_entry(out / FILES["fp32"], out), "quantized_ops": []}}
    if int8_desc is not None:
        precision["int8"] = {
            **file_entry(out / FILES["int8"], out), "quantized_ops": list(int8_desc["op_types"]),
            "weights": "int8 symmetric (7-bit range), " + ("per output channel" if int8_desc["per_channel_weights"] else "per tensor"),
            "activations": "uint8 asymmetric per tensor (MinMax calibration), inputs of the quantized ops only",
        }
    return {
        "schema_version": schema.SCHEMA_VERSION,
        "kind": schema.KIND,
        "name": name,
        "description": description,
        "provenance": provenance,
        "policy": pol,
        "graph": {"batch": 1, "opset": OPSET, "inputs": inputs, "output": act_mod.ACTION,
                  "output_shape": [1, int(cfg.chunk_size), n_act]},
        "observation": obs,
        "action": {
            "key": act_mod.ACTION, "tensor": act_mod.ACTION, "names": list(action_names), "units": list(action_units),
            "normalization": norm_table(norms[act_mod.ACTION]),
            "limits": {"lower": [f32(v) for v in limits.lower], "upper": [f32(v) for v in limits.upper],
                       "max_step": [f32(v) for v in limits.max_step], "source": limits.source},
        },
        "precision": precision,
    }


# --------------------------------------------------------------------------- export


@dataclass
class ExportContext:
    """What a calling script adds (provenance of training, its own command)."""
    command: str | None = None
    source_checkpoint: str | None = None
    provenance_extra: dict = field(default_factory=dict)


def export_policy(args: argparse.Namespace, ctx: ExportContext | None = None) -> dict:
    ctx = ctx or ExportContext()
    rng = np.random.default_rng(args.seed)
    try:
        policy, pre, post = act_mod.load(args.checkpoint)
    except act_mod.CheckpointError as e:
        raise ExportError(str(e)) from e
    cfg = policy.config
    n_state = int(cfg.robot_state_feature.shape[0]) if cfg.robot_state_feature is not None else 0
    n_act = int(cfg.action_feature.shape[0])
    state_names = args.state_names.split(",") if args.state_names else []
    if n_state and len(state_names) != n_state:
        raise ExportError(f"--state-names: {len(state_names)} names, the checkpoint's state has {n_state}")
    action_names = args.action_names.split(",") if args.action_names else state_names
    if len(action_names) != n_act:
        raise ExportError(f"--action-names: {len(action_names)} names, the checkpoint's action has {n_act}")
    units = args.action_units.split(",") if args.action_units else ["unspecified"] * n_act
    if len(units) != n_act:
        raise ExportError(f"--action-units: {len(units)} values, the action has {n_act}")
    sources = {}
    for spec in args.camera_source or []:
        try:
            cam, wh = spec.split("=")
            w, h = (int(x) for x in wh.lower().split("x"))
        except ValueError as e:
            raise ExportError(f"--camera-source {spec!r}: expected CAMERA=WIDTHxHEIGHT") from e
        sources[cam] = (h, w)
    cameras = []
    for key in act_mod.image_keys(policy):
        cam = camera_name(key)
        c, h, w = cfg.image_features[key].shape
        sh, sw = sources.get(cam, (h, w))
        cameras.append(CameraSpec(key=key, camera=cam, height=int(h), width=int(w), source_height=sh,
                                  source_width=sw))
    unknown = set(sources) - {c.camera for c in cameras}
    if unknown:
        raise ExportError(f"--camera-source: no camera {sorted(unknown)} in the checkpoint ({[c.camera for c in cameras]})")
    limits = Limits.from_json(args.limits, action_names)
    try:
        norms = act_mod.processor_normalization(pre, post, policy)
    except act_mod.CheckpointError as e:
        raise ExportError(str(e)) from e
    calib = load_frames(args.calibration_data, cameras, n_state)
    held_out = load_frames(args.eval_data, cameras, n_state) if args.eval_data else None

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for f in FILES.values():
        (out / f).unlink(missing_ok=True)
    t0 = time.time()
    log(f"exporting LeRobot ACT.forward (eval, zero latent) -> {FILES['fp32']}")
    graph_info = export_fp32(policy, out / FILES["fp32"])
    log(f"  done in {time.time() - t0:.1f}s; ops {graph_info['ops']}")

    batches = normalised_batches(policy, pre, cameras, calib, args.calibration, rng)
    refs = [lerobot_chunk(policy, b) for b in batches]
    fp32 = compare(OrtRunner(out / FILES["fp32"]), policy, post, batches, refs)
    log(f"  fp32 onnxruntime vs LeRobot on {fp32['samples']} calibration frames: max |diff| "
        f"{fp32['max_abs_diff_normalized']:.2e} normalised, {fp32['max_abs_diff_action_units']:.2e} action units")
    if fp32["max_abs_diff_action_units"] > 1e-4:
        raise RuntimeError(f"fp32 export differs from LeRobot by {fp32['max_abs_diff_action_units']} > 1e-4")
    checks = {"fp32_onnxruntime_vs_lerobot_on_calibration_frames": fp32}
    int8_desc = None
    if not args.fp32_only:
        log(f"quantizing {'/'.join(INT8_OPS)} to INT8 (QDQ) on {len(batches)} calibration frames")
        int8_desc = quantize(out / FILES["fp32"], out / FILES["int8"], [feeds_of(b, policy) for b in batches],
                             op_types=INT8_OPS, per_channel=not args.per_tensor)
        log(f"  quantized: {int8_desc['quantized']}")
        agreement = {"calibration_frames": {
            "onnxruntime_exact_qdq": compare(OrtRunner(out / FILES["int8"], optimize=False), policy, post, batches, refs),
        }}
        if held_out is not None:
            hb = normalised_batches(policy, pre, cameras, held_out, args.calibration, rng)
            hr = [lerobot_chunk(policy, b) for b in hb]
            agreement["held_out_frames"] = {
                "onnxruntime_exact_qdq": compare(OrtRunner(out / FILES["int8"], optimize=False), policy, post, hb, hr)}
        for where, d in agreement.items():
            r = d["onnxruntime_exact_qdq"]
            log(f"  int8 vs LeRobot fp32 on {where}: max |diff| {r['max_abs_diff_action_units']:.4f} action units "
                f"(mean {r['mean_abs_diff_action_units']:.5f})")
        int8_desc["agreement_vs_lerobot_fp32_per_model_call"] = agreement
        int8_desc["agreement_note"] = (
            "Per model call: the whole (1, chunk, A) chunk, unnormalised with LeRobot's post-processor, int8 "
            "graph vs LeRobot's fp32 predict_action_chunk. onnxruntime_exact_qdq: onnxruntime with graph "
            "optimisations off (QDQ evaluated literally, what tract computes); per-step bounds of the stepped "
            "policy are in golden/golden.json")
    if tract_available() and not args.skip_tract_check:
        tr = {}
        for prec in ("fp32", "int8") if int8_desc else ("fp32",):
            runner = TractRunner(out / FILES[prec])
            ort = OrtRunner(out / FILES[prec], optimize=prec == "fp32")
            worst = 0.0
            for b in batches[:4]:
                feeds = feeds_of(b, policy)
                worst = max(worst, float(np.abs(runner(feeds)[act_mod.ACTION] - ort(feeds)[act_mod.ACTION]).max()))
            tr[f"{prec}_max_abs_diff_normalized"] = worst
        log(f"  tract vs onnxruntime: {tr}")
        checks["tract_vs_onnxruntime_4_frames"] = tr

    command = ctx.command or shlex.join(["models/tools/.venv/bin/python", "models/tools/export_policy.py"]
                                        + list(args.argv))
    prov = {
        "script": "models/tools/export_policy.py",
        "export_command": command,
        "seed": args.seed,
        "source_checkpoint": ctx.source_checkpoint or str(args.checkpoint),
        "created_utc": utc_now(),
        "exporter": f"policy_export {__version__} (models/tools/policy_export)",
        "onnx_export": ("torch.onnx.export(dynamo=False, opset 17, batch 1) of LeRobot's ACT.forward in eval mode "
                        "(zero VAE latent; the VAE encoder is training-only and not exported), then "
                        "onnxscript.optimizer constant folding"),
        "lerobot_config": {k: v for k, v in {
            "vision_backbone": cfg.vision_backbone, "pretrained_backbone_weights": str(cfg.pretrained_backbone_weights),
            "dim_model": cfg.dim_model, "n_heads": cfg.n_heads, "dim_feedforward": cfg.dim_feedforward,
            "n_encoder_layers": cfg.n_encoder_layers, "n_decoder_layers": cfg.n_decoder_layers,
            "use_vae": cfg.use_vae, "latent_dim": cfg.latent_dim, "pre_norm": cfg.pre_norm,
            "replace_final_stride_with_dilation": bool(cfg.replace_final_stride_with_dilation),
        }.items()},
        "calibration_data": str(args.calibration_data),
        "graph_ops": graph_info["ops"],
    }
    prov.update(ctx.provenance_extra)
    if args.provenance_json:
        try:
            extra = json.loads(Path(args.provenance_json).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ExportError(f"--provenance-json {args.provenance_json}: {e}") from e
        if not isinstance(extra, dict):
            raise ExportError(f"--provenance-json {args.provenance_json}: not a JSON object")
        prov.update(extra)
    prov["libraries"] = library_versions()
    prov["checks"] = checks
    if int8_desc is not None:
        prov["int8"] = int8_desc
    doc = build_manifest(name=args.name or out.name, description=args.description, policy=policy, cameras=cameras,
                         state_names=state_names, action_names=action_names, action_units=units, norms=norms,
                         limits=limits, fps=args.fps, out=out, provenance=prov, int8_desc=int8_desc)
    schema.validate(doc, out)
    (out / "bundle.toml").write_text(dumps(doc, header=MANIFEST_HEADER, comments=MANIFEST_COMMENTS))
    log(f"wrote {out / 'bundle.toml'}")
    return doc


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="export_policy.py",
        description="Export a LeRobot ACT checkpoint (ACTPolicy.save_pretrained folder with the policy_preprocessor/"
                    "policy_postprocessor files LeRobot saves beside it) to a sarm policy bundle: bundle.toml + "
                    "model.fp32.onnx + model.int8.onnx (normalised observations -> normalised action chunk).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, type=Path, help="ACTPolicy.save_pretrained folder")
    p.add_argument("--out", required=True, type=Path, help="bundle folder (created; its ONNX files are replaced)")
    p.add_argument("--fps", required=True, type=float, help="control rate in Hz (one action per tick)")
    p.add_argument("--limits", required=True, type=Path,
                   help="JSON {lower, upper, max_step: [per action joint], source: str}: joint position limits and "
                        "the largest change per control tick, in action units")
    p.add_argument("--calibration-data", required=True, type=Path,
                   help=".npz with frames_<camera> (N,H,W,3) uint8 robot camera frames and state (N,S): real frames "
                        "for INT8 calibration and the fp32 check")
    p.add_argument("--eval-data", type=Path, default=None, help="held-out .npz (same layout) to measure INT8 on")
    p.add_argument("--calibration", type=int, default=256, metavar="N", help="frames drawn from each .npz (all if fewer)")
    p.add_argument("--camera-source", action="append", metavar="CAMERA=WxH",
                   help="the robot camera's resolution (resize source); default: the model's input size")
    p.add_argument("--state-names", default=",".join(ALOHA_JOINT_NAMES), help="comma-separated state names")
    p.add_argument("--action-names", default=None, help="comma-separated action names (default: the state names)")
    p.add_argument("--action-units", default=None, help="comma-separated unit per action (e.g. rad)")
    p.add_argument("--name", default=None, help="bundle name (default: the --out folder name)")
    p.add_argument("--description", default="LeRobot ACT policy", help="one line for bundle.toml")
    p.add_argument("--seed", type=int, default=0, help="seed for drawing calibration frames")
    p.add_argument("--provenance-json", type=Path, default=None,
                   help="JSON object merged into [provenance] (e.g. {\"training\": {...}} from the training script)")
    p.add_argument("--per-tensor", action="store_true", help="per-tensor INT8 weights (default: per output channel)")
    p.add_argument("--fp32-only", action="store_true", help="skip the INT8 graph")
    p.add_argument("--skip-tract-check", action="store_true", help="do not run the graphs in tract's Python binding")
    return p


def main(argv: list[str] | None = None, ctx: ExportContext | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    torch.set_num_threads(1)
    try:
        export_policy(args, ctx)
    except (ExportError, schema.ManifestError) as e:
        print(f"export_policy: error: {e}", file=sys.stderr)
        return 2
    return 0
