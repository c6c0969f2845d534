#!/usr/bin/env python
"""Golden RA-BC sample weights computed by LeRobot's own code (lerobot 0.4.4).

Input: the per-frame progress that LeRobot's SARMRewardModel gave for the three held-out ALOHA
episodes committed next to the bundle (models/aloha-transfer-cube/episodes/*/golden.json, both
heads, fp32), taken as one dataset with episode_index 0, 1, 2 in sorted folder order. The frames
are the ones `sarm label` scores (the bundle's 10 Hz), so frame_index is the position in that
series and the global index runs contiguously over the three episodes.

For every case (head, chunk size H) the script:
  1. writes sarm_progress.parquet into a temp dir exactly as LeRobot's writer does
     (lerobot/policies/sarm/compute_rabc_weights.py, compute_sarm_progress, the table-building
     and writing lines at the end);
  2. loads it with LeRobot's lerobot.utils.rabc.RABCWeights (what lerobot_train.py uses with
     --use_rabc) and takes its dataset-wide delta_mean / delta_std;
  3. gets each frame's delta and weight through the same calls that
     RABCWeights.compute_batch_weights makes (_compute_delta per index, the float32 cast,
     _compute_weights), and, for one example batch, the per-batch normalised weights from
     compute_batch_weights itself;
  4. checks all of it against an independent pure-numpy reading of the formula (exact equality).

Writes tests/fixtures/rabc_golden.json. Deterministic, CPU only, a few seconds:

    models/tools/.venv/bin/python models/tools/make_rabc_golden.py
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from importlib import metadata
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402

from lerobot.utils.rabc import RABCWeights  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
EPISODES = REPO / "models" / "aloha-transfer-cube" / "episodes"
OUT = REPO / "tests" / "fixtures" / "rabc_golden.json"
REWARD_MODEL_PATH = "models/aloha-transfer-cube"  # what goes into the parquet metadata

# (name, head, chunk size, frames whose progress is replaced by NaN as (episode_index, frame_index))
CASES = [
    ("sparse_h50", "sparse", 50, []),
    ("dense_h50", "dense", 50, []),
    ("sparse_h5", "sparse", 5, []),
    ("dense_h5", "dense", 5, []),
    # NaN handling: a NaN current frame, a NaN future frame (frame 5 of ep 0 looks at frame 10),
    # a NaN first frame, and a NaN last frame (every tail frame of ep 2 clamps onto it).
    ("sparse_h5_nan", "sparse", 5, [(0, 10), (1, 0), (2, -1)]),
]
# One example batch for the per-batch normalisation of compute_batch_weights: every 13th global
# index (spans all three episodes, hits tails).
BATCH_STRIDE = 13


def load_series() -> list[dict]:
    series = []
    for ep, folder in enumerate(sorted(p for p in EPISODES.iterdir() if (p / "golden.json").is_file())):
        g = json.loads((folder / "golden.json").read_text())
        n = len(g["camera_index"])
        assert len(g["sparse"]["progress"]) == n and len(g["dense"]["progress"]) == n
        series.append(
            {
                "episode_index": ep,
                "source": str((folder / "golden.json").relative_to(REPO)),
                "episode": g["episode"],
                "success": g["success"],
                "camera_index": g["camera_index"],
                "sparse": np.asarray(g["sparse"]["progress"], dtype=np.float32),
                "dense": np.asarray(g["dense"]["progress"], dtype=np.float32),
                "generator": g["generator"],
            }
        )
    return series


def write_lerobot_parquet(path: Path, series: list[dict], nan_at: list[tuple[int, int]]) -> list[dict]:
    """Build the table the way compute_sarm_progress does (both heads: --head-mode both)."""
    all_indices, all_episode_indices, all_frame_indices = [], [], []
    all_progress_sparse, all_progress_dense = [], []
    per_episode = []
    ep_start = 0
    for s in series:
        n = len(s["sparse"])
        sparse, dense = s["sparse"].copy(), s["dense"].copy()
        for ep, fr in nan_at:
            if ep == s["episode_index"]:
                sparse[fr] = np.nan
                dense[fr] = np.nan
        per_episode.append({"sparse": sparse, "dense": dense, "start": ep_start, "n": n})
        for local_idx in range(n):
            all_indices.append(ep_start + local_idx)
            all_episode_indices.append(s["episode_index"])
            all_frame_indices.append(local_idx)
            all_progress_sparse.append(float(sparse[local_idx]))
            all_progress_dense.append(float(dense[local_idx]))
        ep_start += n
    # From here on: LeRobot's lines, verbatim apart from names.
    table_data = {
        "index": np.array(all_indices, dtype=np.int64),
        "episode_index": np.array(all_episode_indices, dtype=np.int64),
        "frame_index": np.array(all_frame_indices, dtype=np.int64),
    }
    table_data["progress_sparse"] = np.array(all_progress_sparse, dtype=np.float32)
    table_data["progress_dense"] = np.array(all_progress_dense, dtype=np.float32)
    df = pa.table(table_data).to_pandas()
    df = df.sort_values("index").reset_index(drop=True)
    final_table = pa.Table.from_pandas(df, preserve_index=False)
    meta = {b"reward_model_path": REWARD_MODEL_PATH.encode()}
    final_table = final_table.replace_schema_metadata(meta)
    pq.write_table(final_table, path)
    return per_episode


def parquet_schema(path: Path) -> dict:
    schema = pq.read_schema(path)
    kv = pq.read_metadata(path).metadata or {}
    return {
        "columns": [
            {"name": f.name, "arrow_type": str(f.type), "nullable": f.nullable} for f in schema
        ],
        "arrow_schema_metadata": {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()},
        "parquet_key_value_metadata_keys": sorted(k.decode() for k in kv),
        "sorted_by": "index",
    }


def f32_or_none(x) -> float | None:
    x = float(x)
    return None if np.isnan(x) else x


def numpy_check(per_episode, head, H, kappa, eps, fallback):
    """Independent reading of the formula (rabc.py), vectorised per episode."""
    deltas64, futures = [], []
    for e in per_episode:
        p = e[head].astype(np.float64)
        t = np.arange(e["n"])
        fut = np.minimum(t + H, e["n"] - 1)  # tail clamp to the episode's last frame
        deltas64.append(p[fut] - p)  # NaN wherever p[t] or p[fut] is NaN
        futures.append(fut)
    d64 = np.concatenate(deltas64)
    valid = ~np.isnan(d64)
    mean = max(float(np.mean(d64[valid])), 0.0)  # mu = max(mean, 0)
    std = max(float(np.std(d64[valid], ddof=0)), eps)  # sigma = max(population std, eps)
    d32 = d64.astype(np.float32)  # weights are computed from the float32-rounded delta
    soft = np.clip((d32.astype(np.float64) - (mean - 2.0 * std)) / (4.0 * std + eps), 0.0, 1.0)
    w = np.zeros(d32.shape, np.float64)
    w = np.where(d32 > np.float32(kappa), 1.0, w)
    w = np.where((d32 >= 0) & (d32 <= np.float32(kappa)), soft, w)
    w = np.where(valid, w, fallback).astype(np.float32)
    return mean, std, d64, d32, w, futures, int(valid.sum())


def run_case(name, head, H, nan_at, series, tmp: Path) -> dict:
    path = tmp / f"{name}" / "sarm_progress.parquet"
    path.parent.mkdir(parents=True)
    per_episode = write_lerobot_parquet(path, series, nan_at)

    rw = RABCWeights(progress_path=path, chunk_size=H, head_mode=head, device=torch.device("cpu"))
    kappa, eps, fallback = rw.kappa, rw.epsilon, rw.fallback_weight

    n_total = sum(e["n"] for e in per_episode)
    indices = list(range(n_total))
    # Exactly the body of RABCWeights.compute_batch_weights up to the normalisation:
    deltas_py = [rw._compute_delta(int(i)) for i in indices]
    deltas = np.array(deltas_py, dtype=np.float32)
    weights = rw._compute_weights(deltas)
    assert weights.dtype == np.float32

    # Independent check.
    mean, std, d64, d32, w, futures, n_valid = numpy_check(per_episode, head, H, kappa, eps, fallback)
    assert rw.delta_mean == mean, (name, rw.delta_mean, mean)
    assert rw.delta_std == std, (name, rw.delta_std, std)
    lr64 = np.array(deltas_py, dtype=np.float64)
    assert np.array_equal(lr64, d64, equal_nan=True), name
    assert np.array_equal(deltas, d32, equal_nan=True), name
    assert np.array_equal(weights, w), (name, np.flatnonzero(weights != w))

    # The float32 delta is the float32 subtraction of the two float32 progress values (what a
    # runtime computing in f32 gets).
    for e, dd in zip(per_episode, np.split(d32, np.cumsum([e["n"] for e in per_episode])[:-1])):
        p = e[head]
        fut = np.minimum(np.arange(e["n"]) + H, e["n"] - 1)
        assert np.array_equal(p[fut] - p, dd, equal_nan=True), name

    # One batch through compute_batch_weights itself (per-batch normalisation).
    bidx = indices[::BATCH_STRIDE]
    bw, bstats = rw.compute_batch_weights({"index": torch.tensor(bidx, dtype=torch.int64)})
    raw = w[bidx]
    expect = torch.tensor(raw, dtype=torch.float32)
    expect = expect * len(bidx) / (expect.sum() + eps)
    assert torch.equal(bw, expect), name
    assert bstats["raw_mean_weight"] == float(np.nanmean(raw))
    assert bstats["num_zero_weight"] == int(np.sum(raw == 0))
    assert bstats["num_full_weight"] == int(np.sum(raw == 1.0))

    episodes = []
    off = 0
    for s, e, fut in zip(series, per_episode, futures):
        sl = slice(off, off + e["n"])
        episodes.append(
            {
                "episode_index": s["episode_index"],
                "index": indices[sl],
                "frame_index": list(range(e["n"])),
                "progress": [f32_or_none(v) for v in e[head]],
                "future_frame_index": [int(v) for v in fut],
                "delta_f64": [f32_or_none(v) for v in lr64[sl]],
                "delta": [f32_or_none(v) for v in deltas[sl]],
                "weight": [float(v) for v in weights[sl]],
            }
        )
        off += e["n"]

    return {
        "name": name,
        "head": head,
        "progress_column": rw.progress_column,
        "chunk_size": H,
        "kappa": kappa,
        "epsilon": eps,
        "fallback_weight": fallback,
        "nan_progress_at": [
            {"episode_index": ep, "frame_index": fr if fr >= 0 else per_episode[ep]["n"] + fr} for ep, fr in nan_at
        ],
        "delta_mean": float(rw.delta_mean),
        "delta_std": float(rw.delta_std),
        "num_deltas_in_stats": n_valid,
        "counts": {
            "frames": n_total,
            "weight_1": int(np.sum(weights == 1.0)),
            "weight_0": int(np.sum(weights == 0.0)),
            "weight_soft": int(np.sum((weights > 0) & (weights < 1))),
            "delta_nan": int(np.sum(np.isnan(deltas))),
        },
        "episodes": episodes,
        "batch_example": {
            "what": "RABCWeights.compute_batch_weights({'index': index}): raw weights scaled by "
            "len(batch) / (sum(raw) + epsilon), float32 torch",
            "index": bidx,
            "weight_normalised": [float(v) for v in bw],
            "raw_mean_weight": bstats["raw_mean_weight"],
            "num_zero_weight": bstats["num_zero_weight"],
            "num_full_weight": bstats["num_full_weight"],
        },
    }


def main() -> None:
    torch.set_num_threads(1)
    series = load_series()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cases = [run_case(n, h, H, nan, series, tmp) for n, h, H, nan in CASES]
        schema = parquet_schema(tmp / CASES[0][0] / "sarm_progress.parquet")

    fixture = {
        "what": "RA-BC sample weights computed by LeRobot's lerobot.utils.rabc.RABCWeights on LeRobot SARM "
        "progress; see models/tools/make_rabc_golden.py",
        "generator": "models/tools/make_rabc_golden.py",
        "lerobot_version": metadata.version("lerobot"),
        "numpy_version": np.__version__,
        "pandas_version": pd.__version__,
        "pyarrow_version": pa.__version__,
        "torch_version": torch.__version__.split("+")[0],
        "lerobot_code": {
            "weights": "lerobot/utils/rabc.py (RABCWeights: _compute_global_stats, _compute_delta, "
            "_compute_weights, compute_batch_weights)",
            "parquet_writer": "lerobot/policies/sarm/compute_rabc_weights.py (compute_sarm_progress)",
            "training_use": "lerobot/scripts/lerobot_train.py (chunk_size from policy.config.chunk_size; "
            "loss = sum(w*l)/(sum(w)+1e-6))",
        },
        "progress_source": {
            "what": "fp32 per-frame progress from LeRobot's SARMRewardModel (both heads) for the held-out "
            "ALOHA episodes; frames are the ones sarm label scores (the bundle's 10 Hz), frame_index = "
            "position in that series, global index contiguous over episodes 0, 1, 2",
            "generator": series[0]["generator"],
            "episodes": [
                {
                    "episode_index": s["episode_index"],
                    "golden": s["source"],
                    "episode": s["episode"],
                    "success": s["success"],
                    "frames": len(s["sparse"]),
                    "camera_index": s["camera_index"],
                }
                for s in series
            ],
        },
        "parquet_schema": schema,
        "reward_model_path_metadata": REWARD_MODEL_PATH,
        "cases": cases,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(fixture, indent=1) + "\n")
    for c in cases:
        print(
            f"{c['name']}: mean={c['delta_mean']:.6f} std={c['delta_std']:.6f} "
            f"n_stats={c['num_deltas_in_stats']} counts={c['counts']}"
        )
    print(f"wrote {OUT.relative_to(REPO)} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    sys.exit(main())
