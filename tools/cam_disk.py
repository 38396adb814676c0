"""Bytes per image of the CAM ``.npy`` files in each ``--cam_format``, and the disk they take for a data set.

    python tools/cam_disk.py [--size 480 640] [--classes 2.9] [--images 82783]

Writes one image's files with 1..4 classes (maps of the image size, through advcam.io.save_cam_npy), fits
bytes = header + per_class x K (exact: the files grow linearly in K) and prints the bytes at the mean class count
and the projection for the number of images (defaults: a 640x480 COCO image, COCO train's 2.9 classes per image,
its 82,783 images).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from advcam.cam import fuse_scales  # noqa: E402
from advcam.io import CAM_FORMATS, save_cam_npy  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    """Print a table: format, bytes per class, header bytes, bytes per image, projected GB / GiB."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", nargs=2, type=int, default=[480, 640], metavar=("H", "W"), help="image size")
    p.add_argument("--classes", type=float, default=2.9, help="mean positive classes per image")
    p.add_argument("--images", type=int, default=82783, help="images of the data set")
    args = p.parse_args(argv)
    size = tuple(args.size)
    g = torch.Generator().manual_seed(0)
    print(f"{'format':<10} {'B/class':>10} {'header B':>9} {'B/image':>11} {'projected':>20}")
    with tempfile.TemporaryDirectory() as d:
        for fmt in CAM_FORMATS:
            sizes = []
            for k in (1, 4):
                cam, high = fuse_scales([torch.rand(k, (size[0] + 15) // 16, (size[1] + 15) // 16, generator=g)], size)
                path = os.path.join(d, f"{fmt}{k}.npy")
                save_cam_npy(path, list(range(k)), cam, high, fmt)
                sizes.append(os.path.getsize(path))
            per_class = (sizes[1] - sizes[0]) / 3
            header = sizes[0] - per_class
            per_image = header + per_class * args.classes
            total = per_image * args.images
            print(f"{fmt:<10} {per_class:>10,.0f} {header:>9,.0f} {per_image:>11,.0f} "
                  f"{total / 1e9:>8.1f} GB {total / 2 ** 30:>6.1f} GiB")


if __name__ == "__main__":
    main()
