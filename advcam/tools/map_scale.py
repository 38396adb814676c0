"""The scale of Grad-CAM maps, max R(x_0), on a CAM network over VOC-format images and on the ImageNet classifier.

``python -m advcam.tools.map_scale --voc12_root DIR --list train --cam_weights PATH [--cam_network NET] [--count N]``
prints, over the (image, class) pairs of the first N images of the list (scale 1.0, flip pair, the reference's
Grad-CAM of the bias-free head), the median, min and max of max R(x_0): the scale lambda = 7 acts on.

With ``--floor`` it prints instead, over the same pairs, the share of the ground-truth background's cells (and of the
class's own cells) where the per-cell class map S_c(x_0) of copy 0 is > 0 (the cells through which the reference's
ReLU-mean objective passes gradient), and the median of max R(x_t) / max R(x_0) at t = 13 and t = 26 of the default
climb (T = 27, xi = 0.08, lambda = 7, tau = 0.5): docs/advcam_any_network.md, section 3f.

``python -m advcam.tools.map_scale --imagenet [--stride 32|16] [--dilate]`` prints max R(x_0) of EfficientNet-Lite0's
ImageNet classifier (hooked Grad-CAM with the reference's weights, top-1 class) on the demo photos at their own
resolution (``advcam.tools.demo_imagenet``).
"""
from __future__ import annotations

import numpy as np
import torch

from advcam.utils import ArgParser, program_name, run_cli


def _list_pairs(voc12_root: str, list_name: str, weights: str, network: str, count: int):
    """The CAM network and, for each of the first ``count`` images of a VOC list, (id, scale-1.0 flip pair, its
    positive classes): (model, iterator)."""
    from advcam.utils import network_module
    from advcam.voc12.dataloader import VOC12ImageDatasetMSF, eval_list_names, get_cls_labels

    names = eval_list_names(list_name, voc12_root, "--list")[:count]
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
    from advcam import AdvCAM
    from advcam.tools import demo_imagenet as demo

    model = demo.load_classifier(stride, dilate)
    out = {}
    for name in demo.PHOTOS:
        x = demo.to_input([demo.load_photo(name)])
        with torch.no_grad():
            c = int(model(x).argmax())
        with AdvCAM(model, demo.TARGET_LAYER, adv_iter=1) as cam:
            out[name] = float(cam(x, [c]).max())
    return out


def build_parser() -> ArgParser:
    """The command line of ``map_scale.py``."""
    p = ArgParser(description=__doc__.splitlines()[0], default_prog="map_scale.py")
    p.add_argument("--voc12_root", help="a VOC-format root (needed unless --imagenet is given)")
    p.add_argument("--list", default="train", metavar="SET",
                   help="the images: a split name (the root's ImageSets/Segmentation/<set>.txt, else the shipped "
                        "voc12/<set>.txt) or a list file")
    p.add_argument("--cam_weights", metavar="PTH", help="the CAM network's weights (default: untrained)")
    p.add_argument("--cam_network", default="advcam.nets.resnet50_cam", help="the CAM network's module")
    p.add_argument("--count", type=int, default=40, help="the first N images of the list")
    p.add_argument("--imagenet", action="store_true",
                   help="measure EfficientNet-Lite0's ImageNet classifier on the demo photos instead")
    p.add_argument("--floor", action="store_true", help="background cells with S_c > 0 and the peak over the climb")
    p.add_argument("--stride", type=int, default=32, help="with --imagenet: the classifier's output stride (32 or 16)")
    p.add_argument("--dilate", action="store_true", help="with --imagenet --stride 16: dilate the later layers")
    return p


def main(argv: list[str] | None = None) -> None:
    """Print the measured scales (see the module docstring)."""
    p = build_parser()
    args = p.parse_args(argv)
    if not args.imagenet and args.voc12_root is None:
        p.error("give --voc12_root (and --cam_weights), or --imagenet")
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


def cli() -> None:
    """Console entry point: a user error is printed as one line (exit status 2)."""
    run_cli(main, program_name("map_scale.py"))


if __name__ == "__main__":
    cli()
