"""MS COCO 2014 data pieces: the class mapping, the mask converter, the image-level labels, the root check and the
toy root (advcam.coco14, advcam.tools.{make_coco_masks,check_coco,make_toy_coco})."""
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from advcam import coco14
from advcam.coco14 import CAT_ID_TO_LABEL, CATEGORY_IDS, NUM_CLASSES, id_str, json_path, mask_dir
from advcam.coco14.check import check_coco
from advcam.coco14.labels import load_coco_cls_labels
from advcam.coco14.masks import make_masks
from advcam.errors import BadInputError, MissingInputError
from advcam.tools import check_coco as check_coco_tool
from advcam.tools import make_coco_masks as make_masks_tool
from advcam.tools.make_toy_coco import TOY_CATEGORY_IDS, make_toy_coco, uncompressed_rle

H, W = 10, 12
# pycocotools 2.0.11's decode on NumPy 2 warns that its __array__ lacks a copy keyword; harmless
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _rect(x0, y0, x1, y1):
    """A polygon with integer corners: pycocotools fills exactly the pixels [y0:y1, x0:x1]."""
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def _write_json(root, split, images, annotations, **extra):
    data = {"images": images, "annotations": annotations,
            "categories": [{"id": c, "name": n} for c, n in coco14.CATEGORIES], **extra}
    path = json_path(str(root), split)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f)
    return path


def _img(iid, split="train2014", h=H, w=W):
    return {"id": iid, "height": h, "width": w, "file_name": f"COCO_{split}_{id_str(iid)}.jpg"}


def _ann(aid, iid, cat, seg, crowd=0):
    return {"id": aid, "image_id": iid, "category_id": cat, "segmentation": seg, "iscrowd": crowd}


def _read_png(path):
    return np.asarray(Image.open(path))


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("toycoco"))
    make_toy_coco(root, n_train=10, n_val=5, seed=3)
    return root


def _annToMask_reference(json_file):
    """The IRN family's converter, literally: COCO(), non-crowd annotations in json order, annToMask, overwrite."""
    coco = COCO(json_file)
    out = {}
    for iid in coco.getImgIds():
        info = coco.imgs[iid]
        m = np.zeros((info["height"], info["width"]), np.float64)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=iid, iscrowd=False)):
            m[coco.annToMask(ann) > 0] = CAT_ID_TO_LABEL[ann["category_id"]]
        out[iid] = m.astype(np.uint8)
    return out


# ---- the class mapping ------------------------------------------------------------------------------------------

def test_class_mapping_has_80_classes_and_the_ten_gaps():
    assert NUM_CLASSES == 80 == len(coco14.CAT_LIST) == len(set(coco14.CAT_LIST))
    assert sorted(set(range(1, 91)) - set(CATEGORY_IDS)) == [12, 26, 29, 30, 45, 66, 68, 69, 71, 83]
    assert list(CAT_ID_TO_LABEL) == sorted(CATEGORY_IDS)
    assert [CAT_ID_TO_LABEL[c] for c in CATEGORY_IDS] == list(range(1, 81))
    assert (CAT_ID_TO_LABEL[1], CAT_ID_TO_LABEL[11], CAT_ID_TO_LABEL[13], CAT_ID_TO_LABEL[27]) == (1, 11, 12, 25)
    assert (CAT_ID_TO_LABEL[67], CAT_ID_TO_LABEL[84], CAT_ID_TO_LABEL[90]) == (61, 74, 80)
    assert coco14.CAT_LIST[0] == "person" and coco14.CAT_LIST[-1] == "toothbrush"
    assert all(coco14.LABEL_TO_CAT_ID[CAT_ID_TO_LABEL[c]] == c for c in CATEGORY_IDS)


def test_shipped_lists():
    train = coco14.read_id_list("coco14/train14.txt")  # resolves to the packaged file
    val = coco14.read_id_list(coco14.default_list("val2014"))
    assert (len(train), len(val)) == (82783, 40504)
    assert len(set(train)) == len(train) and not set(train) & set(val)
    assert train[0] == 57870 and coco14.image_path("R", "train2014", train[0]) == os.path.join(
        "R", "train2014", "COCO_train2014_000000057870.jpg")


# ---- the converter against masks drawn by hand -------------------------------------------------------------------

