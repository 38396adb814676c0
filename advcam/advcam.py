"""Anti-adversarial climbing (AdvCAM, Lee et al., CVPR 2021): engines and the library API.

Notation follows the paper. For an image x_0 and a class c, the attribution of step t is the
Grad-CAM map R(x_t) of class c. Each step climbs

    x_{t+1} = x_t + xi * grad_x L(x_t) / max|grad_x L(x_t)|                               (Eq. 2)
    L = y_c(x_t) - sum_{k != c} y_k(x_t) - lambda * || M ⊙ |R(x_t) - R(x_0)| ||_1          (Eqs. 4-6)
    M = 1[ R(x_t) / max R(x_t) > tau ]                                                      (Eq. 5)

and the final map is sum_{t=0}^{T-1} R(x_t) (Eq. 3; the reference accumulates before each step).

Scale-free restriction (``restriction="max"``, the default of :class:`AdvCAM` outside CAM-style networks): the L1
term of Eq. 6 on maps divided by max R(x_0) of each image, with lambda in the units of the reference network's maps,

    L_AD = kappa * || M ⊙ |R(x_t) - R(x_0)| ||_1 / max R(x_0),   kappa = REFERENCE_MAP_SCALE,

so its strength does not depend on the scale of features times gradients (docs/advcam_any_network.md).

The other classes' term (``others=``, the hooked path; :func:`class_objective`). In the reference, y_k is the spatial
mean of the ReLU'd class map of a multi-label (sigmoid) classifier: non-negative, 0 for most absent classes, each
meaningful on its own, so y_c - sum_{k != c} y_k suppresses only classes that have evidence. A softmax classifier's
logits are meaningful only up to a term common to all classes (adding any g(x) changes no prediction); summed over
its 999 other classes that term dominates: on EfficientNet-Lite0 and the demo's 7 photos |grad_x sum_{k != c} y_k| is
8.9-12.2 times |grad_x y_c| at x_0, and the paper's objective lowers the target logit late in the climb. The default on
models without the CAM layout (``others="logodds"``) is therefore the target's log-odds against the other classes,

    L = y_c - log sum_{k != c} exp y_k - lambda * L_AD    ( = log p_c / (1 - p_c) - lambda * L_AD ),

which no common term changes, weighs the others by their share of the non-target probability (weights summing to 1),
and, like the logit, does not saturate; ``others="sum"`` is Eq. 4 literally (right for a multi-label
classifier), ``"none"`` the target logit alone. CAM-style networks always climb the reference's objective.

Two engines compute the same maps for the CAM network (``advcam.nets.resnet50_cam.CAM``):
- ``reference``: literal. One class at a time, Grad-CAM through hooks on the target layer and a
  second backward for the climbing objective, parameter gradients included, as the reference code.
- ``fast``: the Grad-CAM map of this head is ReLU(S_c) times a per-copy scalar (see
  :func:`gradcam_closed_form`), so one forward and one input-only backward per step serve all
  positive classes of an image at once, batched (and, with :func:`advcam_images`, those of several
  images of equal size).
"""
from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from advcam.cam import fuse_scales

EPS_GRAD = 1e-12


# ----------------------------------------------------------------------------------------------
# Input checks of the public API (the rules of obtain_CAM_masking.py's flags)
# ----------------------------------------------------------------------------------------------

def _real(v) -> float | None:
    """``v`` as a float, or None when it is not a real number."""
    if isinstance(v, bool):
        return None
    try:
        return float(v)
    except (TypeError, ValueError, RuntimeError):
        return None


def check_climb_params(adv_iter, xi, lam, tau) -> None:
    """Refuse climbing parameters outside their ranges with one ValueError naming the parameter: ``adv_iter`` (T) an
    integer >= 1, ``xi`` finite and > 0, ``lam`` finite and >= 0, ``tau`` in [0, 1]."""
    if isinstance(adv_iter, bool) or not isinstance(adv_iter, numbers.Integral) or adv_iter < 1:
        raise ValueError(f"adv_iter (T, climbing steps) must be an integer >= 1, got {adv_iter!r}")
    v = _real(xi)
    if v is None or not math.isfinite(v) or v <= 0:
        raise ValueError(f"xi (the step size) must be a finite number > 0, got {xi!r}: the climb ascends the class "
                         "score (anti-adversarial); a negative step would run an adversarial (descending) attack")
    v = _real(lam)
    if v is None or not math.isfinite(v) or v < 0:
        raise ValueError(f"lam (lambda, the weight of the restriction term) must be a finite number >= 0, got {lam!r}")
    v = _real(tau)
    if v is None or not 0 <= v <= 1:
        raise ValueError(f"tau (the restricting-mask threshold) must lie in [0, 1], got {tau!r}")


