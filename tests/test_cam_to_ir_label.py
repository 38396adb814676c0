"""cam_to_ir_label: confident-label combination, dense CRF, per-image labels and the resumable pass."""
import os
from argparse import Namespace

import numpy as np
import pytest
import torch
from PIL import Image

from advcam.crf import crf_inference_label
from advcam.io import save_cam_npy
from advcam.steps.cam_to_ir_label import combine_confident_labels, ir_label_from_cam, run


def test_combine_confident_labels_by_hand():
    fg = np.array([[1, 0, 0],
                   [2, 0, 0],
                   [0, 0, 3]], np.uint8)
    bg = np.array([[1, 1, 0],
                   [2, 0, 5],
                   [0, 1, 3]], np.uint8)
    expected = np.array([[1, 255, 0],
                         [2, 0, 255],
                         [0, 255, 3]], np.uint8)
    out = combine_confident_labels(fg, bg)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)


def _two_region_image(h: int = 32, w: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Left half red, right half blue, and the region labels (0 left, 1 right)."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = (200, 30, 30)
    img[:, w // 2:] = (30, 30, 200)
    regions = np.zeros((h, w), np.int64)
    regions[:, w // 2:] = 1
    return img, regions


def test_crf_follows_colour_regions():
    img, regions = _two_region_image()
    rng = np.random.default_rng(0)
    flip = rng.random(regions.shape) < 0.2
    noisy = np.where(flip, 1 - regions, regions)
    assert (noisy != regions).mean() > 0.15
    out = crf_inference_label(img, noisy, n_labels=2)
    assert out.shape == regions.shape
    assert (out == regions).mean() > 0.99


def test_crf_single_label_is_zeros():
    img, _ = _two_region_image(8, 8)
    out = crf_inference_label(img, np.zeros((8, 8), np.int64), n_labels=1)
    np.testing.assert_array_equal(out, np.zeros((8, 8)))


def _blob_case(size: int = 48) -> tuple[np.ndarray, dict]:
    """Class 6 (label 7): 0.9 on a centred 12x12 square, 0.25 on the 24x24 ring around it, 0 outside;
    the image has one colour per zone."""
    c = size // 2
    img = np.full((size, size, 3), (40, 160, 40), np.uint8)
    cam = np.zeros((1, size, size), np.float32)
    img[c - 12:c + 12, c - 12:c + 12] = (160, 160, 40)
    cam[0, c - 12:c + 12, c - 12:c + 12] = 0.25
    img[c - 6:c + 6, c - 6:c + 6] = (200, 40, 40)
    cam[0, c - 6:c + 6, c - 6:c + 6] = 0.9
    return img, {"keys": torch.tensor([6]), "high_res": cam}


def test_ir_label_from_blob_cam():
    img, cam_dict = _blob_case()
    label = ir_label_from_cam(img, cam_dict, conf_fg_thres=0.35, conf_bg_thres=0.15)
    assert label.dtype == np.uint8 and label.shape == (48, 48)
    assert set(np.unique(label)) == {0, 7, 255}
    # by hand: inner square 12*12 = 144, ring 24*24 - 144 = 432, outside 48*48 - 576 = 1728
    n_cls, n_ign, n_bg = (label == 7).sum(), (label == 255).sum(), (label == 0).sum()
    assert abs(n_cls - 144) <= 15
    assert abs(n_ign - 432) <= 40
    assert abs(n_bg - 1728) <= 40
    assert (label[21:27, 21:27] == 7).all()  # core of the blob
    assert (label[14:16, 14:34] == 255).all()  # middle of the ring
    assert (label[:8] == 0).all() and (label[:, :8] == 0).all()  # far outside


def test_ir_label_without_classes_is_background():
    img, _ = _blob_case(16)
    cam_dict = {"keys": torch.zeros(0, dtype=torch.int64), "high_res": np.zeros((0, 16, 16), np.float32)}
    label = ir_label_from_cam(img, cam_dict, 0.35, 0.15)
    assert label.dtype == np.uint8
    np.testing.assert_array_equal(label, np.zeros((16, 16), np.uint8))


def test_ir_label_rejects_wrong_size():
    img, cam_dict = _blob_case(16)
    cam_dict["high_res"] = np.zeros((1, 8, 8), np.float32)
    with pytest.raises(ValueError, match="high_res"):
        ir_label_from_cam(img, cam_dict, 0.35, 0.15)


NAMES = ("2007_000001", "2007_000002", "2007_000003")
KEYS = {"2007_000001": [6], "2007_000002": [0, 14], "2007_000003": []}


def _tiny_voc(tmp_path) -> Namespace:
    """Three JPEGs (40x36 and 32x44) with blob CAMs, a list file; the pass's arguments."""
    voc = tmp_path / "VOC2012"
    os.makedirs(voc / "JPEGImages")
    rng = np.random.default_rng(1)
    for i, name in enumerate(NAMES):
        h, w = (40, 36) if i != 1 else (32, 44)
        img = np.full((h, w, 3), 90, np.uint8)
        keys = KEYS[name]
        high = np.zeros((len(keys), h, w), np.float32)
        for k in range(len(keys)):
            r, q = int(rng.integers(2, h - 14)), int(rng.integers(2, w - 14))
            img[r:r + 12, q:q + 12] = (200 - 120 * k, 40 + 120 * k, 60)
            high[k, max(r - 4, 0):r + 16, max(q - 4, 0):q + 16] = 0.25
            high[k, r:r + 12, q:q + 12] = 1.0
        img = np.clip(img.astype(np.int64) + rng.integers(-5, 6, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(voc / "JPEGImages" / f"{name}.jpg", quality=95)
        cam = torch.from_numpy(high[:, ::4, ::4].copy())
        save_cam_npy(tmp_path / "cam" / f"{name}.npy", keys, cam, high)
    (tmp_path / "train.txt").write_text("\n".join(NAMES) + "\n")
    return Namespace(voc12_root=str(voc), train_list=str(tmp_path / "train.txt"), cam_out_dir=str(tmp_path / "cam"),
                     ir_label_out_dir=str(tmp_path / "ir"), conf_fg_thres=0.35, conf_bg_thres=0.15, num_workers=0)


def _outputs(out_dir) -> dict[str, bytes]:
    return {f: open(os.path.join(out_dir, f), "rb").read() for f in sorted(os.listdir(out_dir))}


@pytest.mark.slow
def test_run_writes_resumes_and_matches_across_workers(tmp_path):
    args = _tiny_voc(tmp_path)
    stats = run(args)
    assert stats["images"] == 3 and stats["skipped"] == 0
    files = _outputs(args.ir_label_out_dir)
    assert sorted(files) == sorted([f"{n}.png" for n in NAMES] + [f"{n}_palette.png" for n in NAMES])
    for name in NAMES:
        label = Image.open(os.path.join(args.ir_label_out_dir, name + ".png"))
        pal = Image.open(os.path.join(args.ir_label_out_dir, name + "_palette.png"))
        assert label.mode == "L" and pal.mode == "P"
        arr = np.asarray(label)
        np.testing.assert_array_equal(np.asarray(pal), arr)
        allowed = {0, 255} | {k + 1 for k in KEYS[name]}
        assert set(np.unique(arr)) <= allowed
        for k in KEYS[name]:
            assert (arr == k + 1).any()
        if not KEYS[name]:
            assert (arr == 0).all()

    # a rerun skips everything and touches nothing
    mtimes = {f: os.stat(os.path.join(args.ir_label_out_dir, f)).st_mtime_ns for f in files}
    stats = run(args)
    assert stats["images"] == 0 and stats["skipped"] == 3
    assert {f: os.stat(os.path.join(args.ir_label_out_dir, f)).st_mtime_ns for f in files} == mtimes

    # a deleted label is recreated byte for byte
    os.remove(os.path.join(args.ir_label_out_dir, NAMES[1] + ".png"))
    stats = run(args)
    assert stats["images"] == 1 and stats["skipped"] == 2
    assert _outputs(args.ir_label_out_dir) == files

    # two worker processes give the same files
    args2 = Namespace(**{**vars(args), "ir_label_out_dir": str(tmp_path / "ir2"), "num_workers": 2})
    stats = run(args2)
    assert stats["images"] == 3
    assert _outputs(args2.ir_label_out_dir) == files


def test_run_missing_cam_names_the_file(tmp_path):
    args = _tiny_voc(tmp_path)
    os.remove(os.path.join(args.cam_out_dir, NAMES[2] + ".npy"))
    with pytest.raises(FileNotFoundError, match=NAMES[2] + r"\.npy.*CAM pass"):
        run(args)
