"""Golden files readable without numpy: one JSON index plus raw little-endian binaries.

A golden folder holds `golden.json` and binary files. Every binary is one C-order
(row-major) array of one dtype, little-endian, no header. `golden.json` names each one:

    "arrays": {"<name>": {"path": "ep0/action.f32", "dtype": "f32", "shape": [200, 14],
                          "sha256": "...", "bytes": 11200}}

dtypes: u8, i32, u64, f32 (IEEE-754 binary32). The byte length is product(shape) * size.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

DTYPES = {"u8": np.dtype("<u1"), "i32": np.dtype("<i4"), "u64": np.dtype("<u8"), "f32": np.dtype("<f4")}
SUFFIX = {v: k for k, v in DTYPES.items()}


class GoldenError(ValueError):
    """A golden folder that does not match its index."""


class GoldenWriter:
    """Writes arrays as raw little-endian files and indexes them in golden.json."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.arrays: dict[str, dict] = {}

    def add(self, name: str, array, dtype: str) -> dict:
        if dtype not in DTYPES:
            raise GoldenError(f"golden array {name}: dtype {dtype!r} is not one of {sorted(DTYPES)}")
        if name in self.arrays:
            raise GoldenError(f"golden array {name} written twice")
        a = np.asarray(array)
        if dtype in ("u8", "i32", "u64"):
            if a.size and (not np.all(np.isfinite(a.astype(np.float64))) or np.any(a.astype(np.float64) % 1 != 0)):
                raise GoldenError(f"golden array {name}: non-integer values for dtype {dtype}")
        out = np.ascontiguousarray(a.astype(DTYPES[dtype]))
        rel = f"{name}.{dtype}"
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = out.tobytes(order="C")
        path.write_bytes(data)
        entry = {"path": rel, "dtype": dtype, "shape": [int(s) for s in out.shape],
                 "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        self.arrays[name] = entry
        return entry

    def finish(self, meta: dict) -> Path:
        doc = dict(meta)
        doc["arrays"] = dict(sorted(self.arrays.items()))
        path = self.root / "golden.json"
        path.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
        return path


def read_golden(root: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(metadata, {name: array}) with every size and hash checked against golden.json."""
    root = Path(root)
    doc = json.loads((root / "golden.json").read_text())
    arrays = {}
    for name, e in doc["arrays"].items():
        dt = DTYPES.get(e["dtype"])
        if dt is None:
            raise GoldenError(f"{name}: unknown dtype {e['dtype']!r}")
        data = (root / e["path"]).read_bytes()
        n = int(np.prod(e["shape"], dtype=np.int64)) * dt.itemsize
        if len(data) != n or len(data) != e["bytes"]:
            raise GoldenError(f"{name}: {len(data)} bytes on disk, index says {e['bytes']}, shape needs {n}")
        if hashlib.sha256(data).hexdigest() != e["sha256"]:
            raise GoldenError(f"{name}: sha256 mismatch")
        arrays[name] = np.frombuffer(data, dtype=dt).reshape(e["shape"])
    return doc, arrays