def check_targets(targets, num_classes: int | None = None) -> list[int]:
    """The target classes as ints; a ValueError unless each is an integral class index in [0, ``num_classes``)
    (only >= 0 when ``num_classes`` is None)."""
    t = torch.as_tensor(targets).reshape(-1)
    if t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"targets must be integer class indices, got {t.dtype} values")
    if t.is_floating_point() and not bool((torch.isfinite(t) & (t == t.round())).all()):
        bad = t[~(torch.isfinite(t) & (t == t.round()))][0].item()
        raise ValueError(f"targets must be integer class indices, got {bad!r}")
    values = [int(v) for v in t.tolist()]
    for v in values:
        if v < 0 or (num_classes is not None and v >= num_classes):
            limit = f"[0, {num_classes})" if num_classes is not None else "0 or more"
            raise ValueError(f"target class {v} is out of range: class indices are {limit}"
                             + (f" for this model's {num_classes} classes" if num_classes is not None else ""))
    return values


def head_classes(model: nn.Module) -> int | None:
    """The number of classes of a CAM-style network's 1x1 ``classifier``, or None for any other model."""
    head = getattr(model, "classifier", None)
    return int(head.weight.shape[0]) if isinstance(head, nn.Conv2d) else None


# ----------------------------------------------------------------------------------------------
# Shared pieces of one climbing step
# ----------------------------------------------------------------------------------------------

def restricting_mask(R: torch.Tensor, tau: float) -> torch.Tensor:
    """M = 1[R / max R > tau] over each map's spatial dims (Eq. 5); empty when max R = 0."""
    peak = R.flatten(-2).amax(-1)[..., None, None]
    return (R / peak > tau).float().detach()


RESTRICTIONS = ("reference", "max")  # the L1 term on raw maps (the reference), or on maps / max R(x_0)
GRADCAM_WEIGHTS = ("reference", "mean")  # gradient sum / #positive gradient entries, or the spatial mean
# kappa: max R(x_0) of the reference CAM network, the map scale lambda = 7 was tuned to (measured on the toy
# ResNet-50 CAM network, docs/advcam_any_network.md); "max" mode gives lambda the same weight at that scale.
REFERENCE_MAP_SCALE = 0.036


def restriction_term(R: torch.Tensor, R0: torch.Tensor, tau: float, restriction: str = "reference") -> torch.Tensor:
    """L_AD per map [...] from R(x_t), R(x_0) [..., h', w'] (Eq. 6).

    ``"reference"``: ||M ⊙ |R - R0| ||_1. ``"max"``: the same on maps divided by max R(x_0), times
    :data:`REFERENCE_MAP_SCALE` (unchanged by any constant factor of the maps).
    """
    L = (restricting_mask(R, tau) * (R - R0).abs()).sum((-2, -1))  # ||M ⊙ |R(x_t) - R(x_0)| ||_1
    if restriction == "reference":
        return L
    if restriction == "max":
        return L * (REFERENCE_MAP_SCALE / (R0.flatten(-2).amax(-1) + EPS_GRAD))  # on maps / max R(x_0)
    raise ValueError(f"unknown restriction {restriction!r}: choose one of {RESTRICTIONS}")


DEFAULT_MAX_BATCH_PIXELS = 4_500_000  # obtain_CAM_masking.py --max_batch_pixels: input pixels per climbing batch

OTHERS = ("sum", "logodds", "none")  # what the climb subtracts of the other classes' logits (see class_objective)


def class_objective(logits: torch.Tensor, target: torch.Tensor, others: str = "sum") -> torch.Tensor:
    """The class part of Eq. 4 per item [...] from logits [..., C] and target classes [...] (long).

    ``"sum"``: y_c - sum_{k != c} y_k, the paper's term (on the reference network the y_k are spatial means of ReLU'd
    class maps of a multi-label classifier, non-negative, and mostly 0 for the absent classes).
    ``"logodds"``: y_c - log sum_{k != c} exp(y_k) = log(p_c / (1 - p_c)) for a softmax classifier, the log-odds of
    the target against all other classes. A softmax classifier's logits are defined only up to a common term g(x)
    (adding it changes no prediction), and "sum" weighs that term C - 2 times; "logodds" does not see it and weighs
    the other classes by their share of the non-target probability (weights summing to 1, in place of C - 1 ones).
    It does not saturate as p_c -> 1 (the reference climbs the logit, not the loss, because the loss saturates).
    ``"none"``: y_c alone.
    """
    y_c = logits.gather(-1, target[..., None])[..., 0]
    if others == "sum":
        return 2 * y_c - logits.sum(-1)
    if others == "logodds":
        rest = logits.scatter(-1, target[..., None], float("-inf"))  # the other classes only
        return y_c - torch.logsumexp(rest, -1)
    if others == "none":
        return y_c
    raise ValueError(f"unknown others {others!r}: choose one of {OTHERS}")


