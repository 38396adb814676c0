"""tools/part_coverage.py on a hand-built image: per-region means and fractions computed by hand."""
import importlib.util
import os

import numpy as np
import torch
from PIL import Image

from advcam.io import save_cam_npy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _script():
    spec = importlib.util.spec_from_file_location("part_coverage", os.path.join(ROOT, "tools", "part_coverage.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_coverage_by_hand(tmp_path):
    root = tmp_path / "voc"
    for d in ("SegmentationClass", "SegmentationPart"):
        os.makedirs(root / d)
    cls = np.array([[0, 0, 8, 8], [0, 0, 8, 8]], np.uint8)  # class 8 (cat, 0-based 7) on the right half
    part = np.array([[0, 0, 2, 1], [0, 0, 1, 1]], np.uint8)  # one head pixel, three body pixels
    Image.fromarray(cls).save(root / "SegmentationClass" / "a.png")
    Image.fromarray(part).save(root / "SegmentationPart" / "a.png")
    high = np.array([[[0.0, 0.5, 1.0, 0.2], [0.1, 0.0, 0.3, 0.4]]], np.float32)
    save_cam_npy(str(tmp_path / "cams" / "a.npy"), torch.tensor([7]), torch.zeros(1, 1, 1), high)
    cov = _script().coverage(str(root), ["a"], str(tmp_path / "cams"), 0.25)
    assert np.allclose(cov["head"], (1.0, 1.0))
    assert np.allclose(cov["body"], ((0.2 + 0.3 + 0.4) / 3, 2 / 3))
    assert np.allclose(cov["background"], ((0.0 + 0.5 + 0.1 + 0.0) / 4, 1 / 4))
