"""End to end on a tiny VOC folder: the passes as a user runs them, resumption, error messages."""
import os

import numpy as np
import pytest
import torch
from conftest import save_random_cam_weights
from PIL import Image

import advcam.io
from advcam import obtain_cam_masking, run_sample
from advcam.errors import BadInputError
from advcam.io import load_cam_npy


def _common(tmp_path, voc):
    # the root's own lists (the defaults, voc12/train_aug.txt and voc12/val.txt, are the shipped VOC lists)
    return ["--voc12_root", voc, "--train_list", "train_aug.txt", "--val_list", "val.txt",
            "--num_workers", "0", "--cam_weights_name", str(tmp_path / "sess" / "cam.pth"),
            "--log_name", str(tmp_path / "log"), "--results_json", str(tmp_path / "results.json")]


@pytest.mark.slow
def test_cam_passes_end_to_end(tmp_path, tiny_voc):
    out = run_sample.main(_common(tmp_path, tiny_voc) + [
        "--no_pretrained", "True", "--cam_crop_size", "64", "--cam_resize_long", "48", "80", "--cam_batch_size", "4",
        "--cam_num_epoches", "1", "--cam_scales", "1.0", "0.5", "--cam_out_dir", str(tmp_path / "cam"), "--seed", "0",
        "--train_cam_pass", "True", "--make_cam_pass", "True", "--eval_cam_pass", "True"])
    assert os.path.isfile(tmp_path / "sess" / "cam.pth")
    assert 0 <= out["eval_cam"]["miou"] <= 1 and len(out["eval_cam"]["mious"]) == 20
    names = open(os.path.join(tiny_voc, "ImageSets/Segmentation/train_aug.txt")).read().split()
    for n in names:
        d = np.load(tmp_path / "cam" / f"{n}.npy", allow_pickle=True).item()  # exactly as the reference loads
        W, H = Image.open(os.path.join(tiny_voc, "JPEGImages", n + ".jpg")).size
        assert d["keys"].dtype == torch.int64 and d["cam"].dtype == torch.float32
        assert isinstance(d["high_res"], np.ndarray) and d["high_res"].dtype == np.float32
        K = len(d["keys"])
        assert tuple(d["cam"].shape) == (K, (H + 3) // 4, (W + 3) // 4) and d["high_res"].shape == (K, H, W)
        peaks = np.concatenate([d["high_res"].max((1, 2)), d["cam"].amax((1, 2)).numpy()])
        # each channel is max-normalised (an all-zero map, possible after one epoch, stays zero)
        assert np.all((peaks > 0.99) & (peaks <= 1) | (peaks == 0))
    assert "eval_cam:" + str(tmp_path / "cam") in open(tmp_path / "results.json").read()


@pytest.mark.slow
def test_advcam_resumes_after_interruption(tmp_path, tiny_voc, monkeypatch):
    save_random_cam_weights(str(tmp_path / "sess" / "cam.pth"))
    args = ["--voc12_root", tiny_voc, "--train_list", "train_aug.txt", "--num_workers", "0", "--cam_weights_name",
            str(tmp_path / "sess" / "cam.pth"), "--adv_iter", "3", "--cam_scales", "1.0"]
    whole = tmp_path / "whole"
    obtain_cam_masking.main(args + ["--cam_out_dir", str(whole)])

    # interrupt the second run while it writes its third file
    part = tmp_path / "part"
    real_save = np.save
    calls = {"n": 0}

    def flaky_save(f, obj, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            f.write(b"\x93NUMPY partial")
            raise KeyboardInterrupt
        return real_save(f, obj, *a, **k)

    monkeypatch.setattr(advcam.io.np, "save", flaky_save)
    with pytest.raises(KeyboardInterrupt):
        obtain_cam_masking.main(args + ["--cam_out_dir", str(part)])
    monkeypatch.setattr(advcam.io.np, "save", real_save)
    assert sorted(os.listdir(part)) == sorted(os.listdir(whole))[:2]  # no partial or temporary file left
    stats = obtain_cam_masking.main(args + ["--cam_out_dir", str(part)])
    assert stats["skipped"] == 2 and stats["images"] == len(os.listdir(whole)) - 2
    assert sorted(os.listdir(part)) == sorted(os.listdir(whole))
    for name in os.listdir(whole):
        a, b = load_cam_npy(whole / name), load_cam_npy(part / name)
        assert torch.equal(a["keys"], b["keys"]) and torch.equal(a["cam"], b["cam"])
        assert np.array_equal(a["high_res"], b["high_res"])


@pytest.mark.slow
def test_bad_image_stops_or_is_skipped(tmp_path, tiny_voc):
    save_random_cam_weights(str(tmp_path / "sess" / "cam.pth"))
    bad = os.path.join(tiny_voc, "JPEGImages", "2100_000001.jpg")
    with open(bad, "wb") as f:
        f.write(b"not a jpeg")
    args = ["--voc12_root", tiny_voc, "--train_list", "train.txt", "--num_workers", "0", "--cam_weights_name",
            str(tmp_path / "sess" / "cam.pth"), "--adv_iter", "2", "--cam_scales", "1.0",
            "--cam_out_dir", str(tmp_path / "adv")]
    with pytest.raises(BadInputError, match="2100_000001.jpg.*--skip_bad_images True"):
        obtain_cam_masking.main(args)
    stats = obtain_cam_masking.main(args + ["--skip_bad_images", "True"])
    assert stats["bad"] == 1 and not os.path.exists(tmp_path / "adv" / "2100_000001.npy")


def test_flag_errors(tmp_path, tiny_voc, capsys):
    with pytest.raises(SystemExit):
        obtain_cam_masking.main(["--voc12_root", tiny_voc, "--target_layer", "layer4"])
    assert "valid layers: stage1, stage2, stage3, stage4" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_sample.main(["--voc12_root", str(tmp_path / "nowhere"), "--eval_cam_pass", "True"])
    assert "JPEGImages" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match=r"cam\.pth\.pth"):
        obtain_cam_masking.main(["--voc12_root", tiny_voc, "--train_list", "train.txt",
                                 "--cam_weights_name", str(tmp_path / "cam.pth")])


@pytest.mark.slow
def test_reference_weights_name_fallback(tmp_path, tiny_voc):
    save_random_cam_weights(str(tmp_path / "sess" / "res50_cam.pth.pth"))  # the reference saves <name>.pth
    stats = obtain_cam_masking.main(["--voc12_root", tiny_voc, "--train_list", "train.txt", "--num_workers", "0",
                                     "--cam_weights_name", str(tmp_path / "sess" / "res50_cam.pth"), "--adv_iter", "1",
                                     "--cam_scales", "1.0", "--cam_out_dir", str(tmp_path / "adv")])
    assert stats["images"] == 4


@pytest.mark.slow
def test_seeded_training_repeats_itself(tmp_path, tiny_voc):
    """With --seed, classifier training (random crops, flips, shuffling, init) gives the same weights twice."""
    weights = []
    for run in ("a", "b"):
        args = _common(tmp_path / run, tiny_voc) + [
            "--no_pretrained", "True", "--cam_crop_size", "48", "--cam_resize_long", "40", "64",
            "--cam_batch_size", "4", "--cam_num_epoches", "1", "--seed", "7", "--train_cam_pass", "True"]
        run_sample.main(args)
        weights.append(torch.load(tmp_path / run / "sess" / "cam.pth", weights_only=True))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_cam_pass_uses_the_given_cls_labels(tmp_path, tiny_voc):
    """--cls_labels is the only label source: with Annotations/ gone, the maps' keys are the given labels."""
    import shutil

    names = open(os.path.join(tiny_voc, "ImageSets/Segmentation/train.txt")).read().split()
    given = {n: np.eye(20, dtype=np.float32)[[5, 9][i % 2]] for i, n in enumerate(names)}  # not the XMLs' classes
    np.save(tmp_path / "labels.npy", given)
    shutil.rmtree(os.path.join(tiny_voc, "Annotations"))
    save_random_cam_weights(str(tmp_path / "sess" / "cam.pth"))
    stats = obtain_cam_masking.main(["--voc12_root", tiny_voc, "--train_list", "train.txt", "--num_workers", "0",
                                     "--cls_labels", str(tmp_path / "labels.npy"), "--cam_weights_name",
                                     str(tmp_path / "sess" / "cam.pth"), "--adv_iter", "1", "--cam_scales", "1.0",
                                     "--cam_out_dir", str(tmp_path / "adv")])
    assert stats["images"] == len(names)
    for i, n in enumerate(names):
        assert load_cam_npy(tmp_path / "adv" / f"{n}.npy")["keys"].tolist() == [[5, 9][i % 2]]
