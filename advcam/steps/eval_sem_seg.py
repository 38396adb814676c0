"""Pass eval_sem_seg: mIoU of the semantic pseudo labels against the ground truth of ``--dataset``.

Reads ``<sem_seg_out_dir>/<id>.png`` (255 counted as background) and the ground-truth masks for the ids
of ``--chainer_eval_set`` (a split name or a list file, :func:`advcam.evaluation.eval_list_names`); logs the
per-class IoU table, mIoU, background and mean foreground FP/FN ratios and pixel accuracy.
"""
from __future__ import annotations

import logging

import numpy as np

from advcam.datasets import dataset_of
from advcam.evaluation import eval_names, json_float, label_confusion, require_predictions
from advcam.metrics import format_iou_table, summarize

log = logging.getLogger("advcam.eval_sem_seg")


def _nanmean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(np.nanmean(x)) if np.any(~np.isnan(x)) else float("nan")


def run(args) -> dict:
    """Evaluate; returns {"miou", "iou" (num_classes + 1, None where undefined), "fp_bg", "fn_bg", "fp_fg_mean",
    "fn_fg_mean", "pixel_acc", "among_predfg_bg", "images"} (fractions)."""
    data = dataset_of(args)
    names = eval_names(args)
    require_predictions(args, names, args.sem_seg_out_dir, ".png", "predictions", "make_sem_seg")
    s = summarize(label_confusion(data, names, args.sem_seg_out_dir, "eval_sem_seg"))
    fp, fn = s["fp"], s["fn"]
    out = {"miou": s["miou"], "iou": [json_float(v) for v in s["iou"]], "fp_bg": float(fp[0]),
           "fn_bg": float(fn[0]), "fp_fg_mean": _nanmean(fp[1:]), "fn_fg_mean": _nanmean(fn[1:]),
           "pixel_acc": s["pixel_acc"], "among_predfg_bg": s["among_predfg_bg"], "images": len(names)}
    log.info("read %d predictions from %s, ground truth from %s (split %s)", len(names), args.sem_seg_out_dir,
             data.root, args.chainer_eval_set)
    log.info("per-class IoU:\n%s", format_iou_table(s["iou"], data.seg_class_names))
    log.info("background: fp %.4f, fn %.4f; foreground mean: fp %.4f, fn %.4f", out["fp_bg"], out["fn_bg"],
             out["fp_fg_mean"], out["fn_fg_mean"])
    log.info("pixel accuracy %.2f%%, predicted foreground on background %.4f", 100 * out["pixel_acc"],
             out["among_predfg_bg"])
    log.info("mIoU %.2f (%s)", 100 * out["miou"], args.sem_seg_out_dir)
    return out
