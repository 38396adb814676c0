"""Pass eval_ins_seg: VOC instance-segmentation mAP of the instance pseudo labels at IoU 0.5 and 0.75.

Reads ``<ins_seg_out_dir>/<id>.npy`` and, as ground truth, ``SegmentationObject/<id>.png`` (instance ids,
0 background, 255 ignore) with ``SegmentationClass/<id>.png`` (each instance's class) for the ids of
``--chainer_eval_set`` (a split name or a list file, :func:`advcam.evaluation.eval_list_names`).
"""
from __future__ import annotations

import logging
import math
import os

import numpy as np
from PIL import Image
from tqdm import tqdm

from advcam import distributed
from advcam.errors import BadInputError, MissingInputError
from advcam.evaluation import eval_names, require_predictions
from advcam.io import load_npy_dict
from advcam.metrics import ap_from_matches, match_instances
from advcam.voc12 import CAT_LIST, IGNORE_LABEL
from advcam.voc12.dataloader import load_seg_label

log = logging.getLogger("advcam.eval_ins_seg")

IOU_THRESHOLDS = (0.5, 0.75)


def load_gt_instances(voc12_root: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(masks bool [R, H, W], 0-based classes [R]) of one image's ground-truth instances."""
    path = os.path.join(voc12_root, "SegmentationObject", name + ".png")
    try:
        inst = np.asarray(Image.open(path))
    except FileNotFoundError:
        raise MissingInputError(f"instance ground truth {path} not found: eval_ins_seg needs VOC2012's "
                                "SegmentationObject/ folder in --voc12_root") from None
    cls = load_seg_label(voc12_root, name)
    if inst.shape != cls.shape:
        raise BadInputError(f"{path} is {inst.shape} but SegmentationClass/{name}.png is {cls.shape}")
    masks, labels = [], []
    for i in np.unique(inst):
        if i == 0 or i == IGNORE_LABEL:
            continue
        m = inst == i
        c = cls[m]
        c = c[(c != 0) & (c != IGNORE_LABEL)]
        if c.size == 0:
            raise BadInputError(f"{path}: instance {i} has no object class in SegmentationClass/{name}.png")
        masks.append(m)
        labels.append(int(np.bincount(c).argmax()) - 1)
    if not masks:
        return np.zeros((0, *inst.shape), bool), np.zeros(0, np.int64)
    return np.stack(masks), np.asarray(labels, np.int64)


def load_detections(out_dir: str, name: str) -> dict:
    """One image's {"score", "mask", "class"} as make_ins_seg writes them."""
    path = os.path.join(out_dir, name + ".npy")
    det = load_npy_dict(path, "instance label file", "the make_ins_seg pass (--make_ins_seg_pass True)")
    if not {"score", "mask", "class"} <= set(det):
        raise BadInputError(f"{path}: not an instance label file (a dict with score, mask and class)")
    return det


def _fmt_ap(ap: np.ndarray) -> str:
    return ", ".join(f"{CAT_LIST[i]} {'n/a' if np.isnan(v) else f'{100 * v:.1f}'}" for i, v in enumerate(ap))


def run(args) -> dict:
    """Evaluate; returns {"map50", "map75", "ap50", "ap75" (20, None where no ground truth), "images"}.

    Under torchrun each rank matches its exact shard of the images; the per-image records are gathered in image
    order, so the APs equal a single process's."""
    if (getattr(args, "dataset", None) or "voc12") != "voc12":
        raise BadInputError(f"--dataset {args.dataset}: eval_ins_seg is not yet supported (it scores VOC's "
                            "SegmentationObject/ instance masks); leave --eval_ins_seg_pass off")
    names = eval_names(args)
    require_predictions(args, names, args.ins_seg_out_dir, ".npy", "instance label files", "make_ins_seg")
    mine: list[tuple[int, list[dict]]] = []  # (image index, one match record per IoU threshold)
    for i in tqdm(distributed.shard(range(len(names))), desc="eval_ins_seg", unit="img"):
        name = names[i]
        det = load_detections(args.ins_seg_out_dir, name)
        gm, gl = load_gt_instances(args.voc12_root, name)
        pm = np.asarray(det["mask"], dtype=bool)
        if len(pm) and pm.shape[1:] != gm.shape[1:]:
            raise BadInputError(f"{args.ins_seg_out_dir}/{name}.npy has {pm.shape[1:]} masks, the ground truth is "
                             f"{gm.shape[1:]}: the labels do not belong to this --voc12_root")
        pm = pm.reshape(-1, *gm.shape[1:])
        labels, scores = np.asarray(det["class"], dtype=np.int64), np.asarray(det["score"], dtype=np.float64)
        mine.append((i, [match_instances(pm, labels, scores, gm, gl, th, image=i) for th in IOU_THRESHOLDS]))
    records = sorted((r for part in distributed.all_gather_objects(mine) for r in part), key=lambda r: r[0])
    out: dict = {"images": len(names)}
    log.info("read %d instance label files from %s, ground truth from %s (split %s)", len(names),
             args.ins_seg_out_dir, args.voc12_root, args.chainer_eval_set)
    for t, th in enumerate(IOU_THRESHOLDS):
        res = ap_from_matches([r[1][t] for r in records], num_classes=len(CAT_LIST))
        key = f"{round(100 * th)}"
        out[f"map{key}"] = res["map"]
        out[f"ap{key}"] = [None if math.isnan(v) else float(v) for v in res["ap"]]
        log.info("AP@%.2f per class: %s", th, _fmt_ap(res["ap"]))
        log.info("mAP@%.2f %.2f (%s)", th, 100 * res["map"], args.ins_seg_out_dir)
    return out
