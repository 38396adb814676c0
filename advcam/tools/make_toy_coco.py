"""Write a small synthetic MS COCO 2014 root in the official layout, with the json pitfalls of the real one.

``python -m advcam.tools.make_toy_coco --out DIR [--n_train 64] [--n_val 32] [--seed 0]``

Writes ``DIR/train2014/COCO_train2014_<12-digit id>.jpg``, ``DIR/val2014/COCO_val2014_<id>.jpg``,
``DIR/annotations/instances_{train,val}2014.json``, the lists ``DIR/train14.txt`` and ``DIR/val14.txt`` (ids in
json order) and ``DIR/README.txt``; every file atomically, the same seed giving the same bytes.

Six categories with real COCO ids spread over the range, several right after a gap in the ids (1 person,
13 stop sign, 27 backpack, 46 wine glass, 67 dining table, 90 toothbrush; labels 1, 12, 25, 41, 61, 80); the json
lists all 80 categories, as the real one does. Images are 96x128 (a quarter 128x96) with 1-3 objects: random
star-shaped polygons filled with their class's two colours in a class pattern (stripes, checks, dots, ...) on a
muted, smooth background, so the classes are learnable from image-level labels. The json has objects of two
polygons, overlapping objects (drawn and listed in json order, so a later one covers an earlier one as the mask
policy does), crowd regions (``iscrowd`` 1, a cluster of small discs of one class, as uncompressed RLE) and images
with no annotation. The first three images of each split are fixed cases: no annotation; one object and a crowd
region; an object of two polygons under an overlapping object.
"""
from __future__ import annotations

import json
import math
import os
import sys

import numpy as np
from PIL import Image, ImageDraw

from advcam.coco14 import CATEGORIES, id_str, image_path, json_path
from advcam.errors import BadInputError
from advcam.io import atomic_path
from advcam.utils import ArgParser

