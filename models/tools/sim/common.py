"""Shared helpers of the ALOHA pipeline: episode folders, bag reading, model-rate frame selection."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

TOOLS = Path(__file__).resolve().parent.parent
REPO = TOOLS.parent.parent
WORK = TOOLS / "work" / "aloha"
BUNDLE = REPO / "models" / "aloha-transfer-cube"
CAMERA_TOPIC = "/camera/top/image_raw/compressed"
JOINT_TOPIC = "/joint_states"
CAMERA_FPS = 50
MODEL_FPS = 10
TASK = "pick up the cube with the right arm and hand it over to the left arm"


def episodes(split: str, root: Path = WORK) -> list[Path]:
    return sorted((root / split).glob("ep_*"))


def meta(ep: Path) -> dict:
    return json.loads((ep / "meta.json").read_text())


def model_frames(n_camera: int, camera_fps: float = CAMERA_FPS, model_fps: float = MODEL_FPS) -> list[int]:
    """Camera frame index of each model-rate frame, the way `sarm label` picks them.

    ros/src/label.rs: target k = first + round(k * 1e9 / fps) ns while target <= last + period / 2;
    the camera frame nearest the target (stamps are exact multiples of 20 ms here)."""
    period = 1e9 / model_fps
    cam = 1e9 / camera_fps
    last = (n_camera - 1) * cam
    out = []
    k = 0
    while True:
        target = round(k * period)
        if target > last + period / 2:
            break
        out.append(int(min(n_camera - 1, round(target / cam))))
        k += 1
    return out


def read_bag(bag: Path):
    """(camera JPEG bytes list, joints (n,14) float64 in ALOHA order, stamps ns) from a rosbag2 folder."""
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    jpegs, jstamps, cstamps, joints = [], [], [], []
    names = None
    with Reader(bag) as r:
        for conn, _t, raw in r.messages():
            msg = ts.deserialize_cdr(raw, conn.msgtype)
            stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            if conn.topic == CAMERA_TOPIC:
                jpegs.append(bytes(msg.data))
                cstamps.append(stamp)
            elif conn.topic == JOINT_TOPIC:
                names = list(msg.name)
                joints.append(np.asarray(msg.position, np.float64))
                jstamps.append(stamp)
    from sarm_export import ALOHA_JOINT_NAMES

    order = [names.index(n) for n in ALOHA_JOINT_NAMES]
    assert cstamps == jstamps, "camera and joint stamps are paired one to one in these bags"
    return jpegs, np.stack(joints)[:, order], np.asarray(cstamps, np.int64)


def decode_jpeg(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
