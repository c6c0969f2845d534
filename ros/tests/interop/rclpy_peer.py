"""A real ROS 2 peer: rclpy (ROS 2 Kilted) on rmw_fastrtps_cpp, Fast DDS underneath.

    rclpy_peer.py feed-node DOMAIN BAG RATE
        publish the bag's camera (sensor_msgs/CompressedImage, SensorDataQoS as camera drivers
        do) and joints (sensor_msgs/JointState, reliable) at RATE x their recorded timing, once
        sarm's subscriptions are matched; receive sarm's /sarm/progress and /sarm/episode as
        serialized CDR (raw=True), decode each with ROS 2's own type support (sarm_msgs built
        by setup_rclpy.sh) and with rosbags from ros/sarm_msgs/msg, and fail if they differ. Prints
        "published N" when the bag is through, each output as a JSON line {"progress": ...} /
        {"episode": ...}, then "end" (one second after an end or abort event).
        With --policy=FORM (float64_multi_array | joint_trajectory | joint_state) it is also
        the robot's controller: messages are restamped with the current time (a live robot),
        sarm's commands on /sarm/joint_commands are received as that type (as ros2_control's
        controllers subscribe), /sarm/policy_event is decoded both ways like Progress, and
        once five messages are out a sarm_msgs/PolicyControl ARM goes to /sarm/policy_control.
        Outputs {"command": ...} and {"policy_event": ...} lines too.
    rclpy_peer.py collect-raw DOMAIN CAMERA_N JOINTS_N
        subscribe the camera and joint topics raw (reliable, as `sarm replay` publishes them);
        print "ready" once subscribed, then one JSON line with, per topic, every message's
        SHA-256 and length in arrival order.
    rclpy_peer.py graph DOMAIN NODE TOPIC
        wait until node NODE and topic TOPIC are in the ROS 2 graph, then print the graph as
        JSON: get_topic_names_and_types(), the endpoints on /clock, the node names.

Traffic stays on this machine: ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST (initial peers on
127.0.0.1, no multicast) and a Fast DDS profile whose only transport is UDPv4 whitelisting
127.0.0.1. With --lan-too (any mode) the whitelist also holds this machine's other IPv4
addresses: Fast DDS then also listens on, and advertises, them next to 127.0.0.1, as a ROS 2
node on a robot's network does; it still only discovers over 127.0.0.1. Stops when stdin closes or after a
deadline.
"""

import atexit
import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path


# Fast DDS on loopback only (also used by models/tools/sim/ros_robot.py --transport dds).
PROFILE = (Path(__file__).resolve().parent / "fastdds_loopback.xml").read_text()


def lan_addresses() -> list[str]:
    """This machine's non-loopback IPv4 addresses (`hostname -I`)."""
    import subprocess
    out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, check=True).stdout
    return [a for a in out.split() if "." in a and not a.startswith("127.")]


def configure_environment(lan_too: bool) -> None:
    folder = tempfile.mkdtemp(prefix="sarm-fastdds-")
    atexit.register(shutil.rmtree, folder, True)
    profile = Path(folder) / "profile.xml"
    addresses = ["127.0.0.1"] + (lan_addresses() if lan_too else [])
    whitelist = "".join(f"<address>{a}</address>" for a in addresses)
    profile.write_text(PROFILE.replace("<address>127.0.0.1</address>", whitelist))
    os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
    os.environ["FASTRTPS_DEFAULT_PROFILES_FILE"] = str(profile)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ["RMW_IMPLEMENTATION"] = "rmw_fastrtps_cpp"


LAN_TOO = "--lan-too" in sys.argv
POLICY = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--policy=")), None)
ARGS = [a for a in sys.argv[1:] if a != "--lan-too" and not a.startswith("--policy=")]
configure_environment(LAN_TOO)

import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import (HistoryPolicy, QoSProfile, ReliabilityPolicy,  # noqa: E402
                       qos_profile_sensor_data)
from rclpy.serialization import deserialize_message  # noqa: E402
from sarm_msgs.msg import EpisodeEvent, Progress  # noqa: E402  (built by setup_rclpy.sh)
from sensor_msgs.msg import CompressedImage, JointState  # noqa: E402

CAMERA = "/camera/top/image_raw/compressed"
JOINTS = "/joint_states"
MSG_DIR = Path(__file__).resolve().parents[2] / "sarm_msgs" / "msg"
RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000,
                      reliability=ReliabilityPolicy.RELIABLE)


