"""The shell pipelines that ship inside the package, as console commands, and their flag check.

``advcam-mask-quality [ARGS]`` runs ``bash advcam/data/get_mask_quality.sh ARGS`` and ``advcam-seed-quality
[ARGS]`` runs ``get_seed_quality.sh`` (a clone's top-level ``get_*_quality.sh`` runs the same scripts), with
``$PYTHON`` set to this interpreter unless it is set already; outputs go under the current folder.

``python -m advcam.tools.pipelines check mask|seed ARGS`` is the scripts' first step: it stops with one line when
an argument names a flag that a pass the script hands it to does not have (``--dataset``, ``--voc12_root`` and
``--coco_root`` are the scripts' own, read by ``voc_root_args.sh``, and never reach it).
"""
from __future__ import annotations

import argparse
import os
import sys

from advcam.data import path as shipped_path
from advcam.utils import ArgParser, program_name, run_cli

SCRIPTS = {"mask": "get_mask_quality.sh", "seed": "get_seed_quality.sh", "semi": "get_semi_quality.sh"}


def _flags(parser) -> set[str]:
    return set(parser._option_string_actions)


def unknown_flag(kind: str, args: list[str]) -> str | None:
    """The one-line complaint about the first argument of ``args`` (the extra arguments of ``get_<kind>_quality.sh``)
    that names a flag of no pass it is handed to (obtain_CAM_masking.py, and for ``mask`` also run_sample.py), or
    ``None``. Values (arguments that do not start with ``--``) are not checked."""
    from advcam import obtain_cam_masking

    passes = {} if kind == "semi" else {"obtain_CAM_masking.py": _flags(obtain_cam_masking.build_parser())}
    if kind in ("mask", "semi"):
        from advcam import run_sample

        passes["run_sample.py"] = _flags(run_sample.build_parser())
    for arg in args:
        if not arg.startswith("--") or arg == "--":
            continue
        flag = arg.split("=", 1)[0]
        lacking = [name for name, flags in passes.items() if flag not in flags]
        if len(lacking) == len(passes):
            return f"{SCRIPTS[kind]}: error: unknown option {flag} (see --help)"
        if lacking:
            return (f"{SCRIPTS[kind]}: error: {flag} is not a flag of {lacking[0]}, to which this script passes every "
                    "extra argument (see --help)")
    return None


def build_parser() -> ArgParser:
    """The command line of ``python -m advcam.tools.pipelines``: ``check mask|seed [ARGS ...]``."""
    p = ArgParser(description="Check the extra arguments of a shell pipeline before it runs anything.",
                  default_prog="pipelines.py")
    p.add_argument("command", choices=("check",), help="check: every flag of ARGS is a flag of the passes")
    p.add_argument("kind", choices=tuple(SCRIPTS),
                   help="mask: get_mask_quality.sh (obtain_CAM_masking.py and run_sample.py); seed: "
                        "get_seed_quality.sh (obtain_CAM_masking.py); semi: get_semi_quality.sh (run_sample.py)")
    rest = p.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS",
                          help="the script's extra arguments, as given (default: none)")
    rest.required = False  # may be empty: not named among the missing arguments
    return p


def main(argv: list[str] | None = None) -> int:
    """``check mask|seed ARGS``: exit status 0 when every flag of ARGS is known, else 2 after one line on stderr."""
    args = build_parser().parse_args(argv)
    problem = unknown_flag(args.kind, args.args)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    return 0


def cli() -> None:
    """``python -m advcam.tools.pipelines``: exits with :func:`main`'s status."""
    run_cli(lambda: sys.exit(main()), program_name("pipelines.py"))


def _run(kind: str) -> None:
    script = shipped_path(SCRIPTS[kind])
    env = dict(os.environ)
    env.setdefault("PYTHON", sys.executable)  # the interpreter of this installation, not whichever is on PATH
    os.execvpe("bash", ["bash", script, *sys.argv[1:]], env)


def mask_quality() -> None:
    """Console entry point ``advcam-mask-quality``: the toy demo, or the VOC pipeline with ``--voc12_root``; with
    ``--dataset coco14`` the toy COCO demo, or the COCO pipeline with ``--coco_root``."""
    _run("mask")


def semi_quality() -> None:
    """Console entry point ``advcam-semi-quality``: semi-supervised CCT with the AdvCAM masks, toy or VOC."""
    _run("semi")


def seed_quality() -> None:
    """Console entry point ``advcam-seed-quality``: AdvCAM seeds on VOC train (``--dataset coco14``: COCO train, or
    the toy COCO without a root) and their quality."""
    _run("seed")


if __name__ == "__main__":
    cli()
