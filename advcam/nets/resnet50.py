"""ResNet-50 backbone (torchvision modules) with configurable strides and frozen batch norm."""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet

from advcam.errors import BadInputError, UserError
from advcam.io import load_checkpoint

log = logging.getLogger(__name__)


class FixedBatchNorm(nn.BatchNorm2d):
    """Batch norm that always normalises with its running statistics while ``fixed`` is True.

    ImageNet-initialised backbones keep BN frozen, as the reference does; a backbone trained from
    scratch sets ``fixed = False`` so that BN learns its statistics like an ordinary BatchNorm2d.
    """

    fixed: bool = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fixed:
            return super().forward(x)
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=False, eps=self.eps)


def resnet50(strides: tuple[int, int, int, int] = (2, 2, 2, 1),
             pretrained: str | None = None, fixed_bn: bool = True) -> ResNet:
    """A torchvision ResNet-50 without ``avgpool``/``fc``, with stem/layer2/layer3/layer4 strides.

    ``strides`` = (conv1, layer2, layer3, layer4), as in the reference; (2, 2, 2, 1) gives output
    stride 16. ``pretrained`` is a path to a torchvision ResNet-50 state dict, ``"torchvision"``
    to download torchvision's ImageNet weights, or None for random initialisation, in which every
    bottleneck's last BN scale starts at zero so that each residual block starts as its shortcut
    (Goyal et al. 2017; without it the toy demo's classifier was still near chance after 10 epochs).
    """
    net = ResNet(Bottleneck, [3, 4, 6, 3], norm_layer=FixedBatchNorm, zero_init_residual=pretrained is None)
    if pretrained is not None:
        state = load_imagenet_state(pretrained)
        net.load_state_dict(state, strict=False)
    net.conv1.stride = (strides[0], strides[0])
    for layer, s in ((net.layer2, strides[1]), (net.layer3, strides[2]), (net.layer4, strides[3])):
        layer[0].conv2.stride = (s, s)
        layer[0].downsample[0].stride = (s, s)
    del net.avgpool, net.fc
    for m in net.modules():
        if isinstance(m, FixedBatchNorm):
            m.fixed = fixed_bn
    return net


def load_imagenet_state(pretrained: str) -> dict:
    """Read ImageNet ResNet-50 weights from a file, or from torchvision's download cache."""
    if pretrained == "torchvision":
        from torchvision.models import ResNet50_Weights
        try:
            state = ResNet50_Weights.IMAGENET1K_V1.get_state_dict(progress=True)
        except Exception as e:  # no network, proxy, ...
            raise UserError(
                "could not download torchvision's ImageNet ResNet-50 weights "
                f"({type(e).__name__}: {e}). Download resnet50-19c8e357.pth (or resnet50-0676ba61.pth) "
                "on a machine with network access and pass it with --pretrained PATH, or train from "
                "scratch with --no_pretrained True."
            ) from None
    else:
        state = load_checkpoint(pretrained, "--pretrained ImageNet ResNet-50 weights",
                                "give the path of a torchvision ResNet-50 state dict (e.g. resnet50-19c8e357.pth)")
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    expected = {k for k in ResNet(Bottleneck, [3, 4, 6, 3]).state_dict() if not k.startswith("fc.")}
    missing = sorted(expected - set(state))
    if missing:
        raise BadInputError(
            f"--pretrained {pretrained}: not a ResNet-50 state dict; {len(missing)} keys missing, "
            f"e.g. {missing[:5]}")
    log.info("loaded ImageNet ResNet-50 weights from %s", pretrained)
    return state
