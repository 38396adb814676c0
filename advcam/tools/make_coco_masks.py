"""Make the COCO 2014 ground-truth masks: ``ROOT/mask/<split>/<12-digit id>.png`` from the instances json.

``python -m advcam.tools.make_coco_masks --coco_root ROOT --split {train2014,val2014} [--list FILE] [--workers N]``

uint8 label maps, 0 background and 1..80 for the 80 categories in category-id order; non-crowd annotations only,
in json order, a later annotation over earlier pixels; an image without one gets an all-zero mask (the IRN
family's policy, ReCAM's annToMask.py; see docs/coco.md). Masks that exist are kept, so an interrupted run is
simply restarted; each PNG is written atomically. It reads only the json, never an image.
"""
from __future__ import annotations

import os
import sys

from advcam.coco14 import SPLITS, json_path, mask_dir, read_id_list
from advcam.coco14.masks import make_masks
from advcam.errors import BadInputError
from advcam.utils import ArgParser


def _cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def build_parser() -> ArgParser:
    p = ArgParser(default_prog="make_coco_masks.py", description=__doc__.splitlines()[0])
    p.add_argument("--coco_root", default=os.environ.get("COCO_ROOT"),
                   help="the COCO 2014 folder (default: $COCO_ROOT)")
    p.add_argument("--split", required=True, choices=SPLITS, help="the json and output folder of this split")
    p.add_argument("--json", default=None, metavar="FILE",
                   help="another COCO-format instances json to read (default: ROOT/annotations/instances_SPLIT.json); "
                        "its file names are then not checked against --split")
    p.add_argument("--list", default=None, metavar="FILE",
                   help="only the image ids of this file, one a line (default: every image of the json)")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default: ROOT/mask/SPLIT)")
    p.add_argument("--workers", default=_cpus(), type=int, help="processes (default: the usable CPUs)")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.coco_root and not (args.json and args.out):
        raise BadInputError("no COCO root: pass --coco_root ROOT or set COCO_ROOT")
    if args.workers < 1:
        raise BadInputError(f"--workers {args.workers}: give 1 or more")
    ids = read_id_list(args.list) if args.list else None
    out = args.out or mask_dir(args.coco_root, args.split)
    run = make_masks(args.json or json_path(args.coco_root, args.split), out, split=None if args.json else args.split,
                     ids=ids, workers=args.workers, progress=not args.no_progress)
    print(f"make_coco_masks: {run.summary()}", flush=True)
    return 0


def cli() -> None:
    """Console entry point: user errors as one line, exit status 2."""
    from advcam.utils import program_name, run_cli

    run_cli(lambda: sys.exit(main()), program_name("make_coco_masks.py"))


if __name__ == "__main__":
    cli()
