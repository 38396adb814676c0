"""``python -m advcam.tools.check_voc`` from a clone, as ``python scripts/check_voc.py``."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from advcam.tools.check_voc import cli  # noqa: E402

if __name__ == "__main__":
    cli()