TOY_CATEGORY_IDS: tuple[int, ...] = (1, 13, 27, 46, 67, 90)
# per category: two colours and a pattern
STYLE: dict[int, tuple[tuple[int, int, int], tuple[int, int, int], str]] = {
    1: ((220, 40, 40), (250, 240, 230), "hstripes"),
    13: ((30, 60, 220), (250, 220, 30), "checker"),
    27: ((40, 190, 60), (20, 20, 20), "vstripes"),
    46: ((220, 40, 210), (40, 220, 230), "dots"),
    67: ((250, 140, 20), (30, 30, 110), "diagonal"),
    90: ((245, 245, 245), (120, 40, 170), "rings"),
}
PERIOD = 6  # px, of every pattern
SIZES = ((96, 128), (128, 96))  # (height, width)
P_PORTRAIT = 0.25
P_EMPTY = 0.1
P_CROWD = 0.2
P_TWO_POLYGONS = 0.3
P_NEAR = 0.5  # a second or third object is placed overlapping the previous one
OBJECTS = (1, 3)  # inclusive
RADIUS = (12.0, 26.0)  # px, star polygon's outer radius
VERTICES = (6, 11)  # exclusive upper bound
CROWD_DISCS = (5, 9)
CROWD_DISC_RADIUS = (2.5, 4.5)
NOISE_SD = 4.0
JPEG_QUALITY = 95
ID_RANGE = (1, 581_930)  # COCO 2014 image ids lie in this range


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE of a binary H x W mask: column-major run lengths, starting with a run of zeros."""
    flat = np.asarray(mask, bool).ravel(order="F")
    bounds = np.concatenate([[0], np.flatnonzero(flat[1:] != flat[:-1]) + 1, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def _pattern(cat: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    c1, c2, kind = STYLE[cat]
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    y += rng.uniform(0, PERIOD)
    x += rng.uniform(0, PERIOD)
    p = PERIOD
    if kind == "hstripes":
        sel = (y // (p / 2)) % 2 == 0
    elif kind == "vstripes":
        sel = (x // (p / 2)) % 2 == 0
    elif kind == "checker":
        sel = ((y // (p / 2)) + (x // (p / 2))) % 2 == 0
    elif kind == "dots":
        sel = ((y % p) - p / 2) ** 2 + ((x % p) - p / 2) ** 2 > (p / 3.2) ** 2
    elif kind == "diagonal":
        sel = ((x + y) // (p / 2)) % 2 == 0
    else:  # rings around a point
        sel = (np.hypot(y - h / 2, x - w / 2) // (p / 2)) % 2 == 0
    jitter = rng.normal(0, 8, 3)
    out = np.where(sel[..., None], np.array(c1, np.float32) + jitter, np.array(c2, np.float32) + jitter)
    return out


def _background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    cells = rng.integers(2, 5)
    grid = rng.uniform(70, 170, (cells + 1, cells + 1, 1)) + rng.normal(0, 8, (cells + 1, cells + 1, 3))
    img = Image.fromarray(np.clip(grid, 0, 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)
    return np.asarray(img, np.float32)


def _star(cx: float, cy: float, r: float, h: int, w: int, rng: np.random.Generator) -> list[float]:
    n = int(rng.integers(*VERTICES))
    angles = np.sort(rng.uniform(0, 2 * math.pi, n)) if rng.random() < 0.5 else \
        np.linspace(0, 2 * math.pi, n, endpoint=False) + rng.uniform(0, math.pi)
    radii = r * rng.uniform(0.55, 1.0, n)
    xs = np.clip(cx + radii * np.cos(angles), 0, w)
    ys = np.clip(cy + radii * np.sin(angles), 0, h)
    return [round(float(v), 2) for xy in zip(xs, ys, strict=True) for v in xy]


def _poly_mask(polys: list[list[float]], h: int, w: int) -> np.ndarray:
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    for p in polys:
        draw.polygon(list(zip(p[0::2], p[1::2], strict=True)), fill=1)
    return np.asarray(canvas, bool)


def _crowd_mask(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    cx, cy = rng.uniform(0.25 * w, 0.75 * w), rng.uniform(0.25 * h, 0.75 * h)
    yy, xx = np.mgrid[0:h, 0:w]
    m = np.zeros((h, w), bool)
    for _ in range(int(rng.integers(CROWD_DISCS[0], CROWD_DISCS[1] + 1))):
        dx, dy = rng.normal(0, 9, 2)
        rr = rng.uniform(*CROWD_DISC_RADIUS)
        m |= (xx - cx - dx) ** 2 + (yy - cy - dy) ** 2 <= rr * rr
    return m


def _image(kind: str, h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, list[dict]]:
    """One image and its annotations (without ids): ``kind`` is "empty", "crowd", "multi" or "random"."""
    from pycocotools import mask as mask_utils

    img = _background(h, w, rng)
    anns: list[dict] = []
    if kind == "random":
        kind = "empty" if rng.random() < P_EMPTY else "random"
    if kind == "empty":
        n = 0
    elif kind == "crowd":
        n = 1
    elif kind == "multi":
        n = 2
    else:
        n = int(rng.integers(OBJECTS[0], OBJECTS[1] + 1))
    crowd_at = -1
    if kind == "crowd" or (kind == "random" and rng.random() < P_CROWD):
        crowd_at = int(rng.integers(0, n + 1))  # the crowd region's place in the json order
    prev = None
    for k in range(n + 1):
        if k == crowd_at:
            cat = int(rng.choice(TOY_CATEGORY_IDS))
            m = _crowd_mask(h, w, rng)
            rle = uncompressed_rle(m)
            anns.append({"category_id": cat, "segmentation": rle, "iscrowd": 1, "_mask": m})
        if k == n:
            break
        cat = int(rng.choice(TOY_CATEGORY_IDS))
        r = rng.uniform(*RADIUS)
        if prev is not None and (kind == "multi" or rng.random() < P_NEAR):
            cx, cy = prev[0] + rng.uniform(-0.9, 0.9) * prev[2], prev[1] + rng.uniform(-0.9, 0.9) * prev[2]
        else:
            cx, cy = rng.uniform(0.2 * w, 0.8 * w), rng.uniform(0.2 * h, 0.8 * h)
        polys = [_star(cx, cy, r, h, w, rng)]
        if (kind == "multi" and k == 0) or (kind == "random" and rng.random() < P_TWO_POLYGONS):
            a = rng.uniform(0, 2 * math.pi)
            polys.append(_star(cx + 1.6 * r * math.cos(a), cy + 1.6 * r * math.sin(a), 0.6 * r, h, w, rng))
        m = _poly_mask(polys, h, w)
        if not m.any():
            continue
        anns.append({"category_id": cat, "segmentation": polys, "iscrowd": 0, "_mask": m})
        prev = (cx, cy, r)
    for a in anns:  # drawn in json order: a later object covers an earlier one
        img = np.where(a.pop("_mask")[..., None], _pattern(a["category_id"], h, w, rng), img)
        rle = mask_utils.frPyObjects(a["segmentation"], h, w)
        rle = mask_utils.merge(rle) if isinstance(rle, list) else rle
        a["area"] = float(mask_utils.area(rle))
        a["bbox"] = [round(float(v), 2) for v in mask_utils.toBbox(rle)]
    img = np.clip(img + rng.normal(0, NOISE_SD, img.shape), 0, 255).astype(np.uint8)
    return img, anns


def make_split(out: str, split: str, ids: list[int], rng: np.random.Generator, first_ann_id: int) -> int:
    """Write one split's images, json and list; returns the next free annotation id."""
    images, annotations = [], []
    ann_id = first_ann_id
    fixed = ("empty", "crowd", "multi")
    for k, iid in enumerate(ids):
        h, w = SIZES[1] if rng.random() < P_PORTRAIT else SIZES[0]
        img, anns = _image(fixed[k] if k < len(fixed) else "random", h, w, rng)
        with atomic_path(image_path(out, split, iid)) as tmp:
            Image.fromarray(img).save(tmp, format="JPEG", quality=JPEG_QUALITY)
        images.append({"id": iid, "width": w, "height": h, "file_name": os.path.basename(image_path(out, split, iid)),
                       "license": 1, "flickr_url": "", "coco_url": "", "date_captured": "2014-01-01 00:00:00"})
        for a in anns:
            annotations.append({"id": ann_id, "image_id": iid, **a})
            ann_id += 1
    data = {
        "info": {"description": f"advcam toy COCO 2014 ({split})", "version": "1.0", "year": 2014},
        "licenses": [{"id": 1, "name": "toy data", "url": ""}],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": c, "name": n, "supercategory": "toy"} for c, n in CATEGORIES],
    }
    with atomic_path(json_path(out, split)) as tmp, open(tmp, "w") as f:
        json.dump(data, f, separators=(",", ":"))
    with atomic_path(os.path.join(out, f"{split[:-4]}14.txt")) as tmp, open(tmp, "w") as f:
        f.write("".join(id_str(i) + "\n" for i in ids))
    return ann_id


