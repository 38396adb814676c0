"""Picture of IRN boundary maps: image, ground-truth foreground, then the boundary map of each IRN checkpoint.

``python tools/irn_edge_maps.py --voc12_root toy_voc --list train --out edges.png IRN.pth [IRN.pth ...]
[--count 6] [--irn_crop_size 128]``

Each checkpoint's network (ResNet-50 or EfficientNet-Lite0 IRN) is recognised from its keys. The boundary map is
the one ``make_sem_seg`` walks on (sigmoid of the flip pair's mean logit, stride 4), drawn nearest-neighbour at
image resolution, black 0 to white 1. Also prints each map's mean on ground-truth object outlines and elsewhere.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from scipy import ndimage  # noqa: E402

from advcam.io import save_png  # noqa: E402
from advcam.irn_loop import edge_and_displacement  # noqa: E402
from advcam.nets import efficientnet_lite0_irn, resnet50_irn  # noqa: E402
from advcam.nets.resnet50_irn import load_irn_weights  # noqa: E402
from advcam.voc12.dataloader import VOC12ImageDatasetMSF, load_img_name_list, load_seg_label  # noqa: E402


def load_edge_net(path: str, crop_size: int) -> torch.nn.Module:
    """The inference IRN of a checkpoint, of the network its keys belong to, in eval mode."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"IRN checkpoint {path} not found (a --irn_weights_name written by train_irn)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    module = efficientnet_lite0_irn if any(k.startswith("lite.") for k in state) else resnet50_irn
    model = module.EdgeDisplacement(crop_size=crop_size)
    load_irn_weights(model, state)
    return model.eval()


def outline(gt: np.ndarray, width: int = 4) -> np.ndarray:
    """Pixels within ``width`` px of a change of ground-truth label (the 255 band counts as a change)."""
    changes = np.zeros(gt.shape, bool)
    changes[:-1] |= gt[:-1] != gt[1:]
    changes[:, :-1] |= gt[:, :-1] != gt[:, 1:]
    return ndimage.binary_dilation(changes, iterations=width)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--voc12_root", required=True)
    p.add_argument("--list", default="train", help="ImageSets/Segmentation/<list>.txt")
    p.add_argument("--count", default=6, type=int, help="the first COUNT images of the list")
    p.add_argument("--irn_crop_size", default=512, type=int, help="as run_sample.py's (the demo uses 128)")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("weights", nargs="+", help="IRN checkpoints")
    args = p.parse_args(argv)

    names = load_img_name_list(os.path.join(args.voc12_root, "ImageSets", "Segmentation", args.list + ".txt"))
    names = names[: args.count]
    nets = [load_edge_net(w, args.irn_crop_size) for w in args.weights]
    ds = VOC12ImageDatasetMSF(None, args.voc12_root, scales=(1.0,), names=names)
    cell = max(max(Image.open(os.path.join(args.voc12_root, "JPEGImages", n + ".jpg")).size) for n in names)
    rows, on, off = [], [[] for _ in nets], [[] for _ in nets]
    for i, name in enumerate(names):
        pack = ds[i]
        pair = pack["img"][0] if isinstance(pack["img"], list) else pack["img"]
        img = np.asarray(Image.open(os.path.join(args.voc12_root, "JPEGImages", name + ".jpg")).convert("RGB"))
        gt = load_seg_label(args.voc12_root, name)
        h, w = gt.shape
        cells = [img, np.repeat(((gt > 0) & (gt < 255))[..., None] * 255, 3, 2).astype(np.uint8)]
        ring = outline(gt)
        for k, net in enumerate(nets):
            edge, _ = edge_and_displacement(net, pair)
            up = np.kron(edge.numpy(), np.ones((4, 4), np.float32))[:h, :w]
            on[k].append(up[ring].mean())
            off[k].append(up[~ring].mean())
            cells.append(np.repeat((up[..., None] * 255).round().astype(np.uint8), 3, 2))
        rows.append(np.concatenate([np.pad(c, ((0, cell - h), (0, cell - w), (0, 0))) for c in cells], 1))
    save_png(args.out, np.concatenate(rows, 0))
    for path, a, b in zip(args.weights, on, off, strict=True):
        print(f"{path}: mean boundary probability {np.mean(a):.3f} on object outlines, {np.mean(b):.3f} elsewhere")
    print(f"wrote {args.out} ({len(names)} images x {2 + len(nets)} columns)")


if __name__ == "__main__":
    main()
