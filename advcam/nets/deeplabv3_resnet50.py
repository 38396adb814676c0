"""``--seg_network deeplabv3_resnet50``: torchvision's DeepLab-v3, ResNet-50 (:mod:`advcam.nets.deeplab_v3`)."""
from __future__ import annotations

from advcam.nets.deeplab_v3 import DeepLabV3

BACKBONE_ARCH = "resnet50"


def build(num_classes: int = 21) -> DeepLabV3:
    """torchvision ``deeplabv3_resnet50`` without weights (the pass loads the ImageNet backbone)."""
    return DeepLabV3("resnet50", num_classes)
