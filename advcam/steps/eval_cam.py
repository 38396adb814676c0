"""Pass eval_cam: mIoU of CAM seeds against the ground truth of ``--dataset``, sweeping the background threshold.

Reads ``<cam_out_dir>/<id>.npy`` and the ground-truth masks (VOC: ``SegmentationClass/<id>.png``; COCO:
``mask/<split>/<id>.png``) for the ids of ``--chainer_eval_set`` (a split name or a list file:
:func:`advcam.evaluation.eval_names`). Every threshold is scored in one pass over the files; the confusion
matrices (num_classes + 1 square) are the only state, so memory does not grow with the number of images.
"""
from __future__ import annotations

import logging
import os

import numpy as np
from tqdm import tqdm

from advcam import distributed
from advcam.datasets import dataset_of
from advcam.evaluation import THRESHOLDS, eval_names, update_seed_sweep  # noqa: F401  (THRESHOLDS re-exported)
from advcam.io import load_cam_npy
from advcam.metrics import ConfusionMatrix, format_iou_table, iou, mean_iou

log = logging.getLogger("advcam.eval_cam")


def run(args, thresholds: tuple[float, ...] | None = None) -> dict:
    """Evaluate every threshold (default: the dataset's sweep, :data:`THRESHOLDS` for VOC) in one pass over the
    files; print each mIoU and the best.

    Returns {"miou": best mIoU (fraction), "threshold": its background threshold, "mious": all}."""
    data = dataset_of(args)
    thresholds = tuple(thresholds) if thresholds is not None else data.cam_eval_thresholds
    names = eval_names(args)
    confs = [ConfusionMatrix(data.num_seg_classes) for _ in thresholds]
    for name in tqdm(distributed.shard(names), desc="eval_cam", unit="img"):  # all of them in a plain run
        path = os.path.join(args.cam_out_dir, name + ".npy")
        update_seed_sweep(confs, thresholds, load_cam_npy(path), data.load_seg_label(name), path)
    matrices = distributed.all_reduce_sum(np.stack([c.matrix for c in confs]))  # summed over the ranks' shards
    mious = [mean_iou(m) for m in matrices]
    log.info("read %d CAM files from %s, ground truth from %s (split %s)", len(names), args.cam_out_dir,
             data.root, args.chainer_eval_set)
    for th, m in zip(thresholds, mious, strict=True):
        log.info("threshold %.2f: mIoU %.2f", th, 100 * m)
    best = int(np.argmax(mious))
    log.info("per-class IoU at the best threshold %.2f:\n%s", thresholds[best],
             format_iou_table(iou(matrices[best]), data.seg_class_names))
    log.info("best threshold %.2f: mIoU %.2f (%s)", thresholds[best], 100 * mious[best], args.cam_out_dir)
    return {"miou": float(mious[best]), "threshold": thresholds[best], "mious": [float(m) for m in mious]}
