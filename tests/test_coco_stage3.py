"""Stage 3 (train_seg, make_seg, eval_seg) with --dataset coco14 on a toy COCO root: 81 labels, the COCO defaults
(LPCAM#3's recipe and lr, the coco14 lists), training crops of COCO masks, the scores against a literal per-class
IoU, the VOC-only test export refused, and a 2-rank torchrun make_seg + eval_seg equal to one process."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from advcam import coco14, imutils, run_sample, segmentation
from advcam.datasets import COCO14
from advcam.errors import BadInputError
from advcam.segmentation import SegTrainDataset, load_label, resolve_recipe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ids(root, split):
    return open(os.path.join(root, f"{split}14.txt")).read().split()


# ----------------------------------------------------------------------------------------------- defaults
def test_coco_stage3_defaults_and_given_flags_win(toy_coco, tmp_path, monkeypatch):
    """--dataset coco14: the coco14 lists, LPCAM#3's recipe (10 x 2, 100k, 0.5-1.5, plain CE) and lr 2e-4; a flag
    given on the command line keeps its value; VOC keeps run_sample.py's defaults."""
    from advcam.steps import train_seg

    seen = []
    monkeypatch.setattr(train_seg, "run", lambda args: seen.append(vars(args).copy()) or {})
    base = ["--log_name", str(tmp_path / "log"), "--seg_weights_name", str(tmp_path / "sess" / "seg.pth"),
            "--train_seg_pass", "True"]
    run_sample.main(["--dataset", "coco14", "--coco_root", toy_coco, *base])
    run_sample.main(["--dataset", "coco14", "--coco_root", toy_coco, "--seg_recipe", "advcam",
                     "--seg_learning_rate=1e-3", "--seg_infer_list", "val.txt", *base])
    coco, given = seen[0], seen[1]
    assert (coco["seg_train_list"], coco["seg_infer_list"]) == ("coco14/train14.txt", "coco14/val14.txt")
    assert (coco["seg_recipe"], coco["seg_learning_rate"]) == ("coco", 2e-4)
    assert (given["seg_recipe"], given["seg_learning_rate"], given["seg_infer_list"]) == ("advcam", 1e-3, "val.txt")
    assert given["seg_train_list"] == "coco14/train14.txt"
    assert resolve_recipe("coco") == segmentation.Recipe(10, 2, 100000, (0.5, 0.75, 1.0, 1.25, 1.5), "ce")


def test_voc_defaults_unchanged(tmp_path, tiny_voc, monkeypatch):
    from advcam.steps import train_seg

    seen = []
    monkeypatch.setattr(train_seg, "run", lambda args: seen.append(vars(args).copy()) or {})
    run_sample.main(["--voc12_root", tiny_voc, "--log_name", str(tmp_path / "log"), "--seg_weights_name",
                     str(tmp_path / "sess" / "seg.pth"), "--train_seg_pass", "True"])
    args = seen[0]
    assert (args["seg_recipe"], args["seg_learning_rate"]) == ("advcam", 2.5e-4)
    assert (args["seg_train_list"], args["seg_infer_list"]) == ("voc12/train_aug.txt", "voc12/val.txt")


# ----------------------------------------------------------------------------------------------- training data
def test_training_crops_of_coco_masks(toy_coco):
    """At scale 1 without flip, a crop of the long side is the whole image (mean-padded) and its mask (255-padded),
    exactly; COCO labels above 20 are classes here (81 labels) and refused as VOC labels."""
    data = COCO14(toy_coco)
    names = _ids(toy_coco, "train")
    mask_dir = os.path.join(toy_coco, "mask", "train2014")
    ds = SegTrainDataset(names, data, mask_dir, 128, (1.0,), seed=0, flip=False)
    seen = set()
    for i, name in enumerate(names):
        img, gt = data.load_image(name), data.load_seg_label(name)
        h, w = gt.shape
        item = ds[(i, 3)]
        assert item["img"].shape == (3, 128, 128) and item["label"].dtype == torch.int64
        want_label = np.full((128, 128), 255, np.int64)
        want_label[:h, :w] = gt
        np.testing.assert_array_equal(item["label"].numpy(), want_label)
        want_img = np.zeros((128, 128, 3), np.float32)
        want_img[:h, :w] = imutils.normalize(img)
        np.testing.assert_allclose(item["img"].numpy().transpose(1, 2, 0), want_img, rtol=0, atol=1e-6)
        seen |= set(np.unique(gt).tolist())
    assert max(seen) > 20 and seen - {0} <= set(coco14.CAT_ID_TO_LABEL.values())
    big = next(n for n in names if data.load_seg_label(n).max() > 20)
    assert load_label(mask_dir, big, 81).max() > 20
    with pytest.raises(BadInputError, match="is neither a class \\(0-20\\) nor 255"):
        load_label(mask_dir, big, 21)


