"""Shared pieces of the evaluation passes: the evaluated ids, the missing-prediction check, seed labels from
CAMs and predicted label maps read as the reference reads them."""
from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from advcam import distributed
from advcam.errors import BadInputError, MissingInputError
from advcam.io import load_label_png, missing_files
from advcam.metrics import ConfusionMatrix
from advcam.voc12.dataloader import load_img_name_list, load_seg_label

NUM_SEG_CLASSES = 21
THRESHOLDS = tuple(round(0.15 + 0.01 * i, 2) for i in range(20))  # 0.15, 0.16, ..., 0.34 (AdvCAM's sweep)


def seed_prediction(cam_dict: dict, threshold: float) -> np.ndarray:
    """Seed labels: argmax over [constant background = threshold, "high_res" maps], through [0] + keys + 1."""
    high_res = np.asarray(cam_dict["high_res"])
    keys = np.pad(np.asarray(cam_dict["keys"]) + 1, (1, 0))
    cams = np.pad(high_res, ((1, 0), (0, 0), (0, 0)), constant_values=threshold)
    return keys[np.argmax(cams, axis=0)].astype(np.uint8)


def eval_names(args) -> list[str]:
    """The evaluated ids: ImageSets/Segmentation/<chainer_eval_set>.txt of the VOC root (1,464 for train)."""
    path = os.path.join(args.voc12_root, "ImageSets", "Segmentation", args.chainer_eval_set + ".txt")
    return load_img_name_list(path)


def require_predictions(args, names: list[str], folder: str, suffix: str, what: str, make_pass: str) -> None:
    """Fail before evaluating, naming a missing ``<folder>/<id><suffix>`` and the pass that writes it."""
    missing = missing_files(names, folder, suffix)
    if missing:
        raise MissingInputError(
            f"{len(missing)} of {len(names)} {what} missing, e.g. {os.path.join(folder, missing[0] + suffix)}: "
            f"run the {make_pass} pass (--{make_pass}_pass True) with an --infer_list that covers the "
            f"{args.chainer_eval_set} split")


def load_prediction(out_dir: str, name: str) -> np.ndarray:
    """Predicted label map with 255 mapped to background, as the reference evaluates it."""
    path = os.path.join(out_dir, name + ".png")
    pred = np.array(load_label_png(path, "prediction", f"rerun the pass that writes {out_dir}"))
    pred[pred == 255] = 0
    if pred.max(initial=0) >= NUM_SEG_CLASSES:
        raise BadInputError(f"{path}: label {int(pred.max())} is not a VOC class (0-20)")
    return pred


def update_seed_sweep(confs: list, thresholds: Sequence[float], cam_dict: dict, gt: np.ndarray, path: str) -> None:
    """Add one image's seed labels at every background threshold to ``confs`` (one ConfusionMatrix per threshold).

    Foreground where the largest "high_res" map exceeds the threshold, labelled by its class; the background
    channel comes first, so it wins ties, as in the reference's argmax. ``path`` names the CAM file in errors."""
    high_res = np.asarray(cam_dict["high_res"])
    if high_res.shape[1:] != gt.shape:
        raise BadInputError(f"{path}: high_res is {high_res.shape[1:]}, ground truth is {gt.shape}; the CAM files "
                            "do not belong to this --voc12_root")
    keys = np.pad(np.asarray(cam_dict["keys"]) + 1, (1, 0))
    if len(high_res):
        fg_max, fg = high_res.max(0), keys[high_res.argmax(0) + 1]
    else:
        fg_max, fg = np.zeros(gt.shape, np.float32), np.zeros(gt.shape, np.int64)
    for conf, th in zip(confs, thresholds, strict=True):
        conf.update(np.where(fg_max > th, fg, 0), gt)


def label_confusion(voc12_root: str, names: Sequence[str], folder: str, desc: str | None = None) -> np.ndarray:
    """The 21x21 confusion matrix of the label maps ``<folder>/<id>.png`` (read by :func:`load_prediction`) against
    the ground truth of ``voc12_root``, over ``names``; with ``desc`` a progress bar of that name.

    Under torchrun (collective) each rank counts its exact shard of ``names`` and the matrices are summed, so every
    pixel is counted once."""
    conf = ConfusionMatrix(NUM_SEG_CLASSES)
    for name in tqdm(distributed.shard(names), desc=desc, unit="img", leave=False, disable=desc is None):
        pred = load_prediction(folder, name)
        gt = load_seg_label(voc12_root, name)
        if pred.shape != gt.shape:
            raise BadInputError(f"{folder}/{name}.png is {pred.shape}, its ground truth is {gt.shape}: the "
                                "predictions do not belong to this --voc12_root")
        conf.update(pred, gt)
    return distributed.all_reduce_sum(conf.matrix)


def json_float(v: float) -> float | None:
    """``v`` for JSON: None for NaN (an IoU undefined for a class absent from prediction and ground truth)."""
    return None if math.isnan(v) else float(v)
