"""``obtain_CAM_masking.py``: AdvCAM seeds (anti-adversarial climbing) for every image of ``--train_list``.

Flags, defaults and output format are the reference's; known defects are fixed (``--AD_coeff``
takes floats, ``--cam_scales`` parses a list, the weights file is used as given with a fallback to
the reference's ``<name>.pth``, no hard-coded CUDA device list).
"""
from __future__ import annotations

import argparse
import logging
import os

from advcam import distributed
from advcam.advcam import DEFAULT_MAX_BATCH_PIXELS
from advcam.datasets import add_dataset_flags, apply_dataset_defaults, check_dataset_root
from advcam.io import add_cam_format_flag
from advcam.steps import make_advcam
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
    setup_logging,
    str2bool,
)

TARGET_LAYERS = ("stage1", "stage2", "stage3", "stage4")


log = logging.getLogger("advcam")


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``obtain_CAM_masking.py``: the reference's flags and defaults."""
    p = ArgParser(description="AdvCAM seeds (anti-adversarial climbing) for every image of --train_list.",
                  default_prog="obtain_CAM_masking.py",
                  usage="%(prog)s [--voc12_root DIR] [--train_list FILE] [--cam_weights_name FILE] [options]")
    g = p.add_argument_group("environment and data")
    g.add_argument("--num_workers", default=os.cpu_count() // 2, type=int,
                   help="data-loading worker processes (half the CPU cores); 0 loads in the main process")
    g.add_argument("--voc12_root", default=default_voc12_root(), type=str,
                   help="VOC2012 devkit root (JPEGImages, and Annotations for the labels); the environment variable "
                        "VOC12_ROOT sets the default")
    add_dataset_flags(g)
    g.add_argument("--train_list", default="voc12/train.txt", type=str,
                   help="the images processed (a list file; voc12/<split>.txt are shipped)")
    g.add_argument("--cls_labels", default=None, type=str,
                   help="image-level labels, a cls_labels.npy (default: built from <voc12_root>/Annotations and "
                        "cached, else the shipped voc12/cls_labels.npy)")
    g.add_argument("--device", default=None, type=str,
                   help="one torch device, e.g. cuda:1 or cpu (default: this rank's GPU under torchrun, else every "
                        "visible GPU, else the CPU)")
    g.add_argument("--skip_bad_images", default=False, type=str2bool,
                   help="log and skip unreadable images instead of stopping")
    g.add_argument("--log_name", default=None, type=str,
                   help="also append the log to <log_name>.log (default: the console only)")

    g = p.add_argument_group("network")
    g.add_argument("--cam_network", default="net.resnet50_cam", type=str,
                   help="CAM network module: net.resnet50_cam or net.efficientnet_lite0_cam")
    g.add_argument("--cam_weights_name", default="sess/res50_cam.pth", type=str,
                   help="classifier weights (the reference's <name>.pth is found too)")
    g.add_argument("--target_layer", default="stage4", type=str,
                   help=f"the Grad-CAM layer, one of {', '.join(TARGET_LAYERS)} (the fast engine needs stage4)")

    g = p.add_argument_group("anti-adversarial climbing")
    g.add_argument("--adv_iter", default=27, type=int, help="T: climbing steps per class and scale")
    g.add_argument("--AD_coeff", default=7, type=float, help="lambda: weight of the restriction term")
    g.add_argument("--AD_stepsize", default=0.08, type=float, help="xi: step size")
    g.add_argument("--score_th", default=0.5, type=float, help="tau: restricting-mask threshold")
    g.add_argument("--cam_scales", default=(1.0, 0.5, 1.5, 2.0), type=float_list, nargs="+",
                   help="inference scales, fused; e.g. 1.0 0.5 1.5 2.0 or 1.0,0.5,1.5,2.0")
    g.add_argument("--engine", default="fast", choices=("reference", "fast"),
                   help="reference: the literal climb with hooks, one class at a time; fast: the same maps, all "
                        "classes batched")
    g.add_argument("--amp", default=False, type=str2bool,
                   help="bf16 autocast in the fast engine (meant for CUDA; also runs, slowly, on the CPU)")
    g.add_argument("--max_batch_pixels", default=DEFAULT_MAX_BATCH_PIXELS, type=int,
                   help="fast engine: climbs of one scale are batched up to this many input pixels "
                        "(batch x h x w); lower it if the GPU runs out of memory")
    g.add_argument("--images_per_batch", default=1, type=int,
                   help="fast engine: group up to this many consecutive images of equal size into one climbing "
                        "batch (useful on GPUs, which one image's few classes under-fill); does not change the maps")

    g = p.add_argument_group("outputs")
    g.add_argument("--cam_out_dir", default="result/cam_adv_mask", type=str, help="the seeds <id>.npy")
    add_cam_format_flag(g)
    g.add_argument("--save_steps", default=None, type=str, nargs="+", metavar="ID[,ID...]",
                   help="also write the map after every climbing step of these images to <cam_out_dir>/steps/<id>.npy "
                        "for scripts/report.py's animation (default: none)")

    g = p.add_argument_group("accepted for compatibility, ignored",
                             "the reference's flags of the other passes; set them in run_sample.py")
    for flag, default, kind in COMPAT_FLAGS:
        g.add_argument(f"--{flag}", default=default, type=kind, help="ignored")
    return p


