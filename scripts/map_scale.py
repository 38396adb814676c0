"""``python -m advcam.tools.map_scale`` from a clone, as ``python scripts/map_scale.py``."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from advcam.tools.map_scale import cli  # noqa: E402

if __name__ == "__main__":
    cli()
