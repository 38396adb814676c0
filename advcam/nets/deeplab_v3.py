"""torchvision's DeepLab-v3 (``deeplabv3_resnet101`` / ``deeplabv3_resnet50``) as a segmentation network of this
package: ``--seg_network deeplabv3_resnet101`` or ``deeplabv3_resnet50``.

torchvision's own network, unchanged: ResNet at output stride 8 (layer3/layer4 dilated), the ASPP-v3 head (1x1 +
three 3x3 atrous branches at rates 12, 24, 36 + image pooling, each Conv-BN-ReLU, 1x1 projection, dropout 0.5,
3x3 conv, 1x1 classifier), logits bilinearly upsampled to the input size. Built with ``weights=None,
weights_backbone=None`` (never a download); the pass loads the ImageNet backbone itself. Batch norm trains as in
torchvision's recipe; the auxiliary FCN head is not used.
"""
from __future__ import annotations

import torch
import torchvision
from torch import nn

from advcam.nets.deeplab_v2 import load_resnet_into

_BUILDERS = {"resnet101": torchvision.models.segmentation.deeplabv3_resnet101,
             "resnet50": torchvision.models.segmentation.deeplabv3_resnet50}


class DeepLabV3(nn.Module):
    """torchvision DeepLab-v3; ``forward`` returns the ``"out"`` logits (input size)."""

    def __init__(self, arch: str, num_classes: int = 21):
        super().__init__()
        net = _BUILDERS[arch](weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False)
        self.backbone = net.backbone  # IntermediateLayerGetter: torchvision ResNet keys without fc
        self.head = net.classifier
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)["out"]

    def load_backbone(self, state: dict) -> None:
        """Load a torchvision ResNet state dict (``fc.*`` ignored) into the backbone."""
        load_resnet_into(self.backbone, state)
