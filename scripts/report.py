"""``python -m advcam.tools.report`` from a clone, as ``python scripts/report.py``."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from advcam.tools.report import cli  # noqa: E402

if __name__ == "__main__":
    cli()
