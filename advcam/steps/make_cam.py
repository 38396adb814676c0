"""Pass make_cam: plain multi-scale CAM (the IRN baseline), saved in the reference .npy format."""
from __future__ import annotations

import torch

from advcam.cam import plain_cam
from advcam.cam_loop import per_image_group, run_cam_pass


def _plain(model, pairs, scales, keys, size, device):
    return plain_cam(model, pairs, torch.as_tensor(keys, dtype=torch.long, device=device), tuple(size))


def run(args) -> dict:
    return run_cam_pass(args, per_image_group(_plain), "make_cam")
