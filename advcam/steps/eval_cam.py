"""Pass eval_cam: mIoU of CAM seeds against VOC ground truth, sweeping the background threshold."""
from __future__ import annotations

import logging
import os

import numpy as np
from tqdm import tqdm

from advcam import distributed
from advcam.evaluation import THRESHOLDS, eval_names, update_seed_sweep
from advcam.io import load_cam_npy
from advcam.metrics import ConfusionMatrix, format_iou_table, iou, mean_iou
from advcam.voc12.dataloader import load_seg_label

log = logging.getLogger("advcam.eval_cam")



def run(args, thresholds=THRESHOLDS) -> dict:
    """Evaluate every threshold in one pass over the files; print each mIoU and the best.

    Returns {"miou": best mIoU (fraction), "threshold": its background threshold, "mious": all}."""
    names = eval_names(args)
    confs = [ConfusionMatrix(21) for _ in thresholds]
    for name in tqdm(distributed.shard(names), desc="eval_cam", unit="img"):  # all of them in a plain run
        path = os.path.join(args.cam_out_dir, name + ".npy")
        update_seed_sweep(confs, thresholds, load_cam_npy(path), load_seg_label(args.voc12_root, name), path)
    matrices = distributed.all_reduce_sum(np.stack([c.matrix for c in confs]))  # summed over the ranks' shards
    mious = [mean_iou(m) for m in matrices]
    log.info("read %d CAM files from %s, ground truth from %s (split %s)", len(names), args.cam_out_dir,
             args.voc12_root, args.chainer_eval_set)
    for th, m in zip(thresholds, mious, strict=True):
        log.info("threshold %.2f: mIoU %.2f", th, 100 * m)
    best = int(np.argmax(mious))
    log.info("per-class IoU at the best threshold %.2f:\n%s", thresholds[best],
             format_iou_table(iou(matrices[best])))
    log.info("best threshold %.2f: mIoU %.2f (%s)", thresholds[best], 100 * mious[best], args.cam_out_dir)
    return {"miou": float(mious[best]), "threshold": thresholds[best], "mious": [float(m) for m in mious]}
