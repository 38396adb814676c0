"""COCO instances json -> semantic ground-truth PNGs, with the IRN family's policy (ReCAM's ``annToMask.py``).

Per image: an all-zero uint8 map of the image's size; each non-crowd annotation, in json order, is rasterised by
pycocotools (polygons: ``frPyObjects`` + ``merge``; RLE, uncompressed or compressed, as given) and its pixels set to
its label 1..80 (:data:`advcam.coco14.CAT_ID_TO_LABEL`), so a later annotation overwrites earlier pixels. Crowd
annotations are not drawn; an image with no non-crowd annotation gets an all-zero mask. Polygons under 3 points are
skipped (see :mod:`advcam.coco14.instances`). No ignore value (255) is written.

:func:`make_masks` writes ``<out_dir>/<12-digit id>.png`` (grayscale, values = labels) for every image still
missing, atomically, over ``workers`` processes. The pool is started before the json is read, so no worker holds a
copy of the index: the parent sends each worker chunks of compact per-image records.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from advcam.coco14 import id_str
from advcam.coco14.instances import ImageRecord, Instances, Segmentation, read_instances
from advcam.errors import BadInputError
from advcam.io import save_png

CHUNK = 32  # images per task sent to a worker
# pycocotools' decode (2.0.11) on NumPy 2 warns on every call that its __array__ lacks a copy keyword; harmless
warnings.filterwarnings("ignore", message="__array__ implementation doesn't accept a copy keyword",
                        category=DeprecationWarning, module="pycocotools")


def object_mask(seg: Segmentation, height: int, width: int) -> np.ndarray:
    """The binary (uint8, H x W) mask of one object: the union of its polygons, or its RLE decoded."""
    from pycocotools import mask as mask_utils

    if isinstance(seg, dict):
        return mask_utils.decode(seg)
    rle = mask_utils.merge(mask_utils.frPyObjects(list(seg), height, width))
    return mask_utils.decode(rle)


def render_mask(record: ImageRecord) -> np.ndarray:
    """The label map of one image: objects painted in order, a later one over earlier pixels."""
    out = np.zeros((record.height, record.width), np.uint8)
    for label, seg in record.objects:
        out[object_mask(seg, record.height, record.width) != 0] = label
    return out


def _write_chunk(task: tuple[str, list[ImageRecord]]) -> int:
    out_dir, records = task
    for rec in records:
        save_png(os.path.join(out_dir, id_str(rec.image_id) + ".png"), render_mask(rec))
    return len(records)


@dataclass
class MaskRun:
    """What :func:`make_masks` read and wrote."""

    instances: Instances
    out_dir: str
    selected: int  # images asked for (the list, or every image of the json)
    written: int
    existing: int  # already there, left untouched
    seconds: float
    read_seconds: float = 0.0  # of which reading and checking the json

    def summary(self) -> str:
        inst = self.instances
        render = self.seconds - self.read_seconds
        rate = self.written / render if render > 0 else 0.0
        return (f"read {inst.path} in {self.read_seconds:.1f} s: {len(inst.image_ids):,} images, "
                f"{inst.num_annotations:,} annotations ({inst.num_crowd:,} crowd, not drawn; "
                f"{inst.num_degenerate_polygons:,} polygons under 3 points, skipped); wrote {self.written:,} of "
                f"{self.selected:,} masks to {self.out_dir} ({self.existing:,} already there) in {render:.1f} s "
                f"({rate:.1f} images/s)")


def _chunks(out_dir: str, records: Sequence[ImageRecord], size: int) -> Iterable[tuple[str, list[ImageRecord]]]:
    for s in range(0, len(records), size):
        yield out_dir, list(records[s:s + size])


def _pool(workers: int):
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    return mp.get_context(method).Pool(workers)


def make_masks(json_path: str, out_dir: str, split: str | None = None, ids: Sequence[int] | None = None,
               workers: int = 1, progress: bool = True, chunk: int = CHUNK) -> MaskRun:
    """Write the masks of ``ids`` (default: every image of the json) that ``out_dir`` lacks; see the module doc.

    ``split`` checks that the json is of that split. Ids not in the json are refused before anything is written.
    """
    from tqdm import tqdm

    t0 = time.perf_counter()
    pool = _pool(workers) if workers > 1 else None  # started while this process is still small
    try:
        inst = read_instances(json_path, split)
        t_read = time.perf_counter() - t0
        records = inst.records
        if ids is not None:
            pos = {i: k for k, i in enumerate(inst.image_ids)}
            unknown = [i for i in ids if i not in pos]
            if unknown:
                raise BadInputError(f"image id {id_str(unknown[0])} (and {len(unknown) - 1} more) of the list is "
                                    f"not in {json_path}: give a list of that json's images")
            records = [records[pos[i]] for i in dict.fromkeys(ids)]
        have = set(os.listdir(out_dir)) if os.path.isdir(out_dir) else set()
        todo = [r for r in records if id_str(r.image_id) + ".png" not in have]
        inst.records = None
        os.makedirs(out_dir, exist_ok=True)
        bar = tqdm(total=len(todo), unit="img", disable=not progress, file=sys.stderr, desc="make_coco_masks")
        tasks = _chunks(out_dir, todo, chunk)
        done = pool.imap_unordered(_write_chunk, tasks) if pool else map(_write_chunk, tasks)
        for n in done:
            bar.update(n)
        bar.close()
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    return MaskRun(inst, out_dir, len(records), len(todo), len(records) - len(todo), time.perf_counter() - t0,
                   t_read)
