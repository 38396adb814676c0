"""mIoU of two trivial predictors on a VOC split: all background, and the whole image as its first label.

``python tools/chance_miou.py --voc12_root toy_voc [--split train]`` (the chance level for seed mIoU).
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from advcam.metrics import ConfusionMatrix, mean_iou  # noqa: E402
from advcam.voc12.dataloader import get_cls_labels, load_img_name_list, load_seg_label  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--voc12_root", required=True)
    p.add_argument("--split", default="train")
    args = p.parse_args(argv)
    names = load_img_name_list(os.path.join(args.voc12_root, "ImageSets", "Segmentation", args.split + ".txt"))
    labels = get_cls_labels(args.voc12_root, names)
    background, whole = ConfusionMatrix(21), ConfusionMatrix(21)
    for name, label in zip(names, labels, strict=True):
        gt = load_seg_label(args.voc12_root, name)
        background.update(np.zeros_like(gt), gt)
        whole.update(np.full_like(gt, np.nonzero(label)[0][0] + 1 if label.any() else 0), gt)
    out = {"all background": mean_iou(background.matrix), "whole image as first label": mean_iou(whole.matrix)}
    for k, v in out.items():
        print(f"{k}: mIoU {100 * v:.2f} ({len(names)} images of {args.split})")
    return out


if __name__ == "__main__":
    main()
