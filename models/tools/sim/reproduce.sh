#!/usr/bin/env bash
# Regenerates models/aloha-transfer-cube end to end, with fixed seeds:
#   sim demonstrations (rosbag2 MCAP) -> LeRobot dataset -> EfficientNet-lite0 features ->
#   SARM training (LeRobot) -> bundle export (fp32 + int8) -> committed held-out episodes + goldens ->
#   EVAL.md (scored by the Rust runtime, `sarm label`).
# Needs: models/tools/.venv with models/tools/requirements.txt and models/tools/sim/requirements.txt,
# EGL (libegl1, libegl-mesa0), and a built `sarm` (cargo build --release, or target/debug/sarm).
# Heavy (about 1.5 h on 2 shared cores); every Python job runs under nice with 1 torch thread.
# Intermediate data goes to the git-ignored models/tools/work/aloha/.
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY="nice -n 10 models/tools/.venv/bin/python"
export MUJOCO_GL=egl HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=1
W=models/tools/work/aloha
mkdir -p "$W"
$PY models/tools/sim/generate.py --out "$W" --train "${SARM_ALOHA_TRAIN:-48}" --eval "${SARM_ALOHA_EVAL:-36}" --workers 2
$PY models/tools/sim/features.py
$PY models/tools/sim/make_dataset.py
$PY models/tools/sim/train.py
$PY models/tools/sim/make_golden.py
$PY models/tools/sim/evaluate.py "$@"
