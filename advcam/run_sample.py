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

from advcam import distributed
from advcam.io import atomic_path
from advcam.utils import (
    check_flag_ranges,
    check_network_flags,
    check_voc12_root,
    default_voc12_root,
    flat_scales,
    float_list,
    run_cli,
    seed_everything,
    setup_logging,
    str2bool,
)

log = logging.getLogger("advcam")

PASSES = ("train_cam", "make_cam", "eval_cam", "cam_to_ir_label", "train_irn", "make_ins_seg", "eval_ins_seg",
          "make_sem_seg", "eval_sem_seg", "train_seg", "make_seg", "eval_seg")
MODULES = {"train_cam": "train_cam", "make_cam": "make_cam", "eval_cam": "eval_cam",
           "cam_to_ir_label": "cam_to_ir_label", "train_irn": "train_irn", "make_ins_seg": "make_ins_seg_labels",
           "eval_ins_seg": "eval_ins_seg", "make_sem_seg": "make_sem_seg_labels", "eval_sem_seg": "eval_sem_seg",
           "train_seg": "train_seg", "make_seg": "make_seg", "eval_seg": "eval_seg"}


FLAG_RANGES = {
    "num_workers": "nonnegative", "cam_crop_size": "positive", "cam_resize_long": "positive",
    "cam_batch_size": "positive", "cam_num_epoches": "positive", "cam_learning_rate": "positive",
    "cam_weight_decay": "nonnegative", "cam_momentum": "nonnegative", "cam_eval_thres": "fraction",
    "cam_scales": "positive", "conf_fg_thres": "fraction", "conf_bg_thres": "fraction",
    "irn_crop_size": "positive", "irn_infer_pad": "positive", "irn_batch_size": "positive",
    "irn_num_epoches": "positive", "irn_learning_rate": "positive", "irn_weight_decay": "nonnegative",
    "beta": "positive", "exp_times": "nonnegative", "ins_seg_bg_thres": "fraction", "sem_seg_bg_thres": "fraction",
    "seg_crop_size": "positive", "seg_learning_rate": "positive", "seg_momentum": "nonnegative",
    "seg_weight_decay": "nonnegative", "seg_poly_power": "nonnegative", "seg_checkpoint_every": "positive",
    "seg_infer_scales": "positive",
}


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
    p.add_argument("--irn_crop_size", default=512, type=int, help="random crop of IRN training")
    p.add_argument("--irn_infer_pad", default=512, type=int,
                   help="IRN inference zero-pads each image to at least this size (rounded up to 16), as the "
                        "reference always pads to 512")
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
    add_seg_flags(p)
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


