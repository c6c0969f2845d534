"""int8 path (int8 encoder + int8 stage/subtask) vs fp32 on the committed held-out ALOHA episodes,
with onnxruntime 1.32 (CPU, optimised: the integer kernels the `ort` backend runs) and with the
exact QDQ semantics (what tract computes).

    models/tools/.venv/bin/python models/tools/sim/eval_int8_encoder.py [INT8_ENCODER.onnx]
    (from the repository root; needs models/tools/sim/requirements.txt for mcap and rosbags;
    INT8_ENCODER.onnx: a candidate to evaluate instead of the bundle's int8 encoder)
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
# An int8 encoder to evaluate instead of the bundle's (a candidate, before it is added)
INT8_ENCODER = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else B / m["precision"]["int8"]["image_encoder"]["path"]
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
    enc = {p: OrtRunner(B / (m["image_encoder"]["file"]["path"] if p == 'fp32' else INT8_ENCODER), optimize=opt or p == 'fp32') for p in ('fp32', 'int8')}
    run = {p: (OrtRunner(B / P[p]['stage']['path'], optimize=opt or p == 'fp32'), OrtRunner(B / P[p]['subtask']['path'], optimize=opt or p == 'fp32')) for p in ('fp32', 'int8')}
    agree = total = 0; maxd = 0.0; sumd = 0.0
    gold_bad = {0.2: [], 0.5: []}; gold_maxd = 0.0; gold_ties = 0  # int8 vs LeRobot's fp32 golden
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
            gs, gm, gp = (np.asarray(g[h][k]) for k in ('stage', 'stage_margin', 'progress'))
            ok = b['stage'][:, r] == gs
            for thr in gold_bad:
                gold_bad[thr] += [f"{ep.name} {h} frame {i}" for i in np.nonzero((gm > thr) & ~ok)[0]]
            gold_ties += int(((gm <= 0.5) & ~ok).sum())
            if ok.any(): gold_maxd = max(gold_maxd, float(np.abs(b['progress'][:, r] - gp)[ok].max()))
    print(f"{tag}: stage agreement int8 vs fp32 {agree}/{total} = {100*agree/total:.2f}%; |dprogress| max {maxd:.4f} where the stage agrees, mean {sumd/total:.4f}", flush=True)
    print(f"  int8 vs LeRobot's fp32 golden: stage differs where the golden margin > 0.2 on {len(gold_bad[0.2])} "
          f"({', '.join(gold_bad[0.2]) or '-'}), > 0.5 on {len(gold_bad[0.5])}; {gold_ties} differ at margin <= 0.5; "
          f"|progress - golden| max {gold_maxd:.4f} where the stage matches", flush=True)

# Encoder speed, fp32 vs int8, in this one run: onnxruntime CPU, one intra-op thread, no spinning,
# batch 1, optimised; interleaved runs so that machine load hits both alike.
import time
import onnxruntime as ort
def timed_session(path):
    so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0"); so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
sess = {p: timed_session(B / (m["image_encoder"]["file"]["path"] if p == 'fp32' else INT8_ENCODER)) for p in ('fp32', 'int8')}
x1 = x[:1]; times = {p: [] for p in sess}
for p, s in sess.items():
    for _ in range(10): s.run(None, {'pixels': x1})
for _ in range(100):
    for p, s in sess.items():
        t0 = time.perf_counter(); s.run(None, {'pixels': x1}); times[p].append(time.perf_counter() - t0)
p50 = {p: 1000 * float(np.median(t)) for p, t in times.items()}
print(f"image encoder, onnxruntime {ort.__version__}, 1 thread, no spinning, batch 1, 100 interleaved runs: "
      f"fp32 p50 {p50['fp32']:.2f} ms, int8 p50 {p50['int8']:.2f} ms, int8 speed-up {p50['fp32'] / p50['int8']:.2f}x", flush=True)
