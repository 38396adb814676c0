"""CCT's network (:class:`advcam.cct.CCTModel`) over a ResNet-50 at output stride 8: ``cct_resnet50``.

The backbone as CCT's ``deepbase_resnet50_dilated8``: bottlenecks [3, 4, 6, 3] with the stride on the 3x3 conv,
layer3 and layer4 at stride 1 with dilation 2 and 4 (the first block of each keeps the previous stage's dilation,
1 and 2), ordinary trainable batch norm; then the PSP module to 512 channels at 1/8, the main decoder and the 30
auxiliary decoders. Two stems:

- ``stem="torchvision"`` (default): torchvision's 7x7 stem, initialised from a torchvision ResNet-50 state dict
  (``resnet50-19c8e357.pth`` / ``resnet50-0676ba61.pth``). A documented deviation: CCT's ImageNet weights
  (``3x3resnet50-imagenet.pth``, from donnyyou/torchcv via CCT's GitHub release) cannot be fetched here.
- ``stem="deep"``: CCT's deep stem (3x3 convs 3->64 stride 2, 64->64, 64->128, each BN + ReLU, then the 3x3/2
  max-pool), layer1 reading 128 channels; initialised from ``3x3resnet50-imagenet.pth`` when a user has it: keys
  ``conv1..3`` / ``bn1..3`` (bare or under ``prefix.``), ``layer1..4`` as torchvision, ``fc.*`` ignored.
"""
from __future__ import annotations

import logging
from collections import OrderedDict

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet

from advcam.cct import CCT_AUX_DECODERS, CCTModel
from advcam.errors import BadInputError
from advcam.io import load_checkpoint

log = logging.getLogger(__name__)

BACKBONE_ARCH = "resnet50"
STEMS = ("torchvision", "deep")
FEATURES = 2048


class ResNet50OS8(nn.Module):
    """ResNet-50 at output stride 8 (layer3/layer4 dilated 2/4) with the torchvision or CCT's deep stem; ``forward``
    returns the 2048-channel layer4 features."""

    def __init__(self, stem: str = "torchvision"):
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"unknown ResNet-50 stem {stem!r}: choose one of {', '.join(STEMS)}")
        self.stem_kind = stem
        r = ResNet(Bottleneck, [3, 4, 6, 3], replace_stride_with_dilation=[False, True, True])
        if stem == "torchvision":
            self.stem = nn.Sequential(OrderedDict(conv1=r.conv1, bn1=r.bn1, relu=r.relu))
        else:
            self.stem = nn.Sequential(OrderedDict(
                conv1=nn.Conv2d(3, 64, 3, 2, 1, bias=False), bn1=nn.BatchNorm2d(64), relu1=nn.ReLU(inplace=True),
                conv2=nn.Conv2d(64, 64, 3, 1, 1, bias=False), bn2=nn.BatchNorm2d(64), relu2=nn.ReLU(inplace=True),
                conv3=nn.Conv2d(64, 128, 3, 1, 1, bias=False), bn3=nn.BatchNorm2d(128),
                relu3=nn.ReLU(inplace=True)))
            for m in self.stem:
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            first = r.layer1[0]
            first.conv1 = nn.Conv2d(128, 64, 1, bias=False)
            first.downsample[0] = nn.Conv2d(128, 256, 1, bias=False)
            for conv in (first.conv1, first.downsample[0]):
                nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        self.maxpool = r.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = r.layer1, r.layer2, r.layer3, r.layer4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.stem(x))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def load_imagenet(self, state: dict, source: str = "state dict") -> None:
        """Load ImageNet weights in the layout of this stem (torchvision's, or ``3x3resnet50-imagenet.pth``'s):
        every backbone key must be present (``num_batches_tracked`` excepted) and nothing but ``fc.*`` may be
        left over; raises :class:`~advcam.errors.BadInputError` naming ``source`` otherwise."""
        stem_names = {n.split(".")[0] for n in self.stem.state_dict()}
        mapped = {}
        for k, v in state.items():
            if k.startswith("prefix."):
                k = k[len("prefix."):]
            head = k.split(".")[0]
            if head == "fc":
                continue
            mapped[f"stem.{k}" if head in stem_names else k] = v
        own = self.state_dict()
        missing = [k for k in own if k not in mapped and not k.endswith("num_batches_tracked")]
        unexpected = [k for k in mapped if k not in own]
        wrong = [k for k, v in mapped.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
        if missing or unexpected or wrong:
            layout = "torchvision ResNet-50" if self.stem_kind == "torchvision" else "3x3resnet50-imagenet.pth"
            raise BadInputError(
                f"{source}: not a {layout} state dict ({len(missing)} keys missing, e.g. {missing[:2]}; "
                f"{len(unexpected)} unexpected, e.g. {unexpected[:2]}; {len(wrong)} of another shape, e.g. "
                f"{wrong[:2]}); give that file, or the network of the other stem (--semi_network cct_resnet50 / "
                "cct_resnet50_deepstem)")
        self.load_state_dict(mapped, strict=False)


def deep_stem_layout(backbone: ResNet50OS8, with_fc: bool = True) -> dict:
    """The backbone's weights in ``3x3resnet50-imagenet.pth``'s key layout (bare stem keys, ``fc`` of 1000 classes
    when ``with_fc``): what :meth:`ResNet50OS8.load_imagenet` reads for ``stem="deep"``."""
    state = {(k[len("stem."):] if k.startswith("stem.") else k): v.clone() for k, v in backbone.state_dict().items()}
    if with_fc:
        state["fc.weight"], state["fc.bias"] = torch.zeros(1000, FEATURES), torch.zeros(1000)
    return state


class CCTResNet50(CCTModel):
    """:class:`~advcam.cct.CCTModel` over :class:`ResNet50OS8`, PSP to 512 channels."""

    def __init__(self, num_classes: int = 21, stem: str = "torchvision", channels: int = 512,
                 aux: tuple[tuple[str, int], ...] = CCT_AUX_DECODERS):
        super().__init__(ResNet50OS8(stem), FEATURES, num_classes, channels, 8, aux)

    def load_backbone(self, state: dict) -> None:
        """Load a torchvision ResNet-50 state dict (``fc.*`` ignored) into the backbone; ValueError on a mismatch
        (the contract of :func:`advcam.segmentation.build_seg_network`)."""
        try:
            self.backbone.load_imagenet(state)
        except BadInputError as e:
            raise ValueError(str(e)) from None


def build(num_classes: int = 21, pretrained: str | None = None, stem: str = "torchvision",
          aux: tuple[tuple[str, int], ...] = CCT_AUX_DECODERS) -> CCTResNet50:
    """CCT over ResNet-50 (output stride 8), with the ImageNet weights in the file ``pretrained`` (the layout of
    ``stem``: a torchvision ResNet-50 state dict, or ``3x3resnet50-imagenet.pth``), or random weights when None.
    ``aux=()`` gives the supervised-only network."""
    model = CCTResNet50(num_classes, stem, aux=aux)
    if pretrained is not None:
        what = "--pretrained ImageNet ResNet-50 weights" if stem == "torchvision" else \
            "--pretrained 3x3resnet50-imagenet.pth"
        state = load_checkpoint(pretrained, what, "give the path of that file")
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise BadInputError(f"--pretrained {pretrained}: expected a state dict, got {type(state).__name__}")
        model.backbone.load_imagenet(state, f"--pretrained {pretrained}")
        log.info("CCT backbone (%s stem) initialised from %s", stem, pretrained)
    return model
