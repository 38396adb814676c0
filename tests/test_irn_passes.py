"""IRN passes on a tiny VOC folder: train_irn, make_sem_seg, eval_sem_seg, make_ins_seg, eval_ins_seg."""
import os

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from advcam import pseudo_labels, run_sample
from advcam.io import save_cam_npy, save_npy, save_png
from advcam.nets.resnet50_cam import Net as CamNet
from advcam.nets.resnet50_irn import EdgeDisplacement
from advcam.steps import eval_ins_seg
from advcam.voc12 import VOC_PALETTE


def _ids(voc, split):
    return open(os.path.join(voc, "ImageSets/Segmentation", split + ".txt")).read().split()


def _gt(voc, name):
    return np.asarray(Image.open(os.path.join(voc, "SegmentationClass", name + ".png")))


def _prepare(tmp_path, voc):
    """CAM weights, CAM files and IR labels derived from the ground truth, SegmentationObject; common flags."""
    torch.manual_seed(0)
    cam_w = tmp_path / "sess" / "cam.pth"
    os.makedirs(cam_w.parent, exist_ok=True)
    torch.save(CamNet().state_dict(), cam_w)
    os.makedirs(os.path.join(voc, "SegmentationObject"), exist_ok=True)
    rng = np.random.default_rng(0)
    for name in _ids(voc, "train_aug") + _ids(voc, "val"):
        seg = _gt(voc, name)
        h, w = seg.shape
        keys = [c - 1 for c in np.unique(seg) if c not in (0, 255)]
        high = np.stack([(seg == k + 1).astype(np.float32) for k in keys])
        high = np.clip(high + 0.1 * rng.random(high.shape, dtype=np.float32), 0, 1)
        hs, ws = (h + 3) // 4, (w + 3) // 4
        cam = np.pad(high, ((0, 0), (0, 4 * hs - h), (0, 4 * ws - w))).reshape(len(keys), hs, 4, ws, 4).mean((2, 4))
        cam /= cam.max((1, 2), keepdims=True)
        save_cam_npy(tmp_path / "cam" / f"{name}.npy", keys, torch.from_numpy(cam), high)
        save_png(tmp_path / "ir" / f"{name}.png", seg.copy())
        inst = np.zeros_like(seg)
        n = 0
        for c in keys:
            comp, k = ndimage.label(seg == c + 1)
            inst[comp > 0] = comp[comp > 0] + n
            n += k
        inst[seg == 255] = 255
        save_png(os.path.join(voc, "SegmentationObject", name + ".png"), inst, palette=VOC_PALETTE)
    return ["--voc12_root", voc, "--num_workers", "0", "--train_list", "train_aug.txt", "--infer_list", "train.txt",
            "--cam_weights_name", str(cam_w), "--irn_weights_name", str(tmp_path / "sess" / "irn.pth"),
            "--cam_out_dir", str(tmp_path / "cam"), "--ir_label_out_dir", str(tmp_path / "ir"),
            "--sem_seg_out_dir", str(tmp_path / "sem"), "--ins_seg_out_dir", str(tmp_path / "ins"),
            "--log_name", str(tmp_path / "log"), "--results_json", str(tmp_path / "results.json"),
            "--irn_crop_size", "80", "--irn_batch_size", "2", "--irn_num_epoches", "1", "--no_pretrained", "True"]


