"""Write a run report (figures, climbing animation, threshold sweep, per-class IoU, report.html).

``python -m advcam.tools.report --out demo_out`` reads the demo layout under OUT (cam/, cam_adv_mask/ with
cam_adv_mask/steps/, ir_label/, sem_seg/, seg/, results.json, *.log); each folder can be overridden. The dataset
(voc12 or coco14) and its root default to the --dataset and --voc12_root / --coco_root of the run's logged command
lines. Prints the path of report.html.
"""
from __future__ import annotations

import os
import sys

from advcam.datasets import DATASETS
from advcam.errors import UserError
from advcam.report import find_run_folders, make_report
from advcam.utils import ArgParser, program_name, run_cli, setup_logging


def build_parser() -> ArgParser:
    """The command line of ``report.py`` / ``advcam-report``."""
    p = ArgParser(description=__doc__.splitlines()[0], default_prog="report.py")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="the run's output folder, the demo's demo_out (needed unless --report_dir is given)")
    p.add_argument("--report_dir", default=None, help="where report.html and figures/ go (default: <out>/report)")
    p.add_argument("--voc12_root", default=None, help="images and ground truth (default: from the run's logs)")
    p.add_argument("--dataset", default=None, choices=DATASETS,
                   help="the run's dataset (default: coco14 with --coco_root, voc12 with --voc12_root, else the "
                        "--dataset of the run's logs, voc12 if they name none)")
    p.add_argument("--coco_root", default=None,
                   help="the COCO 2014 root of a --dataset coco14 run (default: from the run's logs, else COCO_ROOT)")
    p.add_argument("--cam_dir", default=None, help="plain CAM .npy folder (default: <out>/cam)")
    p.add_argument("--adv_dir", default=None, help="AdvCAM .npy folder (default: <out>/cam_adv_mask)")
    p.add_argument("--ir_label_dir", default=None, help="IR label PNGs (default: <out>/ir_label)")
    p.add_argument("--sem_seg_dir", default=None, help="IRN mask PNGs (default: <out>/sem_seg)")
    p.add_argument("--seg_dir", default=None, help="segmentation-network PNGs (default: <out>/seg)")
    p.add_argument("--steps_dir", default=None,
                   help="climbing steps of obtain_CAM_masking.py --save_steps (default: <adv_dir>/steps)")
    p.add_argument("--results_json", default=None, help="the run's recorded results (default: <out>/results.json)")
    p.add_argument("--log", default=None, nargs="+", metavar="FILE", help="log files (default: <out>/*.log)")
    p.add_argument("--eval_set", default="train", metavar="SET",
                   help="the ids scored: a split name (the VOC root's ImageSets/Segmentation/<set>.txt, else the "
                        "shipped voc12/<set>.txt; coco14: the shipped coco14/train14.txt or val14.txt) or a list "
                        "file")
    p.add_argument("--ids", default=None, metavar="IDS",
                   help="image ids for the figures, comma-separated (default: a sample)")
    p.add_argument("--num_images", default=6, type=int, help="images in the sample")
    p.add_argument("--seed", default=0, type=int, help="seed of the sample")
    return p


def main(argv: list[str] | None = None) -> str:
    p = build_parser()
    args = p.parse_args(argv)
    if args.out is None and args.report_dir is None:
        p.error("give --out (the run's folder) or --report_dir")
    setup_logging(None)
    try:
        folders = find_run_folders(args.out, args.voc12_root, cam_dir=args.cam_dir, adv_dir=args.adv_dir,
                                   ir_label_dir=args.ir_label_dir, sem_seg_dir=args.sem_seg_dir,
                                   seg_dir=args.seg_dir, results_json=args.results_json, log_files=args.log,
                                   steps_dir=args.steps_dir, dataset=args.dataset, coco_root=args.coco_root)
        ids = [i for i in (args.ids or "").replace(",", " ").split()] or None
        path = make_report(folders, args.report_dir or os.path.join(args.out, "report"), ids=ids,
                           num_images=args.num_images, eval_set=args.eval_set, seed=args.seed)
    except UserError as e:
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        sys.exit(2)
    print(path)
    return path


def cli() -> None:
    """Console entry point: a user error is printed as one line (exit status 2)."""
    run_cli(main, program_name("report.py"))


if __name__ == "__main__":
    cli()
