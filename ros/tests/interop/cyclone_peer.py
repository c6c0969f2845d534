"""A ROS 2 DDS peer built on Cyclone DDS's Python binding (independent of RustDDS).

    cyclone_peer.py publish-inputs DOMAIN     publish JointState on rt/joint_states and Image on
                                              rt/camera/image_raw at 20 Hz until stdin closes
    cyclone_peer.py receive-progress DOMAIN   print the first sarm_msgs/Progress received on
                                              rt/sarm/progress as JSON, then exit
    cyclone_peer.py collect-bag DOMAIN NCAM NJOINT
                                              receive CompressedImage on
                                              rt/camera/top/image_raw/compressed and JointState on
                                              rt/joint_states; print each sample's stamp and
                                              content (image: SHA-256 of the bytes) as JSON
    cyclone_peer.py play-bag DOMAIN BAG RATE  publish a rosbag2 bag's camera and joint messages
                                              (read with rosbags) with their timing, RATE x speed
    cyclone_peer.py receive-command DOMAIN FORM
                                              print the first joint command on rt/sarm/joint_commands
                                              as JSON: FORM joint_trajectory
                                              (trajectory_msgs/JointTrajectory) or float64_multi_array
                                              (std_msgs/Float64MultiArray), as robot drivers take them
    cyclone_peer.py collect-progress DOMAIN   print every Progress (rt/sarm/progress) and
                                              EpisodeEvent (rt/sarm/episode) as a JSON line, until an
                                              end or abort event

Types are declared here from the ROS 2 .msg definitions (ros/sarm_msgs/msg for sarm_msgs),
with ROS 2's DDS type names; loopback only, no multicast (CYCLONEDDS_URI below).
"""

import json
import os
import sys
import threading
import time

os.environ["CYCLONEDDS_URI"] = """<CycloneDDS><Domain Id="any">
  <General><Interfaces><NetworkInterface address="127.0.0.1" multicast="false"/></Interfaces>
           <AllowMulticast>false</AllowMulticast></General>
  <Discovery><ParticipantIndex>auto</ParticipantIndex><MaxAutoParticipantIndex>32</MaxAutoParticipantIndex>
             <Peers><Peer address="127.0.0.1"/></Peers></Discovery>
</Domain></CycloneDDS>"""

from dataclasses import asdict, dataclass  # noqa: E402

from cyclonedds.domain import DomainParticipant  # noqa: E402
from cyclonedds.idl import IdlStruct  # noqa: E402
from cyclonedds.idl.annotations import final  # noqa: E402
from cyclonedds.idl.types import float32, float64, int32, int64, sequence, uint8, uint32, uint64  # noqa: E402
from cyclonedds.pub import DataWriter  # noqa: E402
from cyclonedds.qos import Policy, Qos  # noqa: E402
from cyclonedds.sub import DataReader  # noqa: E402
from cyclonedds.topic import Topic  # noqa: E402
from cyclonedds.util import duration  # noqa: E402


@final
@dataclass
class Time(IdlStruct, typename="builtin_interfaces::msg::dds_::Time_"):
    sec: int32
    nanosec: uint32


@final
@dataclass
class Header(IdlStruct, typename="std_msgs::msg::dds_::Header_"):
    stamp: Time
    frame_id: str


@final
@dataclass
class JointState(IdlStruct, typename="sensor_msgs::msg::dds_::JointState_"):
    header: Header
    name: sequence[str]
    position: sequence[float64]
    velocity: sequence[float64]
    effort: sequence[float64]


@final
@dataclass
class Image(IdlStruct, typename="sensor_msgs::msg::dds_::Image_"):
    header: Header
    height: uint32
    width: uint32
    encoding: str
    is_bigendian: uint8
    step: uint32
    data: sequence[uint8]


@final
@dataclass
class Progress(IdlStruct, typename="sarm_msgs::msg::dds_::Progress_"):
    header: Header
    robot_id: str
    episode_index: int64
    frame_index: int64
    seq: uint64
    head: str
    stage: uint32
    stage_confidence: float32
    stage_probs: sequence[float32]
    stage_progress: float32
    progress: float32
    progress_smoothed: float32
    reward: float32


