"""Add an INT8 image encoder to a bundle: quantize its fp32 encoder on real frames and declare
the file under ``[precision.int8] image_encoder`` (with its SHA-256), recording how in
``[provenance.int8.image_encoder]``. The rest of bundle.toml is written back unchanged.

Frames come from image files (.png/.jpg) or rosbag2 MCAP episodes (a bag folder or a .mcap):
the camera's sensor_msgs/CompressedImage messages, every ``every``-th one.
"""

from __future__ import annotations

import argparse
import io
import sys
import tomllib
from pathlib import Path

import numpy as np
from PIL import Image

from .bundle import MANIFEST_COMMENTS, MANIFEST_HEADER, library_versions, log, utc_now
from .encoders import Preprocess
from .onnx_utils import file_entry, ort_session
from .quantize import EFFICIENTNET_LITE0_FLOAT_PREFIXES, quantize_encoder_int8
from .tomlw import dumps

INT8_ENCODER_FILE = "image_encoder.int8.onnx"
CAMERA_TOPIC = "/camera/top/image_raw/compressed"


def bag_frames(path: Path, every: int, topic: str = CAMERA_TOPIC) -> list[np.ndarray]:
    """RGB frames of a rosbag2 MCAP episode's compressed camera topic."""
    from mcap.reader import make_reader

    files = [path] if path.suffix == ".mcap" else sorted(path.glob("*.mcap"))
    if not files:
        raise ValueError(f"{path}: no .mcap file")
    out = []
    for f in files:
        with open(f, "rb") as fh:
            for k, (_, _, msg) in enumerate(make_reader(fh).iter_messages(topics=[topic])):
                if k % every:
                    continue
                # CDR sensor_msgs/CompressedImage: the JPEG/PNG payload follows the header.
                d = msg.data
                start = min((i for i in (d.find(b"\xff\xd8\xff"), d.find(b"\x89PNG")) if i >= 0), default=-1)
                if start < 0:
                    raise ValueError(f"{f}: a {topic} message holds no JPEG or PNG")
                out.append(np.array(Image.open(io.BytesIO(d[start:])).convert("RGB")))
    return out


def load_frames(paths: list[Path], every: int) -> list[np.ndarray]:
    frames = []
    for p in paths:
        if p.is_dir() or p.suffix == ".mcap":
            frames += bag_frames(p, every)
        elif p.suffix.lower() in (".png", ".jpg", ".jpeg"):
            frames.append(np.array(Image.open(p).convert("RGB")))
        else:
            raise ValueError(f"{p}: neither an image (.png/.jpg) nor a rosbag2 episode")
    return frames


def preprocess_of(manifest: dict) -> Preprocess:
    e = manifest["image_encoder"]
    return Preprocess(height=e["height"], width=e["width"], resize=e["resize"], filter=e["filter"],
                      scale=e["scale"], mean=list(e["mean"]), std=list(e["std"]), layout=e["layout"])


def feature_agreement(fp32_path: Path, int8_path: Path, pixels: np.ndarray) -> dict:
    """Cosine of int8 vs fp32 features, onnxruntime optimised (integer kernels) and exact QDQ."""
    ref = ort_session(fp32_path)
    res = {}
    for name, optimize in (("onnxruntime", True), ("qdq_reference", False)):
        s = ort_session(int8_path, optimize=optimize)
        cos = []
        for p in pixels:
            a = ref.run(None, {"pixels": p[None]})[0][0]
            b = s.run(None, {"pixels": p[None]})[0][0]
            cos.append(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12)))
        res[name] = {"min_cosine": min(cos), "mean_cosine": float(np.mean(cos)), "frames": len(cos)}
    return res


def add_int8_encoder(bundle: Path, frames: list[np.ndarray], source: str, max_frames: int, seed: int,
                     float_prefixes: tuple[str, ...] | None = None, calibration_method: str = "Entropy") -> dict:
    path = bundle / "bundle.toml"
    manifest = tomllib.loads(path.read_text())
    if "int8" not in manifest["precision"]:
        raise ValueError(f"{path}: no [precision.int8] table to add the encoder to")
    pre = preprocess_of(manifest)
    if len(frames) > max_frames:
        pick = np.random.default_rng(seed).permutation(len(frames))[:max_frames]
        frames = [frames[i] for i in sorted(pick)]
    pixels = np.stack([pre.to_tensor(f).numpy() for f in frames]).astype(np.float32)
    fp32 = bundle / manifest["image_encoder"]["file"]["path"]
    out = bundle / INT8_ENCODER_FILE
    log(f"quantizing {fp32.name} -> {out.name} on {len(pixels)} frames ({source})")
    kw = {} if float_prefixes is None else {"float_prefixes": tuple(float_prefixes)}
    desc = quantize_encoder_int8(fp32, out, pixels, calibration_method=calibration_method, **kw)
    desc["calibration_source"] = source
    desc["agreement_on_calibration_frames"] = feature_agreement(fp32, out, pixels)
    desc["created_utc"] = utc_now()
    desc["onnxruntime"] = library_versions()["onnxruntime"]
    for k, v in desc["agreement_on_calibration_frames"].items():
        log(f"  int8 vs fp32 features [{k}]: min cosine {v['min_cosine']:.4f}, mean {v['mean_cosine']:.4f}")
    manifest["precision"]["int8"]["image_encoder"] = file_entry(out, bundle)
    manifest["provenance"].setdefault("int8", {})["image_encoder"] = desc
    manifest["provenance"]["image_encoder_precision"] = (
        "fp32 (image_encoder.file) and int8 ([precision.int8] image_encoder, QDQ per-channel; "
        "the nodes named in provenance.int8.image_encoder.float_prefixes stay float)")
    path.write_text(dumps(manifest, header=MANIFEST_HEADER, comments=MANIFEST_COMMENTS))
    log(f"wrote {path}")
    return desc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="add_int8_encoder.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", type=Path, required=True, help="bundle folder (bundle.toml)")
    ap.add_argument("--calibration", type=Path, nargs="+", required=True, metavar="PATH",
                    help="images (.png/.jpg) or rosbag2 episodes (folder or .mcap) to calibrate on; "
                         "never the held-out episodes the bundle is evaluated on")
    ap.add_argument("--every", type=int, default=5, help="take every N-th frame of a bag")
    ap.add_argument("--max-frames", type=int, default=200, help="calibrate on at most this many frames")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--float-prefixes", default=None, metavar="P1,P2,...",
                    help="node-name prefixes that stay float, comma-separated (default: "
                         f"{','.join(EFFICIENTNET_LITE0_FLOAT_PREFIXES)}; '' quantizes every layer)")
    ap.add_argument("--calibration-method", default="Entropy", choices=["Entropy", "MinMax", "Percentile"],
                    help="how activation ranges are found (onnxruntime's CalibrationMethod)")
    args = ap.parse_args(argv)
    try:
        frames = load_frames(args.calibration, max(args.every, 1))
        if not frames:
            raise ValueError("no calibration frames")
        source = " ".join(str(p) for p in args.calibration)
        prefixes = None if args.float_prefixes is None else tuple(p for p in args.float_prefixes.split(",") if p)
        add_int8_encoder(args.bundle, frames, source, args.max_frames, args.seed, prefixes,
                         args.calibration_method)
    except (OSError, ValueError, KeyError) as e:
        print(f"add_int8_encoder: error: {e}", file=sys.stderr)
        return 2
    return 0