# ----------------------------------------------------------------------------------------------- the passes
def _literal_iou(pairs, n=81):
    """Per-class IoU from the label maps, class by class (None where a class is in neither)."""
    out = []
    for c in range(n):
        inter = union = 0
        for pred, gt in pairs:
            valid = gt != 255
            inter += int(((pred == c) & (gt == c) & valid).sum())
            union += int((((pred == c) | (gt == c)) & valid).sum())
        out.append(inter / union if union else None)
    return out


@pytest.mark.slow
def test_coco_stage3_passes_end_to_end(toy_coco, tmp_path):
    """train_seg on the train masks (81-label head), make_seg on val with and without the CRF, eval_seg: the scores
    are those of a literal per-class IoU over the written PNGs and the COCO masks; a rerun skips everything."""
    common = ["--dataset", "coco14", "--coco_root", toy_coco, "--num_workers", "0", "--seed", "0",
              "--log_name", str(tmp_path / "log"), "--results_json", str(tmp_path / "results.json"),
              "--cam_weights_name", str(tmp_path / "sess" / "cam.pth"),
              "--seg_network", "efficientnet_lite0_seg", "--seg_train_backbone", "False",
              "--seg_label_dir", os.path.join(toy_coco, "mask", "train2014"),
              "--seg_train_list", os.path.join(toy_coco, "train14.txt"),
              "--seg_infer_list", os.path.join(toy_coco, "val14.txt"),
              "--seg_weights_name", str(tmp_path / "sess" / "seg.pth"),
              "--seg_out_dir", str(tmp_path / "seg"), "--seg_crf_out_dir", str(tmp_path / "seg_crf")]
    out = run_sample.main(common + [
        "--seg_batch_size", "2", "--seg_iter_size", "1", "--seg_num_iters", "3", "--seg_crop_size", "48",
        "--seg_infer_scales", "1.0", "0.75", "--train_seg_pass", "True", "--make_seg_pass", "True",
        "--eval_seg_pass", "True"])
    state = torch.load(tmp_path / "sess" / "seg.pth", weights_only=True)
    assert {v.shape[0] for k, v in state.items() if k.startswith("head.") and v.ndim == 4} >= {81}
    ckpt = torch.load(str(tmp_path / "sess" / "seg.pth") + ".ckpt", weights_only=False)
    assert ckpt["iteration"] == 3 and ckpt["config"]["dataset"] == "coco14" and ckpt["config"]["lr"] == 2e-4
    data = COCO14(toy_coco)
    val = _ids(toy_coco, "val")
    for sub, key in (("seg", None), ("seg_crf", "crf")):
        pairs = []
        for name in val:
            pred = np.asarray(Image.open(tmp_path / sub / f"{name}.png"))
            gt = data.load_seg_label(name)
            assert pred.shape == gt.shape and pred.max() <= 80
            palette = Image.open(tmp_path / sub / f"{name}_palette.png")
            assert palette.mode == "P" and np.array_equal(np.asarray(palette), pred)
            pairs.append((pred, gt))
        ev = out["eval_seg"] if key is None else out["eval_seg"]["crf"]
        want = _literal_iou(pairs)
        assert len(ev["iou"]) == 81 and ev["images"] == len(val)
        assert [v is None for v in ev["iou"]] == [v is None for v in want]
        np.testing.assert_allclose([v for v in ev["iou"] if v is not None], [v for v in want if v is not None],
                                   rtol=1e-12)
        assert ev["miou"] == pytest.approx(np.mean([v for v in want if v is not None]), rel=1e-12)
    recorded = json.load(open(tmp_path / "results.json"))
    assert recorded[f"eval_seg:{tmp_path / 'seg'}"]["miou"] == pytest.approx(out["eval_seg"]["miou"])

    again = run_sample.main(common + ["--train_seg_pass", "True", "--make_seg_pass", "True"])
    assert again["train_seg"]["skipped"] and again["make_seg"]["images"] == 0