def gradcam_weights(G: torch.Tensor, weights: str = "reference") -> torch.Tensor:
    """Grad-CAM channel weights [B, n, K, 1, 1] from dScore/dF [B, n, K, h', w'] (constants).

    ``"reference"``: the spatial sum over the count of strictly positive entries of the item's whole gradient
    (all its copies), as the reference's ``gap2d_pos``. ``"mean"``: the spatial mean per copy and channel, as
    pytorch-grad-cam and torchcam compute Grad-CAM.
    """
    if weights == "reference":
        B = G.shape[0]
        return G.sum((3, 4), keepdim=True) / ((G > 0).flatten(1).sum(1).view(B, 1, 1, 1, 1) + EPS_GRAD)
    if weights == "mean":
        return G.mean((3, 4), keepdim=True)
    raise ValueError(f"unknown Grad-CAM weights {weights!r}: choose one of {GRADCAM_WEIGHTS}")


def climb_step(x: torch.Tensor, g: torch.Tensor, xi: float) -> torch.Tensor:
    """x_{t+1} = clamp(x_t + xi * g / max|g|) per leading index (Eq. 2).

    ``x``, ``g``: [N, ...] (N independent images or flip pairs). The step is L-inf normalised over each
    item, and each item is clamped to its own scalar range [min x_t, max x_t], as in the reference.
    """
    n = x.shape[0]
    gmax = g.abs().reshape(n, -1).amax(1).view(n, 1, 1, 1, 1)
    lo = x.reshape(n, -1).amin(1).view(n, 1, 1, 1, 1)
    hi = x.reshape(n, -1).amax(1).view(n, 1, 1, 1, 1)
    x_new = x + xi * g / (gmax + EPS_GRAD)
    return torch.maximum(torch.minimum(x_new, hi), lo).detach()


def iterations_for_scale(scale: float, adv_iter: int) -> int:
    """T for one scale: the reference halves the climb at scale 0.5 (13 steps for adv_iter 27)."""
    if scale == 0.5:
        if adv_iter > 10:
            return adv_iter // 2
        if adv_iter < 6:
            return adv_iter
        return 5
    return adv_iter


def scale_order(scales: Sequence[float]) -> list[int]:
    """Processing order of the scales: the reference runs (1.0, 0.5, 1.5, 2.0) as 0.5, 1.0, 1.5, 2.0."""
    return sorted(range(len(scales)), key=lambda i: scales[i])


# ----------------------------------------------------------------------------------------------
# Reference engine (literal)
# ----------------------------------------------------------------------------------------------

class _GradCAMHooks:
    """Stores a module's output F and, after a backward, dScore/dF (the reference's gradCAM.py)."""

    def __init__(self, module: nn.Module):
        self.feature: torch.Tensor | None = None
        self.grad: torch.Tensor | None = None
        self._handle = module.register_forward_hook(self._forward)

    def _forward(self, module, inputs, output):
        self.feature = output

        def save_grad(g):
            self.grad = g

        if output.requires_grad:
            output.register_hook(save_grad)

    def remove(self) -> None:
        self._handle.remove()


def _reference_gradcam(hooks: _GradCAMHooks) -> torch.Tensor:
    """Grad-CAM with the reference normalisation: per (b, k) the spatial sum of dScore/dF divided by the
    number of strictly positive entries of the whole gradient tensor; weights are constants."""
    G = hooks.grad.detach()
    w = G.sum((2, 3), keepdim=True) / ((G > 0).sum() + EPS_GRAD)
    return F.relu((hooks.feature * w).sum(1, keepdim=True))  # [2, 1, h', w']


