"""Prints rosbags' REP-2016 type hashes (RIHS01) as JSON: the standard types sarm uses
(from rosbags' Jazzy store) and sarm_msgs (registered from the .msg files in the given folder).

    type_hashes.py ros/sarm_msgs/msg
"""

import json
import sys
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore

ts = get_typestore(Stores.ROS2_JAZZY)
names = ["builtin_interfaces/msg/Time", "std_msgs/msg/Header", "sensor_msgs/msg/Image",
         "sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/JointState",
         "diagnostic_msgs/msg/KeyValue", "diagnostic_msgs/msg/DiagnosticStatus",
         "diagnostic_msgs/msg/DiagnosticArray", "builtin_interfaces/msg/Duration",
         "std_msgs/msg/MultiArrayDimension", "std_msgs/msg/MultiArrayLayout", "std_msgs/msg/Float64MultiArray",
         "trajectory_msgs/msg/JointTrajectoryPoint", "trajectory_msgs/msg/JointTrajectory"]
for f in sorted(Path(sys.argv[1]).glob("*.msg")):
    name = f"sarm_msgs/msg/{f.stem}"
    ts.register(get_types_from_msg(f.read_text(), name))
    names.append(name)
print(json.dumps({n: ts.hash_rihs01(n) for n in names}))