def test_masks_drawn_by_hand(tmp_path):
    crowd = np.zeros((H, W), bool)
    crowd[6:9, 0:4] = True
    rle_obj = np.zeros((H, W), np.uint8)
    rle_obj[0:2, 9:12] = 1
    compressed = mask_utils.encode(np.asfortranarray(rle_obj))
    compressed["counts"] = compressed["counts"].decode()
    images = [_img(1), _img(2), _img(3), _img(4, h=8, w=6), _img(5)]
    anns = [
        _ann(10, 1, 1, [_rect(1, 1, 6, 5)]),  # person
        _ann(11, 1, 13, [_rect(4, 3, 9, 8)]),  # stop sign, later: over the person
        _ann(12, 1, 90, uncompressed_rle(crowd), crowd=1),  # crowd: not drawn
        _ann(13, 2, 27, [_rect(0, 0, 3, 2), _rect(8, 6, 12, 10)]),  # one object, two polygons
        _ann(14, 2, 67, compressed),  # a non-crowd compressed RLE
        _ann(15, 2, 46, uncompressed_rle(crowd)),  # a non-crowd uncompressed RLE
        _ann(16, 3, 90, uncompressed_rle(crowd), crowd=1),  # only a crowd region: an all-zero mask
        # image 4: none at all. Image 5: 2-point polygons (4 numbers) are skipped, first or not
        _ann(17, 5, 1, [[2, 2, 7, 7], _rect(0, 0, 2, 3)]),
        _ann(18, 5, 2, [_rect(5, 5, 8, 9), [1, 8, 11, 8]]),
        _ann(19, 5, 3, [[3, 3, 9, 3]]),  # nothing left of it
    ]
    jpath = _write_json(tmp_path, "train2014", images, anns)
    run = make_masks(jpath, str(tmp_path / "out"), split="train2014", progress=False)
    assert (run.written, run.existing, run.instances.num_crowd, run.instances.num_degenerate_polygons) == (5, 0, 2, 3)
    got = {i: _read_png(tmp_path / "out" / f"{id_str(i)}.png") for i in range(1, 6)}
    want = {i: np.zeros((H, W), np.uint8) for i in (1, 2, 3, 5)}
    want[4] = np.zeros((8, 6), np.uint8)
    want[1][1:5, 1:6] = 1
    want[1][3:8, 4:9] = 12
    want[2][0:2, 0:3] = 25
    want[2][6:10, 8:12] = 25
    want[2][0:2, 9:12] = 61
    want[2][6:9, 0:4] = 41
    want[5][0:3, 0:2] = 1
    want[5][5:9, 5:8] = 2
    for i in range(1, 6):
        assert got[i].dtype == np.uint8 and got[i].shape == want[i].shape
        np.testing.assert_array_equal(got[i], want[i], err_msg=f"image {i}")
    # where pycocotools' own loop can read the json (no 2-point polygon first), it agrees pixel for pixel
    ref_path = _write_json(tmp_path / "ref", "train2014", images[:4], [a for a in anns if a["image_id"] < 5])
    ref = _annToMask_reference(ref_path)
    for i in range(1, 5):
        np.testing.assert_array_equal(got[i], ref[i])


def test_pycocotools_cannot_read_a_leading_2_point_polygon():
    """Why 2-point polygons are skipped: first in the list, pycocotools takes them for a box (and 2.0.11 raises);
    elsewhere it rasterises them to nothing."""
    tri = [1, 1, 9, 1, 5, 8]
    alone = mask_utils.decode(mask_utils.frPyObjects([tri], H, W))[:, :, 0]
    after = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([tri, [0, 9, 11, 2]], H, W)))
    np.testing.assert_array_equal(alone, after)
    with pytest.raises(TypeError):
        mask_utils.frPyObjects([[0, 9, 11, 2], tri], H, W)


def test_uncompressed_rle_round_trip():
    rng = np.random.default_rng(0)
    for shape in ((5, 7), (1, 1), (4, 3)):
        for p in (0.0, 0.3, 1.0):
            m = rng.random(shape) < p
            rle = uncompressed_rle(m)
            assert sum(rle["counts"]) == m.size
            np.testing.assert_array_equal(mask_utils.decode(mask_utils.frPyObjects(rle, *shape)), m)


# ---- the toy root -------------------------------------------------------------------------------------------------

