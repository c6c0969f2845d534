"""(a) fp32 stage/subtask ONNX == LeRobot's torch model (T=9 and T=5), and the committed
bundle reproduces the LeRobot goldens (13-frame padded path) from T=9 unpadded inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import heads_of, small_sarm, window_feeds

from sarm_export import bundle as bm
from sarm_export.onnx_utils import (
    BATCH, FRAMES, TRANSFORMER_OPS, OrtRunner, check_ops, export_sequence_graph, io_signature,
    tract_available, TractRunner,
)
from sarm_export.wrappers import StageGraph, SubtaskGraph

TOL = 1e-5


def _export(model, tmp, dual: bool, c_max: int):
    D, S = model.config.image_dim, model.config.max_state_dim
    g = torch.Generator().manual_seed(3)
    ex = (torch.randn(2, 9, D, generator=g), torch.randn(2, 384, generator=g), torch.randn(2, 9, S, generator=g))
    seq = {0: BATCH, 1: FRAMES}
    outs = ["sparse_logits"] + (["dense_logits"] if dual else [])
    sp, tp = tmp / "stage.onnx", tmp / "subtask.onnx"
    export_sequence_graph(StageGraph(model.stage_model, dual), ex, ["image_features", "text_embedding", "state"],
                          outs, [seq, {0: BATCH}, seq], sp)
    oh = torch.zeros(2, 9, c_max)
    oh[..., 0] = 1
    export_sequence_graph(SubtaskGraph(model.subtask_model, c_max), ex + (oh,),
                          ["image_features", "text_embedding", "state", "stage_onehot"],
                          ["sparse_tau", "dense_tau"], [seq, {0: BATCH}, seq, seq], tp)
    return sp, tp


@pytest.fixture(scope="module")
def dual_export(tmp_path_factory):
    model = small_sarm(dual=True)
    tmp = tmp_path_factory.mktemp("dual")
    sp, tp = _export(model, tmp, True, 5)
    return model, sp, tp


def _rand(rng, B, T, D, S):
    return (rng.standard_normal((B, T, D)).astype(np.float32), rng.standard_normal((B, 384)).astype(np.float32),
            rng.standard_normal((B, T, S)).astype(np.float32))


@pytest.mark.parametrize("T", [9, 5])
def test_stage_and_subtask_match_lerobot(dual_export, T):
    model, sp, tp = dual_export
    st, sb = OrtRunner(sp), OrtRunner(tp)
    rng = np.random.default_rng(T)
    img, txt, sta = _rand(rng, 3, T, model.config.image_dim, 32)
    feeds = {"image_features": img, "text_embedding": txt, "state": sta}
    out = st(feeds)
    lens = torch.full((3,), T, dtype=torch.int32)
    ti, tt, ts = torch.from_numpy(img).unsqueeze(1), torch.from_numpy(txt), torch.from_numpy(sta)
    for h, C in (("sparse", 3), ("dense", 5)):
        with torch.no_grad():
            ref = model.stage_model(ti, tt, ts, lens, scheme=h).numpy()
        np.testing.assert_allclose(out[f"{h}_logits"], ref, atol=TOL, rtol=0)
        idx = rng.integers(0, C, size=(3, T))
        oh = np.eye(C, dtype=np.float32)[idx]
        pad = np.zeros((3, T, 5), np.float32)
        pad[..., :C] = oh
        tau = sb({**feeds, "stage_onehot": pad})[f"{h}_tau"]
        with torch.no_grad():
            ref_tau = model.subtask_model(ti, tt, ts, lens, torch.from_numpy(oh).unsqueeze(1), scheme=h).numpy()
        np.testing.assert_allclose(tau, ref_tau, atol=TOL, rtol=0)


def test_unpadded_T9_equals_lerobot_13_frame_inference(dual_export):
    """LeRobot scores 13 frames (9 + 4 zeroed rewind slots, lengths=9); positions 0..8 must equal
    the exported graph run on the 9 frames alone."""
    model, sp, tp = dual_export
    rng = np.random.default_rng(11)
    img, txt, sta = _rand(rng, 4, 9, model.config.image_dim, 32)
    vid13 = np.zeros((4, 13, img.shape[2]), np.float32)
    vid13[:, :9] = img
    st13 = np.zeros((4, 13, 32), np.float32)
    st13[:, :9] = sta
    runs = bm.run_pipeline(OrtRunner(sp), OrtRunner(tp),
                           {"image_features": img, "text_embedding": txt, "state": sta},
                           bm.heads_of(model.config), 5)
    for h in ("sparse", "dense"):
        prog, probs, conf = model.calculate_rewards(txt, vid13, st13, np.full(4, 9), return_all_frames=True,
                                                    return_stages=True, return_confidence=True, head_mode=h)
        e = np.exp(runs[h]["logits"] - runs[h]["logits"].max(-1, keepdims=True))
        np.testing.assert_allclose(e / e.sum(-1, keepdims=True), probs[:, :9], atol=1e-5)
        np.testing.assert_allclose(runs[h]["progress"], prog[:, :9], atol=1e-4)


def test_graph_signature_and_ops(dual_export):
    _, sp, tp = dual_export
    for p in (sp, tp):
        check_ops(p, TRANSFORMER_OPS, "fp32")
    sig = io_signature(sp)
    assert sig["inputs"] == [("image_features", ["batch", "frames", 96], "FLOAT"),
                             ("text_embedding", ["batch", 384], "FLOAT"),
                             ("state", ["batch", "frames", 32], "FLOAT")]
    assert [o[0] for o in sig["outputs"]] == ["sparse_logits", "dense_logits"]
    sig = io_signature(tp)
    assert sig["inputs"][3] == ("stage_onehot", ["batch", "frames", 5], "FLOAT")
    assert sig["outputs"] == [("sparse_tau", ["batch", "frames"], "FLOAT"), ("dense_tau", ["batch", "frames"], "FLOAT")]


def test_single_stage_checkpoint_exports_sparse_only(tmp_path):
    model = small_sarm(dual=False, image_dim=64, seed=1)
    sp, tp = _export(model, tmp_path, False, 1)
    assert [o[0] for o in io_signature(sp)["outputs"]] == ["sparse_logits"]
    rng = np.random.default_rng(0)
    img, txt, sta = _rand(rng, 2, 9, 64, 32)
    out = OrtRunner(sp)({"image_features": img, "text_embedding": txt, "state": sta})
    with torch.no_grad():
        ref = model.stage_model(torch.from_numpy(img).unsqueeze(1), torch.from_numpy(txt), torch.from_numpy(sta),
                                torch.full((2,), 9), scheme="sparse").numpy()
    np.testing.assert_allclose(out["sparse_logits"], ref, atol=TOL, rtol=0)


# ---------------------------------------------------------------- committed bundle vs goldens


def _golden_check(bundle_dir, manifest, reward_golden, runner_cls):
    heads = heads_of(manifest)
    c_max = max(h["num_stages"] for h in heads.values())
    st = runner_cls(bundle_dir / manifest["precision"]["fp32"]["stage"]["path"])
    sb = runner_cls(bundle_dir / manifest["precision"]["fp32"]["subtask"]["path"])
    worst = {"progress": 0.0, "probs": 0.0, "conf": 0.0}
    n = 0
    for ep in reward_golden["episodes"]:
        feeds = window_feeds(reward_golden, manifest, ep, ep["windows"])
        if runner_cls is TractRunner:  # one window at a time, like the runtime
            parts = [bm.run_pipeline(st, sb, {k: v[i:i + 1] for k, v in feeds.items()}, heads, c_max)
                     for i in range(len(ep["windows"]))]
            res = {h: {k: np.concatenate([p[h][k] for p in parts]) for k in parts[0][h]} for h in heads}
        else:
            res = bm.run_pipeline(st, sb, feeds, heads, c_max)
        for h in heads:
            logits = res[h]["logits"]
            e = np.exp(logits - logits.max(-1, keepdims=True))
            probs = e / e.sum(-1, keepdims=True)
            g_probs = np.asarray([w["heads"][h]["stage_probs"] for w in ep["windows"]])
            g_conf = np.asarray([w["heads"][h]["confidence"] for w in ep["windows"]])
            g_prog = np.asarray([w["heads"][h]["progress"] for w in ep["windows"]])
            worst["probs"] = max(worst["probs"], float(np.abs(probs - g_probs).max()))
            worst["conf"] = max(worst["conf"], float(np.abs(probs.max(-1) - g_conf).max()))
            worst["progress"] = max(worst["progress"], float(np.abs(res[h]["progress"] - g_prog).max()))
            assert (probs.argmax(-1) == g_probs.argmax(-1)).all()
            n += g_prog.size
    assert n > 0
    assert worst["progress"] < 1e-4, worst
    assert worst["probs"] < 1e-4, worst
    assert worst["conf"] < 1e-4, worst


def test_committed_fp32_reproduces_lerobot_goldens(bundle_dir, manifest, reward_golden):
    _golden_check(bundle_dir, manifest, reward_golden, OrtRunner)


@pytest.mark.skipif(not tract_available(), reason="tract python binding not installed")
def test_committed_fp32_in_tract_reproduces_goldens(bundle_dir, manifest, reward_golden):
    _golden_check(bundle_dir, manifest, reward_golden, TractRunner)
