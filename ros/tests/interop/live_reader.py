"""Reads the trainer link live with the Zenoh Python API: the README's example.

    live_reader.py LISTEN_ENDPOINT COUNT

Listens on LISTEN_ENDPOINT (a robot connects to it), decodes sarm_msgs from
sarm/*/{progress,weight,episode} with rosbags' CDR decoder, and prints one
JSON line per decoded sample until COUNT samples were printed (or 60 s).
"""

import json
import sys
import threading
from pathlib import Path

import zenoh
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

MSG_DIR = Path(__file__).resolve().parents[2] / "sarm_msgs" / "msg"
store = get_typestore(Stores.ROS2_JAZZY)
for name in ("Progress", "SampleWeight", "EpisodeEvent"):
    text = (MSG_DIR / f"{name}.msg").read_text()
    store.register(get_types_from_msg(text, f"sarm_msgs/msg/{name}"))
TYPES = {"progress": "Progress", "weight": "SampleWeight", "episode": "EpisodeEvent"}

endpoint, count = sys.argv[1], int(sys.argv[2])
printed = 0
done = threading.Event()
lock = threading.Lock()


def on_sample(sample):
    global printed
    kind = str(sample.key_expr).rsplit("/", 1)[-1]
    if kind not in TYPES:
        return  # heartbeats, acknowledgements
    msg = store.deserialize_cdr(bytes(sample.payload.to_bytes()), f"sarm_msgs/msg/{TYPES[kind]}")
    row = {"key": str(sample.key_expr), "robot_id": msg.robot_id, "episode_index": msg.episode_index}
    if kind == "progress":
        row.update(frame_index=msg.frame_index, head=msg.head, progress=msg.progress, seq=msg.seq)
    elif kind == "weight":
        row.update(frame_index=msg.frame_index, weight=msg.weight, delta=msg.delta, seq=msg.seq)
    else:
        row.update(event=msg.event)
    with lock:
        if printed < count:
            print(json.dumps(row), flush=True)
            printed += 1
            if printed == count:
                done.set()


conf = zenoh.Config.from_json5(
    json.dumps({"mode": "peer", "listen": {"endpoints": [endpoint]}, "scouting": {"multicast": {"enabled": False}}})
)
with zenoh.open(conf) as session:
    sub = session.declare_subscriber("sarm/*/*", on_sample)
    print("ready", flush=True)
    done.wait(60)
