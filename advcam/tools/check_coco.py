"""Check a COCO 2014 root before a long run: each split's json, every listed image and its mask.

``python -m advcam.tools.check_coco --coco_root ROOT [--split train2014 val2014] [--train_list FILE]
[--val_list FILE] [--no_masks]``

The json must be a COCO instances file of its split; the lists default to the shipped coco14/train14.txt and
coco14/val14.txt (all 82,783 and 40,504 images). Prints the counts per split; exits 0 when nothing is missing,
1 naming the first missing files and what to do (the masks: the make_coco_masks command), 2 on a bad root, json
or flag (one line).
"""
from __future__ import annotations

import os
import sys

from advcam.coco14 import SPLITS
from advcam.coco14.check import check_coco, problem_lines
from advcam.errors import BadInputError
from advcam.utils import ArgParser


def build_parser() -> ArgParser:
    p = ArgParser(default_prog="check_coco.py", description=__doc__.splitlines()[0])
    p.add_argument("--coco_root", default=os.environ.get("COCO_ROOT"),
                   help="the COCO 2014 folder (default: $COCO_ROOT)")
    p.add_argument("--split", nargs="+", default=list(SPLITS), choices=SPLITS, help="the splits to check")
    p.add_argument("--train_list", default=None, help="train2014 ids to check (default: coco14/train14.txt)")
    p.add_argument("--val_list", default=None, help="val2014 ids to check (default: coco14/val14.txt)")
    p.add_argument("--no_masks", action="store_true", help="do not check the ground-truth masks")
    p.add_argument("--max_lines", default=10, type=int, help="missing files listed at most, per kind")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.coco_root:
        raise BadInputError("no COCO root: pass --coco_root ROOT or set COCO_ROOT")
    lists = {"train2014": args.train_list, "val2014": args.val_list}
    reports = check_coco(args.coco_root, {s: lists[s] for s in dict.fromkeys(args.split)}, masks=not args.no_masks)
    print(f"check_coco: {args.coco_root}")
    for r in reports:
        print(r.count_line())
    if all(r.ok for r in reports):
        print("check_coco: ok")
        return 0
    print("\n".join(problem_lines(args.coco_root, reports, args.max_lines) + ["check_coco: missing files"]),
          file=sys.stderr)
    return 1


def cli() -> None:
    """Console entry point: user errors as one line, exit status 2."""
    from advcam.utils import program_name, run_cli

    run_cli(lambda: sys.exit(main()), program_name("check_coco.py"))


if __name__ == "__main__":
    cli()