README = """advcam toy COCO 2014 root (python -m advcam.tools.make_toy_coco --out DIR --n_train {n_train} \
--n_val {n_val} --seed {seed})

Official layout: train2014/, val2014/, annotations/instances_{{train,val}}2014.json; lists of the ids in json order:
train14.txt, val14.txt. Six categories (COCO ids 1, 13, 27, 46, 67, 90). Masks: python -m advcam.tools.make_coco_masks
--coco_root DIR --split train2014 (and val2014); check: python -m advcam.tools.check_coco --coco_root DIR
--train_list DIR/train14.txt --val_list DIR/val14.txt
"""


def make_toy_coco(out: str, n_train: int = 64, n_val: int = 32, seed: int = 0) -> None:
    """Write the toy root; see the module docstring."""
    rng = np.random.default_rng(seed)
    ids = [int(i) for i in rng.choice(np.arange(*ID_RANGE), n_train + n_val, replace=False)]
    next_id = make_split(out, "train2014", ids[:n_train], rng, 1)
    make_split(out, "val2014", ids[n_train:], rng, next_id)
    with atomic_path(os.path.join(out, "README.txt")) as tmp, open(tmp, "w") as f:
        f.write(README.format(n_train=n_train, n_val=n_val, seed=seed))


def build_parser() -> ArgParser:
    p = ArgParser(default_prog="make_toy_coco.py", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, metavar="DIR", help="the folder to write the toy root into")
    p.add_argument("--n_train", default=64, type=int, help="train2014 images")
    p.add_argument("--n_val", default=32, type=int, help="val2014 images")
    p.add_argument("--seed", default=0, type=int, help="the same seed gives the same bytes")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.n_train < 0 or args.n_val < 0:
        raise BadInputError("--n_train and --n_val must be 0 or more")
    make_toy_coco(args.out, args.n_train, args.n_val, args.seed)
    print(f"make_toy_coco: wrote {args.n_train} train and {args.n_val} val images to {args.out}")
    return 0


def cli() -> None:
    """Console entry point: user errors as one line, exit status 2."""
    from advcam.utils import program_name, run_cli

    run_cli(lambda: sys.exit(main()), program_name("make_toy_coco.py"))


if __name__ == "__main__":
    cli()
