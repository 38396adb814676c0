"""Multi-scale CAM fusion and plain (IRN ``make_cam``) class activation maps."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from advcam.imutils import get_strided_size, get_strided_up_size


def fuse_scales(maps: list[torch.Tensor], size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum per-scale maps [K, h_s, w_s] into the reference's two outputs, each channel max-normalised.

    Returns ("cam" [K, ceil(H/4), ceil(W/4)], "high_res" [K, H, W]): the maps are bilinearly resized
    (align_corners=False) to the stride-4 size, and to the multiple-of-16 size >= (H, W) then cropped.
    """
    strided = get_strided_size(size, 4)
    strided_up = get_strided_up_size(size, 16)
    if maps[0].shape[0] == 0:  # an image without a positive class: empty maps, as the reference writes
        return torch.zeros(0, *strided), torch.zeros(0, *size)
    cam = sum(F.interpolate(m[None].float(), strided, mode="bilinear", align_corners=False)[0] for m in maps)
    high = sum(F.interpolate(m[:, None].float(), strided_up, mode="bilinear", align_corners=False)[:, 0]
               for m in maps)[:, : size[0], : size[1]]
    cam = cam / (F.adaptive_max_pool2d(cam, (1, 1)) + 1e-5)
    high = high / (F.adaptive_max_pool2d(high, (1, 1)) + 1e-5)
    return cam, high


@torch.no_grad()
def plain_cam(model, pairs: list[torch.Tensor], keys: torch.Tensor, size: tuple[int, int]):
    """Plain multi-scale CAM of one image: per scale ReLU(S_0) + mirror(ReLU(S_1)), positive classes only.

    ``pairs``: one [2, 3, h, w] flip pair per scale (any order: the fusion is a sum).
    Returns (cam, high_res) as :func:`fuse_scales`.
    """
    maps = [model(p)[keys] for p in pairs]
    return fuse_scales(maps, size)
