"""`sarm label --dataset`'s sarm_progress.parquet in LeRobot's own RA-BC loader.

The dataset is ros/tests/fixtures/lerobot/aloha_av1 (written by LeRobot 0.4.4's LeRobotDataset,
AV1); the reference parquet is LeRobot's compute_sarm_progress on it with the same model
(models/tools/lerobot_label_reference.py, committed next to it). sarm's file is made here by the
`sarm` binary the Rust tests build (target/debug/sarm, with the `video` feature; `cargo test
--workspace` builds it, as .ci/run does before this). Both files go through
lerobot.utils.rabc.RABCWeights (LeRobot 0.4.4; 0.6 moved it to lerobot.rewards.sarm.rabc and
reads the same columns): the global delta statistics and every frame's weight must agree within
what the measured progress difference allows.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "ros" / "tests" / "fixtures" / "lerobot"
SARM = Path(os.environ.get("SARM_BIN", REPO / "target" / "debug" / "sarm"))
# The Rust parity test's bound on |progress diff| (its measured value is printed there).
PROGRESS_BOUND = 1e-4


def bundle_at(fps: float, dest: Path) -> Path:
    """models/sarm-test with its clock declared at `fps` (as ros/tests/label_dataset.rs)."""
    src = REPO / "models" / "sarm-test"
    dest.mkdir(parents=True, exist_ok=True)
    for p in src.glob("*.onnx"):
        (dest / p.name).symlink_to(p)
    text = (src / "bundle.toml").read_text()
    assert text.count("\nfps = 30.0\n") == 1
    (dest / "bundle.toml").write_text(text.replace("\nfps = 30.0\n", f"\nfps = {fps:.1f}\n"))
    return dest


@pytest.fixture(scope="module")
def ours(tmp_path_factory) -> Path:
    if not SARM.is_file():
        pytest.fail(f"{SARM} is missing: build it with the video feature first "
                    "(`cargo test --workspace` does, or `cargo build --features sarm-ros/video`), or set SARM_BIN")
    tmp = tmp_path_factory.mktemp("label")
    bundle = bundle_at(10.0, tmp / "bundle")
    out = tmp / "sarm_progress.parquet"
    r = subprocess.run([str(SARM), "label", "--dataset", str(FIXTURES / "aloha_av1"), "--bundle", str(bundle),
                        "--out", str(out), "--jobs", "2"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def test_the_parquet_has_lerobots_schema(ours):
    import pyarrow.parquet as pq

    ref = pq.read_schema(FIXTURES / "reference" / "sarm-test-10hz.parquet")
    got = pq.read_schema(ours)
    assert [(f.name, str(f.type)) for f in got] == [(f.name, str(f.type)) for f in ref]
    assert b"reward_model_path" in got.metadata


@pytest.mark.parametrize("head", ["sparse", "dense"])
@pytest.mark.parametrize("chunk", [5, 50])
def test_rabc_weights_match_lerobots_own_labelling(ours, head, chunk):
    from lerobot.utils.rabc import RABCWeights

    ref_path = FIXTURES / "reference" / "sarm-test-10hz.parquet"
    a = RABCWeights(ours, chunk_size=chunk, head_mode=head, device=torch.device("cpu"))
    b = RABCWeights(ref_path, chunk_size=chunk, head_mode=head, device=torch.device("cpu"))
    progress_diff = np.abs(pd.read_parquet(ours)[f"progress_{head}"].to_numpy()
                           - pd.read_parquet(ref_path)[f"progress_{head}"].to_numpy()).max()
    assert progress_diff <= PROGRESS_BOUND
    # every frame has a progress value; none is NaN (nothing written as a placeholder)
    assert len(a.progress_lookup) == len(b.progress_lookup) == 1006
    # deltas are differences of two progress values
    assert abs(a.delta_mean - b.delta_mean) <= 2 * progress_diff
    assert abs(a.delta_std - b.delta_std) <= 2 * progress_diff
    idx = torch.arange(1006)
    wa, _ = a.compute_batch_weights({"index": idx})
    wb, _ = b.compute_batch_weights({"index": idx})
    wa, wb = wa.numpy(), wb.numpy()
    # The soft band maps a delta change d to a raw weight change of at most d / (4 sigma);
    # the batch normalisation (sum = batch size) rescales by the ratio of the sums.
    sigma = min(a.delta_std, b.delta_std)
    raw_bound = 2 * progress_diff / (4 * sigma)
    diff = np.abs(wa - wb).max()
    print(f"{head} H={chunk}: progress diff {progress_diff:.2e}, delta mean {a.delta_mean:.5f} vs "
          f"{b.delta_mean:.5f}, std {a.delta_std:.5f} vs {b.delta_std:.5f}, max |weight diff| {diff:.2e} "
          f"(bound {raw_bound * wa.max() + raw_bound:.2e})")
    assert diff <= raw_bound * wa.max() + raw_bound
