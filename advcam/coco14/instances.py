"""Read a COCO instances json once, check it, and keep only what the masks and labels need.

:func:`read_instances` loads ``instances_<split>.json``, checks it (a COCO instances file, of the named split,
every annotation's image and category known) and returns an :class:`Instances`: the images in json order, their
80-class image-level labels (every annotation, crowd included) and, per image, the non-crowd objects as
``(label, segmentation)`` pairs in json order, with polygons as float64 arrays and RLEs compressed. The json's own
Python objects are dropped as they are read, so the peak memory is the parsed json, not the json plus a copy.

Polygons with fewer than 3 points (under 6 numbers, e.g. a 2-point polygon of 4 numbers) enclose no pixel and are
skipped: pycocotools rasterises such a polygon to nothing when it is not an object's first polygon, and as the first
one ``frPyObjects`` takes the 4 numbers for a box (and pycocotools 2.0.11 raises on it), which is never meant.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

from advcam.coco14 import CAT_ID_TO_LABEL, NUM_CLASSES, SPLITS, check_split
from advcam.errors import BadInputError, MissingInputError

Segmentation = list[np.ndarray] | dict
"""An object's shape: non-empty list of polygons (float64 arrays of x, y pairs) or a compressed RLE dict."""


@dataclass
class ImageRecord:
    """One image as the mask converter needs it (small, picklable)."""

    image_id: int
    height: int
    width: int
    objects: list[tuple[int, Segmentation]] = field(default_factory=list)  # non-crowd, in json order


@dataclass
class Instances:
    """What :func:`read_instances` keeps of an instances json."""

    path: str
    split: str | None
    image_ids: list[int]  # json order
    file_names: list[str]
    records: list[ImageRecord] | None  # per image, in json order (None when read without segmentations)
    labels: np.ndarray  # [num images, 80] float32 multi-hot, crowd annotations included
    num_annotations: int = 0
    num_crowd: int = 0
    num_degenerate_polygons: int = 0  # polygons under 3 points, skipped

    def cls_labels(self) -> dict[int, np.ndarray]:
        """``{image id: float32[80]}`` in json order (the format of VOC's cls_labels.npy)."""
        return {i: self.labels[k].copy() for k, i in enumerate(self.image_ids)}


def _load_json(path: str) -> dict:
    if not os.path.isfile(path):
        raise MissingInputError(f"{path}: no such file; put the COCO 2014 annotations there "
                                "(annotations/instances_{train,val}2014.json from annotations_trainval2014.zip)")
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        where = f" at line {e.lineno} column {e.colno}" if isinstance(e, json.JSONDecodeError) else ""
        raise BadInputError(f"{path}: not readable as JSON{where} (truncated or corrupt?); "
                            "extract it again from annotations_trainval2014.zip") from None
    if not (isinstance(data, dict) and isinstance(data.get("images"), list)
            and isinstance(data.get("annotations"), list)):
        raise BadInputError(f"{path}: not a COCO instances json (no 'images' and 'annotations' lists); "
                            "give annotations/instances_<split>.json")
    return data


def _check_split_names(path: str, split: str, file_names: list[str]) -> None:
    prefix = f"COCO_{split}_"
    for name in file_names:
        if not name.startswith(prefix):
            other = [s for s in SPLITS if s != split and name.startswith(f"COCO_{s}_")]
            if other:
                raise BadInputError(f"{path} is the {other[0]} json (image file_name {name}), not {split}: "
                                    f"give annotations/instances_{split}.json, or --split {other[0]}")
            raise BadInputError(f"{path}: image file_name {name} is not of split {split} (expected {prefix}...); "
                                f"give the instances json of {split}")


def _polygons(path: str, ann_id, seg: list) -> tuple[list[np.ndarray], int]:
    polys, skipped = [], 0
    for p in seg:
        try:
            a = np.asarray(p, dtype=np.float64)
        except (TypeError, ValueError):
            a = None
        if a is None or a.ndim != 1 or len(a) % 2:
            raise BadInputError(f"{path}: annotation {ann_id} has a polygon that is not a flat list of x, y pairs; "
                                "fix or remove that annotation")
        if len(a) < 6:
            skipped += 1
            continue
        polys.append(a)
    return polys, skipped