def climb_reference(model: nn.Module, pair: torch.Tensor, c: int, T: int, xi: float, lam: float,
                    tau: float, target_layer: str = "stage4", step_maps: list | None = None,
                    restriction: str = "reference") -> torch.Tensor:
    """Accumulated map sum_t R(x_t) [h', w'] of class ``c`` for one flip pair [2, 3, h, w], literally.

    ``restriction="max"`` divides the L1 term by max R(x_0) and multiplies it by REFERENCE_MAP_SCALE
    (:func:`restriction_term`); the default is the reference's term.

    With ``step_maps`` (a list), the accumulated map [h', w'] after each step t (sum of R(x_0..x_t)) is
    appended to it, T maps in all; the result does not change."""
    check_climb_params(T, xi, lam, tau)
    c = check_targets([c], head_classes(model))[0]
    hooks = _GradCAMHooks(model.get_submodule(target_layer))
    try:
        x = pair.clone().detach().requires_grad_(True)
        acc = None
        R0 = None
        for t in range(T):
            S = model(x, separate=True)  # [2, C, h', w'] raw class maps
            # Grad-CAM score: spatial sum of ReLU maps, summed over both copies.
            model.zero_grad()
            F.relu(S).sum((2, 3))[:, c].sum().backward(retain_graph=True)
            A = _reference_gradcam(hooks)
            R = A[0] + A[1].flip(-1)  # merge the mirror copy: [1, h', w']
            if t == 0:
                R0 = R.detach()
            acc = R.detach() if acc is None else acc + R.detach()  # accumulate before the step
            if step_maps is not None:
                step_maps.append(acc[0])
            # Logits of the objective: spatial mean of ReLU maps.
            y = F.relu(S).mean((2, 3))  # [2, C]
            others = torch.cat([y[:, :c], y[:, c + 1:]], 1).sum()
            M = (R / R.max() > tau).float()  # restricting mask on the current map
            L_AD = (M * (R - R0).abs()).sum()
            if restriction == "max":
                L_AD = L_AD * (REFERENCE_MAP_SCALE / (R0.max() + EPS_GRAD))
            L = y[:, c].sum() - others - lam * L_AD
            model.zero_grad()
            x.grad = None
            L.backward()
            x = climb_step(x[None].detach(), x.grad[None], xi)[0].requires_grad_(True)
        return acc[0]
    finally:
        hooks.remove()


# ----------------------------------------------------------------------------------------------
# Fast engine (closed-form Grad-CAM, all classes batched, input gradients only)
# ----------------------------------------------------------------------------------------------

def gradcam_closed_form(S_c: torch.Tensor, n_pos_weights: torch.Tensor) -> torch.Tensor:
    """Grad-CAM of the bias-free 1x1 head without hooks.

    With score sum_p ReLU(S_c), dScore/dF_k(p) = W_ck [S_c(p) > 0], so the reference's Grad-CAM is
    A_b = ReLU(S_bc) * P_b / N with P_b = #{p: S_bc(p) > 0} and N = #{k: W_ck > 0} * (P_0 + P_1),
    the count of positive gradient entries over the pair. ``S_c``: [N, 2, h', w'];
    ``n_pos_weights``: [N]. Returns A [N, 2, h', w'] (the scalars carry no gradient).
    """
    P = (S_c > 0).flatten(2).sum(-1).to(S_c.dtype)  # [N, 2]
    N = n_pos_weights.to(S_c.dtype)[:, None] * P.sum(1, keepdim=True)
    scale = (P / (N + EPS_GRAD)).detach()
    return F.relu(S_c) * scale[..., None, None]


def gradcam_exact(feat: torch.Tensor, S_c: torch.Tensor, W_c: torch.Tensor, weights: str = "reference") -> torch.Tensor:
    """The reference's Grad-CAM of the 1x1 head, with dScore/dF built directly instead of by a backward.

    dScore/dF_k(p) = W_ck [S_c(p) > 0] holds exactly (the head's backward multiplies a one-hot
    gradient by W), so the weights below are bit-identical to those the hooks would capture.
    ``feat``: [N, n, K, h', w'] features F; ``S_c``: [N, n, h', w']; ``W_c``: [N, K] head rows;
    ``weights``: see :func:`gradcam_weights`.
    Returns A = ReLU(sum_k F_k w_k) [N, n, h', w'], gradients flowing through F only.
    """
    G = W_c[:, None, :, None, None] * (S_c > 0)[:, :, None].to(W_c.dtype)  # dScore/dF: [N, n, K, h', w']
    return F.relu((feat * gradcam_weights(G, weights)).sum(2))


def merge_copies(A: torch.Tensor) -> torch.Tensor:
    """R from per-copy maps [N, n, h', w']: the copy itself (n = 1) or copy 0 plus mirrored copy 1 (n = 2)."""
    return A[:, 0] + A[:, 1].flip(-1) if A.shape[1] == 2 else A[:, 0]


