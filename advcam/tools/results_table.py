"""Print the results table of a pipeline run: ``results_table.py RESULTS.json "Row name=key" ...``.

A key ``eval_pass:folder#sub`` reads the ``sub`` entry of that result (eval_seg's ``crf``)."""
from __future__ import annotations

import argparse
import json
import sys

from advcam.errors import BadInputError, MissingInputError
from advcam.utils import ArgParser, program_name, run_cli


def _row(spec: str) -> tuple[str, str]:
    name, sep, key = spec.partition("=")
    if not sep or not name or not key:
        raise argparse.ArgumentTypeError(f"{spec!r} is not 'Row name=eval_pass:folder'")
    return name, key


def build_parser() -> ArgParser:
    """The command line of ``results_table.py``."""
    p = ArgParser(description=__doc__.splitlines()[0], default_prog="results_table.py")
    p.add_argument("results", metavar="RESULTS.json", help="the run's --results_json file")
    p.add_argument("rows", metavar="ROW", nargs="+", type=_row,
                   help="'Row name=eval_pass:folder', e.g. 'AdvCAM seeds=eval_cam:demo_out/cam_adv_mask' (a "
                        "#sub suffix reads that entry of the result, e.g. eval_seg:DIR#crf)")
    return p


def main(argv: list[str] | None = None) -> None:
    """Print one row per ROW; exit with a one-line message naming the rows without a result."""
    p = build_parser()
    args = p.parse_args(argv)
    try:
        with open(args.results) as f:
            results = json.load(f)
    except FileNotFoundError:
        raise MissingInputError(f"{args.results} not found: run the evaluation passes with --results_json "
                                f"{args.results}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadInputError(f"{args.results} is not a JSON results file ({e}): rerun the evaluation passes") from None
    rows = args.rows
    width = max(len(name) for name, _ in rows)
    print(f"\n{'stage':<{width}}  mIoU (%)")
    print("-" * (width + 10))
    missing = []
    for name, key in rows:
        key, _, sub = key.partition("#")  # "eval_seg:DIR#crf": the "crf" entry of that result
        if key in results and (not sub or sub in results[key]):
            print(f"{name:<{width}}  {100 * (results[key][sub] if sub else results[key])['miou']:8.2f}")
        else:
            print(f"{name:<{width}}  {'missing':>8}")
            missing.append(key)
    print()
    if missing:
        sys.exit(f"{p.prog}: error: {args.results} has no result for {', '.join(missing)}: run that "
                 "evaluation pass with --results_json (a folder flag overridden in the extra arguments changes the "
                 "key)")


def cli() -> None:
    """Console entry point: a user error is printed as one line (exit status 2)."""
    run_cli(main, program_name("results_table.py"))


if __name__ == "__main__":
    cli()
