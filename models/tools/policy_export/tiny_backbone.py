"""`resnet_tiny`: a narrow ResNet for the test policy only (models/act-test).

LeRobot's ACT builds its vision backbone as `getattr(torchvision.models, config.vision_backbone)`
and accepts any name starting with "resnet". torchvision's smallest is resnet18 (11 M parameters,
45 MB in fp32), too big for a test bundle of a few MB. `resnet_tiny` is torchvision's own
`ResNet` with `BasicBlock`, one block per stage and widths 8/16/32/64 instead of 64..512, built
with torchvision's `_make_layer`: the same layers and ops as resnet18 (Conv, frozen BatchNorm,
ReLU, MaxPool, residual Add), smaller. `register()` makes it visible to LeRobot under
`torchvision.models.resnet_tiny`; a checkpoint whose config names it loads only after that.
"""

from __future__ import annotations

import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

NAME = "resnet_tiny"
WIDTHS = (8, 16, 32, 64)


def resnet_tiny(*, weights=None, progress: bool = True, replace_stride_with_dilation=None, norm_layer=None,
                **kwargs) -> ResNet:
    if weights is not None:
        raise ValueError("resnet_tiny has no pretrained weights")
    dil = replace_stride_with_dilation or [False, False, False]
    net = ResNet(BasicBlock, [1, 1, 1, 1], replace_stride_with_dilation=dil, norm_layer=norm_layer, **kwargs)
    norm = net._norm_layer
    net.inplanes, net.dilation = WIDTHS[0], 1
    net.conv1 = nn.Conv2d(3, WIDTHS[0], kernel_size=7, stride=2, padding=3, bias=False)
    net.bn1 = norm(WIDTHS[0])
    net.layer1 = net._make_layer(BasicBlock, WIDTHS[0], 1)
    net.layer2 = net._make_layer(BasicBlock, WIDTHS[1], 1, stride=2, dilate=dil[0])
    net.layer3 = net._make_layer(BasicBlock, WIDTHS[2], 1, stride=2, dilate=dil[1])
    net.layer4 = net._make_layer(BasicBlock, WIDTHS[3], 1, stride=2, dilate=dil[2])
    net.fc = nn.Linear(WIDTHS[3], 1000)
    for m in net.modules():  # torchvision's ResNet initialisation
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return net


def register() -> None:
    if getattr(torchvision.models, NAME, None) is not resnet_tiny:
        setattr(torchvision.models, NAME, resnet_tiny)