@final
@dataclass
class CompressedImage(IdlStruct, typename="sensor_msgs::msg::dds_::CompressedImage_"):
    header: Header
    format: str
    data: sequence[uint8]


@final
@dataclass
class EpisodeEvent(IdlStruct, typename="sarm_msgs::msg::dds_::EpisodeEvent_"):
    header: Header
    robot_id: str
    episode_index: int64
    event: uint8
    frames: uint64
    final_progress: float32
    reason: str


@final
@dataclass
class Duration(IdlStruct, typename="builtin_interfaces::msg::dds_::Duration_"):
    sec: int32
    nanosec: uint32


@final
@dataclass
class JointTrajectoryPoint(IdlStruct, typename="trajectory_msgs::msg::dds_::JointTrajectoryPoint_"):
    positions: sequence[float64]
    velocities: sequence[float64]
    accelerations: sequence[float64]
    effort: sequence[float64]
    time_from_start: Duration


@final
@dataclass
class JointTrajectory(IdlStruct, typename="trajectory_msgs::msg::dds_::JointTrajectory_"):
    header: Header
    joint_names: sequence[str]
    points: sequence[JointTrajectoryPoint]


@final
@dataclass
class MultiArrayDimension(IdlStruct, typename="std_msgs::msg::dds_::MultiArrayDimension_"):
    label: str
    size: uint32
    stride: uint32


@final
@dataclass
class MultiArrayLayout(IdlStruct, typename="std_msgs::msg::dds_::MultiArrayLayout_"):
    dim: sequence[MultiArrayDimension]
    data_offset: uint32


@final
@dataclass
class Float64MultiArray(IdlStruct, typename="std_msgs::msg::dds_::Float64MultiArray_"):
    layout: MultiArrayLayout
    data: sequence[float64]


XCDR1 = Policy.DataRepresentation(use_cdrv0_representation=True)
RELIABLE = Qos(Policy.Reliability.Reliable(duration(milliseconds=100)), Policy.History.KeepLast(10),
               Policy.Durability.Volatile, XCDR1)


def joint_state(k: int) -> JointState:
    # names deliberately not in the bundle's order; values encode k
    return JointState(Header(Time(100 + k, 250_000_000), "base"), ["j2", "j1"],
                      [k + 0.5, -k - 0.25], [0.1 * k, 0.2], [])


def image(k: int) -> Image:
    w, h = 4, 2
    data = [(k + i) % 256 for i in range(w * h * 3)]
    return Image(Header(Time(100 + k, 0), "camera_top"), h, w, "rgb8", 0, w * 3, data)


def publish_inputs(domain: int) -> None:
    dp = DomainParticipant(domain)
    jw = DataWriter(dp, Topic(dp, "rt/joint_states", JointState), qos=RELIABLE)
    iw = DataWriter(dp, Topic(dp, "rt/camera/image_raw", Image), qos=RELIABLE)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    k = 0
    deadline = time.time() + 60
    while not stop.is_set() and time.time() < deadline:
        jw.write(joint_state(k))
        iw.write(image(k))
        k += 1
        time.sleep(0.05)


