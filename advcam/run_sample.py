"""``run_sample.py``: the IRN/AdvCAM pipeline driver, with the AdvCAM version's flags and defaults.

Passes run in the reference's fixed order, each switched on with ``--<name>_pass True``:
train_cam, make_cam, eval_cam, cam_to_ir_label, train_irn, make_ins_seg, eval_ins_seg, make_sem_seg,
eval_sem_seg. Artefacts live on disk between passes, so any pass can be rerun alone.
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import time

from advcam.io import atomic_path
from advcam.utils import (
    check_network_flags,
    default_voc12_root,
    flat_scales,
    float_list,
    seed_everything,
    setup_logging,
    str2bool,
)

log = logging.getLogger("advcam")

PASSES = ("train_cam", "make_cam", "eval_cam", "cam_to_ir_label", "train_irn", "make_ins_seg", "eval_ins_seg",
          "make_sem_seg", "eval_sem_seg")
MODULES = {"train_cam": "train_cam", "make_cam": "make_cam", "eval_cam": "eval_cam",
           "cam_to_ir_label": "cam_to_ir_label", "train_irn": "train_irn", "make_ins_seg": "make_ins_seg_labels",
           "eval_ins_seg": "eval_ins_seg", "make_sem_seg": "make_sem_seg_labels", "eval_sem_seg": "eval_sem_seg"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    # Environment
    p.add_argument("--num_workers", default=os.cpu_count() // 2, type=int)
    p.add_argument("--voc12_root", default=default_voc12_root(), type=str,
                   help="VOC2012 devkit root (JPEGImages, SegmentationClass, ImageSets/Segmentation); "
                        "the environment variable VOC12_ROOT sets the default")
    p.add_argument("--device", default=None, type=str, help="torch device (default: CUDA when available)")
    # Dataset
    p.add_argument("--train_list", default="voc12/train_aug.txt", type=str)
    p.add_argument("--val_list", default="voc12/val.txt", type=str)
    p.add_argument("--infer_list", default="voc12/train_aug.txt", type=str)
    p.add_argument("--chainer_eval_set", default="train", type=str)
    p.add_argument("--cls_labels", default=None, type=str,
                   help="cls_labels.npy (default: built from <voc12_root>/Annotations and cached)")
    # Class Activation Map
    p.add_argument("--cam_network", default="net.resnet50_cam", type=str)
    p.add_argument("--cam_crop_size", default=512, type=int)
    p.add_argument("--cam_resize_long", default=(320, 640), type=int, nargs=2, metavar=("MIN", "MAX"),
                   help="random long-side resize range of classifier training")
    p.add_argument("--cam_batch_size", default=16, type=int)
    p.add_argument("--cam_num_epoches", default=5, type=int)
    p.add_argument("--cam_learning_rate", default=0.1, type=float)
    p.add_argument("--cam_weight_decay", default=1e-4, type=float)
    p.add_argument("--cam_momentum", default=0.0, type=float,
                   help="SGD momentum of classifier training (the reference trains with none; 0.9 helps from scratch)")
    p.add_argument("--cam_optimizer", default="sgd", choices=("sgd", "adam"),
                   help="sgd: the reference poly-lr SGD; adam: AdamW with the same poly decay (from scratch)")
    p.add_argument("--cam_eval_thres", default=0.15, type=float)
    p.add_argument("--cam_scales", default=(1.0, 0.5, 1.5, 2.0), type=float_list, nargs="+",
                   help="e.g. 1.0 0.5 1.5 2.0 or 1.0,0.5,1.5,2.0")
    p.add_argument("--pretrained", default=None, type=str, help="torchvision ResNet-50 ImageNet state dict")
    p.add_argument("--no_pretrained", default=False, type=str2bool, help="train the classifier from scratch")
    # Mining Inter-pixel Relations
    p.add_argument("--conf_fg_thres", default=0.35, type=float)
    p.add_argument("--conf_bg_thres", default=0.15, type=float)
    # Inter-pixel Relation Network (IRNet)
    p.add_argument("--irn_network", default="net.resnet50_irn", type=str)
    p.add_argument("--irn_crop_size", default=512, type=int)
    p.add_argument("--irn_batch_size", default=32, type=int)
    p.add_argument("--irn_num_epoches", default=3, type=int)
    p.add_argument("--irn_learning_rate", default=0.1, type=float)
    p.add_argument("--irn_weight_decay", default=1e-4, type=float)
    p.add_argument("--irn_optimizer", default="sgd", choices=("sgd", "adam"),
                   help="sgd: the reference poly-lr SGD; adam: AdamW with the same poly decay (a backbone trained "
                        "from scratch; use --irn_learning_rate 0.001)")
    # Random Walk Params
    p.add_argument("--beta", default=10, type=float)
    p.add_argument("--exp_times", default=8, type=int, help="the transition matrix is squared this many times")
    p.add_argument("--ins_seg_bg_thres", default=0.25, type=float)
    p.add_argument("--sem_seg_bg_thres", default=0.25, type=float)
    # Output Path
    p.add_argument("--log_name", default="sample_train_eval", type=str)
    p.add_argument("--cam_weights_name", default="sess/res50_cam.pth", type=str)
    p.add_argument("--irn_weights_name", default="sess/res50_irn.pth", type=str)
    p.add_argument("--cam_out_dir", default="result/cam_adv_mask", type=str)
    p.add_argument("--ir_label_out_dir", default="result/ir_label", type=str)
    p.add_argument("--sem_seg_out_dir", default="result/sem_seg", type=str)
    p.add_argument("--ins_seg_out_dir", default="result/ins_seg", type=str)
    p.add_argument("--results_json", default=None, type=str,
                   help="record each evaluation's numbers in this JSON file (keyed by pass and folder)")
    p.add_argument("--skip_bad_images", default=False, type=str2bool,
                   help="log and skip unreadable images instead of stopping")
    p.add_argument("--seed", default=None, type=int,
                   help="seed the random generators before each pass, so that a pass rerun alone repeats itself "
                        "(default: unseeded, as the reference)")
    # Steps
    for name in PASSES:
        p.add_argument(f"--{name}_pass", default=False, type=str2bool)
    return p


def check_voc12_root(args, parser: argparse.ArgumentParser) -> None:
    """Stop with guidance when the VOC root does not exist (the default path most of all)."""
    if os.path.isdir(os.path.join(args.voc12_root, "JPEGImages")):
        return
    default = args.voc12_root == default_voc12_root() and "VOC12_ROOT" not in os.environ
    hint = (
        "No VOC data at the default --voc12_root. Either point --voc12_root (or the VOC12_ROOT environment "
        "variable) at PASCAL VOC 2012 with SBD (a folder with JPEGImages/, SegmentationClass/, Annotations/ "
        "and ImageSets/Segmentation/{train,train_aug,val}.txt), or run the toy demo on this machine: "
        "`bash get_mask_quality.sh` (it builds a toy VOC set with scripts/make_toy_voc.py)."
        if default else
        f"--voc12_root {args.voc12_root} has no JPEGImages/ folder: point it at a VOC2012 devkit folder "
        "(JPEGImages/, SegmentationClass/, Annotations/, ImageSets/Segmentation/).")
    parser.exit(2, f"run_sample.py: error: {hint}\n")


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.cam_scales = flat_scales(args.cam_scales)
    check_network_flags(args, parser)
    if not any(getattr(args, f"{n}_pass") for n in PASSES):
        parser.exit(2, "run_sample.py: nothing to do: switch passes on, e.g. --train_cam_pass True "
                       "--make_cam_pass True --eval_cam_pass True\n")
    check_voc12_root(args, parser)
    for d in (os.path.dirname(args.cam_weights_name), os.path.dirname(args.irn_weights_name), args.cam_out_dir,
              args.ir_label_out_dir, args.sem_seg_out_dir, args.ins_seg_out_dir):
        if d:
            os.makedirs(d, exist_ok=True)
    setup_logging(args.log_name + ".log")
    log.info("run_sample.py %s", " ".join(sys.argv[1:] if argv is None else argv))
    results = {}
    for name in PASSES:
        if getattr(args, f"{name}_pass"):
            log.info("step.%s: %s", MODULES[name], time.strftime("%Y-%m-%d %H:%M:%S"))
            module = importlib.import_module(f"advcam.steps.{MODULES[name]}")
            if args.seed is not None:
                seed_everything(args.seed)
            results[name] = module.run(args)
            if args.results_json and name.startswith("eval"):
                record_result(args.results_json, f"{name}:{EVALUATED_DIR[name](args)}", results[name])
    return results


EVALUATED_DIR = {"eval_cam": lambda a: a.cam_out_dir, "eval_sem_seg": lambda a: a.sem_seg_out_dir,
                 "eval_ins_seg": lambda a: a.ins_seg_out_dir}


def record_result(path: str, key: str, value) -> None:
    """Merge {key: value} into the JSON file at ``path`` (written atomically)."""
    data = {}
    if os.path.isfile(path):
        with open(path) as f:
            data = json.load(f)
    data[key] = value
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(data, f, indent=1, default=float)


def cli() -> None:
    try:
        main()
    except (FileNotFoundError, ValueError, KeyError, OSError, RuntimeError) as e:
        sys.exit(f"run_sample.py: error: {e}")
