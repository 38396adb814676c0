"""IRN: a frozen ResNet-50 with a class-boundary branch and a displacement-field branch.

Module attributes mirror the reference (``resnet50.*``, ``stage1..5.*``, ``mean_shift.*``,
``fc_edge1..6.*``, ``fc_dp1..7.*``, ``backbone.*``, ``edge_layers.*``, ``dp_layers.*``) so that
``state_dict()`` has its key layout. The loss module's index buffers are not persistent: a checkpoint
of :class:`AffinityDisplacementLoss` loads into :class:`EdgeDisplacement` with ``strict=True``
(reference checkpoints, which carry ``path_indices*``/``disp_target``, load with
:func:`load_irn_weights`).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from advcam.errors import BadInputError
from advcam.indexing import PathIndex, edge_to_affinity, pair_displacement
from advcam.io import load_checkpoint
from advcam.nets import resnet50

LOSS_BUFFER_PREFIXES = ("path_indices", "disp_target", "src_indices", "dst_indices")


class MeanShift(nn.Module):
    """Identity in training mode; subtracts the buffer ``running_mean`` (per channel) in eval mode."""

    def __init__(self, num_features: int):
        super().__init__()
        self.register_buffer("running_mean", torch.zeros(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return x
        return x - self.running_mean.view(1, -1, 1, 1)


def _branch(cin: int, cout: int, groups: int, up: int = 1) -> nn.Sequential:
    """1x1 conv (no bias) -> GroupNorm -> [bilinear upsample] -> ReLU."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 1, bias=False), nn.GroupNorm(groups, cout)]
    if up > 1:
        layers.append(nn.Upsample(scale_factor=up, mode="bilinear", align_corners=False))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class Net(nn.Module):
    """Backbone (frozen, eval mode) + edge branch + displacement branch, both at stride 4."""

    def __init__(self, pretrained: str | None = None):
        super().__init__()
        c1, c2, c3, c4, c5 = self.build_backbone(pretrained)
        self.mean_shift = MeanShift(2)

        self.fc_edge1 = _branch(c1, 32, 4)
        self.fc_edge2 = _branch(c2, 32, 4)
        self.fc_edge3 = _branch(c3, 32, 4, up=2)
        self.fc_edge4 = _branch(c4, 32, 4, up=4)
        self.fc_edge5 = _branch(c5, 32, 4, up=4)
        self.fc_edge6 = nn.Conv2d(160, 1, 1, bias=True)

        self.fc_dp1 = _branch(c1, 64, 8)
        self.fc_dp2 = _branch(c2, 128, 16)
        self.fc_dp3 = _branch(c3, 256, 16)
        self.fc_dp4 = _branch(c4, 256, 16, up=2)
        self.fc_dp5 = _branch(c5, 256, 16, up=2)
        self.fc_dp6 = _branch(768, 256, 16, up=2)
        self.fc_dp7 = nn.Sequential(nn.Conv2d(448, 256, 1, bias=False), nn.GroupNorm(16, 256), nn.ReLU(inplace=True),
                                    nn.Conv2d(256, 2, 1, bias=False), self.mean_shift)

        self.backbone = nn.ModuleList([self.stage1, self.stage2, self.stage3, self.stage4, self.stage5])
        self.edge_layers = nn.ModuleList([self.fc_edge1, self.fc_edge2, self.fc_edge3, self.fc_edge4,
                                          self.fc_edge5, self.fc_edge6])
        self.dp_layers = nn.ModuleList([self.fc_dp1, self.fc_dp2, self.fc_dp3, self.fc_dp4, self.fc_dp5,
                                        self.fc_dp6, self.fc_dp7])
        self._freeze_all_but_branches()
        self.backbone.eval()

    def _freeze_all_but_branches(self) -> None:
        """Only the two branches train: the backbone, and any part of the backbone's network the stages leave out
        (a classifier head), get no gradients (DistributedDataParallel requires every trained parameter to get one)."""
        branches = {id(p) for p in (*self.edge_layers.parameters(), *self.dp_layers.parameters())}
        for p in self.parameters():
            if id(p) not in branches:
                p.requires_grad_(False)

    def build_backbone(self, pretrained: str | None) -> tuple[int, int, int, int, int]:
        """Set ``stage1..stage5`` (strides 4, 4, 8, 16, 16); return their channel counts."""
        self.resnet50 = resnet50.resnet50(strides=(2, 2, 2, 1), pretrained=pretrained, fixed_bn=True)
        r = self.resnet50
        self.stage1 = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool)
        self.stage2 = nn.Sequential(r.layer1)
        self.stage3 = nn.Sequential(r.layer2)
        self.stage4 = nn.Sequential(r.layer3)
        self.stage5 = nn.Sequential(r.layer4)
        return 64, 256, 512, 1024, 2048

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Detached backbone outputs x1..x5 (strides 4, 4, 8, 16, 16)."""
        feats = []
        for stage in self.backbone:
            x = stage(x).detach()
            feats.append(x)
        return feats

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(edge logits [B,1,h,w], displacement [B,2,h,w]) at stride 4."""
        x1, x2, x3, x4, x5 = self.features(x)

        e1 = self.fc_edge1(x1)
        e2 = self.fc_edge2(x2)
        h, w = e2.shape[-2:]
        e3 = self.fc_edge3(x3)[..., :h, :w]
        e4 = self.fc_edge4(x4)[..., :h, :w]
        e5 = self.fc_edge5(x5)[..., :h, :w]
        edge_out = self.fc_edge6(torch.cat([e1, e2, e3, e4, e5], dim=1))

        dp1 = self.fc_dp1(x1)
        dp2 = self.fc_dp2(x2)
        dp3 = self.fc_dp3(x3)
        h3, w3 = dp3.shape[-2:]
        dp4 = self.fc_dp4(x4)[..., :h3, :w3]
        dp5 = self.fc_dp5(x5)[..., :h3, :w3]
        dp_up3 = self.fc_dp6(torch.cat([dp3, dp4, dp5], dim=1))[..., :dp1.shape[-2], :dp1.shape[-1]]
        dp_out = self.fc_dp7(torch.cat([dp1, dp2, dp_up3], dim=1))
        return edge_out, dp_out

    def train(self, mode: bool = True) -> Net:
        super().train(mode)
        self.backbone.eval()  # frozen: BN statistics and no gradients
        self._freeze_all_but_branches()
        return self

    def trainable_parameters(self) -> tuple[tuple[nn.Parameter, ...], tuple[nn.Parameter, ...]]:
        """(edge-branch parameters, displacement-branch parameters): trained with lr and 10x lr."""
        return tuple(self.edge_layers.parameters()), tuple(self.dp_layers.parameters())

    def load_backbone(self, state: dict) -> None:
        """Initialise the backbone from a state dict with ``resnet50.*`` keys (e.g. the CAM classifier)."""
        sub = {k[len("resnet50."):]: v for k, v in state.items() if k.startswith("resnet50.")}
        missing, _ = self.resnet50.load_state_dict(sub, strict=False)
        if missing:
            raise BadInputError(f"backbone state lacks {len(missing)} keys, e.g. {missing[:4]}")


