"""The files that ship inside the package: benchmark lists and labels (``voc12/``, ``coco14/``) and the shell
pipelines (``get_mask_quality.sh``, ``get_seed_quality.sh``).

A list path such as ``voc12/train_aug.txt`` or ``coco14/val14.txt`` that does not exist relative to the current
folder names the shipped file of that name (:func:`shipped_file`), wherever the package is installed.
"""
from __future__ import annotations

import os

from advcam.errors import MissingInputError

DATA_DIR: str = os.path.dirname(os.path.abspath(__file__))
"""The installed ``advcam/data/`` folder."""


def shipped_file(name: str) -> str | None:
    """The shipped file that the relative path ``name`` names (``voc12/train.txt``, ``./coco14/val14.txt``), as an
    absolute path; ``None`` when ``name`` is absolute, leaves the data folder, or names no shipped data file."""
    if not name or os.path.isabs(name):
        return None
    parts = os.path.normpath(name).split(os.sep)
    # only files inside a data folder (voc12/, coco14/): never the package's own modules or scripts
    if len(parts) < 2 or parts[0] in ("..", "__pycache__") or not os.path.isdir(os.path.join(DATA_DIR, parts[0])):
        return None
    candidate = os.path.join(DATA_DIR, *parts)
    return candidate if os.path.isfile(candidate) else None


def path(name: str) -> str:
    """Absolute path of the shipped file ``name``, relative to ``advcam/data/`` (``"voc12/cls_labels.npy"``,
    ``"get_mask_quality.sh"``); :class:`~advcam.errors.MissingInputError` if the package has no such file."""
    candidate = os.path.join(DATA_DIR, os.path.normpath(name))
    if os.path.isabs(name) or not os.path.isfile(candidate):
        raise MissingInputError(f"{candidate} is not a file shipped with advcam: reinstall the package "
                                "(pip install advcam) or give the file's own path")
    return candidate


__all__ = ["DATA_DIR", "path", "shipped_file"]
