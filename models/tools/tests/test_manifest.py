"""(e) bundle.toml: schema, hashes, tensor names/shapes, float32 round-trip, text embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from sarm_export import ALOHA_JOINT_NAMES
from sarm_export.onnx_utils import io_signature, sha256_file


def _file_entries(m):
    yield m["image_encoder"]["file"]
    for prec in ("fp32", "int8"):
        for part in ("stage", "subtask"):
            yield m["precision"][prec][part]


def test_hashes_and_sizes_match(bundle_dir, manifest):
    for e in _file_entries(manifest):
        p = bundle_dir / e["path"]
        assert p.is_file(), e["path"]
        assert p.stat().st_size == e["bytes"], e["path"]
        assert sha256_file(p) == e["sha256"], e["path"]


def test_schema(manifest):
    m = manifest
    assert m["schema_version"] == 1 and m["name"] == "sarm-test"
    for k in ("script", "command", "seed", "source_checkpoint", "created_utc"):
        assert k in m["provenance"], k
    for lib in ("lerobot", "torch", "onnx", "onnxruntime", "transformers"):
        assert m["provenance"]["libraries"][lib]
    assert m["provenance"]["libraries"]["lerobot"] == "0.4.4"
    assert m["image_encoder"]["cameras"] == ["top"]
    assert m["text"]["source"] == "precomputed" and m["text"]["dim"] == 384
    assert m["text"]["default_task"] == m["text"]["tasks"][0]["text"]
    st = m["state"]
    assert st["joint_names"] == ALOHA_JOINT_NAMES and len(st["mean"]) == len(st["std"]) == 14
    assert st["model_dim"] == m["model"]["state_dim"] == 32 and np.float32(st["eps"]) == np.float32(1e-8)
    w = m["window"]
    assert w == {"fps": 30.0, "n_obs_steps": 8, "frame_gap": 3, "layout": "centered",
                 "offsets": [-12, -9, -6, -3, 0, 3, 6, 9, 12], "readout": 4, "anchor_first": False,
                 "clamp": "edge"}
    assert m["model"] == {"hidden_dim": 64, "num_layers": 2, "num_heads": 4, "image_dim": 1280,
                          "text_dim": 384, "state_dim": 32}
    assert len(m["heads"]["sparse"]["stage_names"]) == 3 and len(m["heads"]["dense"]["stage_names"]) == 5
    for h in m["heads"].values():
        assert len(h["temporal_proportions"]) == len(h["stage_names"])
        assert abs(sum(h["temporal_proportions"]) - 1) < 1e-6
    assert m["tensors"]["stage_logits"] == {"sparse": "sparse_logits", "dense": "dense_logits"}
    assert m["tensors"]["tau"] == {"sparse": "sparse_tau", "dense": "dense_tau"}


@pytest.mark.parametrize("prec", ["fp32", "int8"])
def test_tensor_names_and_shapes(bundle_dir, manifest, prec):
    m, t = manifest, manifest["tensors"]
    D, S = m["model"]["image_dim"], m["model"]["state_dim"]
    c_max = max(len(h["stage_names"]) for h in m["heads"].values())
    seq_in = [(t["image_features"], ["batch", "frames", D], "FLOAT"), (t["text_embedding"], ["batch", 384], "FLOAT"),
              (t["state"], ["batch", "frames", S], "FLOAT")]
    sig = io_signature(bundle_dir / m["precision"][prec]["stage"]["path"])
    assert sig["inputs"] == seq_in
    assert sig["outputs"] == [(t["stage_logits"][h], ["batch", "frames", len(m["heads"][h]["stage_names"])], "FLOAT")
                              for h in ("sparse", "dense")]
    sig = io_signature(bundle_dir / m["precision"][prec]["subtask"]["path"])
    assert sig["inputs"] == seq_in + [(t["stage_onehot"], ["batch", "frames", c_max], "FLOAT")]
    assert sig["outputs"] == [(t["tau"][h], ["batch", "frames"], "FLOAT") for h in ("sparse", "dense")]


def test_floats_are_float32_values(manifest):
    def walk(x):
        if isinstance(x, float):
            assert float(np.float32(x)) == x, x
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    for section in ("image_encoder", "text", "state", "window", "heads"):
        walk(manifest[section])


def test_text_embedding_is_minilm(manifest):
    from sarm_export.text import embed_tasks

    tasks = manifest["text"]["tasks"]
    emb = embed_tasks([t["text"] for t in tasks])
    for t, e in zip(tasks, emb, strict=True):
        got = np.asarray(t["embedding"], np.float32)
        assert got.shape == (384,)
        np.testing.assert_allclose(got, e, atol=1e-6)
        assert abs(np.linalg.norm(got) - 1) < 1e-5  # normalized


def test_golden_reward_structure(manifest, reward_golden):
    assert reward_golden["task"] == manifest["text"]["default_task"]
    assert reward_golden["lerobot_version"] == "0.4.4"
    lengths = [e["length"] for e in reward_golden["episodes"]]
    assert lengths == [48, 10]
    layouts = {}
    for ep in reward_golden["episodes"]:
        assert len(ep["joint_positions"]) == ep["length"] and len(ep["joint_positions"][0]) == 14
        for w in ep["windows"]:
            layouts[w["layout"]] = layouts.get(w["layout"], 0) + 1
            assert len(w["frame_indices"]) == 9
            assert all(0 <= i < ep["length"] for i in w["frame_indices"])
            assert w["readout"] == (4 if w["layout"] == "centered" else 8)
            if w["layout"] == "causal_anchored":
                assert w["frame_indices"][0] == 0
            for h, n in (("sparse", 3), ("dense", 5)):
                r = w["heads"][h]
                assert len(r["stage_probs"]) == 9 and len(r["stage_probs"][0]) == n
                assert len(r["confidence"]) == 9 and len(r["progress"]) == 9
    assert layouts["centered"] == layouts["causal"] == 58 and 8 <= layouts["causal_anchored"] <= 12
    # the stage argmax varies across the long episode (non-trivial model)
    ep0 = reward_golden["episodes"][0]
    for h in ("sparse", "dense"):
        stages = {int(np.argmax(w["heads"][h]["stage_probs"][w["readout"]])) for w in ep0["windows"]}
        assert len(stages) >= 3, (h, stages)
