"""``--seg_network deeplabv3_resnet101``: torchvision's DeepLab-v3, ResNet-101 (:mod:`advcam.nets.deeplab_v3`)."""
from __future__ import annotations

from advcam.nets.deeplab_v3 import DeepLabV3

BACKBONE_ARCH = "resnet101"


def build(num_classes: int = 21) -> DeepLabV3:
    """torchvision ``deeplabv3_resnet101`` without weights (the pass loads the ImageNet backbone)."""
    return DeepLabV3("resnet101", num_classes)
