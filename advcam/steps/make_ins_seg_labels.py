"""Pass make_ins_seg: instance pseudo labels from IRN's displacement field, boundary map and the CAMs.

Reads ``--irn_weights_name``, ``<cam_out_dir>/<id>.npy`` ("cam", "keys") and the images of ``--infer_list``;
writes ``<ins_seg_out_dir>/<id>.npy``, a dict {"score" float32 [N], "mask" bool [N, H, W], "class" int64 [N]
(0-based)}. Existing files are skipped.

Per image: every stride-4 pixel walks along the displacement field to its centroid; pixels whose centroids
fall in the same low-displacement component form one instance; each class CAM restricted to each instance is
spread by the random walk, and the argmax against a constant background splits the image into
(class, instance) regions, whose connected components are the detections.
"""
from __future__ import annotations

import logging
import os
import time

import numpy as np
import torch
from scipy import ndimage

from advcam.io import save_npy
from advcam.steps.make_sem_seg_labels import irn_inference, random_walk_up

log = logging.getLogger("advcam.make_ins_seg")

CENTROID_ITERATIONS = 300
WEAK_DISPLACEMENT = 2.5  # centroid regions: |D| below this
MIN_FRAGMENT = 0.01  # components smaller than this share of the image get score 0
FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)


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
                    size: tuple[int, int], args) -> dict:
    """{"score", "mask", "class"} of one image from its CAMs [K, h, w], boundary map [h, w], displacement [2, h, w]."""
    dp_np = dp.cpu().numpy()
    inst = cluster_centroids(find_centroids(dp_np), dp_np)  # [I, h, w]
    n_inst = len(inst)
    inst_cams = cams[:, None] * torch.from_numpy(inst).to(cams)[None]  # [K, I, h, w]
    rw_up = random_walk_up(inst_cams.flatten(0, 1), edge, size, args)  # [K*I, H, W], (class, instance) order
    rw_up = rw_up / (rw_up.max() + 1e-5)
    with_bg = torch.nn.functional.pad(rw_up, (0, 0, 0, 0, 1, 0), value=float(args.ins_seg_bg_thres))
    arg = torch.argmax(with_bg, dim=0).cpu().numpy()
    masks = arg[None] == np.arange(1, len(rw_up) + 1)[:, None, None]
    classes = np.repeat(keys, n_inst)
    return detect_instances(rw_up.cpu().numpy(), masks, classes, MIN_FRAGMENT * size[0] * size[1])


def empty_detections(size: tuple[int, int]) -> dict:
    return {"score": np.zeros(0, np.float32), "mask": np.zeros((0, *size), bool), "class": np.zeros(0, np.int64)}


def run(args) -> dict:
    """Write instance pseudo labels for every ``--infer_list`` image not done yet."""
    t0 = time.time()
    stats = {"images": 0, "instances": 0}
    for name, size, cams, keys, edge, dp in irn_inference(args, args.ins_seg_out_dir, ".npy", "make_ins_seg",
                                                           args.ins_seg_bg_thres, stats):
        det = instance_labels(cams, keys, edge, dp, size, args) if len(keys) else empty_detections(size)
        save_npy(os.path.join(args.ins_seg_out_dir, name + ".npy"), det)
        stats["images"] += 1
        stats["instances"] += len(det["score"])
    stats["seconds"] = time.time() - t0
    log.info("make_ins_seg done: wrote %d files (%d instances) to %s, skipped %d, %.1f s", stats["images"],
             stats["instances"], args.ins_seg_out_dir, stats["skipped"], stats["seconds"])
    return stats