def test_toy_root_layout_and_json_cases(toy):
    for split, n in (("train2014", 10), ("val2014", 5)):
        data = json.load(open(json_path(toy, split)))
        ids = coco14.read_id_list(os.path.join(toy, f"{split[:-4]}14.txt"))
        assert [im["id"] for im in data["images"]] == ids and len(ids) == n
        for im in data["images"]:
            assert Image.open(coco14.image_path(toy, split, im["id"])).size == (im["width"], im["height"])
        anns = data["annotations"]
        cats = {a["category_id"] for a in anns}
        assert cats <= set(TOY_CATEGORY_IDS) and len(data["categories"]) == 80
        crowd = [a for a in anns if a["iscrowd"]]
        assert crowd and all(isinstance(a["segmentation"]["counts"], list) for a in crowd)
        assert any(len(a["segmentation"]) > 1 for a in anns if not a["iscrowd"])
        with_ann = {a["image_id"] for a in anns}
        assert ids[0] not in with_ann  # the fixed cases: no annotation, a crowd region, overlapping objects
        assert any(a["iscrowd"] and a["image_id"] == ids[1] for a in anns)
        h, w = data["images"][2]["height"], data["images"][2]["width"]
        third = [a for a in anns if a["image_id"] == ids[2]]
        assert len(third) == 2 and len(third[0]["segmentation"]) == 2  # two polygons, then an object over them
        first, second = (mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], h, w)))
                         for a in third)
        assert (first & second).any()
    assert not set(coco14.read_id_list(os.path.join(toy, "train14.txt"))) & set(
        coco14.read_id_list(os.path.join(toy, "val14.txt")))


