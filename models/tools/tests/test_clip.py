"""(c) the CLIP image-encoder path, with randomly initialised CLIP models (built offline)."""

from __future__ import annotations

import json
import tomllib

import numpy as np
import pytest
import torch
from conftest import small_sarm

from sarm_export import bundle as bm
from sarm_export.encoders import CLIP_MEAN_DEFAULT, CLIP_STD_DEFAULT, load_clip
from sarm_export.onnx_utils import OrtRunner, export_image_graph, io_signature, sha256_file


def _save_clip(path, config):
    from transformers import CLIPModel

    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(str(path))
    return path


def test_default_clip_get_image_features(tmp_path):
    from transformers import CLIPConfig

    d = _save_clip(tmp_path / "clip", CLIPConfig())
    enc, model = load_clip(d)
    assert enc.kind == "clip-vision" and enc.output_dim == 512
    pre = enc.preprocess
    assert (pre.height, pre.width, pre.resize, pre.filter) == (224, 224, "shorter-side-center-crop", "bicubic")
    assert pre.mean == CLIP_MEAN_DEFAULT and pre.std == CLIP_STD_DEFAULT
    onnx_path = tmp_path / "clip.onnx"
    export_image_graph(enc.module, torch.zeros(1, 3, 224, 224), "pixels", "features", onnx_path)
    assert io_signature(onnx_path)["outputs"] == [("features", ["batch", 512], "FLOAT")]
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    got = OrtRunner(onnx_path)({"pixels": x})["features"]
    with torch.no_grad():
        ref = model.get_image_features(pixel_values=torch.from_numpy(x))
    ref = ref.numpy() if isinstance(ref, torch.Tensor) else ref.image_embeds.numpy()
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)


def test_export_bundle_cli_with_clip(tmp_path, capsys):
    """export_bundle end to end (CLI entry point) with a small random CLIP and a 512-d SARM."""
    from transformers import CLIPConfig

    clip_cfg = CLIPConfig(
        vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           image_size=224, patch_size=32),
        text_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4),
        projection_dim=512,
    )
    clip_dir = _save_clip(tmp_path / "clip", clip_cfg)
    ckpt = tmp_path / "ckpt"
    model = small_sarm(dual=True, image_dim=512, seed=5)
    model.save_pretrained(str(ckpt))
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps({"mean": [0.1] * 14, "std": [0.5] * 14}))
    out = tmp_path / "bundle"
    rc = bm.main([
        "--checkpoint", str(ckpt), "--out", str(out), "--image-encoder", "clip", "--clip-model", str(clip_dir),
        "--task", "pick the cube", "--task", "place the cube", "--state-stats", str(stats),
        "--window", "causal", "--anchor-first", "--calibration", "8", "--fps", "15", "--skip-tract-check",
    ])
    assert rc == 0
    with open(out / "bundle.toml", "rb") as f:
        m = tomllib.load(f)
    ie = m["image_encoder"]
    assert ie["kind"] == "clip-vision" and ie["output_dim"] == 512 and ie["filter"] == "bicubic"
    assert np.allclose(ie["mean"], CLIP_MEAN_DEFAULT) and np.allclose(ie["std"], CLIP_STD_DEFAULT)
    assert m["window"]["layout"] == "causal" and m["window"]["readout"] == 8 and m["window"]["anchor_first"]
    assert m["window"]["offsets"] == [-24, -21, -18, -15, -12, -9, -6, -3, 0]
    assert m["window"]["fps"] == 15.0
    assert m["text"]["default_task"] == "pick the cube" and len(m["text"]["tasks"]) == 2
    assert np.allclose(m["state"]["mean"], 0.1) and np.allclose(m["state"]["std"], 0.5)
    for entry in [ie["file"]] + [m["precision"][p][k] for p in ("fp32", "int8") for k in ("stage", "subtask")]:
        assert sha256_file(out / entry["path"]) == entry["sha256"]
    # the CLIP encoder inside the bundle is CLIP's get_image_features
    enc, clip_model = load_clip(clip_dir)
    x = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)
    got = OrtRunner(out / ie["file"]["path"])({"pixels": x})["features"]
    with torch.no_grad():
        ref = clip_model.get_image_features(pixel_values=torch.from_numpy(x))
    ref = ref.numpy() if isinstance(ref, torch.Tensor) else ref.image_embeds.numpy()
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)


def test_cli_errors_are_clear(tmp_path, capsys):
    rc = bm.main(["--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--task", "x"])
    assert rc == 2
    assert "not a directory" in capsys.readouterr().err
    rc = bm.main(["--checkpoint", str(tmp_path), "--out", str(tmp_path / "o"), "--task", "x",
                  "--image-encoder", "clip"])
    assert rc == 2
    assert "--clip-model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bm.main(["--help"])
    assert "--calibration" in capsys.readouterr().out
