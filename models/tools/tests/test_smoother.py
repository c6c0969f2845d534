"""The confidence-weighted smoother and its golden."""

from __future__ import annotations

import json

import numpy as np

from sarm_export.smoother import ConfidenceSmoother


def test_golden_reproduces(bundle_dir):
    g = json.loads((bundle_dir / "golden" / "smoother.json").read_text())
    assert g["params"] == {"window": 10, "beta": 3.0, "eps": 1e-6, "threshold": 0.9}
    assert len(g["steps"]) == 200 and 0.2 < g["low_confidence_fraction"] < 0.4
    sm = ConfidenceSmoother(**g["params"])
    for s in g["steps"]:
        assert sm.update(s["value"], s["confidence"]) == s["expected"]


def test_behaviour():
    sm = ConfidenceSmoother(window=3, beta=3.0, eps=1e-6, threshold=0.9)
    # first call, low confidence: the baseline is the value itself and nothing is accepted
    assert sm.update(0.4, 0.5) == 0.4
    assert len(sm.history) == 0
    # accepted values: weighted mean (weights c^3, / (sum + eps))
    out = sm.update(0.2, 1.0)
    assert np.isclose(out, 0.2 / (1 + 1e-6))
    out = sm.update(0.6, 0.95)
    w = np.array([1.0, 0.95 ** 3])
    assert np.isclose(out, (w * [0.2, 0.6]).sum() / (w.sum() + 1e-6))
    # low confidence returns the previous output unchanged
    assert sm.update(0.99, 0.1) == out
    # window drops the oldest; confidence > 1 clamps to 1
    sm.update(0.8, 1.5)
    sm.update(0.9, 1.0)
    assert [v for v, _ in sm.history] == [0.6, 0.8, 0.9]
    assert sm.history[1][1] == 1.0
