"""int8 path (int8 encoder + int8 stage/subtask) vs fp32 on the committed held-out ALOHA episodes,
with onnxruntime 1.32 (CPU, optimised: the integer kernels the `ort` backend runs) and with the
exact QDQ semantics (what tract computes).

    models/tools/.venv/bin/python models/tools/sim/eval_int8_encoder.py   (from the repository root;
    needs models/tools/sim/requirements.txt for mcap and rosbags)
"""
import os, sys, json, tomllib
from pathlib import Path
os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / 'models/tools'))
import numpy as np
from sarm_export import windows as win, state as state_mod
from sarm_export.bundle import run_pipeline
from sarm_export.encoder_int8 import bag_frames, preprocess_of
from sarm_export.onnx_utils import OrtRunner
B = REPO / 'models/aloha-transfer-cube'; m = tomllib.loads((B/'bundle.toml').read_text())
heads = {h: {"stage_names": v["stage_names"], "temporal_proportions": v["temporal_proportions"], "num_stages": len(v["stage_names"])} for h, v in m["heads"].items()}
cmax = max(h["num_stages"] for h in heads.values())
pre = preprocess_of(m); text = np.asarray(m["text"]["tasks"][0]["embedding"], np.float32)
P = m["precision"]; W = m["window"]
from mcap.reader import make_reader
def joints_at(bag, stamps):
    from rosbags.typesys import Stores, get_typestore
    ts = get_typestore(Stores.ROS2_JAZZY); out = []
    js = []
    with open(next(Path(bag).glob('*.mcap')), 'rb') as f:
        for sch, ch, msg in make_reader(f).iter_messages(topics=['/joint_states']):
            d = ts.deserialize_cdr(msg.data, 'sensor_msgs/msg/JointState')
            js.append((d.header.stamp.sec * 10**9 + d.header.stamp.nanosec, np.asarray(d.position, np.float32)))
    t = np.array([s for s, _ in js])
    return np.stack([js[int(np.argmin(np.abs(t - s)))][1] for s in stamps])
for opt in (True, False):
    tag = 'onnxruntime optimised' if opt else 'exact QDQ (tract semantics)'
    enc = {p: OrtRunner(B / (m["image_encoder"]["file"]["path"] if p == 'fp32' else P['int8']['image_encoder']['path']), optimize=opt or p == 'fp32') for p in ('fp32', 'int8')}
    run = {p: (OrtRunner(B / P[p]['stage']['path'], optimize=opt or p == 'fp32'), OrtRunner(B / P[p]['subtask']['path'], optimize=opt or p == 'fp32')) for p in ('fp32', 'int8')}
    agree = total = 0; maxd = 0.0; sumd = 0.0
    for ep in sorted((B / 'episodes').iterdir()):
        g = json.loads((ep / 'golden.json').read_text())
        frames = bag_frames(ep / 'bag', 1)
        fr = [frames[i] for i in g['camera_index']]
        x = np.stack([pre.to_tensor(f).numpy() for f in fr]).astype(np.float32)
        joints = joints_at(ep / 'bag', g['stamps_ns'])
        st = state_mod.model_state(joints, m["state"]["mean"], m["state"]["std"], m["state"]["model_dim"], m["state"]["eps"])
        n = len(fr); res = {}
        for p in ('fp32', 'int8'):
            feats = np.concatenate([enc[p]({'pixels': x[i:i+1]})['features'] for i in range(n)])
            idx = np.asarray([win.frame_indices(f, n, W['layout'], W['n_obs_steps'], W['frame_gap'], W['anchor_first']) for f in range(n)])
            feeds = {'image_features': feats[idx], 'text_embedding': np.repeat(text[None], n, 0), 'state': st[idx]}
            res[p] = run_pipeline(run[p][0], run[p][1], feeds, heads, cmax)
        r = W['readout']
        for h in heads:
            a, b = res['fp32'][h], res['int8'][h]
            same = a['stage'][:, r] == b['stage'][:, r]
            d = np.abs(a['progress'][:, r] - b['progress'][:, r])
            agree += int(same.sum()); total += same.size; sumd += float(d.sum())
            if same.any(): maxd = max(maxd, float(d[same].max()))
    print(f"{tag}: stage agreement int8 vs fp32 {agree}/{total} = {100*agree/total:.2f}%; |dprogress| max {maxd:.4f} where the stage agrees, mean {sumd/total:.4f}", flush=True)
