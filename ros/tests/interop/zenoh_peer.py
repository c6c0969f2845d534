"""A Zenoh peer built on the Zenoh Python API (eclipse-zenoh), acting like an rmw_zenoh node.

    zenoh_peer.py rmw-publish ENDPOINT DISTRO       publish sensor_msgs/JointState on /joint_states the
                                                    way rmw_zenoh_cpp does (data key, attachment,
                                                    liveliness token) until stdin closes
    zenoh_peer.py rmw-receive ENDPOINT DISTRO [TYPE TOPIC]
                                                    subscribe to TOPIC (default /sarm/progress, of
                                                    TYPE sarm_msgs/msg/Progress) on the exact key an
                                                    rmw_zenoh_cpp subscriber uses; print the first
                                                    message, its attachment and the liveliness
                                                    tokens seen, as JSON
    zenoh_peer.py native-receive ENDPOINT ROBOT     print the first sample on sarm/ROBOT/progress

Keys, type hashes (rosbags' RIHS01) and CDR (rosbags) are computed here, independently of sarm.
ENDPOINT is where the sarm side listens (tcp/127.0.0.1:PORT); scouting is off.
"""

import json
import sys
import threading
import time
from pathlib import Path

import zenoh
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from zenoh.ext import Int64, z_deserialize, z_serialize

MSG_DIR = Path(__file__).resolve().parents[2] / "sarm_msgs" / "msg"
TS = get_typestore(Stores.ROS2_JAZZY)
for f in sorted(MSG_DIR.glob("*.msg")):
    TS.register(get_types_from_msg(f.read_text(), f"sarm_msgs/msg/{f.stem}"))


def type_hash(distro: str, name: str) -> str:
    return "TypeHashNotSupported" if distro == "humble" else TS.hash_rihs01(name)


def dds_name(name: str) -> str:
    pkg, _, t = name.split("/")
    return f"{pkg}::msg::dds_::{t}_"


def session(endpoint: str) -> zenoh.Session:
    c = zenoh.Config()
    c.insert_json5("mode", '"peer"')
    c.insert_json5("scouting/multicast/enabled", "false")
    c.insert_json5("scouting/gossip/enabled", "false")
    c.insert_json5("connect/endpoints", json.dumps([endpoint]))
    return zenoh.open(c)


def to_plain(v):
    if hasattr(v, "__dataclass_fields__"):
        return {k: to_plain(getattr(v, k)) for k in v.__dataclass_fields__ if k != "__msgtype__"}
    if hasattr(v, "tolist"):
        return v.tolist()
    if isinstance(v, (list, tuple)):
        return [to_plain(x) for x in v]
    return v


def rmw_publish(endpoint: str, distro: str) -> None:
    s = session(endpoint)
    name = "sensor_msgs/msg/JointState"
    h = type_hash(distro, name)
    key = f"0/joint_states/{dds_name(name)}/{h}"
    zid = str(s.zid())
    lv = f"@ros2_lv/0/{zid}/0/0/NN/%/%/py_talker"
    tok_node = s.liveliness().declare_token(lv)
    ent = f"@ros2_lv/0/{zid}/0/1/MP/%/%/py_talker/%joint_states/{dds_name(name)}/{h}/::,10:,:,:,,"
    tok = s.liveliness().declare_token(ent)
    pub = s.declare_publisher(key)
    JS = TS.types[name]
    Hdr = TS.types["std_msgs/msg/Header"]
    T = TS.types["builtin_interfaces/msg/Time"]
    import numpy as np

    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    k = 0
    deadline = time.time() + 60
    while not stop.is_set() and time.time() < deadline:
        msg = JS(header=Hdr(stamp=T(sec=200 + k, nanosec=5), frame_id="base"), name=["b", "a"],
                 position=np.array([k * 1.0, -1.5]), velocity=np.array([], dtype=np.float64),
                 effort=np.array([], dtype=np.float64))
        payload = bytes(TS.serialize_cdr(msg, name))
        att = z_serialize((Int64(k + 1), Int64(time.time_ns()), bytes(range(16))))
        pub.put(payload, attachment=att)
        k += 1
        time.sleep(0.05)
    tok.undeclare()
    tok_node.undeclare()
    s.close()


def rmw_receive(endpoint: str, distro: str, name: str = "sarm_msgs/msg/Progress",
                topic: str = "/sarm/progress") -> None:
    s = session(endpoint)
    key = f"0/{topic.strip('/')}/{dds_name(name)}/{type_hash(distro, name)}"
    got = []
    tokens = []
    lv = s.liveliness().declare_subscriber("@ros2_lv/0/**", lambda smp: tokens.append(str(smp.key_expr)),
                                           history=True)
    sub = s.declare_subscriber(key, lambda smp: got.append(smp))
    print("ready", flush=True)
    deadline = time.time() + 30
    while not got and time.time() < deadline:
        time.sleep(0.02)
    if not got:
        sys.exit(f"nothing received on {key} within 30 s")
    smp = got[0]
    att = smp.attachment.to_bytes() if smp.attachment is not None else b""
    seq, ts, gid = z_deserialize(tuple[Int64, Int64, bytes], smp.attachment)
    msg = TS.deserialize_cdr(smp.payload.to_bytes(), name)
    print(json.dumps({"key": str(smp.key_expr), "msg": to_plain(msg), "attachment_len": len(att),
                      "seq": int(seq), "source_timestamp": int(ts), "gid": bytes(gid).hex(),
                      "tokens": tokens, "expected_key": key}), flush=True)
    sub.undeclare()
    lv.undeclare()
    s.close()


def native_receive(endpoint: str, robot: str) -> None:
    s = session(endpoint)
    got = []
    sub = s.declare_subscriber(f"sarm/{robot}/progress", lambda smp: got.append(smp))
    print("ready", flush=True)
    deadline = time.time() + 30
    while not got and time.time() < deadline:
        time.sleep(0.02)
    if not got:
        sys.exit("nothing received within 30 s")
    smp = got[0]
    msg = TS.deserialize_cdr(smp.payload.to_bytes(), "sarm_msgs/msg/Progress")
    print(json.dumps({"key": str(smp.key_expr), "msg": to_plain(msg)}), flush=True)
    sub.undeclare()
    s.close()


if __name__ == "__main__":
    mode, endpoint, extra = sys.argv[1:4]
    {"rmw-publish": rmw_publish, "rmw-receive": rmw_receive, "native-receive": native_receive}[mode](
        endpoint, extra, *sys.argv[4:])
