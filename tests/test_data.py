"""Data layer: lists, labels, transforms and datasets."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from advcam import imutils
from advcam.errors import BadInputError
from advcam.voc12 import CAT_LIST, VOC_PALETTE
from advcam.voc12.dataloader import (
    VOC12ClassificationDataset,
    VOC12ImageDatasetMSF,
    decode_int_filename,
    get_cls_labels,
    load_cls_labels,
    load_img_name_list,
    load_seg_label,
)
from advcam.voc12.make_cls_labels import build_cls_labels, cached_cls_labels, labels_from_xml

XML = """<annotation><filename>{id}.jpg</filename>{objects}</annotation>"""
OBJ = "<object><name>{}</name><difficult>{}</difficult></object>"


def make_root(tmp_path, ids_objects, size=(30, 40)):
    root = tmp_path / "VOC"
    for d in ("JPEGImages", "Annotations", "SegmentationClass", "ImageSets/Segmentation"):
        (root / d).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, (name, objs) in enumerate(ids_objects.items()):
        h, w = size if i % 2 == 0 else size[::-1]
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"{name}.jpg")
        body = "".join(OBJ.format(o, d) for o, d in objs)
        (root / "Annotations" / f"{name}.xml").write_text(XML.format(id=name, objects=body))
        seg = Image.fromarray(np.full((h, w), 255 if i == 0 else 1, np.uint8)).convert("P")
        seg.putpalette(VOC_PALETTE)
        seg.save(root / "SegmentationClass" / f"{name}.png")
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(ids_objects) + "\n\n")
    return str(root)


def test_list_parsing_keeps_string_ids(tmp_path):
    p = tmp_path / "l.txt"
    p.write_text("2007_000032\n\n2008_000002 extra\n")
    assert load_img_name_list(str(p)) == ["2007_000032", "2008_000002"]


def test_list_falls_back_to_imagesets(tmp_path):
    root = make_root(tmp_path, {"2007_000032": [("cat", 0)]})
    assert load_img_name_list("voc12/does_not_exist/train.txt", root) == ["2007_000032"]
    with pytest.raises(FileNotFoundError, match=r"does_not_exist/train_aug\.txt not found nor in .*ImageSets"):
        load_img_name_list(str(tmp_path / "does_not_exist" / "train_aug.txt"), root)  # nor in the root
    # an existing list is read as given, even where the root has its own: the shipped voc12/train_aug.txt
    (tmp_path / "VOC" / "ImageSets/Segmentation/train_aug.txt").write_text("2007_000032\n")
    from advcam.voc12 import DATA_DIR
    shipped = os.path.join(DATA_DIR, "train_aug.txt")
    assert len(load_img_name_list(shipped, root)) == 10582
    # so is the shipped list named as voc12/<file> from a folder without one: it comes before the root's
    assert not os.path.exists("voc12/train_aug.txt")
    assert len(load_img_name_list("voc12/train_aug.txt", root)) == 10582
    assert load_img_name_list(str(tmp_path / "elsewhere" / "train_aug.txt"), root) == ["2007_000032"]


def test_labels_from_xml_include_difficult_objects(tmp_path):
    root = make_root(tmp_path, {"2007_000032": [("cat", 0), ("dog", 1), ("cat", 0)], "2007_000039": [("person", 0)]})
    lab = labels_from_xml(os.path.join(root, "Annotations", "2007_000032.xml"))
    assert lab.dtype == np.float32 and lab.sum() == 2
    assert lab[CAT_LIST.index("cat")] == 1 and lab[CAT_LIST.index("dog")] == 1
    table = build_cls_labels(root, ["2007_000032", "2007_000039"])
    assert set(table) == {2007000032, 2007000039}  # the reference's integer keys
    assert decode_int_filename(2007000039) == "2007_000039"


def test_cls_labels_cached_in_root_and_reused(tmp_path):
    root = make_root(tmp_path, {"2007_000032": [("cat", 0)], "2007_000039": [("bus", 0)]})
    names = ["2007_000032", "2007_000039"]
    path = cached_cls_labels(root, names)
    assert path == os.path.join(root, "cls_labels.npy")
    mtime = os.path.getmtime(path)
    assert cached_cls_labels(root, names) == path and os.path.getmtime(path) == mtime
    labels = get_cls_labels(root, names)
    assert labels.shape == (2, 20) and labels[1, CAT_LIST.index("bus")] == 1
    assert load_cls_labels(path)["2007_000032"][CAT_LIST.index("cat")] == 1


def test_string_keyed_labels_and_missing_ids(tmp_path):
    p = tmp_path / "cls.npy"
    np.save(p, {"img_a": np.eye(20, dtype=np.float32)[3]})
    assert get_cls_labels("unused", ["img_a"], str(p))[0, 3] == 1
    with pytest.raises(BadInputError, match=r"image img_b has no label in .*cls\.npy"):
        get_cls_labels("unused", ["img_b"], str(p))


def test_normalize_and_crops():
    img = np.full((10, 12, 3), 255, np.uint8)
    n = imutils.normalize(img)
    assert n.dtype == np.float32 and np.allclose(n[0, 0], (1 - imutils.IMAGENET_MEAN) / imutils.IMAGENET_STD)
    assert np.array_equal(imutils.denormalize(n), img)
    c = imutils.random_crop(n, 16, 0)
    assert c.shape == (16, 16, 3) and (c == 0).sum() == (16 * 16 - 10 * 12) * 3
    t = imutils.top_left_crop(n, 8, 0)
    assert t.shape == (8, 8, 3) and np.allclose(t, n[:8, :8])
    a, b = imutils.random_crop((np.arange(400).reshape(20, 20), np.arange(400).reshape(20, 20)), 8, (0, 255))
    assert np.array_equal(a, b)  # the same box for every array


def test_resize_semantics():
    img = np.zeros((375, 500, 3), np.uint8)
    assert imutils.pil_rescale(img, 0.5, 3).shape == (188, 250, 3)  # round(187.5) = 188
    for _ in range(5):
        out = imutils.random_resize_long(img, 96, 160)
        assert 96 <= max(out.shape[:2]) <= 160
    assert imutils.get_strided_size((375, 500), 4) == (94, 125)
    assert imutils.get_strided_up_size((375, 500), 16) == (384, 512)


def test_datasets(tmp_path):
    root = make_root(tmp_path, {"2007_000032": [("cat", 0)], "2007_000039": [("bus", 0), ("car", 0)]})
    ds = VOC12ClassificationDataset("train.txt", root, resize_long=(20, 30), hor_flip=True, crop_size=24,
                                    crop_method="random")
    item = ds[1]
    assert item["img"].shape == (3, 24, 24) and item["img"].dtype == np.float32
    assert item["label"].sum() == 2
    item = VOC12ImageDatasetMSF("train.txt", root, scales=(1.0, 0.5))[0]
    assert set(item) == {"name", "img", "size"}  # no label is read: the CAM passes take the labels separately
    assert [tuple(p.shape) for p in item["img"]] == [(2, 3, 30, 40), (2, 3, 15, 20)]
    assert torch.equal(item["img"][0][1], item["img"][0][0].flip(-1))
    assert item["size"] == (30, 40)
    assert load_seg_label(root, "2007_000039").shape == (40, 30)


def test_missing_image_names_the_file(tmp_path):
    root = make_root(tmp_path, {"2007_000032": [("cat", 0)]})
    os.remove(os.path.join(root, "JPEGImages", "2007_000032.jpg"))
    ds = VOC12ImageDatasetMSF("train.txt", root)
    with pytest.raises(FileNotFoundError, match="2007_000032.jpg"):
        ds[0]


def test_normalize_is_the_reference_float64_formula_bit_for_bit():
    """The reference's Normalize: per channel (uint8 / 255. - mean) / std in float64, stored into float32."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (17, 23, 3), dtype=np.uint8)
    literal = np.empty(img.shape, np.float32)
    for c, (m, s) in enumerate(zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), strict=True)):
        literal[..., c] = (img[..., c] / 255. - m) / s
    assert np.array_equal(imutils.normalize(img), literal)
    # every uint8 value of every channel, too (the float32 formula differs from this in the last bit for some)
    every = np.repeat(np.arange(256, dtype=np.uint8)[:, None, None], 3, axis=2)
    for c, (m, s) in enumerate(zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), strict=True)):
        assert np.array_equal(imutils.normalize(every)[..., c], ((every[..., c] / 255. - m) / s).astype(np.float32))


def test_setup_install_requires_are_ranges(tmp_path):
    """requirements.txt pins torch exactly; the installed package only asks for lower bounds."""
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(tmp_path)], cwd=root,
                   check=True, capture_output=True)
    requires = (tmp_path / "advcam.egg-info" / "requires.txt").read_text().split()
    pins = [r for r in open(os.path.join(root, "requirements.txt")).read().split("\n") if r.startswith("torch==")]
    assert pins and "torch>=" + pins[0].split("==")[1] in requires
    assert not [r for r in requires if "==" in r]
