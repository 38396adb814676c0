"""CCT over ResNet-50 with CCT's own deep stem: ``--semi_network cct_resnet50_deepstem``, initialised from CCT's
ImageNet file ``3x3resnet50-imagenet.pth`` (``--semi_pretrained PATH``; no download exists) or from scratch
(``--semi_pretrained none``). Everything else is :mod:`advcam.nets.cct_resnet50`; ``make_seg``/``eval_seg`` read
its weights with ``--seg_network cct_resnet50_deepstem``."""
from __future__ import annotations

from advcam.cct import CCT_AUX_DECODERS
from advcam.nets.cct_resnet50 import BACKBONE_ARCH, CCTResNet50

__all__ = ["BACKBONE_ARCH", "PRETRAINED_FILE", "build"]

PRETRAINED_FILE = "3x3resnet50-imagenet.pth"
"""The ImageNet weights of CCT's deep-stem ResNet-50 (torchcv's), in the layout ``ResNet50OS8("deep")`` loads."""


def build(num_classes: int = 21, aux: tuple[tuple[str, int], ...] = CCT_AUX_DECODERS) -> CCTResNet50:
    """The deep-stem CCT network with random weights (``load_backbone`` then reads ``3x3resnet50-imagenet.pth``)."""
    return CCTResNet50(num_classes, "deep", aux=aux)