def _rle(path: str, ann_id, seg: dict, height: int, width: int) -> dict:
    from pycocotools import mask as mask_utils

    size, counts = seg.get("size"), seg.get("counts")
    if not (isinstance(size, list) and [int(v) for v in size] == [height, width]) or counts is None:
        raise BadInputError(f"{path}: annotation {ann_id} has an RLE of size {size}, not the image's "
                            f"[{height}, {width}] (or no counts); fix or remove that annotation")
    if isinstance(counts, list):  # uncompressed (column-major run lengths, zeros first)
        if sum(counts) != height * width:
            raise BadInputError(f"{path}: annotation {ann_id}: its RLE counts sum to {sum(counts)}, not "
                                f"{height}x{width}; fix or remove that annotation")
        return mask_utils.frPyObjects(seg, height, width)
    if isinstance(counts, str | bytes):
        return {"size": [height, width], "counts": counts.encode() if isinstance(counts, str) else counts}
    raise BadInputError(f"{path}: annotation {ann_id} has RLE counts that are neither a list nor a string")


def read_instances(path: str, split: str | None = None, segmentations: bool = True) -> Instances:
    """Read and check a COCO instances json; see the module docstring.

    With ``split`` every image's ``file_name`` must be ``COCO_<split>_...`` (a json of the other split is refused).
    With ``segmentations=False`` only the images and labels are kept (``records`` is None).
    """
    if split is not None:
        check_split(split)
    data = _load_json(path)
    images = data["images"]
    image_ids, file_names, index, records = [], [], {}, []
    for k, img in enumerate(images):
        try:
            iid, h, w, name = int(img["id"]), int(img["height"]), int(img["width"]), str(img["file_name"])
        except (KeyError, TypeError, ValueError):
            raise BadInputError(f"{path}: image #{k} lacks an integer id, height, width or a file_name; "
                                "not a COCO instances json") from None
        if iid in index:
            raise BadInputError(f"{path}: image id {iid} appears twice in 'images'")
        index[iid] = k
        image_ids.append(iid)
        file_names.append(name)
        if segmentations:
            records.append(ImageRecord(iid, h, w))
    if split is not None:
        _check_split_names(path, split, file_names)
    labels = np.zeros((len(image_ids), NUM_CLASSES), np.float32)
    anns = data["annotations"]
    data.clear()
    inst = Instances(path, split, image_ids, file_names, records if segmentations else None, labels,
                     num_annotations=len(anns))
    for i in range(len(anns)):
        a, anns[i] = anns[i], None  # drop each annotation's objects as soon as it is read
        try:
            ann_id, iid, cat = a.get("id"), int(a["image_id"]), int(a["category_id"])
        except (AttributeError, KeyError, TypeError, ValueError):
            raise BadInputError(f"{path}: annotation #{i} lacks an integer image_id or category_id; "
                                "not a COCO instances json") from None
        k = index.get(iid)
        if k is None:
            raise BadInputError(f"{path}: annotation {ann_id} refers to image id {iid}, which is not in 'images'; "
                                "fix or remove that annotation")
        label = CAT_ID_TO_LABEL.get(cat)
        if label is None:
            raise BadInputError(f"{path}: annotation {ann_id} has category id {cat}, not one of the 80 COCO "
                                "categories (1..90 without 12, 26, 29, 30, 45, 66, 68, 69, 71, 83)")
        labels[k, label - 1] = 1.0
        if a.get("iscrowd", 0):
            inst.num_crowd += 1
            continue
        if not segmentations:
            continue
        seg, rec = a.get("segmentation"), records[k]
        if isinstance(seg, list):
            polys, skipped = _polygons(path, ann_id, seg)
            inst.num_degenerate_polygons += skipped
            if polys:
                rec.objects.append((label, polys))
        elif isinstance(seg, dict):
            rec.objects.append((label, _rle(path, ann_id, seg, rec.height, rec.width)))
        else:
            raise BadInputError(f"{path}: annotation {ann_id} has no polygon list or RLE dict as 'segmentation'")
    return inst
