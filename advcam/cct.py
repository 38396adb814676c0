"""Cross-consistency training (CCT, Ouali et al., CVPR 2020) as AdvCAM's semi-supervised stage uses it: the
network (an encoder at output stride 8 with the PSP module, a main decoder and the 30 perturbed auxiliary decoders),
the perturbations, the losses and the consistency ramp-up.

What follows yassouali/CCT's default semi-supervised setting (the facts are in the project's
``semi-coco-facts.md`` section 1):

- PSP module on the backbone's last features: bins 1, 2, 3, 6, each adaptive average pooling + 1x1 conv to
  ``in / 4`` channels (no bias) + BN + ReLU, upsampled bilinearly, concatenated with the input, then a 3x3 conv
  (no bias) + BN + ReLU to the encoder's output width (512 for ResNet-50).
- Every decoder (main and auxiliary) has its own head: a 1x1 conv to the classes (no bias, Kaiming) and three
  sub-pixel x2 stages, each 1x1 conv classes -> 4 x classes (ICNR init) -> ReLU -> PixelShuffle(2). Logits are at
  the input resolution and, because the last operation is ReLU then shuffle, never negative.
- The 30 auxiliary decoders (:data:`CCT_AUX_DECODERS`): 2 I-VAT (xi 1e-6, eps 2.0), 6 DropOut (channel dropout
  p 0.5), 6 G-Cutout (erase 0.4), 2 Con-Msk, 2 Obj-Msk, 6 F-Drop (gamma ~ U(0.7, 0.9)), 6 F-Noise (U(-0.3, 0.3)).
  Each perturbs the encoder's features of the unlabelled batch; the guided ones read the main decoder's
  (detached) prediction.
- Losses: cross-entropy of the main decoder on the labelled batch (255 ignored); the consistency loss, the mean
  over the auxiliary decoders of the MSE between the decoder's softmax and the main decoder's detached softmax,
  weighted by 30 x the sigmoid ramp-up exp(-5 (1 - t / T)^2); the weak-label loss, the mean over the auxiliary
  decoders of their cross-entropy against the weak (AdvCAM) mask (255 ignored), weighted by 0.4 x the same ramp.
  The main decoder never sees a weak label.

Deviations, each deliberate:

- G-Cutout finds objects as 8-connected components of the predicted foreground and keeps those whose boundary has
  more than 50 pixels; CCT keeps OpenCV external contours of more than 50 (chain-compressed) points. No OpenCV here.
- I-VAT's power iteration runs in float32 with autocast off (a 1e-6 step is lost in bfloat16), differentiates with
  respect to the direction only (CCT calls ``backward`` and then zeroes that decoder's gradients), and scales the
  adversarial direction to norm exactly ``eps`` per sample (CCT divides by the norm + 1e-8).
- The sub-pixel stages' biases are ICNR-initialised with their weights (each output's four sub-pixels start equal).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

IGNORE_LABEL = 255

CCT_AUX_DECODERS: tuple[tuple[str, int], ...] = (
    ("vat", 2), ("dropout", 6), ("cutout", 6), ("context_mask", 2), ("object_mask", 2), ("feature_drop", 6),
    ("feature_noise", 6))
"""CCT's semi-supervised auxiliary decoders (configs/config.json), in its order: 30 in all."""

VAT_XI, VAT_EPS = 1e-6, 2.0
DROPOUT_P = 0.5
CUTOUT_ERASE, CUTOUT_MIN_POINTS = 0.4, 50
FEATURE_DROP_GAMMA = (0.7, 0.9)
FEATURE_NOISE_RANGE = 0.3
UNSUP_WEIGHT, WEAK_WEIGHT, RAMP_UP = 30.0, 0.4, 0.1

# --------------------------------------------------------------------------------------------------
# encoder head and decoders
# --------------------------------------------------------------------------------------------------


