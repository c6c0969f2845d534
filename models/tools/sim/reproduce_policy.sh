#!/usr/bin/env bash
# Rebuilds models/aloha-act/ from nothing, with fixed seeds (models/tools/sim/README.md, "The ALOHA ACT policy"):
#   1. joint-space demonstrations finished by the joint sim (joint_demos.py, seeds 1_000_000 + k)
#   2. LeRobot ACT training on them (train_act.py, seed 0; resumable)
#   3. export to the policy bundle, fp32 + INT8 (export_policy.py)
#   4. closed-loop evaluation of LeRobot's own policy in the joint sim (eval_act.py, seeds 0..19),
#      recording the golden episodes (seeds 0 and 1) as rosbag2 MCAP
#      and again with temporal ensembling (coeff 0.01)
#   5. goldens from LeRobot over those episodes, both stepping modes (make_act_golden.py)
#   6. models/aloha-act/EVAL.md from the JSON written above (act_report.py)
# Needs: models/tools/.venv with models/tools/requirements.txt and models/tools/sim/requirements.txt.
# Each step skips work whose output exists (delete models/tools/work/aloha_act to start over).
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=models/tools/.venv/bin/python
WORK=models/tools/work/aloha_act
export MUJOCO_GL=egl HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
EPISODES=${EPISODES:-60}
STEPS=${STEPS:-4000}
EVAL_SEEDS=${EVAL_SEEDS:-0:20}
UNITS=rad,rad,rad,rad,rad,rad,normalized,rad,rad,rad,rad,rad,rad,normalized

nice -n 10 $PY models/tools/sim/joint_demos.py --out $WORK/demos --episodes "$EPISODES" --workers 2
nice -n 10 $PY models/tools/sim/train_act.py --demos $WORK/demos --out $WORK/checkpoint --steps "$STEPS" --seed 0
nice -n 10 $PY models/tools/export_policy.py --checkpoint $WORK/checkpoint --out models/aloha-act --fps 50 \
    --limits $WORK/checkpoint/limits.json --calibration-data $WORK/checkpoint/calibration.npz --calibration 256 \
    --camera-source top=640x480 --action-units $UNITS --name aloha-act --seed 0 \
    --provenance-json $WORK/checkpoint/provenance.json \
    --description "LeRobot ACT (ResNet-18 from scratch, 60x80 input) trained on joint-space ALOHA transfer-cube demonstrations in MuJoCo; joint-position commands at 50 Hz"
nice -n 10 $PY models/tools/sim/eval_act.py --checkpoint $WORK/checkpoint --seeds "$EVAL_SEEDS" \
    --out models/aloha-act/eval/lerobot_checkpoint_mode.json --record-bags $WORK/eval_bags --record-seeds 0,1
nice -n 10 $PY models/tools/sim/eval_act.py --checkpoint $WORK/checkpoint --seeds "$EVAL_SEEDS" \
    --mode temporal_ensemble --coeff 0.01 --out models/aloha-act/eval/lerobot_temporal_ensemble.json
nice -n 10 $PY models/tools/sim/make_act_golden.py --bundle models/aloha-act --checkpoint $WORK/checkpoint \
    --bags $WORK/eval_bags --episodes seed_0,seed_1
cp $WORK/checkpoint/training.json models/aloha-act/eval/training.json
cp $WORK/demos/summary.json models/aloha-act/eval/demonstrations.json
$PY models/tools/sim/act_report.py --bundle models/aloha-act
