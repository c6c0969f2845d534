"""The TOML writer: valid TOML, float32 exact floats, escaping."""

from __future__ import annotations

import tomllib

import numpy as np

from sarm_export.tomlw import dumps


def test_round_trip():
    vals = [0.1, 1e-8, 3.4028234663852886e38, -2.5, 1.0, 1 / 3, 127 / 255]
    doc = {
        "a": 1, "s": 'quote " back \\ tab\t nl\n é', "b": True, "f": vals, "big": list(np.linspace(0, 1, 40)),
        "t": {"x": 1.5, "u": {"deep": "y"}, "key with space": 2},
        "arr": [{"n": 1}, {"n": 2}],
    }
    text = dumps(doc, header="hello\nworld", comments={"a": "a comment"})
    back = tomllib.loads(text)
    assert back["a"] == 1 and back["s"] == doc["s"] and back["b"] is True
    for x, y in zip(back["f"], vals, strict=True):
        assert np.float32(x) == np.float32(y) and x == float(np.float32(y))
    assert len(back["big"]) == 40
    assert back["t"]["u"]["deep"] == "y" and back["t"]["key with space"] == 2
    assert [a["n"] for a in back["arr"]] == [1, 2]
    assert text.startswith("# hello\n# world\n")