def stdin_closed() -> threading.Event:
    ev = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), ev.set()), daemon=True).start()
    return ev


SPINNING: list[tuple[SingleThreadedExecutor, threading.Thread]] = []


def spin_in_background(node: Node) -> None:
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    t = threading.Thread(target=ex.spin, daemon=True)
    t.start()
    SPINNING.append((ex, t))


def shutdown() -> None:
    """Stop the executors before rclpy: a thread still spinning at exit aborts the process."""
    for ex, t in SPINNING:
        ex.shutdown()
        t.join(timeout=5)
    rclpy.try_shutdown()


def to_plain(v):
    import dataclasses
    if dataclasses.is_dataclass(v):
        # rosbags keeps a message's constants (START, END, ...) as fields too; ROS 2 names
        # fields in lower case and constants in upper case.
        return {f.name: to_plain(getattr(v, f.name)) for f in dataclasses.fields(v)
                if f.name != "__msgtype__" and not f.name.isupper()}
    if hasattr(v, "tolist"):
        return v.tolist()
    if isinstance(v, (list, tuple)):
        return [to_plain(x) for x in v]
    return v


def feed_node(domain: int, bag: str, rate: float) -> None:
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    for f in sorted(MSG_DIR.glob("*.msg")):
        store.register(get_types_from_msg(f.read_text(), f"sarm_msgs/msg/{f.stem}"))

    stop = stdin_closed()
    rclpy.init(domain_id=domain)
    node = Node("sarm_test_driver")
    lock = threading.Lock()
    out: list[str] = []
    ended: list[float] = []

    def decode(raw: bytes, cls, name: str) -> dict:
        ours = to_plain(store.deserialize_cdr(raw, f"sarm_msgs/msg/{name}"))
        theirs = rclpy_plain(deserialize_message(raw, cls))
        if json.dumps(ours, sort_keys=True) != json.dumps(theirs, sort_keys=True):
            errors.append(f"{name}: rosbags {ours} != rclpy {theirs}")
        return ours

    errors: list[str] = []

    def on_progress(raw: bytes) -> None:
        m = decode(raw, Progress, "Progress")
        with lock:
            out.append(json.dumps({"progress": m}))

    def on_episode(raw: bytes) -> None:
        m = decode(raw, EpisodeEvent, "EpisodeEvent")
        with lock:
            out.append(json.dumps({"episode": m}))
            if m["event"] != 0 and not ended:
                ended.append(time.time())

    node.create_subscription(Progress, "/sarm/progress", on_progress, RELIABLE, raw=True)
    node.create_subscription(EpisodeEvent, "/sarm/episode", on_episode, RELIABLE, raw=True)
    cam = node.create_publisher(CompressedImage, CAMERA, qos_profile_sensor_data)
    joints = node.create_publisher(JointState, JOINTS, RELIABLE)
    control = None
    if POLICY:
        from sarm_msgs.msg import PolicyControl, PolicyEvent
        from std_msgs.msg import Float64MultiArray
        from trajectory_msgs.msg import JointTrajectory
        form = {"float64_multi_array": Float64MultiArray, "joint_trajectory": JointTrajectory,
                "joint_state": JointState}[POLICY]

        def on_command(m) -> None:
            with lock:
                out.append(json.dumps({"command": rclpy_plain(m)}))

        def on_policy_event(raw: bytes) -> None:
            m = decode(raw, PolicyEvent, "PolicyEvent")
            with lock:
                out.append(json.dumps({"policy_event": m}))

        node.create_subscription(form, "/sarm/joint_commands", on_command, RELIABLE)
        node.create_subscription(PolicyEvent, "/sarm/policy_event", on_policy_event, RELIABLE, raw=True)
        control = node.create_publisher(PolicyControl, "/sarm/policy_control", RELIABLE)
    spin_in_background(node)

    def matched() -> bool:
        ours = (cam.get_subscription_count() and joints.get_subscription_count()
                and node.count_publishers("/sarm/progress") and node.count_publishers("/sarm/episode"))
        if control is not None:
            ours = ours and control.get_subscription_count() and node.count_publishers("/sarm/joint_commands")
        return bool(ours)

    deadline = time.time() + 120
    while not matched():
        if stop.is_set() or time.time() > deadline:
            sys.exit("sarm's subscriptions/publishers not matched within 120 s")
        time.sleep(0.05)
    time.sleep(1.0)  # the other side matches us at about the same time; a margin for it

    n = 0
    with AnyReader([Path(bag)]) as reader:
        conns = [c for c in reader.connections if c.topic in (CAMERA, JOINTS)]
        start, t0 = time.time(), None
        for conn, t, raw in reader.messages(connections=conns):
            t0 = t if t0 is None else t0
            due = start + (t - t0) / 1e9 / rate
            if due > time.time():
                time.sleep(due - time.time())
            m = deserialize_message(bytes(raw), CompressedImage if conn.topic == CAMERA else JointState)
            if POLICY:
                m.header.stamp = node.get_clock().now().to_msg()
            (cam if conn.topic == CAMERA else joints).publish(m)
            n += 1
            if control is not None and n == 5:
                control.publish(PolicyControl(command=PolicyControl.ARM, reason="rclpy peer"))
    print(f"published {n}", flush=True)

    while not stop.is_set() and time.time() < deadline and not (ended and time.time() > ended[0] + 1.0):
        time.sleep(0.05)
    with lock:
        for line in out:
            print(line, flush=True)
        if errors:
            sys.exit("\n".join(errors))
    print("end", flush=True)


