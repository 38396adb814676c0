"""eval_cam: the one-pass threshold sweep equals the literal per-threshold seed labelling."""
import argparse
import os

import numpy as np
import torch
from PIL import Image

from advcam.evaluation import seed_prediction
from advcam.io import save_cam_npy
from advcam.metrics import ConfusionMatrix, mean_iou
from advcam.steps import eval_cam
from advcam.voc12.dataloader import load_img_name_list, load_seg_label


def test_sweep_equals_literal_seed_prediction(tmp_path, tiny_voc):
    rng = np.random.default_rng(0)
    names = load_img_name_list(os.path.join(tiny_voc, "ImageSets", "Segmentation", "train.txt"))
    cam_dir = tmp_path / "cam"
    for i, n in enumerate(names):
        W, H = Image.open(os.path.join(tiny_voc, "JPEGImages", n + ".jpg")).size
        keys = [] if i == 0 else sorted(rng.choice(20, size=2, replace=False))  # one image without a class
        high = rng.random((len(keys), H, W)).astype(np.float32) * 0.5
        save_cam_npy(cam_dir / f"{n}.npy", keys, torch.zeros(len(keys), (H + 3) // 4, (W + 3) // 4), high)
    args = argparse.Namespace(voc12_root=tiny_voc, chainer_eval_set="train", cam_out_dir=str(cam_dir))
    out = eval_cam.run(args)
    for th, miou in zip(eval_cam.THRESHOLDS, out["mious"], strict=True):
        conf = ConfusionMatrix(21)
        for n in names:
            d = np.load(cam_dir / f"{n}.npy", allow_pickle=True).item()
            conf.update(seed_prediction(d, th), load_seg_label(tiny_voc, n))
        assert np.isclose(miou, mean_iou(conf.matrix))