COMPAT_FLAGS = (("val_list", "voc12/val.txt", str), ("infer_list", "voc12/train.txt", str),
                ("chainer_eval_set", "train", str), ("cam_crop_size", 512, int), ("cam_batch_size", 2, int),
                ("cam_num_epoches", 5, int), ("cam_learning_rate", 0.1, float), ("cam_weight_decay", 1e-4, float),
                ("cam_eval_thres", 0.15, float))


FLAG_RANGES = {"num_workers": "nonnegative", "cam_scales": "positive", "AD_coeff": "nonnegative",
               "score_th": "fraction", "max_batch_pixels": "positive"}


def validate_args(args, parser: argparse.ArgumentParser, argv: list[str] | None = None) -> None:
    if args.target_layer not in TARGET_LAYERS:
        parser.error(f"--target_layer {args.target_layer!r} is not a layer of the CAM network; "
                     f"valid layers: {', '.join(TARGET_LAYERS)}")
    if args.engine == "fast" and args.target_layer != "stage4":
        parser.error("--engine fast needs --target_layer stage4 (its Grad-CAM closed form holds there); "
                     "use --engine reference for other layers")
    if args.images_per_batch < 1:
        parser.error(f"--images_per_batch must be >= 1, got {args.images_per_batch}")
    if args.adv_iter < 1:
        parser.error(f"--adv_iter must be >= 1, got {args.adv_iter}")
    if args.AD_stepsize <= 0:
        parser.error(f"--AD_stepsize must be > 0, got {args.AD_stepsize}: the climb ascends the class score "
                     "(anti-adversarial); a negative step would run an adversarial (descending) attack")
    check_flag_ranges(args, parser, FLAG_RANGES)
    apply_dataset_defaults(args, parser, {"train_list": "train"}, argv)
    if not check_dataset_root(args, parser):
        check_voc12_root(args.voc12_root, parser, parser.prog)


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.cam_scales = flat_scales(args.cam_scales)
    check_network_flags(args, parser)
    validate_args(args, parser, argv)
    distributed.init(args.device)  # under torchrun: join the job, each rank takes an exact shard of the images
    setup_logging(args.log_name + ".log" if args.log_name else None)
    log.info("%s", distributed.describe())
    stats = make_advcam.run(args)
    check_all_unreadable(stats, args)
    distributed.shutdown()
    return stats


def cli() -> None:
    """The ``obtain_CAM_masking.py`` / ``advcam-obtain-cam`` command."""
    run_cli(main, program_name("obtain_CAM_masking.py"))


if __name__ == "__main__":  # python -m advcam.obtain_cam_masking (the shell pipelines run it so)
    cli()
