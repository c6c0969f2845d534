"""A ROS 2 DDS peer built on Cyclone DDS's Python binding (independent of RustDDS).

    cyclone_peer.py publish-inputs DOMAIN     publish JointState on rt/joint_states and Image on
                                              rt/camera/image_raw at 20 Hz until stdin closes
    cyclone_peer.py receive-progress DOMAIN   print the first sarm_msgs/Progress received on
                                              rt/sarm/progress as JSON, then exit

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


if __name__ == "__main__":
    mode, domain = sys.argv[1], int(sys.argv[2])
    {"publish-inputs": publish_inputs, "receive-progress": receive_progress}[mode](domain)