def test_voc_test_export_is_refused_for_coco_before_training(toy_coco, tmp_path):
    args = ["--dataset", "coco14", "--coco_root", toy_coco, "--log_name", str(tmp_path / "log"),
            "--seg_weights_name", str(tmp_path / "seg.pth"), "--seg_export_test", str(tmp_path / "export"),
            "--seg_label_dir", str(tmp_path / "none"), "--seg_out_dir", str(tmp_path / "seg"),
            "--seg_crf_out_dir", str(tmp_path / "crf")]
    for passes in (["--train_seg_pass", "True", "--make_seg_pass", "True"], ["--make_seg_pass", "True"]):
        with pytest.raises(BadInputError) as e:
            run_sample.main(args + passes)
        assert str(e.value) == (f"--seg_export_test {tmp_path / 'export'}: the test-server export is PASCAL VOC's "
                                "(comp6, 21 labels) and does not apply to --dataset coco14; leave the flag out")
    assert not os.path.exists(tmp_path / "seg.pth") and not os.path.exists(tmp_path / "export")


def test_weights_of_another_class_count_are_named(toy_coco, tmp_path):
    """VOC weights (21 labels) given to make_seg on COCO: one line naming the file and --dataset."""
    model, _ = segmentation.build_seg_network("efficientnet_lite0_seg", None, 21)
    torch.save(model.state_dict(), tmp_path / "voc.pth")
    with pytest.raises(BadInputError, match="voc.pth does not fit the network of --seg_network and --dataset"):
        run_sample.main(["--dataset", "coco14", "--coco_root", toy_coco, "--log_name", str(tmp_path / "log"),
                         "--seg_network", "efficientnet_lite0_seg", "--seg_weights_name", str(tmp_path / "voc.pth"),
                         "--seg_infer_list", os.path.join(toy_coco, "val14.txt"), "--seg_out_dir",
                         str(tmp_path / "seg"), "--seg_crf_out_dir", str(tmp_path / "crf"), "--make_seg_pass", "True"])


# ----------------------------------------------------------------------------------------------- torchrun
def _run(args, ranks):
    """``python -m advcam.run_sample ARGS`` (ranks = 1) or the same under ``torchrun --standalone`` (gloo, CPU)."""
    launcher = [sys.executable] if ranks == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                    "--nproc_per_node", str(ranks)]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=ROOT)
    out = subprocess.run(launcher + ["-m", "advcam.run_sample", *args], env=env, capture_output=True, text=True,
                         timeout=3600, cwd=ROOT)  # the timeout stops a hung job only
    assert out.returncode == 0, f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}"


@pytest.mark.slow
def test_coco_make_seg_and_eval_seg_under_torchrun(toy_coco, tmp_path):
    """make_seg (multi-scale + flip, CRF) and eval_seg on the toy's val images with 2 ranks write the label maps and
    scores of one process."""
    model, _ = segmentation.build_seg_network("efficientnet_lite0_seg", None, 81)
    torch.manual_seed(0)
    with torch.no_grad():
        model.head.classifier.weight.normal_(0, 1.0)  # a classifier that predicts many labels, not one
    torch.save(model.state_dict(), tmp_path / "seg.pth")
    results = {}
    for ranks in (1, 2):
        d = tmp_path / f"ranks{ranks}"
        _run(["--dataset", "coco14", "--coco_root", toy_coco, "--num_workers", "0", "--device", "cpu",
              "--seg_network", "efficientnet_lite0_seg", "--seg_weights_name", str(tmp_path / "seg.pth"),
              "--seg_infer_list", os.path.join(toy_coco, "val14.txt"), "--seg_infer_scales", "1.0", "0.75",
              "--seg_out_dir", str(d / "seg"), "--seg_crf_out_dir", str(d / "crf"), "--log_name", str(d / "log"),
              "--cam_weights_name", str(d / "sess" / "cam.pth"), "--results_json", str(d / "results.json"),
              "--make_seg_pass", "True", "--eval_seg_pass", "True"], ranks)
        results[ranks] = json.load(open(d / "results.json"))[f"eval_seg:{d / 'seg'}"]
    val = _ids(toy_coco, "val")
    for sub in ("seg", "crf"):
        names = sorted(os.listdir(tmp_path / "ranks1" / sub))
        assert names == sorted(n + s for n in val for s in (".png", "_palette.png"))
        assert names == sorted(os.listdir(tmp_path / "ranks2" / sub))
        for n in names:
            a = np.asarray(Image.open(tmp_path / "ranks1" / sub / n))
            b = np.asarray(Image.open(tmp_path / "ranks2" / sub / n))
            assert np.array_equal(a, b), (sub, n)
    assert results[1] == results[2] and results[1]["images"] == len(val) and len(results[1]["iou"]) == 81
    assert "(2 rank(s))" in open(tmp_path / "ranks2" / "log.log").read()
    predicted = set()
    for n in val:
        predicted |= set(np.unique(np.asarray(Image.open(tmp_path / "ranks1" / "seg" / f"{n}.png"))).tolist())
    assert len(predicted) > 1  # maps of several labels: the comparison is not of constant images
