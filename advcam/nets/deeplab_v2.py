"""DeepLab-v2 (ResNet-101, output stride 8, ASPP-v2) built from torchvision's ``resnet101``:
``--seg_network deeplab_v2``.

As kazuto1011/deeplab-pytorch's ``DeepLabV2_ResNet101_MSC`` base network: layer3 and layer4 at stride 1 with
dilation 2 and 4 in *every* block (torchvision's ``replace_stride_with_dilation`` leaves the first block of a
dilated stage at the previous dilation; it is set here), frozen batch norm (eval mode, affine parameters not
trained), and the ASPP-v2 head: four parallel 3x3 convolutions 2048 -> classes with dilation = padding = 6, 12,
18, 24, bias on, weights N(0, 0.01), outputs summed. A 321 crop gives a 41 x 41 map.

Differences to the Caffe network that stay (torchvision's ImageNet weights need them): the stride of a
downsampling block sits on its 3x3 convolution (ResNet v1.5), the stem's max-pool has ``ceil_mode=False``, and
images are normalised with the ImageNet mean and std in RGB order.
"""
from __future__ import annotations

import torch
import torchvision
from torch import nn

ASPP_RATES = (6, 12, 18, 24)


class ASPPv2(nn.Module):
    """Four parallel 3x3 atrous convolutions ``in_channels -> num_classes``, outputs summed (DeepLab-v2)."""

    def __init__(self, in_channels: int, num_classes: int, rates: tuple[int, ...] = ASPP_RATES):
        super().__init__()
        self.rates = tuple(int(r) for r in rates)
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, 3, padding=r, dilation=r, bias=True) for r in self.rates)
        for conv in self.branches:
            nn.init.normal_(conv.weight, mean=0.0, std=0.01)
            nn.init.constant_(conv.bias, 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(branch(x) for branch in self.branches)


def freeze_bn(module: nn.Module) -> None:
    """Keep every BatchNorm of ``module`` in eval mode with its affine parameters frozen."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)


def dilated_resnet(depth: int = 101) -> torchvision.models.ResNet:
    """torchvision ResNet-50/101 with layer3/layer4 at stride 1, dilation 2/4 in every block (no weights)."""
    builder = {50: torchvision.models.resnet50, 101: torchvision.models.resnet101}[depth]
    net = builder(weights=None, replace_stride_with_dilation=[False, True, True])
    for layer, d in ((net.layer3, 2), (net.layer4, 4)):
        conv = layer[0].conv2  # torchvision gives the first block the previous stage's dilation
        conv.dilation, conv.padding = (d, d), (d, d)
    return net


class DeepLabV2(nn.Module):
    """ResNet backbone (output stride 8, frozen BN) + ASPP-v2; ``forward`` returns logits at stride 8."""

    def __init__(self, num_classes: int = 21, depth: int = 101, rates: tuple[int, ...] = ASPP_RATES):
        super().__init__()
        r = dilated_resnet(depth)
        self.backbone = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, r.layer1, r.layer2, r.layer3, r.layer4)
        self.head = ASPPv2(2048, num_classes, rates)
        freeze_bn(self.backbone)

    def train(self, mode: bool = True) -> DeepLabV2:
        super().train(mode)
        freeze_bn(self.backbone)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def load_backbone(self, state: dict) -> None:
        """Load a torchvision ResNet state dict (``fc.*`` ignored) into the backbone."""
        load_resnet_into(self.backbone, state, ("conv1", "bn1", None, None, "layer1", "layer2", "layer3", "layer4"))


def load_resnet_into(module: nn.Module, state: dict, names: tuple[str | None, ...] | None = None) -> None:
    """Load torchvision ResNet keys (``layer1.0.conv1.weight``; ``fc.*`` skipped) into ``module``.

    ``names``: for a Sequential whose children are numbered, the torchvision name of each child in order
    (None for a child without parameters); without it the keys are used as they are. Raises ValueError naming
    the first mismatching keys.
    """
    index = {n: str(i) for i, n in enumerate(names) if n is not None} if names is not None else None
    mapped = {}
    for k, v in state.items():
        head, _, rest = k.partition(".")
        if head in ("fc", "avgpool"):
            continue
        if index is None:
            mapped[k] = v
        elif head in index:
            mapped[f"{index[head]}.{rest}"] = v
        else:
            raise ValueError(f"unexpected key {k!r}: not a torchvision ResNet state dict")
    missing, unexpected = module.load_state_dict(mapped, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"not a matching torchvision ResNet state dict: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")
    bad = [k for k, v in mapped.items() if k in module.state_dict() and module.state_dict()[k].shape != v.shape]
    if bad:
        raise ValueError(f"shape mismatch for {bad[:3]}: a ResNet of another depth or width?")


def build(num_classes: int = 21) -> DeepLabV2:
    """DeepLab-v2 ResNet-101 without weights (the segmentation pass loads the ImageNet backbone)."""
    return DeepLabV2(num_classes, depth=101)


BACKBONE_ARCH = "resnet101"
