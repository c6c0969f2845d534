"""The policy bundle.toml schema (kind = "policy", schema_version 1) and its validator.

`KEYS` lists every key the exporter writes outside `[provenance]` (free-form), with its TOML
type and whether it is required; models/tools/README.md documents the same keys in a table and
a test checks the two agree. `validate` checks a parsed manifest (and optionally the files).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

SCHEMA_VERSION = 1
KIND = "policy"
NORM_MODES = {
    "MEAN_STD": ("mean", "std"),
    "MIN_MAX": ("min", "max"),
    "QUANTILES": ("q01", "q99"),
    "QUANTILE10": ("q10", "q90"),
    "IDENTITY": (),
}

# (dotted key, type, required). "[]" marks an array of tables; `*` a normalisation table.
KEYS: list[tuple[str, str, bool]] = [
    ("schema_version", "int", True),
    ("kind", "str", True),
    ("name", "str", True),
    ("description", "str", True),
    ("provenance", "table", True),
    ("policy.type", "str", True),
    ("policy.fps", "float", True),
    ("policy.chunk_size", "int", True),
    ("policy.n_action_steps", "int", True),
    ("policy.temporal_ensemble_coeff", "float", False),
    ("policy.stepper_space", "str", True),
    ("policy.latent", "str", True),
    ("graph.batch", "int", True),
    ("graph.opset", "int", True),
    ("graph.inputs", "array<str>", True),
    ("graph.output", "str", True),
    ("graph.output_shape", "array<int>", True),
    ("observation.state.key", "str", False),
    ("observation.state.tensor", "str", False),
    ("observation.state.names", "array<str>", False),
    ("observation.state.shape", "array<int>", False),
    ("observation.state.normalization", "norm", False),
    ("observation.environment_state.key", "str", False),
    ("observation.environment_state.tensor", "str", False),
    ("observation.environment_state.shape", "array<int>", False),
    ("observation.environment_state.normalization", "norm", False),
    ("observation.images[].key", "str", True),
    ("observation.images[].camera", "str", True),
    ("observation.images[].tensor", "str", True),
    ("observation.images[].channels", "int", True),
    ("observation.images[].height", "int", True),
    ("observation.images[].width", "int", True),
    ("observation.images[].layout", "str", True),
    ("observation.images[].color", "str", True),
    ("observation.images[].source_height", "int", True),
    ("observation.images[].source_width", "int", True),
    ("observation.images[].resize", "str", True),
    ("observation.images[].filter", "str", True),
    ("observation.images[].antialias", "bool", True),
    ("observation.images[].pixel_divisor", "float", True),
    ("observation.images[].normalization", "norm", True),
    ("action.key", "str", True),
    ("action.tensor", "str", True),
    ("action.names", "array<str>", True),
    ("action.units", "array<str>", True),
    ("action.normalization", "norm", True),
    ("action.limits.lower", "array<float>", True),
    ("action.limits.upper", "array<float>", True),
    ("action.limits.max_step", "array<float>", True),
    ("action.limits.source", "str", True),
    ("precision.fp32.path", "str", True),
    ("precision.fp32.sha256", "str", True),
    ("precision.fp32.bytes", "int", True),
    ("precision.fp32.quantized_ops", "array<str>", True),
    ("precision.int8.path", "str", False),
    ("precision.int8.sha256", "str", False),
    ("precision.int8.bytes", "int", False),
    ("precision.int8.quantized_ops", "array<str>", False),
    ("precision.int8.weights", "str", False),
    ("precision.int8.activations", "str", False),
]
NORM_KEYS = [
    ("mode", "str", True),
    ("mean", "array<float>", False),
    ("std", "array<float>", False),
    ("min", "array<float>", False),
    ("max", "array<float>", False),
    ("q01", "array<float>", False),
    ("q99", "array<float>", False),
    ("q10", "array<float>", False),
    ("q90", "array<float>", False),
    ("eps", "float", True),
]


class ManifestError(ValueError):
    """A policy manifest that breaks the schema; the message names the key."""


def _get(doc, dotted: str):
    cur = doc
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _check_type(key: str, v, t: str) -> None:
    ok = {
        "int": lambda x: isinstance(x, int) and not isinstance(x, bool),
        "float": lambda x: isinstance(x, int | float) and not isinstance(x, bool),
        "str": lambda x: isinstance(x, str),
        "bool": lambda x: isinstance(x, bool),
        "table": lambda x: isinstance(x, dict),
        "norm": lambda x: isinstance(x, dict),
        "array<str>": lambda x: isinstance(x, list) and all(isinstance(e, str) for e in x),
        "array<int>": lambda x: isinstance(x, list) and all(isinstance(e, int) and not isinstance(e, bool) for e in x),
        "array<float>": lambda x: isinstance(x, list) and all(isinstance(e, int | float) and not isinstance(e, bool)
                                                              for e in x),
    }[t]
    if not ok(v):
        raise ManifestError(f"{key}: expected {t}, found {type(v).__name__} {v!r:.80}")


def _check_norm(key: str, norm: dict, width: int) -> None:
    known = {k for k, _, _ in NORM_KEYS}
    extra = set(norm) - known
    if extra:
        raise ManifestError(f"{key}: unknown keys {sorted(extra)}")
    for k, t, req in NORM_KEYS:
        if k in norm:
            _check_type(f"{key}.{k}", norm[k], t)
        elif req:
            raise ManifestError(f"{key}.{k}: missing")
    mode = norm["mode"]
    if mode not in NORM_MODES:
        raise ManifestError(f"{key}.mode: {mode!r} is not one of {sorted(NORM_MODES)}")
    for stat in NORM_MODES[mode]:
        if stat not in norm:
            raise ManifestError(f"{key}.{stat}: missing (mode {mode} needs {NORM_MODES[mode]})")
        if len(norm[stat]) != width:
            raise ManifestError(f"{key}.{stat}: expected {width} values, found {len(norm[stat])}")
        if not all(math.isfinite(x) for x in norm[stat]):
            raise ManifestError(f"{key}.{stat}: non-finite value")
    stray = {s for m, stats in NORM_MODES.items() for s in stats if m != mode} - set(NORM_MODES[mode])
    if stray & set(norm):
        raise ManifestError(f"{key}: stats {sorted(stray & set(norm))} do not belong to mode {mode}")


def validate(doc: dict, bundle_dir: Path | None = None) -> None:
    """Raises ManifestError naming the first key that breaks the schema."""
    if doc.get("kind") != KIND:
        raise ManifestError(f"kind: expected {KIND!r}, found {doc.get('kind')!r}")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise ManifestError(f"schema_version: expected {SCHEMA_VERSION}, found {doc.get('schema_version')!r}")
    images = _get(doc, "observation.images")
    if not isinstance(images, list):
        images = []
    for key, t, req in KEYS:
        if "[]" in key:
            head, tail = key.split("[].")
            for i, img in enumerate(images):
                v = _get(img, tail)
                if v is None:
                    if req:
                        raise ManifestError(f"{head}[{i}].{tail}: missing")
                    continue
                _check_type(f"{head}[{i}].{tail}", v, t)
            continue
        v = _get(doc, key)
        if v is None:
            if req:
                raise ManifestError(f"{key}: missing")
            continue
        _check_type(key, v, t)
    pol = doc["policy"]
    if pol["type"] != "act":
        raise ManifestError(f"policy.type: only 'act' is defined, found {pol['type']!r}")
    if not 1 <= pol["n_action_steps"] <= pol["chunk_size"]:
        raise ManifestError(f"policy.n_action_steps: must be in 1..chunk_size ({pol['chunk_size']}), "
                            f"found {pol['n_action_steps']}")
    if "temporal_ensemble_coeff" in pol and pol["n_action_steps"] != 1:
        raise ManifestError("policy.n_action_steps: must be 1 with temporal_ensemble_coeff (LeRobot's rule)")
    if pol["fps"] <= 0:
        raise ManifestError(f"policy.fps: must be > 0, found {pol['fps']}")
    if pol["latent"] != "zero" or pol["stepper_space"] != "normalized":
        raise ManifestError("policy.latent must be 'zero' and policy.stepper_space 'normalized'")
    act = doc["action"]
    n = len(act["names"])
    for k in ("units",):
        if len(act[k]) != n:
            raise ManifestError(f"action.{k}: expected {n} values (one per action name), found {len(act[k])}")
    _check_norm("action.normalization", act["normalization"], n)
    lim = act["limits"]
    for k in ("lower", "upper", "max_step"):
        if len(lim[k]) != n:
            raise ManifestError(f"action.limits.{k}: expected {n} values, found {len(lim[k])}")
    for i in range(n):
        if not lim["lower"][i] < lim["upper"][i]:
            raise ManifestError(f"action.limits: lower[{i}] {lim['lower'][i]} is not below upper[{i}] {lim['upper'][i]}")
        if not lim["max_step"][i] > 0:
            raise ManifestError(f"action.limits.max_step[{i}]: must be > 0, found {lim['max_step'][i]}")
    g = doc["graph"]
    if g["output_shape"] != [g["batch"], pol["chunk_size"], n]:
        raise ManifestError(f"graph.output_shape: expected [{g['batch']}, {pol['chunk_size']}, {n}], "
                            f"found {g['output_shape']}")
    tensors = []
    st = _get(doc, "observation.state")
    if st is not None:
        if len(st["names"]) != st["shape"][-1]:
            raise ManifestError(f"observation.state.names: {len(st['names'])} names for shape {st['shape']}")
        _check_norm("observation.state.normalization", st["normalization"], st["shape"][-1])
        tensors.append(st["tensor"])
    env = _get(doc, "observation.environment_state")
    if env is not None:
        _check_norm("observation.environment_state.normalization", env["normalization"], env["shape"][-1])
        tensors.append(env["tensor"])
    for i, img in enumerate(images):
        if img["channels"] != 3 or img["layout"] != "NCHW" or img["color"] != "RGB":
            raise ManifestError(f"observation.images[{i}]: only 3-channel RGB NCHW is defined")
        if img["resize"] != "stretch" or img["filter"] != "bilinear":
            raise ManifestError(f"observation.images[{i}].resize/filter: only stretch/bilinear are defined")
        _check_norm(f"observation.images[{i}].normalization", img["normalization"], 3)
        tensors.append(img["tensor"])
    if not images and env is None:
        raise ManifestError("observation: ACT needs at least one image or an environment state")
    if tensors != g["inputs"]:
        raise ManifestError(f"graph.inputs: expected {tensors} (state, environment state, images in order), "
                            f"found {g['inputs']}")
    if bundle_dir is not None:
        for prec, f in doc["precision"].items():
            p = Path(bundle_dir) / f["path"]
            if not p.is_file():
                raise ManifestError(f"precision.{prec}.path: {p} does not exist")
            data = p.read_bytes()
            if len(data) != f["bytes"]:
                raise ManifestError(f"precision.{prec}.bytes: expected {f['bytes']}, found {len(data)}")
            h = hashlib.sha256(data).hexdigest()
            if h != f["sha256"]:
                raise ManifestError(f"precision.{prec}.sha256: expected {f['sha256']}, found {h}")
