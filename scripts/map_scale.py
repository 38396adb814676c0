"""The scale of Grad-CAM maps, max R(x_0), on a CAM network over VOC-format images and on the ImageNet classifier.

``python scripts/map_scale.py --voc12_root DIR --list train --cam_weights PATH [--cam_network NET] [--count N]``
prints, over the (image, class) pairs of the first N images of the list (scale 1.0, flip pair, the reference's
Grad-CAM of the bias-free head), the median, min and max of max R(x_0): the scale lambda = 7 acts on.

With ``--floor`` it prints instead, over the same pairs, the share of the ground-truth background's cells (and of the
class's own cells) where the per-cell class map S_c(x_0) of copy 0 is > 0 (the cells through which the reference's
ReLU-mean objective passes gradient), and the median of max R(x_t) / max R(x_0) at t = 13 and t = 26 of the default
climb (T = 27, xi = 0.08, lambda = 7, tau = 0.5): docs/advcam_any_network.md, section 3f.

``python scripts/map_scale.py --imagenet [--stride 32|16] [--dilate]`` prints max R(x_0) of EfficientNet-Lite0's
ImageNet classifier (hooked Grad-CAM with the reference's weights, top-1 class) on the demo photos at their own
resolution (``scripts/demo_imagenet.py``).
"""
from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402


def _list_pairs(voc12_root: str, list_name: str, weights: str, network: str, count: int):
    """The CAM network and, for each of the first ``count`` images of a VOC list, (id, scale-1.0 flip pair, its
    positive classes): (model, iterator)."""
    from advcam.utils import network_module
    from advcam.voc12.dataloader import VOC12ImageDatasetMSF, get_cls_labels, load_img_name_list

    list_path = os.path.join(voc12_root, "ImageSets", "Segmentation", f"{list_name}.txt")
    names = load_img_name_list(list_path, voc12_root)[:count]
    labels = get_cls_labels(voc12_root, names)
    model = network_module("cam_network", network).build_cam_net(weights)
    ds = VOC12ImageDatasetMSF(None, voc12_root, scales=(1.0,), names=names)

    def items():
        for i in range(len(ds)):
            pair = ds[i]["img"]
            yield names[i], pair[0] if isinstance(pair, list) else pair, np.nonzero(labels[i])[0].tolist()

    return model, items()


def cam_network_scales(voc12_root: str, list_name: str, weights: str, network: str, count: int) -> list[float]:
    """max R(x_0) per (image, positive class) of the first ``count`` images of a VOC list."""
    from advcam.advcam import climb_fast, input_grad_only

    model, items = _list_pairs(voc12_root, list_name, weights, network, count)
    out = []
    for _, pair, keys in items:
        if not keys:
            continue
        with input_grad_only(model):
            R0 = climb_fast(model, pair[None].expand(len(keys), *pair.shape), keys, 1, 0.08, 7.0, 0.5)
        out += R0.flatten(1).amax(1).tolist()
    return out


def cam_network_floor(voc12_root: str, list_name: str, weights: str, network: str, count: int) -> list[tuple]:
    """Per (image, positive class): (share of background cells with S_c(x_0) > 0, the same of the class's cells,
    max R(x_13) / max R(x_0), max R(x_26) / max R(x_0)); cells of the feature grid more than half background / class."""
    import torch.nn.functional as F

    from advcam.advcam import climb_fast, input_grad_only
    from advcam.voc12.dataloader import load_seg_label

    model, items = _list_pairs(voc12_root, list_name, weights, network, count)
    out = []
    for name, pair, keys in items:
        gt = load_seg_label(voc12_root, name)
        with torch.no_grad():
            S = model(pair, separate=True)[0]  # [C, h', w'] of copy 0
        h, w = S.shape[-2:]

        def cells(m: np.ndarray, size: tuple[int, int] = (h, w)) -> torch.Tensor:
            return F.interpolate(torch.from_numpy(m.astype(np.float32))[None, None], size, mode="area")[0, 0] > 0.5

        bg = cells(gt == 0)
        for k in keys:
            steps: list[torch.Tensor] = []
            with input_grad_only(model):
                climb_fast(model, pair[None], [k], 27, 0.08, 7.0, 0.5, step_maps=steps)
            R = [steps[0][0]] + [steps[t][0] - steps[t - 1][0] for t in range(1, len(steps))]
            own = cells(gt == k + 1)
            out.append((float((S[k][bg] > 0).float().mean()), float((S[k][own] > 0).float().mean()),
                        float(R[13].max() / R[0].max()), float(R[26].max() / R[0].max())))
    return out


def imagenet_scales(stride: int, dilate: bool) -> dict[str, float]:
    """max R(x_0) of the ImageNet EfficientNet-Lite0 (top-1 class) on each demo photo."""
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    import demo_imagenet as demo

    from advcam import AdvCAM

    model = demo.load_classifier(stride, dilate)
    out = {}
    for name in demo.PHOTOS:
        x = demo.to_input([demo.load_photo(name)])
        with torch.no_grad():
            c = int(model(x).argmax())
        with AdvCAM(model, demo.TARGET_LAYER, adv_iter=1) as cam:
            out[name] = float(cam(x, [c]).max())
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--voc12_root")
    p.add_argument("--list", default="train")
    p.add_argument("--cam_weights")
    p.add_argument("--cam_network", default="advcam.nets.resnet50_cam")
    p.add_argument("--count", type=int, default=40)
    p.add_argument("--imagenet", action="store_true")
    p.add_argument("--floor", action="store_true", help="background cells with S_c > 0 and the peak over the climb")
    p.add_argument("--stride", type=int, default=32)
    p.add_argument("--dilate", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.imagenet:
        s = imagenet_scales(args.stride, args.dilate)
        for name, v in s.items():
            print(f"{name}: max R(x_0) {v:.3g}")
        print(f"median {np.median(list(s.values())):.3g}")
        return
    if args.floor:
        r = np.array(cam_network_floor(args.voc12_root, args.list, args.cam_weights, args.cam_network, args.count))
        print(f"{args.cam_network} ({args.cam_weights}), {len(r)} (image, class) pairs of {args.count} images: "
              f"S_c(x_0) > 0 on background cells mean {r[:, 0].mean():.2f} (median {np.median(r[:, 0]):.2f}), on the "
              f"class's cells mean {r[:, 1].mean():.2f}; max R(x_t) / max R(x_0) median {np.median(r[:, 2]):.2f} "
              f"at t = 13, {np.median(r[:, 3]):.2f} at t = 26")
        return
    s = cam_network_scales(args.voc12_root, args.list, args.cam_weights, args.cam_network, args.count)
    print(f"{args.cam_network} ({args.cam_weights}), {len(s)} (image, class) pairs of {args.count} images: "
          f"max R(x_0) median {np.median(s):.3g}, min {min(s):.3g}, max {max(s):.3g}")


if __name__ == "__main__":
    main()
