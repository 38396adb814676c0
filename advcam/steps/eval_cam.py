"""Pass eval_cam: mIoU of CAM seeds against VOC ground truth, sweeping the background threshold."""
from __future__ import annotations

import logging
import os

import numpy as np
from tqdm import tqdm

from advcam.evaluation import eval_names
from advcam.io import load_cam_npy
from advcam.metrics import ConfusionMatrix, format_iou_table, iou, mean_iou
from advcam.voc12.dataloader import load_seg_label

log = logging.getLogger("advcam.eval_cam")

THRESHOLDS = tuple(round(0.15 + 0.01 * i, 2) for i in range(20))  # 0.15, 0.16, ..., 0.34 (AdvCAM's sweep)


def run(args, thresholds=THRESHOLDS) -> dict:
    """Evaluate every threshold in one pass over the files; print each mIoU and the best.

    Returns {"miou": best mIoU (fraction), "threshold": its background threshold, "mious": all}."""
    names = eval_names(args)
    confs = [ConfusionMatrix(21) for _ in thresholds]
    for name in tqdm(names, desc="eval_cam", unit="img"):
        cam_dict = load_cam_npy(os.path.join(args.cam_out_dir, name + ".npy"))
        gt = load_seg_label(args.voc12_root, name)
        high_res = np.asarray(cam_dict["high_res"])
        if high_res.shape[1:] != gt.shape:
            raise ValueError(f"{args.cam_out_dir}/{name}.npy: high_res is {high_res.shape[1:]}, ground truth is "
                             f"{gt.shape}; the CAM files do not belong to this --voc12_root")
        keys = np.pad(np.asarray(cam_dict["keys"]) + 1, (1, 0))
        if len(high_res):
            fg_max, fg_arg = high_res.max(0), high_res.argmax(0)
            fg = keys[fg_arg + 1]
        else:
            fg_max, fg = np.zeros(gt.shape, np.float32), np.zeros(gt.shape, np.int64)
        for conf, th in zip(confs, thresholds, strict=True):
            # the background channel comes first, so it wins ties, as in the reference's argmax
            conf.update(np.where(fg_max > th, fg, 0), gt)
    mious = [mean_iou(c.matrix) for c in confs]
    log.info("read %d CAM files from %s, ground truth from %s (split %s)", len(names), args.cam_out_dir,
             args.voc12_root, args.chainer_eval_set)
    for th, m in zip(thresholds, mious, strict=True):
        log.info("threshold %.2f: mIoU %.2f", th, 100 * m)
    best = int(np.argmax(mious))
    log.info("per-class IoU at the best threshold %.2f:\n%s", thresholds[best],
             format_iou_table(iou(confs[best].matrix)))
    log.info("best threshold %.2f: mIoU %.2f (%s)", thresholds[best], 100 * mious[best], args.cam_out_dir)
    return {"miou": float(mious[best]), "threshold": thresholds[best], "mious": [float(m) for m in mious]}
