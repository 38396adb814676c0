"""Print the results table of a pipeline run: ``results_table.py RESULTS.json "Row name=key" ...``.

A key ``eval_pass:folder#sub`` reads the ``sub`` entry of that result (eval_seg's ``crf``)."""
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
        sys.exit(f"results_table.py: error: {argv[0]} has no result for {', '.join(missing)}: run that evaluation "
                 "pass with --results_json (a folder flag overridden in the extra arguments changes the key)")


if __name__ == "__main__":
    main()
