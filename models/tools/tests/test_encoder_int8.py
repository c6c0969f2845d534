"""INT8 image encoder: structure (QDQ per-channel around every Conv but the float stem/blocks 0-2), agreement with the fp32
encoder on the golden images, and the quantizer end to end on a tiny conv net (cheap)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from torch import nn

from sarm_export.encoder_int8 import preprocess_of
from sarm_export.onnx_utils import export_image_graph, ort_session, tract_available, tract_run
from sarm_export.quantize import check_encoder_int8, quantize_encoder_int8

# Cosine of int8 vs fp32 features on the golden images (measured on the committed sarm-test
# encoder, calibrated on its rendered episode frames, stem and blocks 0-2 float: 0.982-0.994,
# onnxruntime optimised and exact QDQ alike; the golden set adds synthetic "shapes" images it was
# not calibrated on).
MIN_COSINE = 0.97


def test_committed_int8_encoder_is_qdq_per_channel(bundle_dir, manifest):
    entry = manifest["precision"]["int8"]["image_encoder"]
    summary = check_encoder_int8(bundle_dir / entry["path"])
    # EfficientNet-lite0: 49 Conv; the stem and blocks 0-2 (9 Conv) stay float by design
    assert summary["total_conv"] == 49
    assert summary["quantized_conv"] == 40 and len(summary["float_conv"]) == 9
    assert all(n.startswith(("/_conv_stem/", "/_blocks.0/", "/_blocks.1/", "/_blocks.2/")) for n in summary["float_conv"])
    assert manifest["provenance"]["int8"]["image_encoder"]["per_channel"] is True


def _golden_pixels(bundle_dir, manifest, reward_golden=None):
    import json

    pre = preprocess_of(manifest)
    g = json.loads((bundle_dir / "golden" / "encoder.json").read_text())
    imgs = [np.array(Image.open(bundle_dir / "golden" / i["file"]).convert("RGB")) for i in g["images"]]
    return np.stack([pre.to_tensor(im).numpy() for im in imgs]).astype(np.float32)


def _cos(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("optimize", [True, False], ids=["onnxruntime", "qdq-reference"])
def test_int8_encoder_agrees_with_fp32(bundle_dir, manifest, optimize):
    x = _golden_pixels(bundle_dir, manifest)
    ref = ort_session(bundle_dir / manifest["image_encoder"]["file"]["path"]).run(None, {"pixels": x})[0]
    path = bundle_dir / manifest["precision"]["int8"]["image_encoder"]["path"]
    got = ort_session(path, optimize=optimize).run(None, {"pixels": x})[0]
    cos = _cos(got, ref)
    print("int8 vs fp32 cosine per golden image:", np.round(cos, 4))
    assert cos.min() >= MIN_COSINE


@pytest.mark.skipif(not tract_available(), reason="tract python binding not installed")
def test_tract_runs_the_int8_encoder_like_onnxruntime_qdq(bundle_dir, manifest):
    x = _golden_pixels(bundle_dir, manifest)[:1]
    path = bundle_dir / manifest["precision"]["int8"]["image_encoder"]["path"]
    ref = ort_session(path, optimize=False).run(None, {"pixels": x})[0]
    got = tract_run(path, {"pixels": x})["features"]
    assert _cos(got, ref).min() >= 0.999


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6())
        self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU6())
        self.pw = nn.Conv2d(8, 8, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, pixels):
        y = self.a(pixels)
        y = y + self.pw(self.dw(y))
        return self.pool(y).flatten(1)


def test_quantizer_end_to_end_on_a_tiny_conv_net(tmp_path):
    torch.manual_seed(0)
    net = _Tiny().eval()
    fp32 = tmp_path / "enc.onnx"
    export_image_graph(net, torch.randn(1, 3, 16, 16), "pixels", "features", fp32)
    rng = np.random.default_rng(0)
    calib = rng.uniform(-1, 1, (16, 3, 16, 16)).astype(np.float32)
    int8 = tmp_path / "enc.int8.onnx"
    desc = quantize_encoder_int8(fp32, int8, calib, float_prefixes=())
    assert desc["quantized_conv"] == desc["total_conv"] == 3
    assert [o.name for o in onnx.load(str(int8)).graph.output] == ["features"]
    x = calib[:4]
    ref = ort_session(fp32).run(None, {"pixels": x})[0]
    got = ort_session(int8).run(None, {"pixels": x})[0]
    assert got.shape == ref.shape == (4, 8)
    assert _cos(got, ref).min() >= 0.95
    with pytest.raises(ValueError):
        quantize_encoder_int8(fp32, tmp_path / "bad.onnx", np.zeros((0, 3, 16, 16), np.float32), float_prefixes=())
    with pytest.raises(ValueError, match="float_prefixes"):
        quantize_encoder_int8(fp32, tmp_path / "bad.onnx", calib, float_prefixes=("/no_such_node/",))
