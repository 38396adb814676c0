"""tools/walk_on_gt_edges.py: the outline map by hand, and a walk that fills an object from one seeded cell."""
import importlib.util
import os

import numpy as np
import torch
from PIL import Image

from advcam.io import save_cam_npy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _script():
    path = os.path.join(ROOT, "tools", "walk_on_gt_edges.py")
    spec = importlib.util.spec_from_file_location("walk_on_gt_edges", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gt_boundary_by_hand():
    label = np.zeros((12, 12), np.uint8)
    label[4:8, 4:8] = 3  # outline pixels: rows 4-7 at columns 4 and 8, columns 4-7 at rows 4 and 8
    expected = np.array([[0, 0, 0], [0, 1, 1], [0, 1, 0]], np.float32)
    np.testing.assert_array_equal(_script().gt_boundary(label), expected)
    band = np.zeros((10, 9), np.uint8)
    band[9, 0] = 255  # VOC's ignore band counts as outline; sizes round up to whole cells
    out = _script().gt_boundary(band)
    assert out.shape == (3, 3) and out[2, 0] == 1 and out.sum() == 1


def test_walk_fills_the_object_from_one_seeded_cell(tmp_path):
    root = tmp_path / "voc"
    os.makedirs(root / "SegmentationClass")
    gt = np.zeros((32, 32), np.uint8)
    gt[8:24, 8:24] = 1  # aeroplane; its outline ring is cells 2 and 6, its interior cells 3-5
    Image.fromarray(gt).save(root / "SegmentationClass" / "a.png")
    cam = np.zeros((1, 8, 8), np.float32)
    cam[0, 4, 4] = 1.0  # the seed sits on one interior cell
    high = np.zeros((1, 32, 32), np.float32)
    high[0, 16:20, 16:20] = 1.0
    save_cam_npy(str(tmp_path / "cams" / "a.npy"), torch.tensor([0]), torch.from_numpy(cam), high)
    seeds, walked = _script().walk_masks_miou(str(root), ["a"], str(tmp_path / "cams"), beta=10, exp_times=4,
                                              bg_thres=0.25)
    # seeds: the 4x4 block inside the 16x16 object; background IoU 768/1008, aeroplane 16/256
    assert abs(seeds - 100 * (768 / 1008 + 16 / 256) / 2) < 1e-9
    assert walked > seeds + 25  # the walk spreads the seed over the interior the outline encloses