def test_toy_is_deterministic(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    make_toy_coco(a, 3, 1, seed=5)
    make_toy_coco(b, 3, 1, seed=5)
    for rel in ("annotations/instances_train2014.json", "annotations/instances_val2014.json", "train14.txt"):
        assert open(os.path.join(a, rel), "rb").read() == open(os.path.join(b, rel), "rb").read()


@pytest.mark.parametrize("workers", [1, 2])
def test_converter_equals_pycocotools_annToMask_on_the_toy(toy, tmp_path, workers):
    for split in ("train2014", "val2014"):
        out = str(tmp_path / split)
        run = make_masks(json_path(toy, split), out, split=split, workers=workers, progress=False)
        ref = _annToMask_reference(json_path(toy, split))
        assert run.written == len(ref) and sorted(os.listdir(out)) == sorted(id_str(i) + ".png" for i in ref)
        for iid, m in ref.items():
            np.testing.assert_array_equal(_read_png(os.path.join(out, id_str(iid) + ".png")), m)
        assert any(m.any() for m in ref.values()) and any(not m.any() for m in ref.values())


def test_resume_keeps_existing_masks_and_an_interrupted_run_leaves_no_partial_file(toy, tmp_path, monkeypatch):
    from advcam.coco14 import masks as masks_mod

    out = str(tmp_path / "m")
    ids = coco14.read_id_list(os.path.join(toy, "train14.txt"))
    calls = []
    real = masks_mod.render_mask

    def flaky(rec):
        calls.append(rec.image_id)
        if len(calls) == 4:
            raise RuntimeError("killed")
        return real(rec)

    monkeypatch.setattr(masks_mod, "render_mask", flaky)
    with pytest.raises(RuntimeError):
        make_masks(json_path(toy, "train2014"), out, progress=False)
    assert sorted(os.listdir(out)) == sorted(id_str(i) + ".png" for i in calls[:3])  # whole files only, no temp
    monkeypatch.setattr(masks_mod, "render_mask", real)
    sentinel = os.path.join(out, id_str(calls[0]) + ".png")
    Image.fromarray(np.full((3, 3), 7, np.uint8)).save(sentinel)
    before = os.stat(sentinel).st_mtime_ns
    run = make_masks(json_path(toy, "train2014"), out, progress=False)
    assert (run.written, run.existing) == (len(ids) - 3, 3)
    assert os.stat(sentinel).st_mtime_ns == before and _read_png(sentinel).tolist() == [[7] * 3] * 3
    assert sorted(os.listdir(out)) == sorted(id_str(i) + ".png" for i in ids)
    again = make_masks(json_path(toy, "train2014"), out, progress=False)
    assert (again.written, again.existing) == (0, len(ids))


def test_make_coco_masks_cli_with_a_list(toy, tmp_path, capsys):
    ids = coco14.read_id_list(os.path.join(toy, "val14.txt"))
    lst = tmp_path / "two.txt"
    lst.write_text(f"{id_str(ids[3])}\n{ids[1]}\n")
    out = tmp_path / "o"
    assert make_masks_tool.main(["--coco_root", toy, "--split", "val2014", "--list", str(lst), "--out", str(out),
                                 "--workers", "1", "--no_progress"]) == 0
    assert sorted(os.listdir(out)) == sorted([id_str(ids[3]) + ".png", id_str(ids[1]) + ".png"])
    line = capsys.readouterr().out
    assert "wrote 2 of 2 masks" in line and f"{len(ids)} images" in line


# ---- image-level labels -------------------------------------------------------------------------------------------

def test_labels_from_the_json_include_crowd_and_are_cached(tmp_path, monkeypatch):
    box = _rect(0, 0, 2, 2)
    crowd = uncompressed_rle(np.ones((H, W), bool))
    jpath = _write_json(tmp_path, "val2014", [_img(5, "val2014"), _img(7, "val2014"), _img(9, "val2014")],
                        [_ann(1, 5, 90, [box]), _ann(2, 5, 1, [box]), _ann(3, 5, 90, [box]),
                         _ann(4, 9, 13, crowd, crowd=1)])
    cache = str(tmp_path / "out" / "cls_labels_val2014.npy")
    table = load_coco_cls_labels(jpath, cache, split="val2014")
    assert list(table) == [5, 7, 9] and all(type(k) is int for k in table)
    assert all(v.dtype == np.float32 and v.shape == (80,) for v in table.values())
    assert np.flatnonzero(table[5]).tolist() == [0, 79] and not table[7].any()
    assert np.flatnonzero(table[9]).tolist() == [11]  # from the crowd annotation alone
    raw = np.load(cache, allow_pickle=True)
    assert raw.shape == () and {k: v.tolist() for k, v in raw.item().items()} == {
        k: v.tolist() for k, v in table.items()}

    import advcam.coco14.labels as labels_mod

    def no_json(*a, **k):
        raise AssertionError("read the json again")

    monkeypatch.setattr(labels_mod, "read_instances", no_json)
    assert {k: v.tolist() for k, v in load_coco_cls_labels(jpath, cache).items()} == {
        k: v.tolist() for k, v in table.items()}


def test_toy_labels_match_the_json(toy, tmp_path):
    table = load_coco_cls_labels(json_path(toy, "train2014"), str(tmp_path / "l.npy"))
    coco = COCO(json_path(toy, "train2014"))
    for iid, v in table.items():
        cats = {a["category_id"] for a in coco.imgToAnns[iid]}
        assert set(np.flatnonzero(v).tolist()) == {CAT_ID_TO_LABEL[c] - 1 for c in cats}


# ---- bad input: one line naming the file, nothing written -----------------------------------------------------

def _bad(tmp_path, images, anns, split="train2014"):
    jpath = _write_json(tmp_path, split, images, anns)
    out = tmp_path / "out"
    return jpath, out


def _one_line(excinfo, *needles):
    msg = str(excinfo.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg, msg


@pytest.mark.parametrize("case", ["unknown_category", "gap_category", "unknown_image", "other_split", "not_coco",
                                  "truncated", "bad_polygon"])
def test_bad_json_one_line_and_nothing_written(tmp_path, case):
    images = [_img(1), _img(2)]
    anns = [_ann(1, 1, 1, [_rect(0, 0, 3, 3)])]
    needle = None
    if case == "unknown_category":
        anns.append(_ann(77, 2, 91, [_rect(0, 0, 3, 3)]))
        needle = "annotation 77 has category id 91"
    elif case == "gap_category":
        anns.append(_ann(78, 2, 12, [_rect(0, 0, 3, 3)]))
        needle = "category id 12"
    elif case == "unknown_image":
        anns.append(_ann(79, 3, 1, [_rect(0, 0, 3, 3)]))
        needle = "image id 3, which is not in 'images'"
    elif case == "other_split":
        images = [_img(1, "val2014"), _img(2, "val2014")]
        needle = "is the val2014 json"
    elif case == "bad_polygon":
        anns.append(_ann(80, 2, 1, [[0, 0, 3, 3, 5]]))
        needle = "annotation 80"
    jpath, out = _bad(tmp_path, images, anns)
    if case == "not_coco":
        with open(jpath, "w") as f:
            json.dump({"info": {}, "data": []}, f)
        needle = "not a COCO instances json"
    elif case == "truncated":
        raw = open(jpath, "rb").read()
        open(jpath, "wb").write(raw[: len(raw) // 2])
        needle = "not readable as JSON"
    with pytest.raises(BadInputError) as e:
        make_masks(jpath, str(out), split="train2014", progress=False)
    _one_line(e, jpath, needle)
    assert not out.exists()


def test_list_id_not_in_json_and_root_without_json(tmp_path):
    jpath, out = _bad(tmp_path, [_img(1)], [])
    with pytest.raises(BadInputError) as e:
        make_masks(jpath, str(out), split="train2014", ids=[1, 4], progress=False)
    _one_line(e, id_str(4), jpath)
    assert not out.exists()
    empty = tmp_path / "empty_root"
    empty.mkdir()
    with pytest.raises(MissingInputError) as e:
        make_masks_tool.main(["--coco_root", str(empty), "--split", "val2014", "--no_progress"])
    _one_line(e, json_path(str(empty), "val2014"))
    assert not (empty / "mask").exists()


def test_cli_prints_user_errors_as_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["make_coco_masks", "--coco_root", str(tmp_path), "--split", "train2014"])
    with pytest.raises(SystemExit) as e:
        make_masks_tool.cli()
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("make_coco_masks: error: ") and "\n" not in err and "instances_train2014.json" in err


# ---- check_coco -------------------------------------------------------------------------------------------------

def _toy_lists(toy):
    return ["--train_list", os.path.join(toy, "train14.txt"), "--val_list", os.path.join(toy, "val14.txt")]


def test_check_coco_on_the_toy_root(toy, tmp_path, capsys):
    root = str(tmp_path / "root")
    shutil.copytree(toy, root, ignore=shutil.ignore_patterns("mask"))
    assert check_coco_tool.main(["--coco_root", root, "--no_masks", *_toy_lists(root)]) == 0
    out = capsys.readouterr().out
    assert "train2014: json 10 images" in out and "val2014: json 5 images" in out and "check_coco: ok" in out
    # no masks yet: exit 1 with the command that makes them
    assert check_coco_tool.main(["--coco_root", root, "--split", "val2014", *_toy_lists(root)]) == 1
    err = capsys.readouterr().err
    assert "5 missing masks" in err and f"make_coco_masks --coco_root {root} --split val2014" in err
    for split in ("train2014", "val2014"):
        make_masks(json_path(root, split), mask_dir(root, split), split=split, progress=False)
    assert check_coco_tool.main(["--coco_root", root, *_toy_lists(root)]) == 0
    capsys.readouterr()
    # a listed image missing: exit 1, naming it
    ids = coco14.read_id_list(os.path.join(root, "train14.txt"))
    gone = coco14.image_path(root, "train2014", ids[4])
    os.remove(gone)
    assert check_coco_tool.main(["--coco_root", root, *_toy_lists(root)]) == 1
    err = capsys.readouterr().err
    assert "train2014: 1 missing images" in err and gone in err
    reports = check_coco(root, {"train2014": os.path.join(root, "train14.txt")})
    assert reports[0].missing_images == [gone] and not reports[0].ok
    # the shipped list against the toy json: ids not in the json
    rep = check_coco(root, {"val2014": None}, masks=False)[0]
    assert rep.listed == 40504 and len(rep.not_in_json) == 40504


def test_check_coco_bad_roots(tmp_path):
    with pytest.raises(MissingInputError) as e:
        check_coco(str(tmp_path / "nope"), {"train2014": None})
    _one_line(e, "--coco_root")
    with pytest.raises(MissingInputError) as e:
        check_coco(str(tmp_path), {"train2014": None})
    _one_line(e, "instances_train2014.json")
    _write_json(tmp_path, "val2014", [_img(1, "train2014")], [])
    with pytest.raises(BadInputError) as e:
        check_coco(str(tmp_path), {"val2014": None})
    _one_line(e, "is the train2014 json", "instances_val2014.json")


def test_script_wrapper_runs_the_tool_from_another_folder(toy, tmp_path):
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ok = subprocess.run([sys.executable, os.path.join(repo, "scripts", "check_coco.py"), "--coco_root", toy,
                         "--split", "val2014", "--no_masks", "--val_list", os.path.join(toy, "val14.txt")],
                        cwd=tmp_path, capture_output=True, text=True)
    assert ok.returncode == 0 and "check_coco: ok" in ok.stdout, ok.stderr
    bad = subprocess.run([sys.executable, os.path.join(repo, "scripts", "check_coco.py"), "--coco_root",
                          str(tmp_path / "nope")], cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "--coco_root" in bad.stderr