@pytest.mark.slow
def test_irn_passes_end_to_end(tmp_path, tiny_voc):
    common = _prepare(tmp_path, tiny_voc)
    out = run_sample.main(common + ["--num_workers", "1", "--train_irn_pass", "True", "--make_sem_seg_pass", "True",
                                    "--eval_sem_seg_pass", "True", "--make_ins_seg_pass", "True",
                                    "--eval_ins_seg_pass", "True"])
    # IRN weights: reference key layout, strict load, estimated mean displacement
    state = torch.load(tmp_path / "sess" / "irn.pth", weights_only=True)
    EdgeDisplacement().load_state_dict(state, strict=True)
    assert state["mean_shift.running_mean"].shape == (2,) and state["mean_shift.running_mean"].abs().sum() > 0
    cam_state = torch.load(tmp_path / "sess" / "cam.pth", weights_only=True)
    assert torch.equal(state["resnet50.layer4.2.conv3.weight"], cam_state["resnet50.layer4.2.conv3.weight"])

    names = _ids(tiny_voc, "train")
    for name in names:
        gt = _gt(tiny_voc, name)
        present = {0} | {int(c) for c in np.unique(gt) if c != 255}
        label = np.asarray(Image.open(tmp_path / "sem" / f"{name}.png"))
        pal = Image.open(tmp_path / "sem" / f"{name}_palette.png")
        assert label.shape == gt.shape and label.dtype == np.uint8 and set(np.unique(label)) <= present
        assert pal.mode == "P" and np.array_equal(np.asarray(pal), label)
        det = np.load(tmp_path / "ins" / f"{name}.npy", allow_pickle=True).item()
        n = len(det["score"])
        assert det["mask"].shape == (n, *gt.shape) and det["mask"].dtype == bool and len(det["class"]) == n
        assert set(det["class"].tolist()) <= {c - 1 for c in present if c}
    sem = out["eval_sem_seg"]
    assert 0 <= sem["miou"] <= 1 and len(sem["iou"]) == 21 and sem["images"] == len(names)
    assert {"fp_bg", "fn_bg", "fp_fg_mean", "fn_fg_mean"} <= set(sem)
    ins = out["eval_ins_seg"]
    assert 0 <= ins["map50"] <= 1 and 0 <= ins["map75"] <= ins["map50"]
    assert "eval_sem_seg:" + str(tmp_path / "sem") in open(tmp_path / "results.json").read()

    # resumable: a rerun skips the finished images
    mtimes = {f: os.path.getmtime(tmp_path / "sem" / f) for f in os.listdir(tmp_path / "sem")}
    again = run_sample.main(common + ["--make_sem_seg_pass", "True", "--train_irn_pass", "True"])
    assert again["make_sem_seg"]["skipped"] == len(names) and again["make_sem_seg"]["images"] == 0
    assert again["train_irn"]["skipped"]
    assert {f: os.path.getmtime(tmp_path / "sem" / f) for f in os.listdir(tmp_path / "sem")} == mtimes

    # predictions equal to the ground truth score 1.0; a missing one is named
    perfect = tmp_path / "perfect"
    for name in names:
        save_png(perfect / f"{name}.png", _gt(tiny_voc, name).copy())
    res = run_sample.main(common + ["--sem_seg_out_dir", str(perfect), "--eval_sem_seg_pass", "True"])
    assert res["eval_sem_seg"]["miou"] == pytest.approx(1.0) and res["eval_sem_seg"]["fn_bg"] == 0
    os.remove(perfect / f"{names[1]}.png")
    with pytest.raises(FileNotFoundError, match=f"{names[1]}.png.*make_sem_seg"):
        run_sample.main(common + ["--sem_seg_out_dir", str(perfect), "--eval_sem_seg_pass", "True"])


def test_eval_ins_seg_perfect_and_missing(tmp_path, tiny_voc):
    common = _prepare(tmp_path, tiny_voc)
    names = _ids(tiny_voc, "train")
    for name in names:
        masks, labels = eval_ins_seg.load_gt_instances(tiny_voc, name)
        assert len(masks) >= 1
        save_npy(tmp_path / "ins" / f"{name}.npy", {"score": np.ones(len(labels), np.float32), "mask": masks,
                                                    "class": labels})
    res = run_sample.main(common + ["--eval_ins_seg_pass", "True"])["eval_ins_seg"]
    assert res["map50"] == pytest.approx(1.0) and res["map75"] == pytest.approx(1.0)
    os.remove(tmp_path / "ins" / f"{names[0]}.npy")
    with pytest.raises(FileNotFoundError, match=f"{names[0]}.npy.*make_ins_seg"):
        run_sample.main(common + ["--eval_ins_seg_pass", "True"])


