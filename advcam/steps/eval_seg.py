"""Pass eval_seg: mIoU, per-class IoU and pixel accuracy of the segmentation network's label maps.

Reads ``<seg_out_dir>/<id>.png`` (and, with ``--seg_crf True``, ``<seg_crf_out_dir>/<id>.png``) and the ground truth
of ``--dataset`` (VOC ``SegmentationClass/<id>.png``; COCO ``<coco_root>/mask/<split>/<id>.png``) for the ids of
``--seg_infer_list`` (default val); scores the dataset's labels (21 VOC, 81 COCO) with one confusion matrix per
folder, streamed over the images (under torchrun each rank counts its shard, then the matrices are summed); logs
the per-class IoU tables.
"""
from __future__ import annotations

import logging
import os

from advcam.datasets import SegData, dataset_of
from advcam.errors import MissingInputError
from advcam.evaluation import json_float, label_confusion
from advcam.io import missing_files
from advcam.metrics import format_iou_table, summarize
from advcam.segmentation import seg_data

log = logging.getLogger("advcam.eval_seg")


def evaluate_folder(voc12_root: str | SegData, names: list[str], folder: str) -> dict:
    """{"miou", "iou" (one per label of the dataset, None where undefined), "pixel_acc", "images"} of
    ``<folder>/<id>.png`` against the ground truth of ``voc12_root`` (a VOC root, or a dataset)."""
    data = seg_data(voc12_root)
    s = summarize(label_confusion(data, names, folder, f"eval_seg {folder}"))
    log.info("%s, %d images: per-class IoU:\n%s", folder, len(names), format_iou_table(s["iou"],
                                                                                       data.seg_class_names))
    log.info("mIoU %.2f, pixel accuracy %.2f%% (%s)", 100 * s["miou"], 100 * s["pixel_acc"], folder)
    return {"miou": s["miou"], "iou": [json_float(v) for v in s["iou"]], "pixel_acc": s["pixel_acc"],
            "images": len(names)}


def run(args) -> dict:
    """Evaluate; the returned dict is that of ``--seg_out_dir`` with, under "crf", that of ``--seg_crf_out_dir``."""
    data = dataset_of(args)
    names = data.read_list(args.seg_infer_list)
    for folder in [args.seg_out_dir] + ([args.seg_crf_out_dir] if args.seg_crf else []):
        missing = missing_files(names, folder, ".png")
        if missing:
            raise MissingInputError(
                f"{len(missing)} of {len(names)} segmentation predictions missing, e.g. "
                f"{os.path.join(folder, missing[0] + '.png')}: run the make_seg pass (--make_seg_pass True) with "
                "the same --seg_infer_list, --seg_out_dir, --seg_crf and --seg_crf_out_dir")
    out = evaluate_folder(data, names, args.seg_out_dir)
    if args.seg_crf:
        out["crf"] = evaluate_folder(data, names, args.seg_crf_out_dir)
        log.info("segmentation mIoU on %s: %.2f without CRF, %.2f with CRF", args.seg_infer_list,
                 100 * out["miou"], 100 * out["crf"]["miou"])
    return out
