"""``python -m advcam.tools.make_coco_masks`` from a clone, as ``python scripts/make_coco_masks.py``."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from advcam.tools.make_coco_masks import cli  # noqa: E402

if __name__ == "__main__":
    cli()
