"""(d) the encoder ONNX equals the PyTorch EfficientNet-lite0 features; golden images reproduce."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from sarm_export.encoders import EFFNET_MEAN, EFFNET_STD, load_efficientnet_lite0
from sarm_export.onnx_utils import OrtRunner, TractRunner, io_signature, tract_available


@pytest.fixture(scope="module")
def enc():
    return load_efficientnet_lite0()


def test_encoder_signature(bundle_dir, manifest):
    ie = manifest["image_encoder"]
    sig = io_signature(bundle_dir / ie["file"]["path"])
    assert sig["inputs"] == [(ie["input"], ["batch", 3, ie["height"], ie["width"]], "FLOAT")]
    assert sig["outputs"] == [(ie["output"], ["batch", ie["output_dim"]], "FLOAT")]
    assert ie["kind"] == "efficientnet-lite0" and ie["precision"] == "fp32" and ie["layout"] == "NCHW"
    np.testing.assert_array_equal(np.float32(ie["mean"]), np.float32(EFFNET_MEAN))
    np.testing.assert_array_equal(np.float32(ie["std"]), np.float32(EFFNET_STD))
    assert np.float32(ie["scale"]) == np.float32(1 / 255)


def test_encoder_onnx_matches_torch(bundle_dir, manifest, enc):
    run = OrtRunner(bundle_dir / manifest["image_encoder"]["file"]["path"])
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        ref = enc.module(torch.from_numpy(x)).numpy()
    got = run({"pixels": x})["features"]
    assert got.shape == (2, 1280)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)


def _golden(bundle_dir):
    return json.loads((bundle_dir / "golden" / "encoder.json").read_text())


@pytest.mark.parametrize("backend", ["onnxruntime", "tract"])
def test_golden_images_reproduce(bundle_dir, manifest, enc, backend):
    if backend == "tract" and not tract_available():
        pytest.skip("tract python binding not installed")
    path = bundle_dir / manifest["image_encoder"]["file"]["path"]
    run = OrtRunner(path) if backend == "onnxruntime" else TractRunner(path)
    g = _golden(bundle_dir)
    assert len(g["images"]) >= 4
    sizes = {(r["width"], r["height"]) for r in g["images"]}
    assert (224, 224) in sizes and (640, 480) in sizes
    for rec in g["images"]:
        rgb = np.asarray(Image.open(bundle_dir / "golden" / rec["file"]).convert("RGB"))
        assert rgb.shape == (rec["height"], rec["width"], 3)
        x = enc.preprocess.to_tensor(rgb)[None].numpy()
        got = run({"pixels": x})["features"][0]
        feats = np.asarray(rec["features"], np.float32)
        assert np.abs(feats).max() > 0.1  # not a degenerate golden
        np.testing.assert_allclose(got, feats, atol=1e-4, rtol=0, err_msg=rec["file"])


def test_golden_reward_features_are_plausible(reward_golden):
    for ep in reward_golden["episodes"]:
        f = np.asarray(ep["frame_features"], np.float32)
        assert f.shape == (ep["length"], 1280)
        assert f.std() > 0.05 and f.min() >= 0.0  # ReLU6-pooled features
        assert np.abs(np.diff(f, axis=0)).mean() > 1e-3  # they change over time