def add_seg_flags(p: argparse.ArgumentParser) -> None:
    """The flags of stage 3 (train_seg, make_seg, eval_seg); see docs/segmentation.md."""
    g = p.add_argument_group("Segmentation network", "stage 3: train_seg, make_seg, eval_seg (docs/segmentation.md)")
    g.add_argument("--seg_network", default="deeplab_v2", type=str,
                   help="deeplab_v2 (ResNet-101), deeplabv3_resnet101, deeplabv3_resnet50 or efficientnet_lite0_seg")
    g.add_argument("--seg_recipe", default="advcam", choices=("advcam", "deeplab-pytorch"),
                   help="advcam: batch 10, 30k iterations, scales 0.5-2.0, balanced CE (AdvCAM#9); deeplab-pytorch: "
                        "5 x 2 accumulation, 20k iterations, scales 0.5-1.5, plain CE (configs/voc12.yaml)")
    g.add_argument("--seg_label_dir", default=None, type=str,
                   help="training labels <id>.png (default: --sem_seg_out_dir; <voc12_root>/SegmentationClass "
                        "for the fully supervised baseline)")
    g.add_argument("--seg_train_list", default="voc12/train_aug.txt", type=str)
    g.add_argument("--seg_infer_list", default="voc12/val.txt", type=str, help="images of make_seg and eval_seg")
    g.add_argument("--seg_pretrained", default=None, type=str,
                   help="a torchvision ResNet ImageNet state dict; 'none' trains from scratch (default: "
                        "torchvision's download)")
    g.add_argument("--seg_batch_size", default=None, type=int, help="crops per step (default: the recipe's)")
    g.add_argument("--seg_iter_size", default=None, type=int,
                   help="gradient accumulation steps per update (default: the recipe's)")
    g.add_argument("--seg_num_iters", default=None, type=int, help="updates (default: the recipe's)")
    g.add_argument("--seg_scales", default=None, type=float_list, nargs="+",
                   help="training scales, one drawn per crop (default: the recipe's)")
    g.add_argument("--seg_loss", default=None, choices=("balanced", "ce"), help="default: the recipe's")
    g.add_argument("--seg_crop_size", default=321, type=int)
    g.add_argument("--seg_learning_rate", default=2.5e-4, type=float, help="backbone lr; head weights 10x, biases 20x")
    g.add_argument("--seg_momentum", default=0.9, type=float)
    g.add_argument("--seg_weight_decay", default=5e-4, type=float)
    g.add_argument("--seg_poly_power", default=0.9, type=float)
    g.add_argument("--seg_train_backbone", default=True, type=str2bool,
                   help="False: train the head only (CPU demos)")
    g.add_argument("--seg_checkpoint_every", default=5000, type=int,
                   help="write <seg_weights_name>.ckpt every N iterations (and at the end); a rerun resumes")
    g.add_argument("--seg_amp", default=True, type=str2bool, help="bf16 autocast on CUDA (ignored on the CPU)")
    g.add_argument("--seg_weights_name", default="sess/seg.pth", type=str)
    g.add_argument("--seg_out_dir", default="result/seg", type=str)
    g.add_argument("--seg_crf", default=True, type=str2bool, help="also write CRF-refined maps (make_seg, eval_seg)")
    g.add_argument("--seg_crf_out_dir", default="result/seg_crf", type=str)
    g.add_argument("--seg_infer_scales", default=(0.5, 0.75, 1.0, 1.25, 1.5), type=float_list, nargs="+")
    g.add_argument("--seg_infer_flip", default=True, type=str2bool)
    g.add_argument("--seg_export_test", default=None, type=str, metavar="DIR",
                   help="make_seg also predicts --seg_test_list into DIR/results/VOC2012/Segmentation/"
                        "comp6_test_cls/ and packs DIR/results.tgz for the VOC evaluation server")
    g.add_argument("--seg_test_root", default=None, type=str, help="VOC2012 test folder (default: --voc12_root)")
    g.add_argument("--seg_test_list", default="voc12/test.txt", type=str)


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.cam_scales = flat_scales(args.cam_scales)
    args.seg_infer_scales = flat_scales(args.seg_infer_scales)
    args.seg_scales = flat_scales(args.seg_scales) if args.seg_scales else None
    check_network_flags(args, parser)
    check_flag_ranges(args, parser, FLAG_RANGES)
    if not any(getattr(args, f"{n}_pass") for n in PASSES):
        parser.exit(2, "run_sample.py: nothing to do: switch passes on, e.g. --train_cam_pass True "
                       "--make_cam_pass True --eval_cam_pass True\n")
    check_voc12_root(args.voc12_root, parser, "run_sample.py")
    for d in (os.path.dirname(args.cam_weights_name), os.path.dirname(args.irn_weights_name), args.cam_out_dir,
              args.ir_label_out_dir, args.sem_seg_out_dir, args.ins_seg_out_dir, os.path.dirname(args.log_name)):
        if d:
            os.makedirs(d, exist_ok=True)
    distributed.init(args.device)  # under torchrun: join the job (every pass then shards its work over the ranks)
    setup_logging(args.log_name + ".log")
    log.info("run_sample.py %s", " ".join(sys.argv[1:] if argv is None else argv))
    log.info("%s", distributed.describe())
    results = {}
    for name in PASSES:
        if getattr(args, f"{name}_pass"):
            log.info("step.%s: %s", MODULES[name], time.strftime("%Y-%m-%d %H:%M:%S"))
            module = importlib.import_module(f"advcam.steps.{MODULES[name]}")
            if args.seed is not None:
                seed_everything(args.seed)
            results[name] = module.run(args)
            if args.results_json and name.startswith("eval") and distributed.is_main():
                record_result(args.results_json, f"{name}:{EVALUATED_DIR[name](args)}", results[name])
            distributed.barrier()  # the next pass reads what every rank wrote
    distributed.shutdown()
    return results


EVALUATED_DIR = {"eval_cam": lambda a: a.cam_out_dir, "eval_sem_seg": lambda a: a.sem_seg_out_dir,
                 "eval_ins_seg": lambda a: a.ins_seg_out_dir, "eval_seg": lambda a: a.seg_out_dir}


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
    run_cli(main, "run_sample.py")
