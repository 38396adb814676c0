"""Pseudo labels from CAMs and IRN's outputs: the random walk, semantic labels, instance detections.

The numeric core of the make_sem_seg and make_ins_seg passes; every parameter is explicit.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from advcam.indexing import propagate_to_edge

RW_RADIUS = 5
CAM_POWER = 1.5  # AdvCAM sharpens its (broad) maps before the random walk; IRN uses them as they are
CENTROID_ITERATIONS = 300
WEAK_DISPLACEMENT = 2.5  # centroid regions: |D| below this
MIN_FRAGMENT = 0.01  # components smaller than this share of the image get score 0
FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)


def random_walk_up(cams: torch.Tensor, edge: torch.Tensor, size: tuple[int, int], beta: float,
                   exp_times: int) -> torch.Tensor:
    """Random walk of ``cams`` [K, h, w] over ``edge`` (transition matrix to the power 2^exp_times, affinities
    (1 - edge)^beta), bilinear x4, cropped to ``size``: [K, H, W]."""
    rw = propagate_to_edge(cams, edge, radius=RW_RADIUS, beta=float(beta), exp_times=int(exp_times))
    up = F.interpolate(rw[None], scale_factor=4, mode="bilinear", align_corners=False)[0]
    return up[:, :size[0], :size[1]]


def sem_seg_label(rw_up: torch.Tensor, keys: np.ndarray, bg_thres: float) -> np.ndarray:
    """uint8 labels: argmax over [bg_thres, rw_up / global max], mapped through [0] + keys + 1."""
    rw_up = rw_up / (rw_up.max() + 1e-5)
    scores = F.pad(rw_up, (0, 0, 0, 0, 1, 0), value=float(bg_thres))
    arg = torch.argmax(scores, dim=0).cpu().numpy()
    return np.concatenate([[0], keys + 1]).astype(np.uint8)[arg]


def sem_seg_from_cams(cams: torch.Tensor, keys: np.ndarray, edge: torch.Tensor, size: tuple[int, int],
                      beta: float, exp_times: int, bg_thres: float) -> np.ndarray:
    """uint8 labels [H, W] of one image: its CAMs**1.5 walked over ``edge``; all background without a class."""
    if not len(keys):
        return np.zeros(size, np.uint8)
    rw_up = random_walk_up(cams.pow(CAM_POWER), edge, size, beta, exp_times)
    return sem_seg_label(rw_up, keys, bg_thres)


def find_centroids(dp: np.ndarray, iterations: int = CENTROID_ITERATIONS) -> np.ndarray:
    """Integer centroid (y, x) [2, h, w] of every pixel: follow the bilinearly sampled displacement [2, h, w]."""
    h, w = dp.shape[1:]
    dp = dp.astype(np.float32)
    y, x = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    for _ in range(iterations):
        y0 = np.floor(y).astype(np.int64)
        x0 = np.floor(x).astype(np.int64)
        fy, fx = y - y0, x - x0
        y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
        step = (dp[:, y0, x0] * ((1 - fy) * (1 - fx)) + dp[:, y0, x1] * ((1 - fy) * fx)
                + dp[:, y1, x0] * (fy * (1 - fx)) + dp[:, y1, x1] * (fy * fx))
        y = np.clip(y + step[0], 0, h - 1)
        x = np.clip(x + step[1], 0, w - 1)
    return np.stack([np.round(y), np.round(x)]).astype(np.int64)


def cluster_centroids(centroids: np.ndarray, dp: np.ndarray) -> np.ndarray:
    """One-hot instance maps bool [I, h, w]: the 4-connected component of the weak-displacement region under
    each pixel's centroid (pixels whose centroid lies outside every component share one more id)."""
    weak = np.sqrt(dp[0] ** 2 + dp[1] ** 2) < WEAK_DISPLACEMENT
    components, _ = ndimage.label(weak, structure=FOUR_CONNECTED)
    cluster = components[centroids[0], centroids[1]]
    ids, compact = np.unique(cluster, return_inverse=True)
    compact = compact.reshape(cluster.shape)
    return compact[None] == np.arange(len(ids))[:, None, None]


def detect_instances(scores: np.ndarray, masks: np.ndarray, classes: np.ndarray, min_size: float) -> dict:
    """Detections from (class, instance) regions: one per 4-connected component of each mask.

    ``scores`` float [R, H, W], ``masks`` bool [R, H, W], ``classes`` [R]. A component's score is the maximum of
    its region's score map over the component, 0 when it has fewer than ``min_size`` pixels.
    """
    out_score, out_mask, out_class = [], [], []
    for score, mask, cls in zip(scores, masks, classes, strict=True):
        if not mask.any():
            continue
        components, n = ndimage.label(mask, structure=FOUR_CONNECTED)
        for i in range(1, n + 1):
            seg = components == i
            out_score.append(0.0 if seg.sum() < min_size else float(score[seg].max()))
            out_mask.append(seg)
            out_class.append(int(cls))
    size = masks.shape[1:]
    return {"score": np.asarray(out_score, dtype=np.float32),
            "mask": np.stack(out_mask) if out_mask else np.zeros((0, *size), dtype=bool),
            "class": np.asarray(out_class, dtype=np.int64)}


def instance_labels(cams: torch.Tensor, keys: np.ndarray, edge: torch.Tensor, dp: torch.Tensor,
                    size: tuple[int, int], beta: float, exp_times: int, bg_thres: float) -> dict:
    """{"score", "mask", "class"} of one image from its CAMs [K, h, w], boundary map [h, w], displacement [2, h, w]."""
    dp_np = dp.cpu().numpy()
    inst = cluster_centroids(find_centroids(dp_np), dp_np)  # [I, h, w]
    n_inst = len(inst)
    inst_cams = cams[:, None] * torch.from_numpy(inst).to(cams)[None]  # [K, I, h, w]
    rw_up = random_walk_up(inst_cams.flatten(0, 1), edge, size, beta, exp_times)  # [K*I, H, W], (class, instance) order
    rw_up = rw_up / (rw_up.max() + 1e-5)
    with_bg = torch.nn.functional.pad(rw_up, (0, 0, 0, 0, 1, 0), value=float(bg_thres))
    arg = torch.argmax(with_bg, dim=0).cpu().numpy()
    masks = arg[None] == np.arange(1, len(rw_up) + 1)[:, None, None]
    classes = np.repeat(keys, n_inst)
    return detect_instances(rw_up.cpu().numpy(), masks, classes, MIN_FRAGMENT * size[0] * size[1])


def empty_detections(size: tuple[int, int]) -> dict:
    return {"score": np.zeros(0, np.float32), "mask": np.zeros((0, *size), bool), "class": np.zeros(0, np.int64)}
