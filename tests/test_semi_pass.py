"""The train_semi pass (advcam.steps.train_semi, advcam.semi.train_cct): resume, what it reads, the labelled
stream, two torchrun ranks against one process, the trained network in make_seg / eval_seg, the naive-mix folder."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT, write_tiny_voc
from PIL import Image

from advcam import run_sample, semi
from advcam.errors import BadInputError, MissingInputError
from advcam.io import save_png

TRAIN = "ImageSets/Segmentation/train_aug.txt"


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    """Tiny VOC (train_aug: 8 images, the first 4 labelled) with weak masks for the 4 unlabelled ones: the ground
    truth with every object shifted to class 15 (so the weak masks differ from the ground truth)."""
    base = tmp_path_factory.mktemp("semi")
    root = write_tiny_voc(str(base / "voc"))
    names = open(os.path.join(root, TRAIN)).read().split()
    weak = base / "weak"
    for n in names[4:]:
        gt = np.asarray(Image.open(os.path.join(root, "SegmentationClass", n + ".png"))).copy()
        gt[(gt > 0) & (gt < 255)] = 15
        save_png(weak / f"{n}.png", gt)
    labeled = base / "labeled.txt"
    labeled.write_text("\n".join(names[:4]) + "\n")
    return {"base": base, "root": root, "names": names, "weak": str(weak), "labeled": str(labeled)}


def _argv(voc, out, *extra):
    r = voc["root"]
    return ["--voc12_root", r, "--num_workers", "0", "--seed", "0", "--semi_network", "cct_efficientnet_lite0",
            "--semi_train_list", os.path.join(r, TRAIN), "--semi_labeled_list", voc["labeled"],
            "--semi_weak_label_dir", voc["weak"], "--semi_val_list", os.path.join(r, "ImageSets/Segmentation/val.txt"),
            "--semi_batch_size", "2", "--semi_unlabeled_batch_size", "2", "--semi_crop_size", "32",
            "--semi_scales", "0.75", "1.0", "--semi_val_every", "0", "--semi_weights_name", str(out / "semi.pth"),
            "--log_name", str(out / "log"), "--train_semi_pass", "True", *extra]


def _weights(path):
    return torch.load(path, weights_only=True)


@pytest.mark.slow
def test_resume_continues_the_same_run(voc, monkeypatch):
    """4 steps in one go == 2 steps, an interruption, and a rerun that resumes from the step-2 checkpoint."""
    whole, split = voc["base"] / "whole", voc["base"] / "split"
    run_sample.main(_argv(voc, whole, "--semi_num_iters", "4"))
    real = semi.cct_step

    def stop_at_2(model, labeled, unlabeled, weak, iteration, **kw):
        if iteration == 2:
            raise KeyboardInterrupt
        return real(model, labeled, unlabeled, weak, iteration, **kw)

    monkeypatch.setattr(semi, "cct_step", stop_at_2)
    with pytest.raises(KeyboardInterrupt):
        run_sample.main(_argv(voc, split, "--semi_num_iters", "4", "--semi_checkpoint_every", "2"))
    assert torch.load(split / "semi.pth.ckpt", weights_only=False)["iteration"] == 2
    assert not (split / "semi.pth").exists()
    monkeypatch.setattr(semi, "cct_step", real)
    res = run_sample.main(_argv(voc, split, "--semi_num_iters", "4", "--semi_checkpoint_every", "2"))
    assert res["train_semi"]["resumed_at"] == 2 and res["train_semi"]["mode"] == "cct_weak"
    a, b = _weights(whole / "semi.pth"), _weights(split / "semi.pth")
    assert a.keys() == b.keys() and not any(k.startswith("aux_decoders.") for k in a)
    init = semi.inference_state(semi.build_semi_network("cct_efficientnet_lite0", None, "cct")[0])
    moved = max((a[k].double() - init[k].double()).abs().max().item() for k in a if a[k].is_floating_point())
    diff = max((a[k].double() - b[k].double()).abs().max().item() for k in a)
    assert moved > 1e-4 and diff <= 1e-6 * moved


@pytest.mark.slow
def test_unlabelled_ground_truth_is_never_read_and_the_net_plugs_into_make_seg(voc, tmp_path):
    """The unlabelled images' ground-truth PNGs replaced by garbage: cct_weak still trains (it reads their weak
    masks); then make_seg / eval_seg run on the trained CCT network, with and without the CRF."""
    root = tmp_path / "voc"
    os.symlink(voc["root"], tmp_path / "orig")
    for sub in ("JPEGImages", "ImageSets", "Annotations"):
        os.makedirs(root, exist_ok=True)
        os.symlink(os.path.join(voc["root"], sub), root / sub)
    os.makedirs(root / "SegmentationClass")
    for f in os.listdir(os.path.join(voc["root"], "SegmentationClass")):
        dst = root / "SegmentationClass" / f
        if f[:-4] in voc["names"][4:]:
            dst.write_bytes(b"not a png")
        else:
            os.symlink(os.path.join(voc["root"], "SegmentationClass", f), dst)
    v = dict(voc, root=str(root))
    out = tmp_path / "out"
    res = run_sample.main(_argv(v, out, "--semi_num_iters", "2", "--semi_val_every", "2"))["train_semi"]
    assert res["iterations"] == 2 and res["best_val_miou"] is not None and os.path.isfile(out / "semi.best.pth")
    val = os.path.join(root, "ImageSets/Segmentation/val.txt")
    run_sample.main(["--voc12_root", str(root), "--num_workers", "0", "--seg_network", "cct_efficientnet_lite0",
                     "--seg_weights_name", str(out / "semi.pth"), "--seg_infer_list", val, "--seg_infer_scales",
                     "1.0", "0.5", "--seg_out_dir", str(out / "seg"), "--seg_crf_out_dir", str(out / "crf"),
                     "--results_json", str(out / "r.json"), "--log_name", str(out / "log"),
                     "--make_seg_pass", "True", "--eval_seg_pass", "True"])
    r = list(json.load(open(out / "r.json")).values())[0]
    assert r["images"] == 4 and 0 <= r["miou"] <= 1 and 0 <= r["crf"]["miou"] <= 1
    assert len([f for f in os.listdir(out / "seg") if not f.endswith("_palette.png")]) == 4


def test_labelled_stream_is_redrawn_not_replayed(voc, tmp_path, monkeypatch):
    """4 labelled images, batch 2, 4 steps (two passes over the list): each pass shows every image once, and the
    second pass's crops are new draws (order and augmentation), not the first pass's batches again."""
    seen = []
    real = semi.cct_step

    def spy(model, labeled, unlabeled, weak, iteration, **kw):
        seen.append(labeled[0].clone())
        assert weak is None and unlabeled is None  # supervised mode: the labelled batch alone
        return real(model, labeled, unlabeled, weak, iteration, **kw)

    monkeypatch.setattr(semi, "cct_step", spy)
    run_sample.main(_argv(voc, tmp_path, "--semi_num_iters", "4", "--semi_mode", "supervised"))
    crops = torch.cat(seen)
    assert crops.shape[0] == 8
    first, second = crops[:4], crops[4:]
    assert not any(torch.equal(a, b) for a in second for b in first)
    assert not torch.equal(torch.cat(seen[2:]), torch.cat(seen[:2]))


def test_missing_weak_masks_and_default_mode(voc, tmp_path):
    from advcam.steps.train_semi import resolve_mode
    assert resolve_mode(None, voc["weak"]) == "cct_weak"
    assert resolve_mode(None, str(tmp_path / "absent")) == "cct"
    assert resolve_mode("supervised", voc["weak"]) == "supervised"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MissingInputError, match="--semi_weak_label_dir"):
        run_sample.main(_argv(voc, tmp_path, "--semi_weak_label_dir", str(empty), "--semi_mode", "cct_weak"))


@pytest.mark.slow
def test_two_ranks_give_one_process_step(voc):
    """train_cct for 2 steps of 4 + 4 crops (255s unevenly spread over the ranks): 2 torchrun ranks (gloo, CPU)
    write the weights of one process within float noise."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=ROOT)
    script = os.path.join(ROOT, "tests", "semi_ddp_job.py")
    outs = {}
    for ranks in (1, 2):
        out = str(voc["base"] / f"ddp{ranks}.pth")
        launch = [sys.executable] if ranks == 1 else [sys.executable, "-m", "torch.distributed.run",
                                                       "--standalone", "--nproc_per_node", "2"]
        proc = subprocess.run(launch + [script, voc["root"], voc["weak"], out], env=env, capture_output=True,
                              text=True, timeout=900, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr[-3000:]
        outs[ranks] = _weights(out)
    a, b = outs[1], outs[2]
    torch.manual_seed(0)
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from semi_ddp_job import FrozenBNTiny
    init = FrozenBNTiny().state_dict()
    moved = max((a[k] - init[k]).abs().max().item() for k in a if a[k].is_floating_point())
    diff = max((a[k] - b[k]).abs().max().item() for k in a if a[k].is_floating_point())
    assert moved > 1e-3 and diff < 1e-4 * moved


def test_naive_mix_folder(voc, tmp_path):
    names = voc["names"]
    gt = os.path.join(voc["root"], "SegmentationClass")
    counts = semi.naive_mix_labels(str(tmp_path / "mix"), names[:4], gt, names[4:], voc["weak"])
    assert counts == {"labeled": 4, "unlabeled": 4}
    for n in names:
        link = tmp_path / "mix" / f"{n}.png"
        src = os.path.join(gt if n in names[:4] else voc["weak"], n + ".png")
        assert os.path.islink(link) and os.path.samefile(link, src)
    semi.naive_mix_labels(str(tmp_path / "copy"), names[:4], gt, names[4:], voc["weak"], copy=True)
    assert open(tmp_path / "copy" / f"{names[5]}.png", "rb").read() == open(
        os.path.join(voc["weak"], names[5] + ".png"), "rb").read()
    with pytest.raises(MissingInputError, match="no weak mask"):
        semi.naive_mix_labels(str(tmp_path / "bad"), names[:3], gt, names[3:], voc["weak"])
    with pytest.raises(BadInputError, match="both labelled and unlabelled"):
        semi.naive_mix_labels(str(tmp_path / "bad"), names[:4], gt, names[3:], voc["weak"])


def test_semi_pipeline_help_and_unknown_option(tmp_path):
    """get_semi_quality.sh: --help exits 0 with the usage; a flag of no pass is one error line; nothing written."""
    env = {k: v for k, v in os.environ.items() if k not in ("VOC12_ROOT", "OUT", "TOY_VOC")}
    script = os.path.join(ROOT, "get_semi_quality.sh")
    res = subprocess.run(["bash", script, "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.startswith("usage: get_semi_quality.sh ") and res.stderr == ""
    res = subprocess.run(["bash", script, "--semi_mode", "cct", "--semi_mod", "cct"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.splitlines() == ["get_semi_quality.sh: error: unknown option --semi_mod (see --help)"]
    assert os.listdir(tmp_path) == []


def _record_pipeline(script, cwd, calls):
    """Run a toy pipeline script in ``cwd`` with an interpreter that only records its arguments: the commands."""
    fake = cwd.parent / f"{cwd.name}_python"
    fake.write_text('#!/bin/sh\nprintf \'%s\\037\' "$@" >> "$CALLS"\nprintf \'\\n\' >> "$CALLS"\n')
    fake.chmod(0o755)
    lists = cwd / "toy_voc/ImageSets/Segmentation"
    lists.mkdir(parents=True)
    for name, ids in (("train_aug", range(16)), ("train", range(8)), ("val", range(16, 20))):
        (lists / f"{name}.txt").write_text("".join(f"2100_{i:06d}\n" for i in ids))
    env = {k: v for k, v in os.environ.items() if k not in ("VOC12_ROOT", "OUT", "TOY_VOC", "LAUNCH", "SEMI_MODES")}
    env.update(PYTHON=str(fake), CALLS=str(calls))
    res = subprocess.run(["bash", os.path.join(ROOT, script)], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    return [line.split("\037")[:-1] for line in calls.read_text().splitlines()]


def test_semi_demo_makes_the_masks_as_the_mask_demo(tmp_path):
    """Without pseudo masks the toy semi demo runs, flag for flag, the mask demo's commands that make them (its
    classifier, AdvCAM seeds, then cam_to_ir_label + train_irn + make_sem_seg) and none of its evaluations,
    plain-CAM seeds, segmentation network or report; then one command per mode trains and scores it."""
    (tmp_path / "mask").mkdir()
    (tmp_path / "semi").mkdir()
    mask = _record_pipeline("get_mask_quality.sh", tmp_path / "mask", tmp_path / "mask.calls")
    semi_calls = _record_pipeline("get_semi_quality.sh", tmp_path / "semi", tmp_path / "semi.calls")
    assert [c[:2] for c in mask[:5]] == [["-m", "advcam.run_sample"]] * 2 + [["-m", "advcam.obtain_cam_masking"]] + \
        [["-m", "advcam.run_sample"]] * 2
    assert "--train_cam_pass" in mask[0] and "--make_cam_pass" in mask[1] and "--train_seg_pass" in mask[4]
    irn = mask[3]
    evals = [i for i, a in enumerate(irn) if a in ("--eval_cam_pass", "--eval_sem_seg_pass")]
    assert len(evals) == 2 and all(irn[i + 1] == "True" for i in evals)
    irn_only = [a for i, a in enumerate(irn) if i not in evals and i - 1 not in evals]
    assert {"--cam_to_ir_label_pass", "--train_irn_pass", "--make_sem_seg_pass"} <= set(irn_only)
    assert semi_calls[:3] == [mask[0], mask[2], irn_only]
    modes = [c for c in semi_calls[3:] if c[:2] == ["-m", "advcam.run_sample"]]
    assert len(modes) == 4 and all({"--train_semi_pass", "--make_seg_pass", "--eval_seg_pass"} <= set(c)
                                   for c in modes)
    assert all(c[:2] != ["-m", "advcam.obtain_cam_masking"] for c in semi_calls[3:])
