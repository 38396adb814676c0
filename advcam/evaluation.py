"""Shared pieces of the evaluation passes: the evaluated ids, the missing-prediction check, seed labels from
CAMs and predicted label maps read as the reference reads them; the class count comes from the dataset
(:mod:`advcam.datasets`: 21 labels for voc12, 81 for coco14)."""
from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from advcam import distributed
from advcam.datasets import VOC12, SegData, dataset_of
from advcam.errors import BadInputError, MissingInputError
from advcam.io import load_label_png, missing_files
from advcam.metrics import ConfusionMatrix
from advcam.voc12.lists import eval_list_names  # noqa: F401  (re-exported)

NUM_SEG_CLASSES = len(VOC12.class_names) + 1  # 21, VOC's labels: the default of the helpers below
THRESHOLDS = VOC12.cam_eval_thresholds  # 0.15, 0.16, ..., 0.34 (AdvCAM's sweep); COCO14's is 0.10..0.50


def seed_prediction(cam_dict: dict, threshold: float) -> np.ndarray:
    """Seed labels: argmax over [constant background = threshold, "high_res" maps], through [0] + keys + 1."""
    high_res = np.asarray(cam_dict["high_res"])
    keys = np.pad(np.asarray(cam_dict["keys"]) + 1, (1, 0))
    cams = np.pad(high_res, ((1, 0), (0, 0), (0, 0)), constant_values=threshold)
    return keys[np.argmax(cams, axis=0)].astype(np.uint8)


def eval_names(args) -> list[str]:
    """The evaluated ids of ``--chainer_eval_set`` in the dataset of ``args`` (:func:`advcam.datasets.dataset_of`;
    for voc12 :func:`eval_list_names`, 1,464 for train)."""
    return dataset_of(args).eval_names(args.chainer_eval_set)


def require_predictions(args, names: list[str], folder: str, suffix: str, what: str, make_pass: str) -> None:
    """Fail before evaluating, naming a missing ``<folder>/<id><suffix>`` and the pass that writes it."""
    missing = missing_files(names, folder, suffix)
    if missing:
        raise MissingInputError(
            f"{len(missing)} of {len(names)} {what} missing, e.g. {os.path.join(folder, missing[0] + suffix)}: "
            f"run the {make_pass} pass (--{make_pass}_pass True) with an --infer_list that covers the "
            f"{args.chainer_eval_set} split")


def load_prediction(out_dir: str, name: str, num_seg_classes: int = NUM_SEG_CLASSES) -> np.ndarray:
    """Predicted label map with 255 mapped to background, as the reference evaluates it; labels must lie below
    ``num_seg_classes``."""
    path = os.path.join(out_dir, name + ".png")
    pred = np.array(load_label_png(path, "prediction", f"rerun the pass that writes {out_dir}"))
    pred[pred == 255] = 0
    if pred.max(initial=0) >= num_seg_classes:
        raise BadInputError(f"{path}: label {int(pred.max())} is not a class of the dataset (0-{num_seg_classes - 1})")
    return pred


def update_seed_sweep(confs: list, thresholds: Sequence[float], cam_dict: dict, gt: np.ndarray, path: str) -> None:
    """Add one image's seed labels at every background threshold to ``confs`` (one ConfusionMatrix per threshold).

    Foreground where the largest "high_res" map exceeds the threshold, labelled by its class; the background
    channel comes first, so it wins ties, as in the reference's argmax. ``path`` names the CAM file in errors."""
    high_res = np.asarray(cam_dict["high_res"])
    if high_res.shape[1:] != gt.shape:
        raise BadInputError(f"{path}: high_res is {high_res.shape[1:]}, ground truth is {gt.shape}; the CAM files "
                            "do not belong to this dataset root")
    keys = np.pad(np.asarray(cam_dict["keys"]) + 1, (1, 0))
    if len(high_res):
        fg_max, fg = high_res.max(0), keys[high_res.argmax(0) + 1]
    else:
        fg_max, fg = np.zeros(gt.shape, np.float32), np.zeros(gt.shape, np.int64)
    for conf, th in zip(confs, thresholds, strict=True):
        conf.update(np.where(fg_max > th, fg, 0), gt)


def label_confusion(data: SegData | str, names: Sequence[str], folder: str, desc: str | None = None) -> np.ndarray:
    """The confusion matrix (``data.num_seg_classes`` square: 21 for VOC, 81 for COCO) of the label maps
    ``<folder>/<id>.png`` (read by :func:`load_prediction`) against the ground truth of ``data`` (a dataset, or a
    VOC root), over ``names``; with ``desc`` a progress bar of that name.

    Under torchrun (collective) each rank counts its exact shard of ``names`` and the matrices are summed, so every
    pixel is counted once."""
    if isinstance(data, str):
        data = VOC12(data)
    conf = ConfusionMatrix(data.num_seg_classes)
    for name in tqdm(distributed.shard(names), desc=desc, unit="img", leave=False, disable=desc is None):
        pred = load_prediction(folder, name, data.num_seg_classes)
        gt = data.load_seg_label(name)
        if pred.shape != gt.shape:
            raise BadInputError(f"{folder}/{name}.png is {pred.shape}, its ground truth is {gt.shape}: the "
                                f"predictions do not belong to this {data.root_flag}")
        conf.update(pred, gt)
    return distributed.all_reduce_sum(conf.matrix)


def json_float(v: float) -> float | None:
    """``v`` for JSON: None for NaN (an IoU undefined for a class absent from prediction and ground truth)."""
    return None if math.isnan(v) else float(v)