def test_train_irn_errors(tmp_path, tiny_voc):
    common = _prepare(tmp_path, tiny_voc)
    with pytest.raises(ValueError, match="--irn_crop_size 64"):
        run_sample.main(common + ["--train_irn_pass", "True", "--irn_crop_size", "64"])
    with pytest.raises(ValueError, match="--irn_batch_size 32"):
        run_sample.main(common + ["--train_irn_pass", "True", "--irn_batch_size", "32"])
    os.remove(tmp_path / "ir" / f"{_ids(tiny_voc, 'train_aug')[2]}.png")
    with pytest.raises(FileNotFoundError, match="cam_to_ir_label"):
        run_sample.main(common + ["--train_irn_pass", "True"])
    with pytest.raises(FileNotFoundError, match="train_irn"):
        run_sample.main(common + ["--make_sem_seg_pass", "True"])


def test_centroids_and_clusters():
    h, w = 12, 20
    y, x = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    centre_x = np.where(x < 10, 4.0, 15.0)  # two objects side by side, centroids (6, 4) and (6, 15)
    dp = np.stack([6.0 - y, centre_x - x])
    centroids = pseudo_labels.find_centroids(dp)
    assert np.array_equal(centroids[1], centre_x.astype(np.int64)) and np.all(centroids[0] == 6)
    inst = pseudo_labels.cluster_centroids(centroids, dp)
    assert inst.shape == (2, h, w) and inst.dtype == bool
    assert np.array_equal(inst[0], x < 10) and np.array_equal(inst[1], x >= 10)

    masks = np.zeros((2, 10, 10), bool)
    masks[0, :5, :5] = masks[0, 8:, 8:] = True  # two components, one tiny
    scores = np.random.default_rng(0).random((2, 10, 10)).astype(np.float32)
    det = pseudo_labels.detect_instances(scores, masks, np.array([3, 7]), min_size=5)
    assert det["mask"].shape == (2, 10, 10) and det["class"].tolist() == [3, 3]
    assert det["score"][0] == pytest.approx(scores[0][:5, :5].max()) and det["score"][1] == 0
    empty = pseudo_labels.detect_instances(scores, np.zeros_like(masks), np.array([3, 7]), min_size=5)
    assert empty["mask"].shape == (0, 10, 10) and len(empty["score"]) == 0


def test_oracle_boundaries_recover_the_ground_truth(tmp_path, tiny_voc, monkeypatch):
    """With IRN replaced by ground-truth boundaries and centroid displacements, the pseudo labels match the GT."""
    from advcam import irn_loop

    common = _prepare(tmp_path, tiny_voc)
    current = {}
    real_load_cams = irn_loop.load_cams

    def spy_load_cams(cam_dir, name, size, device):
        current["name"] = name
        return real_load_cams(cam_dir, name, size, device)

    def oracle(model, pair):
        seg = _gt(tiny_voc, current["name"])[2::4, 2::4]  # stride-4 cell centres
        edge = ndimage.binary_dilation(seg > 0) & (seg == 0)  # one-cell boundary just outside the objects
        dp = np.zeros((2, *seg.shape), np.float32)
        comp, n = ndimage.label(seg > 0)
        yy, xx = np.indices(seg.shape)
        for i in range(1, n + 1):
            m = comp == i
            dp[0][m], dp[1][m] = yy[m].mean() - yy[m], xx[m].mean() - xx[m]
        return torch.from_numpy(edge.astype(np.float32)), torch.from_numpy(dp)

    # both passes read their inputs through irn_loop.irn_inference
    monkeypatch.setattr(irn_loop, "build_irn", lambda args, device: None)
    monkeypatch.setattr(irn_loop, "edge_and_displacement", oracle)
    monkeypatch.setattr(irn_loop, "load_cams", spy_load_cams)
    (tmp_path / "sess" / "irn.pth").write_bytes(b"")  # the passes only check that it exists
    out = run_sample.main(common + ["--make_sem_seg_pass", "True", "--eval_sem_seg_pass", "True",
                                    "--make_ins_seg_pass", "True", "--eval_ins_seg_pass", "True"])
    assert out["eval_sem_seg"]["miou"] > 0.8
    assert out["eval_ins_seg"]["map50"] > 0.8
