"""The CAM classifier: ResNet-50 (output stride 16) and a bias-free 1x1 head over 20 classes.

The module attributes mirror the reference implementation so that ``state_dict()`` has exactly
its key layout (``resnet50.*``, ``stage1.*`` .. ``stage4.*``, ``backbone.*``, ``classifier.weight``,
``newly_added.0.weight``): a ``res50_cam.pth`` written by the reference loads unchanged, and ours
load in the reference.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from advcam.errors import BadInputError, MissingInputError
from advcam.io import load_checkpoint
from advcam.nets import resnet50


class Net(nn.Module):
    """Classifier: training logits = head(GAP(stage4(x))), shape [B, num_classes]."""

    def __init__(self, pretrained: str | None = None, num_classes: int = 20,
                 strides: tuple[int, int, int, int] = (2, 2, 2, 1)):
        super().__init__()
        # From scratch, batch norm must learn (frozen random statistics would not).
        self.from_scratch = pretrained is None
        self.resnet50 = resnet50.resnet50(strides, pretrained=pretrained, fixed_bn=not self.from_scratch)
        r = self.resnet50
        self.stage1 = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, r.layer1)
        self.stage2 = nn.Sequential(r.layer2)
        self.stage3 = nn.Sequential(r.layer3)
        self.stage4 = nn.Sequential(r.layer4)
        self.classifier = nn.Conv2d(2048, num_classes, 1, bias=False)
        self.backbone = nn.ModuleList([self.stage1, self.stage2, self.stage3, self.stage4])
        self.newly_added = nn.ModuleList([self.classifier])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """stage4 features [B, 2048, h/16, w/16]."""
        return self.stage4(self.stage3(self.stage2(self.stage1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return self.classifier(f.mean((2, 3), keepdim=True)).flatten(1)

    def train(self, mode: bool = True) -> Net:
        super().train(mode)
        if not self.from_scratch:
            # ImageNet stem stays fixed, as in the reference.
            for p in (*self.resnet50.conv1.parameters(), *self.resnet50.bn1.parameters()):
                p.requires_grad_(False)
        return self

    def trainable_parameters(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(backbone parameters, head parameters); the head is trained with 10x the learning rate."""
        return ([p for p in self.backbone.parameters() if p.requires_grad],
                list(self.newly_added.parameters()))


class CAMMaps:
    """The CAM view of a classifier with ``features(x)`` and a bias-free 1x1 ``classifier``: the head applied
    per pixel, without pooling (shared by every ``*_cam`` network)."""

    def class_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Raw (pre-ReLU) maps S, [B, num_classes, h/16, w/16]."""
        return F.conv2d(self.features(x), self.classifier.weight)

    def forward(self, x: torch.Tensor, separate: bool = False) -> torch.Tensor:
        """For a flip pair [2,3,h,w]: ReLU(S_0) + mirror(ReLU(S_1)) -> [C, h', w'].

        With ``separate=True`` return the raw maps of both copies, [2, C, h', w'].
        """
        s = self.class_maps(x)
        if separate:
            return s
        s = F.relu(s)
        return s[0] + s[1].flip(-1)


class CAM(CAMMaps, Net):
    """Per-pixel class maps S = head(stage4(x)) (the head applied without pooling)."""


def load_cam_weights(model: nn.Module, path: str) -> None:
    """Load a classifier checkpoint (ours or the reference's), naming wrong keys if it does not fit."""
    state = load_checkpoint(path, "CAM weights", "run the train_cam pass (--train_cam_pass True) or pass "
                            "--cam_weights_name PATH")
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    own = model.state_dict()
    # Checkpoints saved without the reference's module aliases are completed from their twins.
    state = _complete_aliases(state, own)
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise BadInputError(
            f"{path}: not a CAM classifier checkpoint for this network: "
            f"{len(missing)} missing keys (e.g. {missing[:4]}), "
            f"{len(unexpected)} unexpected keys (e.g. {unexpected[:4]})")
    bad = [k for k in own if own[k].shape != state[k].shape]
    if bad:
        raise BadInputError(f"{path}: shape mismatch for {bad[:4]} (e.g. {own[bad[0]].shape} expected, "
                         f"{state[bad[0]].shape} found)")
    model.load_state_dict(state)


def _complete_aliases(state: dict, own: dict) -> dict:
    """Fill the reference's aliased keys (stage*/backbone*/resnet50*, classifier/newly_added)."""
    state = dict(state)
    if "classifier.weight" in state and "newly_added.0.weight" not in state:
        state["newly_added.0.weight"] = state["classifier.weight"]
    if "newly_added.0.weight" in state and "classifier.weight" not in state:
        state["classifier.weight"] = state["newly_added.0.weight"]
    prefixes = [("stage1.0.", "resnet50.conv1."), ("stage1.1.", "resnet50.bn1."),
                ("stage1.4.", "resnet50.layer1."), ("stage2.0.", "resnet50.layer2."),
                ("stage3.0.", "resnet50.layer3."), ("stage4.0.", "resnet50.layer4.")]
    prefixes += [(f"backbone.{i}.", f"stage{i + 1}.") for i in range(4)]
    for _ in range(2):  # twice: backbone.* -> stage* -> resnet50.* and back
        for a, b in prefixes:
            for src, dst in ((a, b), (b, a)):
                for k in list(state):
                    if k.startswith(src):
                        k2 = dst + k[len(src):]
                        if k2 in own and k2 not in state:
                            state[k2] = state[k]
    return state


def build_cam_net(weights: str | None = None, pretrained: str | None = None, cam_class: type = CAM,
                  num_classes: int = 20) -> CAM:
    """A CAM network (``cam_class``) over ``num_classes`` classes in eval mode, with classifier weights from
    ``weights`` when given."""
    model = cam_class(pretrained=pretrained, num_classes=num_classes)
    if weights is not None:
        if not os.path.isfile(weights):
            raise MissingInputError(f"CAM weights {weights} not found: run the train_cam pass first "
                                    "or point --cam_weights_name at your classifier")
        load_cam_weights(model, weights)
    return model.eval()
