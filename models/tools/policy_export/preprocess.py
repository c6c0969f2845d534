"""Robot camera frame -> the image LeRobot's ACT sees.

LeRobot itself never resizes: a robot's camera is configured at the dataset's resolution and
`prepare_observation_for_inference` turns the (H, W, 3) uint8 frame into float32 / 255, CHW.
A policy bundle states the model's input size and one rule for getting there from whatever
the robot's camera sends, applied before LeRobot's own conversion:

- `resize = "stretch"`: the whole frame is resized to (height, width), aspect ratio ignored
  (for a 640x480 camera and a 160x120 model this is a plain 4x downscale);
- the resize runs on float32 pixel values 0..255 without intermediate rounding, with
  torchvision's antialiased bilinear filter (`torchvision.transforms.v2.functional.resize`,
  `InterpolationMode.BILINEAR`, `antialias=True`), the rule the runtime's preprocessor already
  implements for reward bundles (runtime/src/preprocess.rs);
- a frame that already has the model's size is passed through untouched (no resampling);
- then LeRobot's `prepare_observation_for_inference`: pixel / 255 (a float32 division), HWC ->
  CHW, and LeRobot's normaliser step (see the bundle's `normalization` tables).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

RESIZE_RULES = ("stretch",)


@dataclass(frozen=True)
class CameraSpec:
    key: str  # LeRobot feature key, e.g. "observation.images.top"
    camera: str  # the robot's camera name, e.g. "top"
    height: int  # model input
    width: int
    source_height: int  # the robot camera the model was trained with
    source_width: int
    resize: str = "stretch"
    filter: str = "bilinear"
    antialias: bool = True


def camera_name(key: str) -> str:
    prefix = "observation.images."
    return key[len(prefix):] if key.startswith(prefix) else key


def resize_frame(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (height, width, 3) float32 in 0..255 (the bundle's resize rule).

    A frame that already has the target size is returned as float32 without resampling."""
    import torchvision.transforms.v2.functional as TF
    from torchvision.transforms import InterpolationMode

    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise ValueError(f"camera frame must be (H, W, 3) uint8 RGB, got {a.shape} {a.dtype}")
    if a.shape[:2] == (height, width):
        return a.astype(np.float32)
    x = torch.from_numpy(np.array(a, copy=True)).permute(2, 0, 1).to(torch.float32)
    y = TF.resize(x, [height, width], interpolation=InterpolationMode.BILINEAR, antialias=True)
    return y.permute(1, 2, 0).contiguous().numpy()


def robot_observation(frames: dict[str, np.ndarray], state: np.ndarray, cameras: list[CameraSpec],
                      state_key: str = "observation.state") -> dict[str, np.ndarray]:
    """The dict LeRobot's `predict_action` takes: resized frames (HWC float32 0..255) + float32 state."""
    obs = {}
    for cam in cameras:
        if cam.camera not in frames:
            raise KeyError(f"no frame for camera {cam.camera!r} (have {sorted(frames)})")
        obs[cam.key] = resize_frame(frames[cam.camera], cam.height, cam.width)
    obs[state_key] = np.asarray(state, dtype=np.float32).copy()
    return obs
