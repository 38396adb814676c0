"""``run_sample.py``: the IRN/AdvCAM pipeline driver, with the AdvCAM version's flags and defaults.

Passes run in the reference's fixed order, each switched on with ``--<name>_pass True``:
train_cam, make_cam, eval_cam, cam_to_ir_label, train_irn, make_ins_seg, eval_ins_seg, make_sem_seg,
eval_sem_seg, train_seg, make_seg, eval_seg. Artefacts live on disk between passes, so any pass can be rerun alone;
a pass makes only the output folders it writes.
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
from advcam.datasets import add_dataset_flags, apply_dataset_defaults, check_dataset_root, refuse_unsupported
from advcam.io import add_cam_format_flag, atomic_path
from advcam.semi import add_semi_flags
from advcam.utils import (
    ArgParser,
    check_all_unreadable,
    check_flag_ranges,
    check_network_flags,
    check_voc12_root,
    default_voc12_root,
    flat_scales,
    float_list,
    program_name,
    run_cli,
    seed_everything,
    setup_logging,
    str2bool,
)

log = logging.getLogger("advcam")

PASSES = ("train_cam", "make_cam", "eval_cam", "cam_to_ir_label", "train_irn", "make_ins_seg", "eval_ins_seg",
          "make_sem_seg", "eval_sem_seg", "train_seg", "train_semi", "make_seg", "eval_seg")
MODULES = {"train_cam": "train_cam", "make_cam": "make_cam", "eval_cam": "eval_cam",
           "cam_to_ir_label": "cam_to_ir_label", "train_irn": "train_irn", "make_ins_seg": "make_ins_seg_labels",
           "eval_ins_seg": "eval_ins_seg", "make_sem_seg": "make_sem_seg_labels", "eval_sem_seg": "eval_sem_seg",
           "train_seg": "train_seg", "train_semi": "train_semi", "make_seg": "make_seg", "eval_seg": "eval_seg"}


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
    "semi_batch_size": "positive", "semi_unlabeled_batch_size": "positive", "semi_crop_size": "positive",
    "semi_epochs": "positive", "semi_checkpoint_every": "positive",
}


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``run_sample.py``: the reference's flags and defaults, grouped by the pass that reads
    them."""
    p = ArgParser(description="The IRN/AdvCAM pipeline driver, with the AdvCAM version's flags and defaults.",
                  default_prog="run_sample.py",
                  usage="%(prog)s [--voc12_root DIR] [options] --<pass>_pass True [--<pass>_pass True ...]")
    g = p.add_argument_group("environment and data")
    g.add_argument("--num_workers", default=os.cpu_count() // 2, type=int,
                   help="data-loading worker processes per pass (half the CPU cores); 0 loads in the main process")
    g.add_argument("--voc12_root", default=default_voc12_root(), type=str,
                   help="VOC2012 devkit root (JPEGImages, SegmentationClass, ImageSets/Segmentation); "
                        "the environment variable VOC12_ROOT sets the default")
    add_dataset_flags(g)
    g.add_argument("--device", default=None, type=str,
                   help="torch device, e.g. cuda:1 or cpu (default: this rank's GPU under torchrun, else every "
                        "visible GPU for the CAM passes and the current one otherwise, else the CPU)")
    g.add_argument("--seed", default=None, type=int,
                   help="seed the random generators before each pass, so that a pass rerun alone repeats itself "
                        "(default: unseeded, as the reference)")
    g.add_argument("--train_list", default="voc12/train_aug.txt", type=str,
                   help="images of train_cam, make_cam, cam_to_ir_label and train_irn (a list file; voc12/<split>.txt "
                        "are shipped)")
    g.add_argument("--val_list", default="voc12/val.txt", type=str, help="images train_cam validates on")
    g.add_argument("--infer_list", default="voc12/train_aug.txt", type=str,
                   help="images of make_sem_seg and make_ins_seg, and of train_irn's mean displacement")
    g.add_argument("--chainer_eval_set", default="train", type=str,
                   help="ids that eval_cam, eval_sem_seg and eval_ins_seg score: a split name (train, val, ...: "
                        "<voc12_root>/ImageSets/Segmentation/<name>.txt, else the shipped voc12/<name>.txt) or the "
                        "path of a list file")
    g.add_argument("--cls_labels", default=None, type=str,
                   help="image-level labels, a cls_labels.npy (default: built from <voc12_root>/Annotations and "
                        "cached, else the shipped voc12/cls_labels.npy)")

    g = p.add_argument_group("train_cam: the classifier")
    g.add_argument("--cam_network", default="net.resnet50_cam", type=str,
                   help="CAM network module: net.resnet50_cam or net.efficientnet_lite0_cam")
    g.add_argument("--cam_crop_size", default=512, type=int, help="random crop of classifier training")
    g.add_argument("--cam_resize_long", default=(320, 640), type=int, nargs=2, metavar=("MIN", "MAX"),
                   help="random long-side resize range of classifier training")
    g.add_argument("--cam_batch_size", default=16, type=int, help="images per step (global, over all ranks)")
    g.add_argument("--cam_num_epoches", default=5, type=int, help="training epochs")
    g.add_argument("--cam_learning_rate", default=0.1, type=float,
                   help="learning rate of the backbone (the head gets 10x), poly decay")
    g.add_argument("--cam_weight_decay", default=1e-4, type=float, help="weight decay")
    g.add_argument("--cam_momentum", default=0.0, type=float,
                   help="SGD momentum of classifier training (the reference trains with none; 0.9 helps from scratch)")
    g.add_argument("--cam_optimizer", default="sgd", choices=("sgd", "adam"),
                   help="sgd: the reference poly-lr SGD; adam: AdamW with the same poly decay (from scratch)")
    g.add_argument("--pretrained", default=None, type=str,
                   help="torchvision ResNet-50 ImageNet state dict (default: torchvision's download)")
    g.add_argument("--no_pretrained", default=False, type=str2bool, help="train the classifier from scratch")

    g = p.add_argument_group("make_cam and eval_cam: CAM seeds")
    g.add_argument("--cam_scales", default=(1.0, 0.5, 1.5, 2.0), type=float_list, nargs="+",
                   help="inference scales of make_cam, e.g. 1.0 0.5 1.5 2.0 or 1.0,0.5,1.5,2.0")
    g.add_argument("--skip_bad_images", default=False, type=str2bool,
                   help="make_cam logs and skips unreadable images instead of stopping")

    g = p.add_argument_group("cam_to_ir_label: IRN training labels from the seeds")
    g.add_argument("--conf_fg_thres", default=0.35, type=float,
                   help="background score of the confident foreground (argmax over the seeds, then the dense CRF)")
    g.add_argument("--conf_bg_thres", default=0.15, type=float,
                   help="background score of the confident background; pixels in neither are ignored (255)")

    g = p.add_argument_group("train_irn: the inter-pixel relation network")
    g.add_argument("--irn_network", default="net.resnet50_irn", type=str,
                   help="IRN network module: net.resnet50_irn or net.efficientnet_lite0_irn")
    g.add_argument("--irn_crop_size", default=512, type=int, help="random crop of IRN training")
    g.add_argument("--irn_batch_size", default=32, type=int, help="crops per step (global, over all ranks)")
    g.add_argument("--irn_num_epoches", default=3, type=int, help="training epochs")
    g.add_argument("--irn_learning_rate", default=0.1, type=float,
                   help="learning rate of the edge branch (the displacement branch gets 10x), poly decay")
    g.add_argument("--irn_weight_decay", default=1e-4, type=float, help="weight decay")
    g.add_argument("--irn_optimizer", default="sgd", choices=("sgd", "adam"),
                   help="sgd: the reference poly-lr SGD; adam: AdamW with the same poly decay (a backbone trained "
                        "from scratch; use --irn_learning_rate 0.001)")

    g = p.add_argument_group("random walk: make_sem_seg and make_ins_seg")
    g.add_argument("--irn_infer_pad", default=512, type=int,
                   help="IRN inference zero-pads each image to at least this size (rounded up to 16), as the "
                        "reference always pads to 512")
    g.add_argument("--beta", default=10, type=float,
                   help="exponent of the affinities, (1 - edge)^beta, of the random walk")
    g.add_argument("--exp_times", default=8, type=int, help="the transition matrix is squared this many times")
    g.add_argument("--ins_seg_bg_thres", default=0.25, type=float, help="background score of make_ins_seg")
    g.add_argument("--sem_seg_bg_thres", default=0.25, type=float, help="background score of make_sem_seg")

    add_seg_flags(p)
    add_semi_flags(p)

    g = p.add_argument_group("outputs")
    g.add_argument("--log_name", default="sample_train_eval", type=str, help="the log is appended to <log_name>.log")
    g.add_argument("--cam_weights_name", default="sess/res50_cam.pth", type=str,
                   help="classifier weights: written by train_cam, read by make_cam and train_irn")
    g.add_argument("--irn_weights_name", default="sess/res50_irn.pth", type=str,
                   help="IRN weights: written by train_irn, read by make_sem_seg and make_ins_seg")
    g.add_argument("--cam_out_dir", default="result/cam_adv_mask", type=str,
                   help="CAM seeds <id>.npy: written by make_cam (or obtain_CAM_masking.py), read by eval_cam, "
                        "cam_to_ir_label and the random walk")
    add_cam_format_flag(g)
    g.add_argument("--ir_label_out_dir", default="result/ir_label", type=str,
                   help="IRN labels <id>.png: written by cam_to_ir_label, read by train_irn")
    g.add_argument("--sem_seg_out_dir", default="result/sem_seg", type=str,
                   help="semantic pseudo masks <id>.png: written by make_sem_seg, read by eval_sem_seg and train_seg")
    g.add_argument("--ins_seg_out_dir", default="result/ins_seg", type=str,
                   help="instance pseudo labels <id>.npy: written by make_ins_seg, read by eval_ins_seg")
    g.add_argument("--results_json", default=None, type=str,
                   help="record each evaluation's numbers in this JSON file, keyed by pass and folder (default: "
                        "not recorded)")

    g = p.add_argument_group("passes", "each switched on with True; they run in this order")
    for name in PASSES:
        g.add_argument(f"--{name}_pass", default=False, type=str2bool, help=PASS_HELP[name])

    g = p.add_argument_group("accepted for compatibility, ignored")
    g.add_argument("--cam_eval_thres", default=0.15, type=float,
                   help="the reference's eval_cam threshold; eval_cam sweeps the thresholds and reports the best")
    return p