class AffinityDisplacementLoss(Net):
    """IRN in training: per-pair affinity and displacement loss terms (masked later by the labels)."""

    def __init__(self, path_index: PathIndex, **kw):
        super().__init__(**kw)
        self.path_index = path_index
        self.n_path_lengths = len(path_index.path_indices)
        for i, pi in enumerate(path_index.path_indices):
            self.register_buffer(f"path_indices{i}", pi, persistent=False)
        self.register_buffer("src_indices", path_index.src_indices, persistent=False)
        self.register_buffer("dst_indices", path_index.dst_indices, persistent=False)
        self.register_buffer("disp_target", path_index.to_displacement().t().reshape(1, 2, -1, 1),
                             persistent=False)

    def _path_indices(self, size: tuple[int, int]) -> list[torch.Tensor]:
        if tuple(size) == self.path_index.default_size:
            return [getattr(self, f"path_indices{i}") for i in range(self.n_path_lengths)]
        return self.path_index.get_path_indices(tuple(size))

    def to_pair_displacement(self, dp: torch.Tensor) -> torch.Tensor:
        """D(src) - D(dst) for every direction: [B, 2, h, w] -> [B, 2, n_dirs, n_src]."""
        if tuple(dp.shape[-2:]) == self.path_index.default_size:
            return pair_displacement(dp, self.src_indices, self.dst_indices)
        return self.path_index.to_pair_displacement(dp)

    def to_affinity(self, edge: torch.Tensor) -> torch.Tensor:
        """Path-max affinities [B, n_dirs, n_src] from boundary probabilities [B, 1, h, w]."""
        return edge_to_affinity(edge, self._path_indices(tuple(edge.shape[-2:])))

    def forward(self, x: torch.Tensor, return_loss: bool = True):
        """(pos_aff, neg_aff [B,n_dirs,n_src], dp_fg, dp_bg [B,2,n_dirs,n_src]) or (edge, dp)."""
        edge_out, dp_out = super().forward(x)
        if not return_loss:
            return edge_out, dp_out
        aff = self.to_affinity(torch.sigmoid(edge_out))
        pos_aff_loss = -torch.log(aff + 1e-5)
        neg_aff_loss = -torch.log(1.0 + 1e-5 - aff)
        pair_disp = self.to_pair_displacement(dp_out)
        dp_fg_loss = torch.abs(pair_disp - self.disp_target)
        dp_bg_loss = torch.abs(pair_disp)
        return pos_aff_loss, neg_aff_loss, dp_fg_loss, dp_bg_loss


