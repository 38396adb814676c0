"""The COCO passes before stage 3 under torchrun: AdvCAM, eval_cam and cam_to_ir_label with ``--dataset coco14`` on
2 CPU ranks (gloo) write the files and scores of one process (stage 3's torchrun test is in test_coco_stage3.py)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from advcam.datasets import COCO14
from advcam.io import load_cam_npy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=ROOT)


def _run(args: list[str], ranks: int) -> subprocess.CompletedProcess:
    """``python -m MODULE ARGS`` (ranks = 1) or the same under ``torchrun --standalone --nproc_per_node RANKS``."""
    launcher = [sys.executable] if ranks == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                    "--nproc_per_node", str(ranks)]
    out = subprocess.run(launcher + args, env=ENV, capture_output=True, text=True, timeout=3600,
                         cwd=ROOT)  # the timeout stops a hung job only
    assert out.returncode == 0, f"{' '.join(args)}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.mark.slow
def test_coco_advcam_eval_cam_and_ir_labels_under_torchrun(toy_coco, tmp_path):
    from advcam.nets.resnet50_cam import Net

    torch.manual_seed(0)
    net = Net(num_classes=80)  # a seeded random classifier over COCO's 80 classes
    with torch.no_grad():
        net.classifier.weight.normal_(0, 0.05)
    weights = str(tmp_path / "cam.pth")
    torch.save(net.state_dict(), weights)
    train = os.path.join(toy_coco, "train14.txt")
    common = ["--dataset", "coco14", "--coco_root", toy_coco, "--train_list", train, "--num_workers", "0",
              "--device", "cpu", "--cam_weights_name", weights]
    results = {}
    for ranks in (1, 2):
        d = tmp_path / f"ranks{ranks}"
        _run(["-m", "advcam.obtain_cam_masking", *common, "--adv_iter", "2", "--cam_scales", "1.0", "0.5",
              "--cam_out_dir", str(d / "adv"), "--log_name", str(d / "adv")], ranks)
        _run(["-m", "advcam.run_sample", *common, "--chainer_eval_set", train, "--cam_out_dir", str(d / "adv"),
              "--ir_label_out_dir", str(d / "ir"), "--results_json", str(d / "results.json"), "--log_name",
              str(d / "log"), "--eval_cam_pass", "True", "--cam_to_ir_label_pass", "True"], ranks)
        results[ranks] = json.load(open(d / "results.json"))[f"eval_cam:{d / 'adv'}"]
    names = open(train).read().split()
    labels = dict(zip(names, COCO14(toy_coco).cls_labels(names), strict=True))
    assert sum(v.any() for v in labels.values()) >= len(names) // 2  # most toy images hold objects
    one, two = tmp_path / "ranks1", tmp_path / "ranks2"
    assert sorted(os.listdir(one / "adv")) == sorted(n + ".npy" for n in names) == sorted(os.listdir(two / "adv"))
    for n in names:
        a, b = load_cam_npy(one / "adv" / f"{n}.npy"), load_cam_npy(two / "adv" / f"{n}.npy")
        assert torch.equal(a["keys"], b["keys"]) and torch.equal(a["cam"], b["cam"]), n
        assert np.array_equal(a["high_res"], b["high_res"]), n
        assert torch.equal(a["keys"], torch.as_tensor(np.nonzero(labels[n])[0]))  # the image's 0-based classes
    ir = sorted(os.listdir(one / "ir"))
    assert len(ir) >= len(names) and ir == sorted(os.listdir(two / "ir"))
    for f in ir:
        assert np.array_equal(np.asarray(Image.open(one / "ir" / f)), np.asarray(Image.open(two / "ir" / f))), f
    assert results[1] == results[2] and len(results[1]["mious"]) == 41  # COCO's sweep of 0.10-0.50
    assert "(2 rank(s))" in open(two / "log.log").read() or "torchrun job of 2 ranks" in open(two / "log.log").read()
