"""The pipelines' --dataset coco14 branch (get_mask_quality.sh / get_seed_quality.sh on a toy COCO root) and the
compact CAM file forms (--cam_format float16 / strided16)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import MODULE_RECORDER

from advcam.cam import fuse_scales
from advcam.errors import BadInputError
from advcam.io import CAM_FORMATS, high_res_from_cam, load_cam_npy, save_cam_npy, save_npy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bash(script, *args, cwd, env=None, timeout=120):
    base = {k: v for k, v in os.environ.items() if k not in ("VOC12_ROOT", "COCO_ROOT", "OUT", "TOY_VOC", "TOY_COCO")}
    base["OMP_NUM_THREADS"] = "1"
    return subprocess.run(["bash", os.path.join(ROOT, script), *args], cwd=cwd, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


# ----------------------------------------------------------------------------------------------- the shell pipelines
@pytest.mark.parametrize("script", ["get_mask_quality.sh", "get_seed_quality.sh"])
def test_help_documents_the_dataset_flag(tmp_path, script):
    res = _bash(script, "--help", cwd=tmp_path)
    assert res.returncode == 0 and res.stderr == ""
    usage = res.stdout
    assert "--dataset coco14 [--coco_root DIR]" in usage and "COCO_ROOT" in usage and "TOY_COCO" in usage
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("script", ["get_mask_quality.sh", "get_seed_quality.sh"])
def test_bad_coco_root_is_one_line(tmp_path, script):
    """A COCO root that is not there: check_coco's one line, exit 2, no pass runs (only the check's log is written)."""
    res = _bash(script, "--dataset", "coco14", "--coco_root", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert res.returncode == 2
    assert res.stdout.splitlines() == [f"python -m advcam.tools.check_coco: error: --coco_root {tmp_path}/nowhere: "
                                       "no such folder; give the COCO 2014 folder (train2014/, val2014/, "
                                       "annotations/), or make a toy one with python -m advcam.tools.make_toy_coco"]
    assert os.listdir(tmp_path) == ["result"] and os.listdir(tmp_path / "result") == ["check_coco.log"]
    # the same from the environment variable
    res = _bash(script, "--dataset=coco14", cwd=tmp_path, env={"COCO_ROOT": str(tmp_path / "nowhere")})
    assert res.returncode == 2 and "--coco_root" in res.stdout and len(res.stdout.splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["--dataset", "coco15"], "--dataset coco15: expected voc12 or coco14 (see --help)"),
    (["--coco_root", "x"], "--coco_root needs --dataset coco14 (see --help)"),
    (["--dataset", "coco14", "--voc12_root", "x"],
     "--voc12_root goes with --dataset voc12; give the COCO root as --coco_root DIR (see --help)"),
    (["--dataset"], "--dataset needs a value (see --help)"),
])
def test_dataset_flag_errors(tmp_path, args, message):
    res = _bash("get_mask_quality.sh", *args, cwd=tmp_path)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.splitlines() == [f"get_mask_quality.sh: error: {message}"]
    assert os.listdir(tmp_path) == []


def test_semi_pipeline_refuses_coco(tmp_path):
    res = _bash("get_semi_quality.sh", "--dataset", "coco14", cwd=tmp_path)
    assert res.returncode == 2 and res.stderr.splitlines() == [
        "get_semi_quality.sh: error: --dataset coco14 is not supported by this pipeline yet (VOC only; docs/coco.md)"]



# the flags of tests/test_datasets.py's tiny COCO run
TINY = {
    "advcam.run_sample": ["--num_workers", "0", "--cam_crop_size", "64", "--cam_resize_long", "64", "96",
                          "--cam_batch_size", "4", "--cam_num_epoches", "1", "--irn_crop_size", "96",
                          "--irn_batch_size", "4", "--irn_num_epoches", "1", "--irn_infer_pad", "128",
                          "--exp_times", "2", "--conf_fg_thres", "0.3", "--conf_bg_thres", "0.05",
                          "--seg_batch_size", "2", "--seg_num_iters", "2", "--seg_crop_size", "64",
                          "--seg_infer_scales", "1.0"],
    "advcam.obtain_cam_masking": ["--num_workers", "0", "--adv_iter", "1"],
}


@pytest.mark.slow
def test_toy_coco_demo_through_both_pipelines(tmp_path):
    """get_mask_quality.sh --dataset coco14 without a root: makes the toy root's masks, checks it, trains the
    classifier, AdvCAM seeds (strided16, the coco14 default), IRN, prints the table, writes demo_coco/results.json;
    get_seed_quality.sh --dataset coco14 then reuses the classifier and the seeds."""
    from advcam.tools.make_toy_coco import make_toy_coco

    make_toy_coco(str(tmp_path / "toy_coco"), n_train=8, n_val=4, seed=1)  # TOY_COCO's default folder
    (tmp_path / "wrap.py").write_text(MODULE_RECORDER)
    env = {"PYTHON": f"{sys.executable} {tmp_path / 'wrap.py'}", "WRAP_LOG": str(tmp_path / "calls.jsonl"),
           "WRAP_EXTRA": json.dumps(TINY), "PYTHONPATH": ROOT}
    res = _bash("get_mask_quality.sh", "--dataset", "coco14", "--device", "cpu", cwd=tmp_path, env=env, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    calls = [json.loads(line) for line in open(tmp_path / "calls.jsonl")]
    assert [c[0] for c in calls] == ["advcam.tools.pipelines"] + ["advcam.tools.make_coco_masks"] * 2 + [
        "advcam.tools.check_coco", "advcam.run_sample", "advcam.obtain_cam_masking", "advcam.run_sample",
        "advcam.run_sample", "advcam.tools.results_table", "advcam.tools.report"]
    assert all("--dataset" in c and c[c.index("--dataset") + 1] == "coco14" for c in calls[4:8])
    assert "No COCO root configured: running the toy COCO demo on toy_coco" in res.stdout
    rows = {line.split("  ")[0]: float(line.split()[-1]) for line in res.stdout.splitlines()
            if line.startswith(("AdvCAM seeds", "IRN masks"))}
    assert set(rows) == {"AdvCAM seeds", "IRN masks"} and all(0 <= v <= 100 for v in rows.values()), rows
    results = json.load(open(tmp_path / "demo_coco" / "results.json"))
    assert len(results["eval_sem_seg:demo_coco/sem_seg"]["iou"]) == 81
    assert len(results["eval_seg:demo_coco/seg"]["iou"]) == 81 and results["eval_seg:demo_coco/seg"]["images"] == 4
    assert "Segmentation (val, CRF)" in res.stdout
    assert os.path.isfile(tmp_path / "demo_coco" / "report" / "report.html"), res.stdout[-2000:]
    assert 100 * results["eval_cam:demo_coco/cam_adv_mask"]["miou"] == pytest.approx(rows["AdvCAM seeds"], abs=0.01)
    names = open(tmp_path / "toy_coco" / "train14.txt").read().split()
    assert sorted(os.listdir(tmp_path / "toy_coco" / "mask" / "train2014")) == sorted(n + ".png" for n in names)
    seed = np.load(tmp_path / "demo_coco" / "cam_adv_mask" / f"{names[1]}.npy", allow_pickle=True).item()
    assert set(seed) == {"keys", "cam", "size"} and seed["cam"].dtype == torch.float16  # the coco14 default
    assert sorted(os.listdir(tmp_path)) == ["calls.jsonl", "demo_coco", "toy_coco", "wrap.py"]

    os.remove(tmp_path / "calls.jsonl")
    res = _bash("get_seed_quality.sh", "--dataset", "coco14", cwd=tmp_path, env=env, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "classifier demo_coco/sess/res50_cam.pth exists: not retrained" in res.stdout
    calls = [json.loads(line) for line in open(tmp_path / "calls.jsonl")]
    assert [c[0] for c in calls] == ["advcam.tools.make_coco_masks"] * 2 + [
        "advcam.tools.check_coco", "advcam.obtain_cam_masking", "advcam.run_sample", "advcam.tools.results_table"]
    assert calls[2][calls[2].index("--split") + 1:][:2] == ["train2014", "--train_list"]  # train only
    seeds = [line for line in res.stdout.splitlines() if line.startswith("AdvCAM seeds")]
    assert len(seeds) == 1 and float(seeds[0].split()[-1]) == pytest.approx(rows["AdvCAM seeds"], abs=0.01)


# ----------------------------------------------------------------------------------------------- compact CAM files
def _maps(k=3, size=(37, 50), seed=0):
    g = torch.Generator().manual_seed(seed)
    return fuse_scales([torch.rand(k, 3, 4, generator=g), torch.rand(k, 5, 7, generator=g)], size)


def test_high_res_from_cam_by_hand():
    """A 1 x 2 stride-4 map [0, 1] of a 3 x 6 image: bilinear x4 (align_corners=False) samples the input at
    (o + 0.5) / 4 - 0.5 = -0.375, -0.125, 0.125, 0.375, 0.625, 0.875 (clamped to the edge), then / (max + 1e-5)."""
    hr = high_res_from_cam(torch.tensor([[[0.0, 1.0]]]), (3, 6))
    row = np.array([0, 0, 0.125, 0.375, 0.625, 0.875]) / (0.875 + 1e-5)
    assert hr.shape == (1, 3, 6) and hr.dtype == np.float32
    np.testing.assert_allclose(hr, np.broadcast_to(row, (1, 3, 6)), rtol=1e-6)
    assert high_res_from_cam(torch.zeros(0, 1, 2), (3, 6)).shape == (0, 3, 6)


def test_compact_forms_round_trip(tmp_path):
    cam, high = _maps()
    keys = [4, 11, 79]
    loaded = {}
    for fmt in CAM_FORMATS:
        save_cam_npy(tmp_path / f"{fmt}.npy", keys, cam, high, fmt)
        loaded[fmt] = d = load_cam_npy(tmp_path / f"{fmt}.npy")
        # every form reads as the reference's dict: int64 keys, float32 tensor cam, float32 array high_res
        assert d["keys"].tolist() == keys and d["keys"].dtype == torch.int64
        assert torch.is_tensor(d["cam"]) and d["cam"].dtype == torch.float32 and d["cam"].shape == cam.shape
        assert isinstance(d["high_res"], np.ndarray) and d["high_res"].dtype == np.float32
        assert d["high_res"].shape == high.shape
    ref = loaded["float32"]
    assert torch.equal(ref["cam"], cam) and np.array_equal(ref["high_res"], high.numpy())  # the reference: exact
    # float16: within half-precision rounding (maps in [0, 1]: relative 2^-11, so absolute 2^-11 at most)
    for got, want in ((loaded["float16"]["cam"].numpy(), cam.numpy()), (loaded["float16"]["high_res"], high.numpy())):
        np.testing.assert_allclose(got, want, rtol=0, atol=2 ** -11)
        assert np.array_equal(got, want.astype(np.float16).astype(np.float32))
    # strided16: the half-precision stride-4 map, and high_res recomputed from it
    np.testing.assert_allclose(loaded["strided16"]["cam"].numpy(), cam.numpy(), rtol=0, atol=2 ** -11)
    np.testing.assert_array_equal(loaded["strided16"]["high_res"],
                                  high_res_from_cam(cam.half().float(), tuple(high.shape[1:])))
    raw = np.load(tmp_path / "strided16.npy", allow_pickle=True).item()
    assert set(raw) == {"keys", "cam", "size"} and raw["size"] == (37, 50) and raw["cam"].dtype == torch.float16
    sizes = {fmt: os.path.getsize(tmp_path / f"{fmt}.npy") for fmt in CAM_FORMATS}
    assert sizes["float32"] > 1.9 * sizes["float16"] and sizes["float16"] > 5 * sizes["strided16"]  # 37 x 50 px
    # an image without a positive class
    save_cam_npy(tmp_path / "none.npy", [], torch.zeros(0, 10, 13), np.zeros((0, 37, 50), np.float32), "strided16")
    assert load_cam_npy(tmp_path / "none.npy")["high_res"].shape == (0, 37, 50)
    with pytest.raises(ValueError, match="cam_format 'int8'"):
        save_cam_npy(tmp_path / "x.npy", keys, cam, high, "int8")


def test_readers_accept_every_form(tmp_path):
    """The IRN loop's reader, the seed evaluation and cam_to_ir_label take each form; float16 gives the float32 file's
    seeds up to a pixel or two at a threshold (strided16's recomputed maps differ more: its effect is measured on the
    toy, docs/coco.md)."""
    from advcam.evaluation import seed_prediction
    from advcam.irn_loop import load_cams
    from advcam.steps.cam_to_ir_label import ir_label_from_cam

    cam, high = _maps(k=2, size=(40, 52), seed=3)
    img = np.random.default_rng(0).integers(0, 255, (40, 52, 3), dtype=np.uint8)
    preds, labels = {}, {}
    for fmt in CAM_FORMATS:
        save_cam_npy(tmp_path / f"{fmt}.npy", [2, 7], cam, high, fmt)
        cams, keys = load_cams(str(tmp_path), fmt, (40, 52), torch.device("cpu"))
        assert cams.dtype == torch.float32 and cams.shape == (2, 10, 13) and keys.tolist() == [2, 7]
        d = load_cam_npy(tmp_path / f"{fmt}.npy")
        preds[fmt] = seed_prediction(d, 0.2)
        labels[fmt] = ir_label_from_cam(img, d, 0.3, 0.05)
        assert preds[fmt].shape == labels[fmt].shape == (40, 52)
        assert set(np.unique(preds[fmt]).tolist()) <= {0, 3, 8}
    assert (preds["float16"] != preds["float32"]).sum() <= 2


def test_damaged_strided_file_is_one_line(tmp_path):
    save_npy(tmp_path / "bad.npy", {"keys": torch.tensor([1]), "cam": torch.zeros(1, 2, 2), "size": "big"})
    with pytest.raises(BadInputError, match=r"bad.npy: a strided16 CAM file whose 'cam' or 'size' is damaged"):
        load_cam_npy(tmp_path / "bad.npy")
