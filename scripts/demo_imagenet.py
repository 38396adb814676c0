"""``python -m advcam.tools.demo_imagenet`` from a clone, as ``python scripts/demo_imagenet.py``."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from advcam.tools.demo_imagenet import cli  # noqa: E402

if __name__ == "__main__":
    cli()
