"""Print the results table of a pipeline run: ``results_table.py RESULTS.json "Row name=key" ...``."""
import json
import sys


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2:
        sys.exit("usage: results_table.py RESULTS.json 'Row name=eval_pass:folder' ...")
    with open(argv[0]) as f:
        results = json.load(f)
    rows = [spec.split("=", 1) for spec in argv[1:]]
    width = max(len(name) for name, _ in rows)
    print(f"\n{'stage':<{width}}  mIoU (%)")
    print("-" * (width + 10))
    for name, key in rows:
        if key in results:
            print(f"{name:<{width}}  {100 * results[key]['miou']:8.2f}")
    print()


if __name__ == "__main__":
    main()