def climb_fast(model: nn.Module, x0: torch.Tensor, classes: Sequence[int], T: int, xi: float, lam: float,
               tau: float, amp_dtype: torch.dtype | None = None, step_maps: list | None = None,
               restriction: str = "reference", weights: str = "reference") -> torch.Tensor:
    """Accumulated maps sum_t R(x_t) [N, h', w'] of N independent climbs, batched.

    For any CAM-style network: ``model.features(x)`` followed by the bias-free 1x1 ``model.classifier``.
    ``restriction`` is the form of L_AD (:func:`restriction_term`), ``weights`` that of the Grad-CAM weights
    (:func:`gradcam_weights`); the defaults are the reference's.

    With ``step_maps`` (a list), the accumulated maps [N, h', w'] after each step t (sum of R(x_0..x_t))
    are appended to it, T tensors in all (the last is the result); the result does not change.

    The arithmetic is the reference's (same Grad-CAM weights, same products and reductions), so in
    float32 the maps agree with :func:`climb_reference` to rounding; only the hooks, the Grad-CAM
    backward and the parameter gradients are gone.

    ``x0``: [N, n, 3, h, w], slot i climbs for class ``classes[i]`` from its own image (n = 1) or flip
    pair (n = 2). Batch norm is in eval mode, so the slots are independent and one backward of the
    summed objective gives each slot its own gradient. Only input gradients are computed.
    """
    check_climb_params(T, xi, lam, tau)
    classes = check_targets(classes, head_classes(model))
    N, n = x0.shape[:2]
    if len(classes) != N:
        raise ValueError(f"climb_fast: {N} climbing slots in x0 but {len(classes)} classes")
    cls = torch.as_tensor(classes, dtype=torch.long, device=x0.device)
    rows = torch.arange(N, device=x0.device)
    W = model.classifier.weight.flatten(1)  # [C, K]
    sign = torch.full((N, W.shape[0]), -1.0, device=x0.device)  # +1 for the target class, -1 for the others
    sign[rows, cls] = 1.0
    x = x0.detach().clone()
    acc = R0 = None
    for t in range(T):
        x.requires_grad_(True)
        with torch.autocast(x.device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
            feat = model.features(x.flatten(0, 1))  # F = features(x_t): [N*n, K, h', w']
            S = F.conv2d(feat, model.classifier.weight)  # raw class maps
        feat = feat.float().unflatten(0, (N, n))
        S = S.float().unflatten(0, (N, n))  # [N, n, C, h', w']
        A = gradcam_exact(feat, S[rows, :, cls], W[cls], weights)  # Grad-CAM of class c per copy: [N, n, h', w']
        R = merge_copies(A)  # R(x_t): [N, h', w']
        if t == 0:
            R0 = R.detach()  # R(x_0)
        acc = R.detach() if acc is None else acc + R.detach()  # accumulate before the step
        if step_maps is not None:
            step_maps.append(acc)
        if t == T - 1:
            break  # the step after the last accumulated map would not be used
        y = F.relu(S).mean((3, 4))  # logits of the objective: [N, n, C]
        L_cls = (y * sign[:, None]).sum((1, 2))  # y_c - sum_{k != c} y_k over the copies
        L_ad = restriction_term(R, R0, tau, restriction)  # ||M ⊙ |R(x_t) - R(x_0)|||_1 (Eq. 6)
        (g,) = torch.autograd.grad((L_cls - lam * L_ad).sum(), x)  # grad_x L (Eq. 4)
        x = climb_step(x.detach(), g, xi)  # x_{t+1} (Eq. 2)
    return acc


@contextlib.contextmanager
def input_grad_only(model: nn.Module):
    """Switch parameter gradients off for the duration (they are never needed by the climb)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, f in flags:
            p.requires_grad_(f)


# ----------------------------------------------------------------------------------------------
# Images, all scales
# ----------------------------------------------------------------------------------------------

def _scale_schedule(scales: Sequence[float], adv_iter: int):
    """Yield (scale index, T, multiplier) in the reference's processing order.

    Reference quirk: the multiplier is set at scale 0.5 and never reset, so it scales every later map
    uniformly (cancelled by the final max-normalisation).
    """
    mul_for_scale = 1.0
    for i in scale_order(scales):
        if scales[i] == 0.5:
            mul_for_scale = 2.0 if adv_iter > 10 else 1.0
        yield i, iterations_for_scale(scales[i], adv_iter), mul_for_scale


def _empty_maps(size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The outputs of an image without a positive class (as the reference writes them)."""
    return fuse_scales([torch.zeros(0, 1, 1)], size)


def _slot_inputs(pairs: list[torch.Tensor]) -> torch.Tensor:
    """x0 [N, 2, 3, h, w] of N climbing slots: a view when they all share one flip pair, else a stack.

    Both keep the pairs' memory format (channels_last stays channels_last after the flatten in climb_fast).
    """
    first = pairs[0]
    if all(p is first for p in pairs):
        return first[None].expand(len(pairs), *first.shape)
    return torch.stack(pairs)


def advcam_images(model: nn.Module, images: Sequence[Sequence[torch.Tensor]], scales: Sequence[float],
                  keys_list: Sequence[Sequence[int]], sizes: Sequence[tuple[int, int]], adv_iter: int = 27,
                  xi: float = 0.08, lam: float = 7.0, tau: float = 0.5, amp_dtype: torch.dtype | None = None,
                  max_batch_pixels: int | None = None,
                  step_maps: list | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """AdvCAM of several images of equal size with the fast engine, batched across images.

    ``images[j][i]`` is image j's [2, 3, h, w] flip pair at ``scales[i]``, ``keys_list[j]`` its positive
    classes and ``sizes[j]`` its original (H, W). Per scale, the climbing slots of all images (each image's
    flip pair times each of its classes) form one batch, split into chunks of at most ``max_batch_pixels``
    input pixels (batch x h x w); the slots are independent, so neither the grouping nor the chunking
    changes the maps. Returns one ("cam", "high_res") per image, as :func:`advcam_image`.

    With ``step_maps`` (a list), one entry per image is appended to it: a list over ``scales`` of the
    accumulated maps after each climbing step, [T_s, K, h', w'] on the CPU, times the scale's multiplier (so
    entry [-1] is what is fused into the result); an image without a positive class gets an empty list.
    """
    check_climb_params(adv_iter, xi, lam, tau)
    if not len(images) == len(keys_list) == len(sizes):
        raise ValueError(f"advcam_images: {len(images)} images, {len(keys_list)} key lists and {len(sizes)} sizes")
    if not images:
        return []
    for j, pairs in enumerate(images):
        if len(pairs) != len(scales):
            raise ValueError(f"advcam_images: image {j} has {len(pairs)} flip pairs for {len(scales)} scales")
    for i, s in enumerate(scales):
        shapes = sorted({tuple(pairs[i].shape) for pairs in images})
        if len(shapes) > 1:
            raise ValueError(f"advcam_images batches images of equal size only, but at scale {s:g} the flip pairs "
                             f"have shapes {shapes}: group the images by size or call advcam_image per image")
    keys_list = [check_targets(keys, head_classes(model)) for keys in keys_list]
    slots = [(j, c) for j, keys in enumerate(keys_list) for c in keys]  # (image, class) per climb
    maps: list[list[torch.Tensor]] = [[None] * len(scales) for _ in images]  # type: ignore[list-item]
    steps: list[list[torch.Tensor]] = [[None] * len(scales) if keys else [] for keys in keys_list]  # type: ignore
    if slots:
        for i, T, mul_for_scale in _scale_schedule(scales, adv_iter):
            n, _, h, w = images[0][i].shape
            per_chunk = len(slots) if max_batch_pixels is None else max(1, max_batch_pixels // (n * h * w))
            chunks = [slots[k:k + per_chunk] for k in range(0, len(slots), per_chunk)]
            chunk_steps = [None if step_maps is None else [] for _ in chunks]  # each chunk's T accumulated maps
            with input_grad_only(model):
                acc = torch.cat([
                    climb_fast(model, _slot_inputs([images[j][i] for j, _ in chunk]), [c for _, c in chunk], T, xi,
                               lam, tau, amp_dtype, step_maps=chunk_step)
                    for chunk, chunk_step in zip(chunks, chunk_steps, strict=True)])
            for j, part in enumerate((acc * mul_for_scale).split([len(keys) for keys in keys_list])):
                maps[j][i] = part
            if step_maps is not None:
                per_step = torch.cat([torch.stack(s) for s in chunk_steps], 1) * mul_for_scale  # [T, slots, h', w']
                for j, part in enumerate(per_step.split([len(keys) for keys in keys_list], 1)):
                    if keys_list[j]:
                        steps[j][i] = part.cpu()
    if step_maps is not None:
        step_maps.extend(steps)
    return [fuse_scales([m.cpu() for m in maps[j]], size) if keys else _empty_maps(size)
            for j, (keys, size) in enumerate(zip(keys_list, sizes, strict=True))]


def advcam_image(model: nn.Module, pairs: Sequence[torch.Tensor], scales: Sequence[float], keys: Sequence[int],
                 size: tuple[int, int], adv_iter: int = 27, xi: float = 0.08, lam: float = 7.0, tau: float = 0.5,
                 engine: str = "fast", target_layer: str = "stage4", amp_dtype: torch.dtype | None = None,
                 max_batch_pixels: int | None = None,
                 step_maps: list | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """AdvCAM of one image: ("cam" [K, H/4, W/4], "high_res" [K, H, W]) as in the reference.

    ``pairs[i]`` is the [2, 3, h, w] flip pair at ``scales[i]``; ``keys`` the positive classes.
    The fast engine climbs all classes of a scale in one batch (:func:`advcam_images` with one image), split
    into chunks of at most ``max_batch_pixels`` input pixels (batch x h x w) to bound memory; chunking does
    not change the maps.

    With ``step_maps`` (a list), it is extended by one tensor per scale (in the order of ``scales``): the
    accumulated maps after each climbing step, [T_s, K, h', w'] on the CPU, times the scale's multiplier
    (entry [-1] is what is fused into the result); nothing is added for an image without a positive class.
    """
    check_climb_params(adv_iter, xi, lam, tau)
    keys = check_targets(keys, head_classes(model))
    if not keys:
        return _empty_maps(size)
    if engine == "fast":
        if target_layer != "stage4":
            raise ValueError("the fast engine's closed form holds for --target_layer stage4 only; "
                             "use --engine reference for other layers")
        per_image: list | None = None if step_maps is None else []
        out = advcam_images(model, [pairs], scales, [keys], [size], adv_iter, xi, lam, tau, amp_dtype,
                            max_batch_pixels, step_maps=per_image)[0]
        if step_maps is not None:
            step_maps.extend(per_image[0])
        return out
    if engine != "reference":
        raise ValueError(f"unknown engine {engine!r}: choose 'reference' or 'fast'")
    maps: list[torch.Tensor] = [None] * len(scales)  # type: ignore[list-item]
    steps: list[torch.Tensor] = [None] * len(scales)  # type: ignore[list-item]
    for i, T, mul_for_scale in _scale_schedule(scales, adv_iter):
        per_class = [None if step_maps is None else [] for _ in keys]  # each class's T accumulated maps
        acc = torch.stack([climb_reference(model, pairs[i], c, T, xi, lam, tau, target_layer, step_maps=sm)
                           for c, sm in zip(keys, per_class, strict=True)])
        maps[i] = acc * mul_for_scale
        if step_maps is not None:
            steps[i] = (torch.stack([torch.stack(sm) for sm in per_class], 1) * mul_for_scale).cpu()  # [T, K, h', w']
    if step_maps is not None:
        step_maps.extend(steps)
    return fuse_scales([m.cpu() for m in maps], size)


# ----------------------------------------------------------------------------------------------
# Library API
# ----------------------------------------------------------------------------------------------

class AdvCAM:
    """Anti-adversarially manipulated attribution maps for a CNN classifier.

    ``AdvCAM(model, target_layer)(images, targets)`` returns the accumulated maps sum_t R(x_t),
    [B, h', w'] at the target layer's resolution (unnormalised; see :func:`normalize_maps`).

    For ``advcam.nets.resnet50_cam.CAM`` (or any network with its ``features``/``stage4``/bias-free 1x1
    ``classifier`` layout) with ``target_layer="stage4"`` the closed form of Grad-CAM is
    used (exactly the reference method, including its ReLU-mean logits); so it is for any CAM-style network,
    ``features(x)`` ending in ``target_layer`` (``stage4`` or the model's ``feature_layer``) and a bias-free 1x1
    ``classifier`` (e.g. ``advcam.nets.efficientnet_lite0_cam``). For any other model Grad-CAM runs through
    hooks on ``target_layer`` (a module or its dotted name) and the objective uses the model's logits.

    ``restriction``: the form of L_AD (:func:`restriction_term`); ``"auto"`` is the reference's raw L1 term on
    CAM-style networks (their maps have the reference's scale, R ~ ReLU(S_c) / #{W_c > 0}) and the scale-free
    ``"max"`` on any other model. ``weights``: the Grad-CAM weights (:func:`gradcam_weights`), the reference's
    normalisation (gradient sum over the count of positive gradient entries) or the standard spatial mean
    (``"mean"``). ``others``: the other classes' term of the objective on the hooked path (:func:`class_objective`);
    ``"auto"`` is the target's log-odds ``"logodds"`` there (the model's logits are taken to be a softmax
    classifier's; pass ``"sum"``, the paper's literal term, for a multi-label one) and the reference's on CAM-style
    networks. With ``flip=True`` every image is paired with its mirror as in the
    reference and the two maps are merged. Use as a context manager to remove the hooks afterwards.
    """

    def __init__(self, model: nn.Module, target_layer: str | nn.Module = "stage4", adv_iter: int = 27,
                 xi: float = 0.08, lam: float = 7.0, tau: float = 0.5, flip: bool = False,
                 restriction: str = "auto", weights: str = "reference", others: str = "auto"):
        check_climb_params(adv_iter, xi, lam, tau)
        if restriction not in ("auto", *RESTRICTIONS):
            raise ValueError(f"unknown restriction {restriction!r}: choose 'auto' or one of {RESTRICTIONS}")
        if weights not in GRADCAM_WEIGHTS:
            raise ValueError(f"unknown Grad-CAM weights {weights!r}: choose one of {GRADCAM_WEIGHTS}")
        if others not in ("auto", *OTHERS):
            raise ValueError(f"unknown others {others!r}: choose 'auto' or one of {OTHERS}")
        self.model = model
        self.adv_iter, self.xi, self.lam, self.tau, self.flip = adv_iter, xi, lam, tau, flip
        if isinstance(target_layer, str):
            try:
                self.layer = model.get_submodule(target_layer)
            except AttributeError:
                names = [n for n, _ in model.named_children()]
                raise ValueError(f"target_layer {target_layer!r} is not a submodule of the model; "
                                 f"top-level modules are {names}") from None
        else:
            self.layer = target_layer
        self.closed_form = has_closed_form(model, self.layer)
        self.restriction = restriction if restriction != "auto" else "reference" if self.closed_form else "max"
        self.weights = weights
        if self.closed_form and others not in ("auto", "sum"):
            raise ValueError(f"others={others!r} applies to the hooked path only; CAM-style networks climb the "
                             "reference's objective (others='sum' on their ReLU-mean logits)")
        self.others = others if others != "auto" else "sum" if self.closed_form else "logodds"
        self._hooks = None if self.closed_form else _GradCAMHooks(self.layer)

    def __enter__(self) -> AdvCAM:
        return self

    def __exit__(self, *exc) -> None:
        self.remove_hooks()

    def remove_hooks(self) -> None:
        if self._hooks is not None:
            self._hooks.remove()
            self._hooks = None

    def __call__(self, images: torch.Tensor, targets: Sequence[int] | torch.Tensor,
                 step_maps: list | None = None) -> torch.Tensor:
        """The accumulated maps [B, h', w']; with ``step_maps`` (a list), the accumulated maps [B, h', w'] after
        each climbing step t (sum of R(x_0..x_t), ``adv_iter`` tensors, the last equal to the result) are
        appended to it."""
        targets = check_targets(targets, head_classes(self.model) if self.closed_form else None)
        if images.dim() != 4 or images.shape[0] != len(targets):
            raise ValueError(f"expected images [B, 3, H, W] and B targets, got {tuple(images.shape)} "
                             f"and {len(targets)} targets")
        was_training = self.model.training
        self.model.eval()
        try:
            with input_grad_only(self.model):
                x0 = torch.stack([images, images.flip(-1)], 1) if self.flip else images[:, None]
                if self.closed_form:
                    return climb_fast(self.model, x0, targets, self.adv_iter, self.xi, self.lam, self.tau,
                                      step_maps=step_maps, restriction=self.restriction, weights=self.weights)
                return self._climb_hooked(x0, targets, step_maps)
        finally:
            self.model.train(was_training)

    def _climb_hooked(self, x0: torch.Tensor, targets: list[int], step_maps: list | None = None) -> torch.Tensor:
        """Generic path: Grad-CAM through hooks, one independent climb per image (or flip pair)."""
        if self._hooks is None:
            raise RuntimeError("hooks were removed: create a new AdvCAM")
        B, n = x0.shape[:2]
        rows = torch.arange(B, device=x0.device)
        tgt = torch.as_tensor(targets, device=x0.device)
        x = x0.detach().clone()
        acc = R0 = None
        for t in range(self.adv_iter):
            x.requires_grad_(True)
            logits = self.model(x.flatten(0, 1)).unflatten(0, (B, n))  # [B, n, C]
            if t == 0:
                check_targets(targets, logits.shape[-1])
            y_c = logits[rows, :, tgt]  # [B, n]
            feat = self._hooks.feature
            (G,) = torch.autograd.grad(y_c.sum(), feat, retain_graph=True)  # dy_c/dF, a constant
            G = G.detach().unflatten(0, (B, n))
            w = gradcam_weights(G, self.weights)  # Grad-CAM weights, constants
            R = merge_copies(F.relu((feat.unflatten(0, (B, n)) * w).sum(2)))  # Grad-CAM R(x_t): [B, h', w']
            if t == 0:
                R0 = R.detach()
            acc = R.detach() if acc is None else acc + R.detach()
            if step_maps is not None:
                step_maps.append(acc)
            if t == self.adv_iter - 1:
                break
            L_cls = class_objective(logits, tgt[:, None].expand(B, n), self.others).sum(1)  # Eq. 4, class part
            L_ad = restriction_term(R, R0, self.tau, self.restriction)  # ||M ⊙ |R(x_t) - R(x_0)| ||_1 (Eq. 6)
            (g,) = torch.autograd.grad((L_cls - self.lam * L_ad).sum(), x)  # grad_x L (Eq. 4)
            x = climb_step(x.detach(), g, self.xi)  # x_{t+1} (Eq. 2)
        return acc


def feature_layer(model: nn.Module) -> nn.Module | None:
    """The module whose output is ``model.features(x)``: ``model.feature_layer`` if declared, else ``stage4``."""
    return getattr(model, "feature_layer", None) or getattr(model, "stage4", None)


def has_closed_form(model: nn.Module, layer: nn.Module) -> bool:
    """True for CAM-style networks: ``features`` ending in ``layer`` (:func:`feature_layer`) and a bias-free 1x1
    head ``classifier``."""
    head = getattr(model, "classifier", None)
    return (isinstance(head, nn.Conv2d) and head.bias is None and head.kernel_size == (1, 1)
            and callable(getattr(model, "features", None)) and layer is not None and feature_layer(model) is layer)


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Divide each map [.., h, w] by its spatial max (+1e-5), as the reference's outputs are."""
    return maps / (maps.flatten(-2).amax(-1)[..., None, None] + 1e-5)