def compute_irn_loss(pos_aff: torch.Tensor, neg_aff: torch.Tensor, dp_fg: torch.Tensor, dp_bg: torch.Tensor,
                     bg_pos_label: torch.Tensor, fg_pos_label: torch.Tensor, neg_label: torch.Tensor,
                     global_counts: Callable[[torch.Tensor], torch.Tensor] | None = None,
                     world: int = 1) -> tuple[torch.Tensor, dict[str, float]]:
    """IRN training loss from the loss terms and the relation labels [B, n_dirs, n_src].

    Returns (total, {"pos_aff", "neg_aff", "dp_fg", "dp_bg"}) with
    total = (pos_aff + neg_aff) / 2 + (dp_fg + dp_bg) / 2, each term a mean over the labelled pairs of the batch.

    Data-parallel training over ``world`` ranks: ``global_counts`` sums the batch's three label counts (bg-positive,
    fg-positive, negative) over the ranks, and each term becomes ``world`` x (this rank's sum) / (global count), so
    that the gradients averaged over the ranks are those of the global batch's loss.
    """
    counts = torch.stack([bg_pos_label.sum(), fg_pos_label.sum(), neg_label.sum()]).detach()
    if global_counts is not None:
        counts = global_counts(counts)
    c_bg, c_fg, c_neg = counts
    pos = world * ((pos_aff * bg_pos_label).sum() / (c_bg + 1e-5) / 2
                   + (pos_aff * fg_pos_label).sum() / (c_fg + 1e-5) / 2)
    neg = world * (neg_aff * neg_label).sum() / (c_neg + 1e-5)
    fg = world * (dp_fg * fg_pos_label.unsqueeze(1)).sum() / (2 * c_fg + 1e-5)
    bg = world * (dp_bg * bg_pos_label.unsqueeze(1)).sum() / (2 * c_bg + 1e-5)
    total = (pos + neg) / 2 + (fg + bg) / 2
    parts = {k: float(v.detach()) for k, v in (("pos_aff", pos), ("neg_aff", neg), ("dp_fg", fg), ("dp_bg", bg))}
    return total, parts


def relation_labels(label: torch.Tensor | np.ndarray, path_index: PathIndex,
                    n_labels: int = 21) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(bg_pos, fg_pos, neg) float [n_dirs, n_src] from an IR label map [h, w] (0..20, 255 = unsure).

    A pair is valid when both labels are < ``n_labels``; bg-positive: equal and 0; fg-positive:
    equal and > 0; negative: different.
    """
    lab = label.long() if isinstance(label, torch.Tensor) else torch.from_numpy(np.array(label, dtype=np.int64))
    src, dst = path_index.get_src_dst(tuple(lab.shape))
    flat = lab.reshape(-1)
    a = flat[src].unsqueeze(0)
    b = flat[dst]
    valid = (a < n_labels) & (b < n_labels)
    equal = a == b
    pos = equal & valid
    bg_pos = pos & (a == 0)
    fg_pos = pos & (a > 0)
    neg = ~equal & valid
    return bg_pos.float(), fg_pos.float(), neg.float()


class EdgeDisplacement(Net):
    """IRN at inference on a flip pair: (boundary probabilities, displacement of the first copy)."""

    def __init__(self, crop_size: int | None = None, stride: int = 4, **kw):
        super().__init__(**kw)
        self.crop_size = crop_size
        self.stride = stride

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x = [orig, mirror] [2,3,H,W] -> (edge [1,1,h,w], dp [1,2,h,w]), h = ceil(H/4), w = ceil(W/4).

        The pair is zero-padded right/bottom to at least ``crop_size`` (the reference uses 512; GroupNorm
        statistics then match training) and to a multiple of 16; both outputs are cropped back to the image's own
        stride-4 size BEFORE the mirror copy is flipped, so that it lines up with the original:
        edge = sigmoid(logit_0 / 2 + mirror(logit_1) / 2).
        """
        height, width = x.shape[-2:]
        h, w = (height - 1) // self.stride + 1, (width - 1) // self.stride + 1
        ph, pw = (-(-max(self.crop_size or 0, size) // 16) * 16 for size in (height, width))
        x = F.pad(x, [0, pw - width, 0, ph - height])
        edge_out, dp_out = super().forward(x)
        edge_out, dp_out = edge_out[..., :h, :w], dp_out[..., :h, :w]
        edge = torch.sigmoid(edge_out[0:1] / 2 + edge_out[1:2].flip(-1) / 2)
        return edge, dp_out[0:1]


def load_irn_weights(model: nn.Module, path_or_state: str | dict) -> None:
    """Load IRN weights (ours or the reference's, whose loss buffers are dropped), strictly otherwise."""
    state = path_or_state
    if isinstance(path_or_state, str):
        state = load_checkpoint(path_or_state, "IRN weights", "run the train_irn pass (--train_irn_pass True) or "
                                "pass --irn_weights_name PATH")
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k: v for k, v in state.items() if not k.startswith(LOSS_BUFFER_PREFIXES)}
    model.load_state_dict(state, strict=True)