def receive_progress(domain: int) -> None:
    dp = DomainParticipant(domain)
    reader = DataReader(dp, Topic(dp, "rt/sarm/progress", Progress), qos=RELIABLE)
    print("ready", flush=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        for sample in reader.take(N=10):
            d = asdict(sample)
            print(json.dumps(d), flush=True)
            return
        time.sleep(0.02)
    sys.exit("no Progress received within 30 s")


def receive_command(domain: int, form: str) -> None:
    cls = {"joint_trajectory": JointTrajectory, "float64_multi_array": Float64MultiArray}[form]
    dp = DomainParticipant(domain)
    reader = DataReader(dp, Topic(dp, "rt/sarm/joint_commands", cls), qos=RELIABLE)
    print("ready", flush=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        for sample in reader.take(N=10):
            print(json.dumps(asdict(sample)), flush=True)
            return
        time.sleep(0.02)
    sys.exit(f"no {form} received within 30 s")


CAMERA = "/camera/top/image_raw/compressed"
JOINTS = "/joint_states"
DEEP = Qos(Policy.Reliability.Reliable(duration(seconds=1)), Policy.History.KeepLast(1000),
           Policy.Durability.Volatile, XCDR1)


def collect_bag(domain: int, n_cam: int, n_joints: int) -> None:
    import hashlib
    dp = DomainParticipant(domain)
    cam = DataReader(dp, Topic(dp, "rt" + CAMERA, CompressedImage), qos=DEEP)
    js = DataReader(dp, Topic(dp, "rt" + JOINTS, JointState), qos=DEEP)
    print("ready", flush=True)
    got = {"camera": [], "joints": []}
    deadline = time.time() + 90
    while time.time() < deadline and (len(got["camera"]) < n_cam or len(got["joints"]) < n_joints):
        for s in cam.take(N=100):
            got["camera"].append([s.header.stamp.sec, s.header.stamp.nanosec, s.format,
                                  hashlib.sha256(bytes(s.data)).hexdigest()])
        for s in js.take(N=100):
            got["joints"].append([s.header.stamp.sec, s.header.stamp.nanosec, list(s.name),
                                  list(s.position)])
        time.sleep(0.01)
    print(json.dumps(got), flush=True)


def play_bag(domain: int, bag: str, rate: float) -> None:
    from pathlib import Path
    from rosbags.highlevel import AnyReader
    dp = DomainParticipant(domain)
    writers = {CAMERA: (DataWriter(dp, Topic(dp, "rt" + CAMERA, CompressedImage), qos=DEEP), CompressedImage),
               JOINTS: (DataWriter(dp, Topic(dp, "rt" + JOINTS, JointState), qos=DEEP), JointState)}
    time.sleep(10.0)  # discovery (RustDDS on a loopback-only participant can take seconds)
    n = 0
    with AnyReader([Path(bag)]) as reader:
        conns = [c for c in reader.connections if c.topic in writers]
        start, t0 = time.time(), None
        for conn, t, raw in reader.messages(connections=conns):
            t0 = t if t0 is None else t0
            due = start + (t - t0) / 1e9 / rate
            if due > time.time():
                time.sleep(due - time.time())
            w, cls = writers[conn.topic]
            w.write(cls.deserialize(bytes(raw)))
            n += 1
    time.sleep(0.5)
    print(f"done {n}", flush=True)


def collect_progress(domain: int) -> None:
    dp = DomainParticipant(domain)
    prog = DataReader(dp, Topic(dp, "rt/sarm/progress", Progress), qos=DEEP)
    ev = DataReader(dp, Topic(dp, "rt/sarm/episode", EpisodeEvent), qos=DEEP)
    print("ready", flush=True)
    deadline, ended = time.time() + 180, None
    while time.time() < deadline and (ended is None or time.time() < ended + 1.0):
        for s in prog.take(N=100):
            print(json.dumps({"progress": asdict(s)}), flush=True)
        for s in ev.take(N=10):
            print(json.dumps({"episode": asdict(s)}), flush=True)
            if s.event != 0 and ended is None:
                ended = time.time()
        time.sleep(0.01)
    print("end", flush=True)


if __name__ == "__main__":
    mode, domain = sys.argv[1], int(sys.argv[2])
    if mode == "collect-bag":
        collect_bag(domain, int(sys.argv[3]), int(sys.argv[4]))
    elif mode == "receive-command":
        receive_command(domain, sys.argv[3])
    elif mode == "play-bag":
        play_bag(domain, sys.argv[3], float(sys.argv[4]))
    else:
        {"publish-inputs": publish_inputs, "receive-progress": receive_progress,
         "collect-progress": collect_progress}[mode](domain)