def rclpy_plain(m):
    """An rclpy message as plain data, with rosbags' field names and float32 rounding."""
    import array
    if hasattr(m, "get_fields_and_field_types"):
        return {k: rclpy_plain(getattr(m, k)) for k in m.get_fields_and_field_types()}
    if isinstance(m, array.array):
        return m.tolist()
    if hasattr(m, "tolist"):
        return m.tolist()
    if isinstance(m, (list, tuple)):
        return [rclpy_plain(x) for x in m]
    return m


def collect_raw(domain: int, n_cam: int, n_joints: int) -> None:
    stop = stdin_closed()
    rclpy.init(domain_id=domain)
    node = Node("sarm_test_collector")
    got: dict[str, list] = {CAMERA: [], JOINTS: []}
    lock = threading.Lock()

    def on(topic):
        def cb(raw: bytes) -> None:
            with lock:
                got[topic].append([hashlib.sha256(raw).hexdigest(), len(raw)])
        return cb

    node.create_subscription(CompressedImage, CAMERA, on(CAMERA), RELIABLE, raw=True)
    node.create_subscription(JointState, JOINTS, on(JOINTS), RELIABLE, raw=True)
    spin_in_background(node)
    print("ready", flush=True)
    deadline = time.time() + 90
    while not stop.is_set() and time.time() < deadline:
        with lock:
            if len(got[CAMERA]) >= n_cam and len(got[JOINTS]) >= n_joints:
                break
        time.sleep(0.02)
    time.sleep(0.5)  # anything beyond the expected count would show up here
    with lock:
        print(json.dumps(got), flush=True)


def graph(domain: int, node_name: str, topic: str) -> None:
    stop = stdin_closed()
    rclpy.init(domain_id=domain)
    node = Node("sarm_test_graph")
    deadline = time.time() + 60
    while True:
        names = [n for n, _ns in node.get_node_names_and_namespaces()]
        topics = dict(node.get_topic_names_and_types())
        if node_name in names and topic in topics:
            break
        if stop.is_set() or time.time() > deadline:
            sys.exit(f"{node_name} / {topic} not in the graph within 60 s: {names} {topics}")
        time.sleep(0.1)
    time.sleep(2.0)  # the rest of the participant's endpoints arrive with the same SEDP burst

    def endpoints(infos):
        return [{"node": i.node_name, "namespace": i.node_namespace, "type": i.topic_type,
                 "gid": bytes(i.endpoint_gid).hex()} for i in infos]

    print(json.dumps({
        "topics": {k: list(v) for k, v in node.get_topic_names_and_types()},
        "clock_subscriptions": endpoints(node.get_subscriptions_info_by_topic("/clock")),
        "clock_publishers": endpoints(node.get_publishers_info_by_topic("/clock")),
        "nodes": sorted(node.get_node_names()),
    }), flush=True)


if __name__ == "__main__":
    atexit.register(shutdown)
    mode, domain = ARGS[0], int(ARGS[1])
    if mode == "feed-node":
        feed_node(domain, ARGS[2], float(ARGS[3]))
    elif mode == "collect-raw":
        collect_raw(domain, int(ARGS[2]), int(ARGS[3]))
    elif mode == "graph":
        graph(domain, ARGS[2], ARGS[3])
    else:
        sys.exit(f"unknown mode {mode}")
