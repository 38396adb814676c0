"""COCO image-level labels: the categories of all of an image's annotations (crowd included), 80 classes.

The table has the format of VOC's ``cls_labels.npy``: a dict ``{int image id: float32[80]}`` (index ``k`` is the
``k``-th category in category-id order, label ``k + 1``) saved with ``np.save`` as a 0-d object array. Every image
of the json has an entry (all zeros for an image without annotations). :func:`load_coco_cls_labels` builds it from
the json once and caches it.
"""
from __future__ import annotations

import os

import numpy as np

from advcam.coco14 import NUM_CLASSES
from advcam.coco14.instances import read_instances
from advcam.io import save_npy


def _read_cache(cache_path: str, json_path: str) -> dict[int, np.ndarray] | None:
    if not os.path.isfile(cache_path) or os.path.getmtime(cache_path) < os.path.getmtime(json_path):
        return None
    try:
        table = np.load(cache_path, allow_pickle=True).item()
    except Exception:  # an unreadable cache is rebuilt, never trusted
        return None
    if not (isinstance(table, dict)
            and all(isinstance(v, np.ndarray) and v.shape == (NUM_CLASSES,) for v in table.values())):
        return None
    return {int(k): v.astype(np.float32, copy=False) for k, v in table.items()}


def load_coco_cls_labels(json_path: str, cache_path: str, split: str | None = None) -> dict[int, np.ndarray]:
    """``{image id: float32[80]}`` for every image of ``json_path``, read from ``cache_path`` when that file is
    newer than the json, else built from the json (checked as :func:`~advcam.coco14.instances.read_instances`
    checks it, with ``split``) and written there atomically."""
    if not os.path.isfile(json_path):
        read_instances(json_path, split, segmentations=False)  # raises the one-line MissingInputError
    cached = _read_cache(cache_path, json_path)
    if cached is not None:
        return cached
    table = read_instances(json_path, split, segmentations=False).cls_labels()
    save_npy(cache_path, table)
    return table
