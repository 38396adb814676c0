"""Check a VOC root before a long run: every listed image has its JPEG, ground truth and image-level label.

``advcam-check-voc --voc12_root DIR [--train_list voc12/train_aug.txt] [--train_seg_list voc12/train.txt]
[--val_list voc12/val.txt] [--test_list voc12/test.txt] [--chainer_eval_set train] [--cls_labels FILE]``

(or ``python -m advcam.tools.check_voc``). Lists are found as the pipeline finds them (the path as given, else the
shipped ``voc12/<name>``, else ``<voc12_root>/ImageSets/Segmentation/<name>``; the evaluated split
``--chainer_eval_set`` as the eval passes find it: a split name reads the root's ``ImageSets/Segmentation/<set>.txt``,
else the shipped ``voc12/<set>.txt``; a path is read as given); ``none`` leaves a list out. Prints the counts per
list; exits 0 when nothing is missing, 1 naming the first missing files (one a line) and what to do, 2 on a usage
error. ``--ignore_other_flags`` accepts (and ignores) the other flags of run_sample.py / obtain_CAM_masking.py, so a
script can pass the pipeline's arguments on unchanged.
"""
from __future__ import annotations

import os
import sys

from advcam.errors import UserError
from advcam.utils import ArgParser, program_name, run_cli
from advcam.voc12.check import check_voc, default_specs


def _list(value: str) -> str | None:
    return None if value.lower() in ("", "none") else value


def build_parser() -> ArgParser:
    """The command line of ``check_voc.py`` / ``advcam-check-voc``."""
    p = ArgParser(description=__doc__.splitlines()[0], default_prog="check_voc.py")
    p.add_argument("--voc12_root", default=os.environ.get("VOC12_ROOT"), type=str,
                   help="the VOC 2012 folder (default: $VOC12_ROOT)")
    p.add_argument("--train_list", metavar="FILE", default="voc12/train_aug.txt", type=_list,
                   help="classifier / AdvCAM / IRN images: JPEG and label")
    p.add_argument("--train_seg_list", metavar="FILE", default="voc12/train.txt", type=_list,
                   help="the VOC train split (seeds and masks are scored on it): JPEG, PNG and label")
    p.add_argument("--val_list", metavar="FILE", default="voc12/val.txt", type=_list, help="JPEG, PNG and label")
    p.add_argument("--test_list", metavar="FILE", default=None, type=_list,
                   help="JPEG only, e.g. voc12/test.txt (default: not checked)")
    p.add_argument("--chainer_eval_set", metavar="SET", default="train", type=_list,
                   help="the ids the eval passes score, a split name (the root's ImageSets/Segmentation/<set>.txt, "
                        "else the shipped voc12/<set>.txt) or a list file: PNG")
    p.add_argument("--cls_labels", default=None, type=str,
                   help="the --cls_labels file the pipeline is given (default: the labels it would pick)")
    p.add_argument("--max_lines", default=10, type=int, help="missing files listed at most")
    p.add_argument("--ignore_other_flags", action="store_true",
                   help="ignore flags of the pipeline scripts that this check does not use")
    return p


def main(argv: list[str] | None = None) -> int:
    """Check the root; return the exit status (0 complete, 1 files missing, 2 usage error)."""
    p = build_parser()
    args, rest = p.parse_known_args(argv)
    if rest and not args.ignore_other_flags:
        p.error(f"unrecognized arguments: {' '.join(rest)}")
    if not args.voc12_root:
        p.error("no VOC root: pass --voc12_root DIR or set VOC12_ROOT")
    specs = default_specs(args.voc12_root, args.train_list, args.train_seg_list, args.val_list, args.test_list,
                          args.chainer_eval_set)
    try:
        report = check_voc(args.voc12_root, specs, args.cls_labels)
    except UserError as e:
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 2
    print(f"check_voc: {args.voc12_root}")
    print("\n".join(report.count_lines()))
    if report.ok:
        print(report.summary())
        return 0
    print("\n".join(report.problem_lines(args.max_lines) + [report.summary()]), file=sys.stderr)
    return 1


def cli() -> None:
    """Console entry point (``advcam-check-voc``): exits with :func:`main`'s status."""
    run_cli(lambda: sys.exit(main()), program_name("check_voc.py"))


if __name__ == "__main__":
    cli()
