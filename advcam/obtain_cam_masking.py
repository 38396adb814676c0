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
from advcam.steps import make_advcam
from advcam.utils import (
    check_flag_ranges,
    check_network_flags,
    check_voc12_root,
    default_voc12_root,
    flat_scales,
    float_list,
    run_cli,
    setup_logging,
    str2bool,
)

TARGET_LAYERS = ("stage1", "stage2", "stage3", "stage4")


log = logging.getLogger("advcam")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--num_workers", default=os.cpu_count() // 2, type=int)
    p.add_argument("--voc12_root", default=default_voc12_root(), type=str)
    p.add_argument("--train_list", default="voc12/train.txt", type=str, help="the images processed")
    p.add_argument("--val_list", default="voc12/val.txt", type=str, help="unused (kept for compatibility)")
    p.add_argument("--infer_list", default="voc12/train.txt", type=str, help="unused (kept for compatibility)")
    p.add_argument("--chainer_eval_set", default="train", type=str, help="unused (kept for compatibility)")
    p.add_argument("--cls_labels", default=None, type=str,
                   help="cls_labels.npy (default: built from <voc12_root>/Annotations and cached)")
    p.add_argument("--cam_network", default="net.resnet50_cam", type=str)
    p.add_argument("--cam_crop_size", default=512, type=int, help="unused (kept for compatibility)")
    p.add_argument("--cam_batch_size", default=2, type=int, help="unused (kept for compatibility)")
    p.add_argument("--cam_num_epoches", default=5, type=int, help="unused (kept for compatibility)")
    p.add_argument("--cam_learning_rate", default=0.1, type=float, help="unused (kept for compatibility)")
    p.add_argument("--cam_weight_decay", default=1e-4, type=float, help="unused (kept for compatibility)")
    p.add_argument("--cam_eval_thres", default=0.15, type=float, help="unused (kept for compatibility)")
    p.add_argument("--cam_scales", default=(1.0, 0.5, 1.5, 2.0), type=float_list, nargs="+",
                   help="e.g. 1.0 0.5 1.5 2.0 or 1.0,0.5,1.5,2.0")
    p.add_argument("--cam_weights_name", default="sess/res50_cam.pth", type=str,
                   help="classifier weights (the reference's <name>.pth is found too)")
    p.add_argument("--target_layer", default="stage4", type=str, help=f"one of {', '.join(TARGET_LAYERS)}")
    p.add_argument("--cam_out_dir", default="result/cam_adv_mask", type=str)
    p.add_argument("--adv_iter", default=27, type=int, help="T: climbing steps per class and scale")
    p.add_argument("--AD_coeff", default=7, type=float, help="lambda: weight of the restriction term")
    p.add_argument("--AD_stepsize", default=0.08, type=float, help="xi: step size")
    p.add_argument("--score_th", default=0.5, type=float, help="tau: restricting-mask threshold")
    p.add_argument("--engine", default="fast", choices=("reference", "fast"))
    p.add_argument("--amp", default=False, type=str2bool,
                   help="bf16 autocast in the fast engine (meant for CUDA; also runs, slowly, on the CPU)")
    p.add_argument("--max_batch_pixels", default=DEFAULT_MAX_BATCH_PIXELS, type=int,
                   help="fast engine: climbs of one scale are batched up to this many input pixels "
                        "(batch x h x w); lower it if the GPU runs out of memory")
    p.add_argument("--images_per_batch", default=1, type=int,
                   help="fast engine: group up to this many consecutive images of equal size into one climbing "
                        "batch (useful on GPUs, which one image's few classes under-fill); does not change the maps")
    p.add_argument("--device", default=None, type=str, help="one torch device (default: every visible GPU)")
    p.add_argument("--skip_bad_images", default=False, type=str2bool,
                   help="log and skip unreadable images instead of stopping")
    p.add_argument("--log_name", default=None, type=str, help="also append the log to <log_name>.log")
    p.add_argument("--save_steps", default=None, type=str, nargs="+", metavar="ID[,ID...]",
                   help="also write the map after every climbing step of these images to <cam_out_dir>/steps/<id>.npy "
                        "(for scripts/report.py's animation)")
    return p


FLAG_RANGES = {"num_workers": "nonnegative", "cam_scales": "positive", "AD_coeff": "nonnegative",
               "score_th": "fraction", "max_batch_pixels": "positive"}


def validate_args(args, parser: argparse.ArgumentParser) -> None:
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
    check_voc12_root(args.voc12_root, parser, "obtain_CAM_masking.py")


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.cam_scales = flat_scales(args.cam_scales)
    check_network_flags(args, parser)
    validate_args(args, parser)
    distributed.init(args.device)  # under torchrun: join the job, each rank takes an exact shard of the images
    setup_logging(args.log_name + ".log" if args.log_name else None)
    log.info("%s", distributed.describe())
    stats = make_advcam.run(args)
    distributed.shutdown()
    return stats


def cli() -> None:
    run_cli(main, "obtain_CAM_masking.py")
