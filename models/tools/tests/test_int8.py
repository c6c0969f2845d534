"""(b) INT8 graphs: only QuantizeLinear/DequantizeLinear around MatMul/Gemm, and agreement with
fp32 on the golden windows (exact QDQ semantics in onnxruntime, and in tract)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import heads_of, window_feeds

from sarm_export import bundle as bm
from sarm_export.onnx_utils import FORBIDDEN_OPS, OrtRunner, TractRunner, op_counts, tract_available
from sarm_export.quantize import check_int8

MARGIN = 0.05  # fp32 top-1 minus top-2 probability above which int8 must pick the same stage
PROGRESS_BOUND = 0.01  # |progress int8 - fp32| where the stage agrees (measured: < 0.003)


@pytest.mark.parametrize("part", ["stage", "subtask"])
def test_int8_ops_are_qdq_around_matmul_only(bundle_dir, manifest, part):
    path = bundle_dir / manifest["precision"]["int8"][part]["path"]
    counts = op_counts(path)
    assert not set(counts) & FORBIDDEN_OPS
    for bad in ("QGemm", "QLinearAdd", "QLinearMatMul", "MatMulInteger", "ConvInteger", "DynamicQuantizeLinear"):
        assert counts.get(bad, 0) == 0, bad
    summary = check_int8(path)  # per-tensor, Q -> DQ -> MatMul/Gemm only
    assert summary["quantized_matmul_gemm"] == summary["total_matmul_gemm"] > 0
    assert counts["QuantizeLinear"] > 0 and counts["DequantizeLinear"] > 0
    # every MatMul/Gemm weight is an int8 initializer behind a DequantizeLinear
    m = onnx.load(str(path))
    inits = {t.name: t for t in m.graph.initializer}
    int8_weights = [t for t in inits.values() if t.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) >= summary["total_matmul_gemm"] - 4  # attention MatMuls have no weights


def _agreement(bundle_dir, manifest, reward_golden, runner32, runner8):
    heads = heads_of(manifest)
    c_max = max(h["num_stages"] for h in heads.values())
    p = manifest["precision"]
    s32, t32 = runner32(bundle_dir / p["fp32"]["stage"]["path"]), runner32(bundle_dir / p["fp32"]["subtask"]["path"])
    s8, t8 = runner8(bundle_dir / p["int8"]["stage"]["path"]), runner8(bundle_dir / p["int8"]["subtask"]["path"])
    stats = {h: {"agree": 0, "n": 0, "confident_disagree": 0, "max_dp": 0.0} for h in heads}
    for ep in reward_golden["episodes"]:
        for i in range(0, len(ep["windows"]), 16):
            feeds = window_feeds(reward_golden, manifest, ep, ep["windows"][i:i + 16])
            a = bm.run_pipeline(s32, t32, feeds, heads, c_max)
            b = bm.run_pipeline(s8, t8, feeds, heads, c_max)
            for h in heads:
                lg = a[h]["logits"]
                e = np.exp(lg - lg.max(-1, keepdims=True))
                pr = np.sort(e / e.sum(-1, keepdims=True), -1)
                margin = pr[..., -1] - pr[..., -2]
                same = a[h]["stage"] == b[h]["stage"]
                s = stats[h]
                s["agree"] += int(same.sum())
                s["n"] += same.size
                s["confident_disagree"] += int((~same & (margin > MARGIN)).sum())
                if same.any():
                    s["max_dp"] = max(s["max_dp"], float(np.abs(a[h]["progress"] - b[h]["progress"])[same].max()))
    return stats


def _assert_stats(stats):
    for h, s in stats.items():
        print(h, f"agreement {100 * s['agree'] / s['n']:.2f}% of {s['n']} positions, max |dprogress| {s['max_dp']:.4f}")
        assert s["confident_disagree"] == 0, (h, s)
        assert s["agree"] / s["n"] >= 0.99, (h, s)
        assert s["max_dp"] < PROGRESS_BOUND, (h, s)


def test_int8_agrees_with_fp32_qdq_reference(bundle_dir, manifest, reward_golden):
    _assert_stats(_agreement(bundle_dir, manifest, reward_golden, OrtRunner, lambda p: OrtRunner(p, optimize=False)))


@pytest.mark.skipif(not tract_available(), reason="tract python binding not installed")
def test_int8_agrees_with_fp32_in_tract(bundle_dir, manifest, reward_golden):
    _assert_stats(_agreement(bundle_dir, manifest, reward_golden, TractRunner, TractRunner))
