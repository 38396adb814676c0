"""advcam.tools.make_toy_voc: layout, file formats, ground-truth consistency, determinism."""
from __future__ import annotations

import colorsys
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from advcam.tools import make_toy_voc
from advcam.voc12 import CAT_LIST, IGNORE_LABEL, VOC_PALETTE

SIZE = 64


toy = make_toy_voc
CLASS_LABELS = {CAT_LIST.index(c) + 1 for c in toy.CLASSES}


@pytest.fixture(scope="module")
def voc(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("toy") / "VOC2012"
    res = toy.make_toy_voc(str(out), num_train=4, num_val=2, size=SIZE, seed=0)
    return out, res


def _ids(root: Path, split: str) -> list[str]:
    return (root / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()


def _all_ids(root: Path) -> list[str]:
    return _ids(root, "train_aug") + _ids(root, "val")


def test_layout_and_lists(voc):
    root, res = voc
    for d in ("JPEGImages", "SegmentationClass", "SegmentationObject", "Annotations"):
        assert (root / d).is_dir()
    assert (root / "README.txt").read_text().startswith("Synthetic")
    train_aug, train, val = _ids(root, "train_aug"), _ids(root, "train"), _ids(root, "val")
    assert train_aug == ["2100_000001", "2100_000002", "2100_000003", "2100_000004"] == res["train_aug"]
    assert train == train_aug[:2]
    assert set(train) <= set(train_aug)
    assert val == ["2101_000001", "2101_000002"]
    assert not set(val) & set(train_aug)
    for split in (train_aug, train, val, train_aug + val):
        assert split == sorted(split)  # ids sort in list order
    for name in train_aug + val:
        for d, ext in (("JPEGImages", "jpg"), ("SegmentationClass", "png"), ("SegmentationObject", "png"),
                       ("Annotations", "xml")):
            assert (root / d / f"{name}.{ext}").is_file()
    assert not list(root.rglob("*.tmp*"))  # atomic writes leave no temporaries


def test_images_and_masks(voc):
    root, _ = voc
    for name in _all_ids(root):
        img = Image.open(root / "JPEGImages" / f"{name}.jpg")
        assert img.format == "JPEG" and img.mode == "RGB"
        w, h = img.size
        assert (w, h) in ((SIZE, round(0.75 * SIZE)), (round(0.75 * SIZE), SIZE))
        np.asarray(img)  # decodes
        cls_img = Image.open(root / "SegmentationClass" / f"{name}.png")
        obj_img = Image.open(root / "SegmentationObject" / f"{name}.png")
        for m in (cls_img, obj_img):
            assert m.mode == "P" and m.size == (w, h)
            assert m.getpalette()[:768] == VOC_PALETTE
        cls, inst = np.asarray(cls_img), np.asarray(obj_img)
        assert set(np.unique(cls)) <= {0, IGNORE_LABEL} | CLASS_LABELS
        n = len(ET.parse(root / "Annotations" / f"{name}.xml").getroot().findall("object"))
        assert n >= 1
        assert set(np.unique(inst)) == {0, IGNORE_LABEL, *range(1, n + 1)}
        np.testing.assert_array_equal(cls == IGNORE_LABEL, inst == IGNORE_LABEL)  # the same ignore band
        np.testing.assert_array_equal(cls == 0, inst == 0)
        band = cls == IGNORE_LABEL
        assert 0 < band.mean() < 0.25


def test_annotations_match_masks(voc):
    root, _ = voc
    for name in _all_ids(root):
        ann = ET.parse(root / "Annotations" / f"{name}.xml").getroot()
        assert ann.tag == "annotation" and ann.findtext("folder") == "VOC2012"
        assert ann.findtext("filename") == f"{name}.jpg" and ann.findtext("segmented") == "1"
        w, h = Image.open(root / "JPEGImages" / f"{name}.jpg").size
        size = ann.find("size")
        assert (int(size.findtext("width")), int(size.findtext("height")), size.findtext("depth")) == (w, h, "3")
        cls = np.asarray(Image.open(root / "SegmentationClass" / f"{name}.png"))
        inst = np.asarray(Image.open(root / "SegmentationObject" / f"{name}.png"))
        present = {CAT_LIST[v - 1] for v in np.unique(cls) if v not in (0, IGNORE_LABEL)}
        objects = ann.findall("object")
        assert {o.findtext("name") for o in objects} == present
        for k, o in enumerate(objects, start=1):
            assert o.findtext("pose") == "Unspecified"
            assert o.findtext("truncated") == "0" and o.findtext("difficult") == "0"
            assert set(np.unique(cls[inst == k])) == {CAT_LIST.index(o.findtext("name")) + 1}
            box = o.find("bndbox")
            x0, y0, x1, y1 = (int(box.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax"))
            assert 1 <= x0 < x1 <= w and 1 <= y0 < y1 <= h  # 1-based, inside the image
            ys, xs = np.nonzero(inst == k)
            assert x0 - 1 <= xs.min() and xs.max() <= x1 - 1 and y0 - 1 <= ys.min() and ys.max() <= y1 - 1


def test_heads_carry_their_class(voc):
    root, res = voc
    ratios = []
    for name, meta in res["meta"].items():
        cls = np.asarray(Image.open(root / "SegmentationClass" / f"{name}.png"))
        inst = np.asarray(Image.open(root / "SegmentationObject" / f"{name}.png"))
        part = np.asarray(Image.open(root / "SegmentationPart" / f"{name}.png"))
        yy, xx = np.mgrid[: cls.shape[0], : cls.shape[1]] + 0.5
        for o in meta["objects"]:
            label = o["class_index"] + 1
            assert CAT_LIST[o["class_index"]] == o["name"] in toy.CLASSES
            hy, hx, r = o["head"]["cy"], o["head"]["cx"], o["head"]["r"]
            core = (yy - hy) ** 2 + (xx - hx) ** 2 <= (0.35 * r) ** 2  # well inside the head, off the band
            assert core.sum() > 0
            assert (cls[core] == label).all() and (inst[core] == o["instance"]).all() and (part[core] == 2).all()
            head = (part == 2) & (inst == o["instance"])
            body = (part == 1) & (inst == o["instance"])
            assert (cls[head] == label).all() and (cls[body] == label).all()
            assert body.sum() > 2 * head.sum()  # a large body with a small head
            ratios.append(body.sum() / head.sum())
    assert np.median(ratios) > 4


def test_bodies_are_saturated_clutter_is_not(voc):
    """Bodies are visibly coloured; the background and clutter are grey: "body-ness" is visible."""
    root, _ = voc
    body_sat, bg_sat = [], []
    for name in _all_ids(root):
        img = np.asarray(Image.open(root / "JPEGImages" / f"{name}.jpg")).astype(np.float64) / 255
        part = np.asarray(Image.open(root / "SegmentationPart" / f"{name}.png"))
        mx, mn = img.max(-1), img.min(-1)
        sat = (mx - mn) / np.maximum(mx, 1e-6)
        body_sat.append(sat[part == 1].mean())
        bg_sat.append(sat[part == 0].mean())
    assert np.mean(body_sat) > 2 * np.mean(bg_sat)
    assert colorsys.rgb_to_hsv(*[c / 255 for c in toy.HEAD_COLOURS["aeroplane"][0]])[1] > toy.BODY_SAT[1]


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_deterministic(tmp_path, voc):
    root, _ = voc
    again = tmp_path / "again"
    toy.make_toy_voc(str(again), num_train=4, num_val=2, size=SIZE, seed=0)
    assert _tree_bytes(again) == _tree_bytes(root)
    other = tmp_path / "other"
    toy.make_toy_voc(str(other), num_train=4, num_val=2, size=SIZE, seed=1)
    a, b = _tree_bytes(root), _tree_bytes(other)
    assert a.keys() == b.keys()
    assert all(a[k] != b[k] for k in a if k.startswith("JPEGImages"))


def test_main_cli_and_preview(tmp_path):
    out, preview = tmp_path / "cli", tmp_path / "preview.png"
    toy.main(["--out", str(out), "--num_train", "2", "--num_val", "1", "--size", "48", "--seed", "3",
              "--preview", str(preview)])
    assert _ids(out, "train_aug") == ["2100_000001", "2100_000002"] and _ids(out, "val") == ["2101_000001"]
    assert Image.open(preview).size[0] > 4 * 48
    assert "--seed 3" in (out / "README.txt").read_text()
    assert os.path.getsize(out / "JPEGImages" / "2101_000001.jpg") > 0


def test_head_colours_body_is_the_blend_of_base_and_head_checker(tmp_path):
    """--body head_colours: a body pixel is (1 - s) * base + s * one of its class's two head colours, the two
    alternating on a checker of the drawn period; the whole set is made in that style and named in README.txt."""
    rng = np.random.default_rng(0)
    obj = toy.sample_object(rng, "cat", 96, 128, body="head_colours")
    lo, hi = toy.SHARED_BLEND
    assert obj.body_style == "head_colours" and lo <= obj.stripe_amp <= hi
    assert max(colorsys.rgb_to_hsv(*obj.body_rgb)[1], 0) <= toy.SHARED_BASE_SAT_MAX + 1e-9
    obj.blotch_amp, obj.stripe_angle, obj.stripe_period, obj.stripe_amp = 0.0, 0.0, 4.0, 0.25
    y, x = toy._grid(8, 8, 1)  # pixel centres 0.5 .. 7.5: checker cells of 4 px
    rgb = toy._shared_body(rng, obj, y, x, 8, 8)
    c0, c1 = obj.head_colours
    base = np.asarray(obj.body_rgb)
    np.testing.assert_allclose(rgb[0, 0], 0.75 * base + 0.25 * c0)
    np.testing.assert_allclose(rgb[0, 5], 0.75 * base + 0.25 * c1)
    np.testing.assert_allclose(rgb[5, 0], 0.75 * base + 0.25 * c1)
    np.testing.assert_allclose(rgb[6, 7], 0.75 * base + 0.25 * c0)
    with pytest.raises(ValueError, match="--body"):
        toy.sample_object(rng, "cat", 96, 128, body="stripes")

    out = tmp_path / "shared"
    res = toy.make_toy_voc(str(out), num_train=3, num_val=0, size=64, seed=0, body="head_colours")
    assert "--body head_colours" in (out / "README.txt").read_text()
    assert all(o["body"]["hue_deg"] == 0.0 for m in res["meta"].values() for o in m["objects"])
    with pytest.raises(ValueError, match="--body"):
        toy.make_toy_voc(str(tmp_path / "bad"), num_train=1, num_val=0, size=64, body="stripes")