PASS_HELP = {
    "train_cam": "train the classifier on --train_list",
    "make_cam": "plain multi-scale CAM seeds of --train_list (obtain_CAM_masking.py writes the AdvCAM ones)",
    "eval_cam": "mIoU of the seeds against the ground truth, sweeping the background threshold",
    "cam_to_ir_label": "IRN training labels from the seeds (confident foreground and background, dense CRF)",
    "train_irn": "train IRN on the IRN labels",
    "make_ins_seg": "instance pseudo labels of --infer_list by the random walk",
    "eval_ins_seg": "instance mAP of the instance pseudo labels",
    "make_sem_seg": "semantic pseudo masks of --infer_list by the random walk",
    "eval_sem_seg": "mIoU of the semantic pseudo masks",
    "train_seg": "train the segmentation network on the pseudo masks",
    "train_semi": "semi-supervised CCT on a few ground-truth masks + the pseudo masks as weak labels (docs/semi.md)",
    "make_seg": "predict --seg_infer_list with the segmentation network",
    "eval_seg": "mIoU of the segmentation network's predictions",
}


def add_seg_flags(p: argparse.ArgumentParser) -> None:
    """The flags of stage 3 (train_seg, make_seg, eval_seg); see docs/segmentation.md."""
    g = p.add_argument_group("stage 3: the segmentation network", "train_seg, make_seg, eval_seg "
                             "(docs/segmentation.md; --dataset coco14: docs/coco.md)")
    g.add_argument("--seg_network", default="deeplab_v2", type=str,
                   help="deeplab_v2 (ResNet-101), deeplabv3_resnet101, deeplabv3_resnet50 or efficientnet_lite0_seg")
    g.add_argument("--seg_recipe", default="advcam", choices=("advcam", "deeplab-pytorch", "coco"),
                   help="advcam: batch 10, 30k iterations, scales 0.5-2.0, balanced CE (AdvCAM#9); deeplab-pytorch: "
                        "5 x 2 accumulation, 20k iterations, scales 0.5-1.5, plain CE (configs/voc12.yaml); coco: "
                        "10 x 2 accumulation, 100k iterations, scales 0.5-1.5, plain CE (LPCAM#3) (default: advcam; "
                        "coco with --dataset coco14)")
    g.add_argument("--seg_label_dir", default=None, type=str,
                   help="training labels <id>.png; <voc12_root>/SegmentationClass (coco14: <coco_root>/mask/"
                        "train2014) gives the fully supervised baseline (default: --sem_seg_out_dir)")
    g.add_argument("--seg_train_list", default="voc12/train_aug.txt", type=str,
                   help="images of train_seg (default: voc12/train_aug.txt; coco14/train14.txt with --dataset coco14)")
    g.add_argument("--seg_infer_list", default="voc12/val.txt", type=str,
                   help="images of make_seg and eval_seg (default: voc12/val.txt; coco14/val14.txt with --dataset "
                        "coco14)")
    g.add_argument("--seg_pretrained", default=None, type=str,
                   help="a torchvision ResNet ImageNet state dict; 'none' trains from scratch (default: "
                        "torchvision's download)")
    g.add_argument("--seg_batch_size", default=None, type=int, help="crops per step (default: the recipe's)")
    g.add_argument("--seg_iter_size", default=None, type=int,
                   help="gradient accumulation steps per update (default: the recipe's)")
    g.add_argument("--seg_num_iters", default=None, type=int, help="updates (default: the recipe's)")
    g.add_argument("--seg_scales", default=None, type=float_list, nargs="+",
                   help="training scales, one drawn per crop (default: the recipe's)")
    g.add_argument("--seg_loss", default=None, choices=("balanced", "ce"),
                   help="balanced or plain cross-entropy (default: the recipe's)")
    g.add_argument("--seg_crop_size", default=321, type=int, help="random crop of train_seg")
    g.add_argument("--seg_learning_rate", default=2.5e-4, type=float,
                   help="backbone lr; head weights 10x, biases 20x (default: 2.5e-4; 2e-4 with --dataset coco14)")
    g.add_argument("--seg_momentum", default=0.9, type=float, help="SGD momentum")
    g.add_argument("--seg_weight_decay", default=5e-4, type=float, help="weight decay")
    g.add_argument("--seg_poly_power", default=0.9, type=float, help="power of the poly learning-rate decay")
    g.add_argument("--seg_train_backbone", default=True, type=str2bool,
                   help="False: train the head only (CPU demos)")
    g.add_argument("--seg_checkpoint_every", default=5000, type=int,
                   help="write <seg_weights_name>.ckpt every N iterations (and at the end); a rerun resumes")
    g.add_argument("--seg_amp", default=True, type=str2bool, help="bf16 autocast on a GPU with native bf16")
    g.add_argument("--seg_weights_name", default="sess/seg.pth", type=str,
                   help="segmentation weights: written by train_seg, read by make_seg")
    g.add_argument("--seg_out_dir", default="result/seg", type=str,
                   help="predictions <id>.png of make_seg, scored by eval_seg")
    g.add_argument("--seg_crf", default=True, type=str2bool, help="also write CRF-refined maps (make_seg, eval_seg)")
    g.add_argument("--seg_crf_out_dir", default="result/seg_crf", type=str,
                   help="CRF-refined predictions <id>.png (with --seg_crf True)")
    g.add_argument("--seg_infer_scales", default=(0.5, 0.75, 1.0, 1.25, 1.5), type=float_list, nargs="+",
                   help="make_seg's inference scales, averaged")
    g.add_argument("--seg_infer_flip", default=True, type=str2bool,
                   help="make_seg also averages the mirrored image")
    g.add_argument("--seg_export_test", default=None, type=str, metavar="DIR",
                   help="make_seg also predicts --seg_test_list into DIR/results/VOC2012/Segmentation/"
                        "comp6_test_cls/ and packs DIR/results.tgz for the VOC evaluation server, --dataset voc12 "
                        "only (default: no export)")
    g.add_argument("--seg_test_root", default=None, type=str,
                   help="VOC2012 test folder of --seg_export_test (default: --voc12_root)")
    g.add_argument("--seg_test_list", default="voc12/test.txt", type=str, help="images of --seg_export_test")


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.cam_scales = flat_scales(args.cam_scales)
    args.seg_infer_scales = flat_scales(args.seg_infer_scales)
    args.seg_scales = flat_scales(args.seg_scales) if args.seg_scales else None
    check_network_flags(args, parser)
    check_flag_ranges(args, parser, FLAG_RANGES)
    if not any(getattr(args, f"{n}_pass") for n in PASSES):
        parser.exit(2, f"{parser.prog}: error: nothing to do: switch passes on, e.g. --train_cam_pass True "
                       "--make_cam_pass True --eval_cam_pass True\n")
    refuse_unsupported(args, parser, COCO_NOT_YET)
    apply_dataset_defaults(args, parser, {"train_list": "train", "val_list": "val", "infer_list": "infer",
                                          "seg_train_list": "seg_train", "seg_infer_list": "seg_infer"}, argv)
    if not check_dataset_root(args, parser):
        check_voc12_root(args.voc12_root, parser, parser.prog)
    if os.path.dirname(args.log_name):
        os.makedirs(os.path.dirname(args.log_name), exist_ok=True)
    distributed.init(args.device)  # under torchrun: join the job (every pass then shards its work over the ranks)
    setup_logging(args.log_name + ".log")
    log.info("%s %s", parser.prog, " ".join(sys.argv[1:] if argv is None else argv))
    log.info("%s", distributed.describe())
    results = {}
    for name in PASSES:
        if getattr(args, f"{name}_pass"):
            log.info("step.%s: %s", MODULES[name], time.strftime("%Y-%m-%d %H:%M:%S"))
            module = importlib.import_module(f"advcam.steps.{MODULES[name]}")
            if args.seed is not None:
                seed_everything(args.seed)
            for d in OUTPUT_DIRS.get(name, lambda a: [])(args):  # only the folders of a pass that runs
                if d:
                    os.makedirs(d, exist_ok=True)
            results[name] = module.run(args)
            if name == "make_cam":
                check_all_unreadable(results[name], args)
            if args.results_json and name.startswith("eval") and distributed.is_main():
                record_result(args.results_json, f"{name}:{EVALUATED_DIR[name](args)}", results[name])
            distributed.barrier()  # the next pass reads what every rank wrote
    distributed.shutdown()
    return results


COCO_NOT_YET = ("eval_ins_seg",)  # voc12 only for now

OUTPUT_DIRS = {  # the folders each writing pass fills (the evaluations write none)
    "train_cam": lambda a: [os.path.dirname(a.cam_weights_name)],
    "make_cam": lambda a: [a.cam_out_dir],
    "cam_to_ir_label": lambda a: [a.ir_label_out_dir],
    "train_irn": lambda a: [os.path.dirname(a.irn_weights_name)],
    "make_ins_seg": lambda a: [a.ins_seg_out_dir],
    "make_sem_seg": lambda a: [a.sem_seg_out_dir],
    "train_seg": lambda a: [os.path.dirname(a.seg_weights_name)],
    "train_semi": lambda a: [os.path.dirname(a.semi_weights_name)],
    "make_seg": lambda a: [a.seg_out_dir] + ([a.seg_crf_out_dir] if a.seg_crf else []),
}
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
    """The ``run_sample.py`` / ``advcam-run-sample`` command."""
    run_cli(main, program_name("run_sample.py"))


if __name__ == "__main__":  # python -m advcam.run_sample (the shell pipelines run it so)
    cli()
