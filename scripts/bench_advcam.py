"""``python -m advcam.tools.bench_advcam`` from a clone, as ``python scripts/bench_advcam.py``."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from advcam.tools.bench_advcam import cli  # noqa: E402

if __name__ == "__main__":
    cli()