class PSPModule(nn.Module):
    """Pyramid pooling on ``in_channels`` features: per bin, pool + 1x1 conv to ``in_channels // len(bins)``
    + BN + ReLU, upsampled; concatenated with the input; 3x3 conv to ``out_channels`` + BN + ReLU."""

    def __init__(self, in_channels: int, out_channels: int = 512, bins: Sequence[int] = (1, 2, 3, 6)):
        super().__init__()
        branch = in_channels // len(bins)
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), nn.Conv2d(in_channels, branch, 1, bias=False),
                          nn.BatchNorm2d(branch), nn.ReLU(inplace=True)) for b in bins)
        self.bottleneck = nn.Sequential(
            nn.Conv2d(in_channels + branch * len(bins), out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pyramid = [x] + [F.interpolate(s(x), size=size, mode="bilinear", align_corners=False) for s in self.stages]
        return self.bottleneck(torch.cat(pyramid, 1))


def icnr_(conv: nn.Conv2d, scale: int = 2) -> None:
    """ICNR initialisation (Aitken et al. 2017) of a conv feeding ``PixelShuffle(scale)``: a Kaiming-normal kernel
    for each output channel, repeated over its ``scale**2`` sub-pixels (weights and bias), so that the stage starts
    as a nearest-neighbour upsampling of a plain conv."""
    out_ch = conv.out_channels // scale ** 2
    kernel = nn.init.kaiming_normal_(torch.empty(out_ch, *conv.weight.shape[1:]))
    with torch.no_grad():
        conv.weight.copy_(kernel.repeat_interleave(scale ** 2, dim=0))
        if conv.bias is not None:
            conv.bias.copy_(conv.bias[::scale ** 2].repeat_interleave(scale ** 2))


class SubPixelUp(nn.Module):
    """x2 sub-pixel stage: 1x1 conv ``channels -> 4 channels`` (ICNR) -> ReLU -> PixelShuffle(2)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels * 4, 1)
        icnr_(self.conv)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(F.relu(self.conv(x)))


class DecoderHead(nn.Sequential):
    """CCT's decoder: 1x1 conv ``in_channels -> num_classes`` (no bias, Kaiming) and log2(``upscale``) sub-pixel
    x2 stages; logits at ``upscale`` times the feature size."""

    def __init__(self, in_channels: int, num_classes: int, upscale: int = 8):
        stages = int(round(math.log2(upscale)))
        if 2 ** stages != upscale:
            raise ValueError(f"upscale must be a power of 2, got {upscale}")
        conv = nn.Conv2d(in_channels, num_classes, 1, bias=False)
        nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        super().__init__(conv, *(SubPixelUp(num_classes) for _ in range(stages)))


# --------------------------------------------------------------------------------------------------
# perturbations (pure functions of the features and, for the guided ones, the main prediction)
# --------------------------------------------------------------------------------------------------


def channel_dropout(z: torch.Tensor, p: float = DROPOUT_P) -> torch.Tensor:
    """DropOut: whole channels of each sample zeroed with probability ``p``, the others scaled by 1 / (1 - p)."""
    return F.dropout2d(z, p, training=True)


def feature_drop(z: torch.Tensor, gamma: float | None = None,
                 gamma_range: tuple[float, float] = FEATURE_DROP_GAMMA) -> torch.Tensor:
    """F-Drop: the channel-mean attention of each sample; positions where it reaches ``gamma`` x the sample's
    maximum are zeroed in every channel. ``gamma`` is drawn once per call from U(``gamma_range``) when None."""
    if gamma is None:
        lo, hi = gamma_range
        gamma = lo + (hi - lo) * float(torch.rand(()))
    attention = z.mean(1, keepdim=True)
    threshold = attention.flatten(1).amax(1).view(-1, 1, 1, 1) * gamma
    return z * (attention < threshold).to(z.dtype)


def feature_noise(z: torch.Tensor, uniform_range: float = FEATURE_NOISE_RANGE) -> torch.Tensor:
    """F-Noise: z + z * N with N ~ U(-r, r) of shape [C, H, W], the same for every sample of the batch."""
    noise = (torch.rand(z.shape[1:], device=z.device) * 2 - 1) * uniform_range
    return z + z * noise.to(z.dtype)


def foreground(main_logits: torch.Tensor) -> torch.Tensor:
    """[B, H, W] bool: pixels whose predicted class (argmax) is not background."""
    return main_logits.argmax(1) > 0


def guided_masking(z: torch.Tensor, fg: torch.Tensor, keep_objects: bool) -> torch.Tensor:
    """Con-Msk (``keep_objects``: z kept on the predicted foreground, the context zeroed) or Obj-Msk (z kept on the
    predicted background, the objects zeroed). ``fg`` [B, H, W] is nearest-resized to the feature size."""
    mask = F.interpolate(fg[:, None].float(), size=z.shape[-2:], mode="nearest").to(z.dtype)
    return z * (mask if keep_objects else 1 - mask)


def object_boxes(fg: np.ndarray, min_points: int = CUTOUT_MIN_POINTS) -> list[tuple[int, int, int, int]]:
    """Boxes (y0, x0, y1, x1), inclusive pixel bounds, of the 8-connected foreground components of the [H, W] bool
    map ``fg`` whose boundary (pixels with a 4-neighbour outside the component or the image) has more than
    ``min_points`` pixels."""
    labels, _ = ndimage.label(fg, structure=np.ones((3, 3), bool))
    boxes = []
    for idx, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        comp = np.pad(labels[sl] == idx, 1)
        interior = comp[1:-1, 1:-1] & comp[:-2, 1:-1] & comp[2:, 1:-1] & comp[1:-1, :-2] & comp[1:-1, 2:]
        if int((comp[1:-1, 1:-1] & ~interior).sum()) > min_points:
            boxes.append((sl[0].start, sl[1].start, sl[0].stop - 1, sl[1].stop - 1))
    return boxes


def cutout_keep_mask(boxes_per_image: Sequence[Sequence[tuple[int, int, int, int]]], size: tuple[int, int],
                     erase: float = CUTOUT_ERASE) -> torch.Tensor:
    """G-Cutout's [B, 1, H, W] keep mask at the prediction's ``size``: 1 everywhere except, inside each object box
    of bounding size (h, w) = (y1 - y0, x1 - x0), one rectangle of int(``erase`` h) x int(``erase`` w) at a random
    offset in [0, int((1 - ``erase``) h)] x [0, int((1 - ``erase``) w)] from the box's corner, set to 0."""
    keep = torch.ones(len(boxes_per_image), 1, *size)
    for b, boxes in enumerate(boxes_per_image):
        for y0, x0, y1, x1 in boxes:
            bh, bw = y1 - y0, x1 - x0
            dy = int(torch.randint(int(bh * (1 - erase)) + 1, ()))
            dx = int(torch.randint(int(bw * (1 - erase)) + 1, ()))
            keep[b, 0, y0 + dy:y0 + dy + int(bh * erase), x0 + dx:x0 + dx + int(bw * erase)] = 0
    return keep


def guided_cutout(z: torch.Tensor, boxes_per_image: Sequence[Sequence[tuple[int, int, int, int]]],
                  size: tuple[int, int], erase: float = CUTOUT_ERASE) -> torch.Tensor:
    """G-Cutout: z times :func:`cutout_keep_mask` nearest-resized from the prediction ``size`` to the features."""
    keep = F.interpolate(cutout_keep_mask(boxes_per_image, size, erase), size=z.shape[-2:], mode="nearest")
    return z * keep.to(device=z.device, dtype=z.dtype)


def _unit(d: torch.Tensor) -> torch.Tensor:
    """Each sample of ``d`` scaled to L2 norm 1 over all its other dimensions (0 stays 0)."""
    norm = d.flatten(1).norm(dim=1).view(-1, *([1] * (d.dim() - 1)))
    return d / norm.clamp_min(1e-30)


def vat_perturbation(z: torch.Tensor, head: nn.Module, xi: float = VAT_XI, eps: float = VAT_EPS,
                     iterations: int = 1) -> torch.Tensor:
    """I-VAT's adversarial perturbation r_adv of the features ``z`` for ``head`` (one power iteration): from a
    random direction d ~ U(-0.5, 0.5) of unit norm per sample, d <- unit(grad_d KL(softmax(head(z)) ||
    softmax(head(z + xi d)))) (batch mean); r_adv = eps d. Computed in float32 (float64 input stays float64),
    detached from the graph, without touching any parameter's gradient."""
    with torch.enable_grad(), torch.autocast(z.device.type, enabled=False):
        x = z.detach()
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        with torch.no_grad():
            target = F.softmax(head(x), 1)
        d = _unit(torch.rand_like(x) - 0.5)
        for _ in range(iterations):
            d.requires_grad_(True)
            kl = F.kl_div(F.log_softmax(head(x + xi * d), 1), target, reduction="batchmean")
            (grad,) = torch.autograd.grad(kl, d)
            d = _unit(grad.detach())
    return (eps * d).to(z.dtype)


# --------------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------------


class Guide:
    """What the guided decoders read from the main decoder's detached prediction of the unlabelled batch, computed
    once per step: the foreground map and (on first use) the object boxes."""

    def __init__(self, main_logits: torch.Tensor, min_points: int = CUTOUT_MIN_POINTS):
        self.fg = foreground(main_logits.detach())
        self.size = tuple(self.fg.shape[-2:])
        self.min_points = min_points
        self._boxes: list | None = None

    @property
    def boxes(self) -> list[list[tuple[int, int, int, int]]]:
        if self._boxes is None:
            self._boxes = [object_boxes(m, self.min_points) for m in self.fg.cpu().numpy()]
        return self._boxes


class AuxDecoder(nn.Module):
    """An auxiliary decoder: its own :class:`DecoderHead` over the features perturbed by ``kind`` (one of the
    names of :data:`CCT_AUX_DECODERS`) with CCT's parameters."""

    KINDS = tuple(k for k, _ in CCT_AUX_DECODERS)

    def __init__(self, kind: str, in_channels: int, num_classes: int, upscale: int = 8):
        super().__init__()
        if kind not in self.KINDS:
            raise ValueError(f"unknown auxiliary decoder {kind!r}: choose one of {', '.join(self.KINDS)}")
        self.kind = kind
        self.head = DecoderHead(in_channels, num_classes, upscale)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"

    def forward(self, z: torch.Tensor, guide: Guide) -> torch.Tensor:
        if self.kind == "vat":
            z = z + vat_perturbation(z, self.head)
        elif self.kind == "dropout":
            z = channel_dropout(z)
        elif self.kind == "cutout":
            z = guided_cutout(z, guide.boxes, guide.size)
        elif self.kind in ("context_mask", "object_mask"):
            z = guided_masking(z, guide.fg, keep_objects=self.kind == "context_mask")
        elif self.kind == "feature_drop":
            z = feature_drop(z)
        else:
            z = feature_noise(z)
        return self.head(z)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """``x`` [B, C, H, W] padded at the bottom and right to a multiple of ``multiple`` (reflect, as CCT's
    inference; replicate when the image is too small to reflect)."""
    ph, pw = -x.shape[-2] % multiple, -x.shape[-1] % multiple
    if not (ph or pw):
        return x
    mode = "reflect" if ph < x.shape[-2] and pw < x.shape[-1] else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


class CCTModel(nn.Module):
    """Encoder (``backbone`` then ``psp``) at ``output_stride`` + main decoder + auxiliary decoders.

    ``model(x)`` returns the main decoder's logits [B, classes, H, W] at the input size (the input is padded to a
    multiple of the output stride and the logits cropped): the interface of the segmentation networks, so
    :func:`advcam.segmentation.predict_probs` runs on it. ``model(x_l, x_ul)`` (training) returns
    {"main_l": logits of the labelled batch, "main_ul": the main decoder's logits of the unlabelled batch,
    "aux_ul": list of each auxiliary decoder's logits of the unlabelled batch}. ``backbone`` holds the pretrained
    part (its own learning rate); everything else is ``head``-like (PSP and decoders).
    """

    def __init__(self, backbone: nn.Module, backbone_channels: int, num_classes: int = 21, channels: int = 512,
                 output_stride: int = 8, aux: Sequence[tuple[str, int]] = CCT_AUX_DECODERS):
        super().__init__()
        self.backbone = backbone
        self.psp = PSPModule(backbone_channels, channels)
        self.main_decoder = DecoderHead(channels, num_classes, output_stride)
        self.aux_decoders = nn.ModuleList(
            AuxDecoder(kind, channels, num_classes, output_stride) for kind, n in aux for _ in range(n))
        self.output_stride = output_stride
        self.num_classes = num_classes

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """As :meth:`torch.nn.Module.load_state_dict`; a state without auxiliary decoders (the inference weights
        that train_semi writes, or a supervised-only run's) leaves this model without them."""
        if self.aux_decoders and not any(k.startswith("aux_decoders.") for k in state_dict):
            self.aux_decoders = nn.ModuleList()
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's features [B, channels, H / stride, W / stride]."""
        return self.psp(self.backbone(x))

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Main-decoder logits at the input size."""
        h, w = x.shape[-2:]
        return self.main_decoder(self.encode(pad_to_multiple(x, self.output_stride)))[..., :h, :w]

    def forward(self, x: torch.Tensor, x_ul: torch.Tensor | None = None):
        if x_ul is None:
            return self.predict(x)
        if not self.aux_decoders:
            raise ValueError("this CCT model has no auxiliary decoders: train it on the labelled batch alone")
        h, w = x_ul.shape[-2:]
        if h % self.output_stride or w % self.output_stride:
            raise ValueError(f"unlabelled crops must be multiples of {self.output_stride}, got {h} x {w}")
        z_ul = self.encode(x_ul)
        main_ul = self.main_decoder(z_ul)
        guide = Guide(main_ul)
        return {"main_l": self.predict(x), "main_ul": main_ul, "aux_ul": [d(z_ul, guide) for d in self.aux_decoders]}


def cct_param_groups(model: nn.Module, lr: float = 1e-2, backbone_lr: float = 1e-3,
                     weight_decay: float = 1e-4) -> list[dict]:
    """SGD groups as CCT: the backbone at ``backbone_lr``, everything else (PSP, all decoders) at ``lr``; weight
    decay on all. Frozen parameters are left out."""
    backbone = {id(p) for p in model.backbone.parameters()}
    groups = [{"params": [p for p in model.backbone.parameters() if p.requires_grad], "lr": backbone_lr,
               "weight_decay": weight_decay},
              {"params": [p for p in model.parameters() if p.requires_grad and id(p) not in backbone], "lr": lr,
               "weight_decay": weight_decay}]
    return [g for g in groups if g["params"]]


# --------------------------------------------------------------------------------------------------
# losses and ramp
# --------------------------------------------------------------------------------------------------


def sigmoid_rampup(step: float, rampup_steps: float) -> float:
    """exp(-5 (1 - t)^2) with t = clip(step / rampup_steps, 0, 1): exp(-5) at 0, 1 from ``rampup_steps`` on
    (1 throughout when ``rampup_steps`` is 0)."""
    if rampup_steps <= 0:
        return 1.0
    t = min(max(float(step), 0.0), float(rampup_steps)) / float(rampup_steps)
    return math.exp(-5.0 * (1.0 - t) ** 2)


def rampup_steps(epochs: int, steps_per_epoch: int, ramp_up: float = RAMP_UP) -> int:
    """CCT's ramp-up length: int(``ramp_up`` x ``epochs``) epochs of steps (8 x 912 = 7,296 at 80 epochs)."""
    return int(ramp_up * epochs) * steps_per_epoch


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_LABEL) -> torch.Tensor:
    """Mean cross-entropy over the pixels not labelled ``ignore_index`` (0, with a gradient, when there are none)."""
    nll = F.cross_entropy(logits.float(), labels, ignore_index=ignore_index, reduction="sum")
    return nll / (labels != ignore_index).sum().clamp_min(1)


def consistency_loss(aux_logits: Sequence[torch.Tensor], main_logits: torch.Tensor) -> torch.Tensor:
    """Mean over the decoders of the MSE (mean over all B x C x H x W elements) between each decoder's softmax and
    the main decoder's detached softmax."""
    target = F.softmax(main_logits.detach().float(), 1)
    return sum(F.mse_loss(F.softmax(a.float(), 1), target) for a in aux_logits) / len(aux_logits)


def weak_loss(aux_logits: Sequence[torch.Tensor], weak_masks: torch.Tensor,
              ignore_index: int = IGNORE_LABEL) -> torch.Tensor:
    """Mean over the decoders of each decoder's cross-entropy against the weak masks [B, H, W] (255 ignored)."""
    return sum(cross_entropy(a, weak_masks, ignore_index) for a in aux_logits) / len(aux_logits)
