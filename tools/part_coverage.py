"""How much of each object part a set of CAM seeds covers, on the toy VOC set (it has ``SegmentationPart/``).

``python tools/part_coverage.py --voc12_root toy_voc --list train [--threshold 0.25] CAM_DIR [CAM_DIR ...]``

For every image of ``ImageSets/Segmentation/<list>.txt`` and each of its classes in ``<CAM_DIR>/<id>.npy``, the
max-normalised "high_res" map of that class is read on three regions: the class's heads (part 2), its bodies
(part 1) and the background (class 0). Prints per folder the mean map value on each region and the fraction of
its pixels above ``--threshold``, averaged over (image, class) pairs (heads: only where the class has one).
"""
from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from advcam.io import load_cam_npy  # noqa: E402
from advcam.voc12.dataloader import load_img_name_list, load_seg_label  # noqa: E402

REGIONS = ("head", "body", "background")


def region_masks(cls: np.ndarray, part: np.ndarray, label: int) -> dict[str, np.ndarray]:
    """Pixels of class ``label`` (1-based) that are head / body, and the background pixels."""
    own = cls == label
    return {"head": own & (part == 2), "body": own & (part == 1), "background": cls == 0}


def coverage(voc12_root: str, names: list[str], cam_dir: str, threshold: float) -> dict[str, tuple[float, float]]:
    """{region: (mean map value, fraction above ``threshold``)} averaged over the (image, class) pairs."""
    stats: dict[str, list[tuple[float, float]]] = {r: [] for r in REGIONS}
    for name in names:
        cams = load_cam_npy(os.path.join(cam_dir, name + ".npy"))
        cls = load_seg_label(voc12_root, name)
        part = np.asarray(Image.open(os.path.join(voc12_root, "SegmentationPart", name + ".png")))
        for i, k in enumerate(np.asarray(cams["keys"]).reshape(-1)):
            m = np.asarray(cams["high_res"][i])
            for region, mask in region_masks(cls, part, int(k) + 1).items():
                if mask.any():
                    stats[region].append((float(m[mask].mean()), float((m[mask] > threshold).mean())))
    return {r: tuple(np.mean(v, 0)) if v else (float("nan"), float("nan")) for r, v in stats.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--voc12_root", required=True)
    p.add_argument("--list", default="train", help="ImageSets/Segmentation/<list>.txt")
    p.add_argument("--threshold", default=0.25, type=float)
    p.add_argument("cam_dirs", nargs="+")
    args = p.parse_args(argv)
    if not os.path.isdir(os.path.join(args.voc12_root, "SegmentationPart")):
        p.error(f"--voc12_root {args.voc12_root} has no SegmentationPart/: only the toy set "
                "(scripts/make_toy_voc.py) has part labels")
    names = load_img_name_list(os.path.join(args.voc12_root, "ImageSets", "Segmentation", args.list + ".txt"))
    print(f"{len(names)} images of {args.list}; mean map / fraction above {args.threshold}")
    for d in args.cam_dirs:
        cov = coverage(args.voc12_root, names, d, args.threshold)
        print(d + ": " + ", ".join(f"{r} {cov[r][0]:.3f} / {cov[r][1]:.3f}" for r in REGIONS))


if __name__ == "__main__":
    main()
