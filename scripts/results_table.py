"""``python -m advcam.tools.results_table`` from a clone, as ``python scripts/results_table.py``."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from advcam.tools.results_table import cli  # noqa: E402

if __name__ == "__main__":
    cli()
