"""Pass eval_seg: mIoU, per-class IoU and pixel accuracy of the segmentation network's label maps.

Reads ``<seg_out_dir>/<id>.png`` (and, with ``--seg_crf True``, ``<seg_crf_out_dir>/<id>.png``) and
``SegmentationClass/<id>.png`` for the ids of ``--seg_infer_list`` (default val); logs the per-class IoU tables.
"""
from __future__ import annotations

import logging
import os

from advcam.errors import MissingInputError
from advcam.evaluation import json_float, label_confusion
from advcam.io import missing_files
from advcam.metrics import format_iou_table, summarize
from advcam.voc12.dataloader import load_img_name_list

log = logging.getLogger("advcam.eval_seg")


def evaluate_folder(voc12_root: str, names: list[str], folder: str) -> dict:
    """{"miou", "iou" (21, None where undefined), "pixel_acc", "images"} of ``<folder>/<id>.png`` against the
    ground truth of ``voc12_root``."""
    s = summarize(label_confusion(voc12_root, names, folder, f"eval_seg {folder}"))
    log.info("%s, %d images: per-class IoU:\n%s", folder, len(names), format_iou_table(s["iou"]))
    log.info("mIoU %.2f, pixel accuracy %.2f%% (%s)", 100 * s["miou"], 100 * s["pixel_acc"], folder)
    return {"miou": s["miou"], "iou": [json_float(v) for v in s["iou"]], "pixel_acc": s["pixel_acc"],
            "images": len(names)}


def run(args) -> dict:
    """Evaluate; the returned dict is that of ``--seg_out_dir`` with, under "crf", that of ``--seg_crf_out_dir``."""
    names = load_img_name_list(args.seg_infer_list, args.voc12_root)
    for folder in [args.seg_out_dir] + ([args.seg_crf_out_dir] if args.seg_crf else []):
        missing = missing_files(names, folder, ".png")
        if missing:
            raise MissingInputError(
                f"{len(missing)} of {len(names)} segmentation predictions missing, e.g. "
                f"{os.path.join(folder, missing[0] + '.png')}: run the make_seg pass (--make_seg_pass True) with "
                "the same --seg_infer_list, --seg_out_dir, --seg_crf and --seg_crf_out_dir")
    out = evaluate_folder(args.voc12_root, names, args.seg_out_dir)
    if args.seg_crf:
        out["crf"] = evaluate_folder(args.voc12_root, names, args.seg_crf_out_dir)
        log.info("segmentation mIoU on %s: %.2f without CRF, %.2f with CRF", args.seg_infer_list,
                 100 * out["miou"], 100 * out["crf"]["miou"])
    return out
