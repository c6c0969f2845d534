"""Reads an MCAP file with mcap-ros2-support (an independent decoder) and
prints its messages as JSON lines: topic, schema name, log time, fields."""

import json
import sys

from mcap_ros2.reader import read_ros2_messages


def plain(v):
    if hasattr(v, "__slots__") or hasattr(v, "__dict__"):
        names = getattr(v, "__slots__", None) or list(vars(v))
        return {n: plain(getattr(v, n)) for n in names if not n.startswith("_")}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, (bytes, bytearray)):
        return list(v)
    if hasattr(v, "tolist"):
        return v.tolist()
    return v


for m in read_ros2_messages(sys.argv[1]):
    print(json.dumps({"topic": m.channel.topic, "schema": m.schema.name, "log_time": m.log_time_ns,
                      "msg": plain(m.ros_msg)}))
