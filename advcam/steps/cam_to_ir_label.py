"""Pass cam_to_ir_label: confident foreground / background / ignore labels from the CAMs, for IRN training.

Reads the images of ``--train_list`` and ``<cam_out_dir>/<id>.npy`` ("high_res", "keys"); writes
``<ir_label_out_dir>/<id>.png`` (uint8: 0 background, 1..num_classes class, 255 ignore) and ``<id>_palette.png``
(the same labels with the dataset's palette). Existing ``<id>.png`` files are skipped.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
from argparse import Namespace

import numpy as np
import torch
from tqdm import tqdm

from advcam import distributed
from advcam.crf import crf_inference_label
from advcam.datasets import SegData, dataset_of
from advcam.errors import BadInputError, MissingInputError
from advcam.io import load_cam_npy, missing_files, save_png
from advcam.voc12 import IGNORE_LABEL

log = logging.getLogger("advcam.cam_to_ir_label")


def _keys_array(keys) -> np.ndarray:
    """0-based class indices as int64 [K] (from a torch tensor or an array)."""
    if torch.is_tensor(keys):
        keys = keys.detach().cpu().numpy()
    return np.asarray(keys, dtype=np.int64).reshape(-1)


def confident_labels(img: np.ndarray, high_res: np.ndarray, label_ids: np.ndarray, bg_score: float) -> np.ndarray:
    """Class ids [H, W] of the CRF-refined argmax over [bg_score, high_res]; ``label_ids`` maps channel -> id."""
    scores = np.pad(high_res, ((1, 0), (0, 0), (0, 0)), mode="constant", constant_values=bg_score)
    pred = crf_inference_label(img, np.argmax(scores, axis=0), n_labels=len(label_ids))
    return label_ids[pred]


def combine_confident_labels(fg_conf: np.ndarray, bg_conf: np.ndarray) -> np.ndarray:
    """uint8 IR label: ``fg_conf`` where it is foreground, 0 where both say background, 255 (ignore) elsewhere."""
    fg_conf = np.asarray(fg_conf)
    bg_conf = np.asarray(bg_conf)
    if fg_conf.shape != bg_conf.shape:
        raise ValueError(f"fg_conf {fg_conf.shape} and bg_conf {bg_conf.shape} differ in shape")
    label = fg_conf.astype(np.uint8)
    label[fg_conf == 0] = IGNORE_LABEL
    label[(fg_conf == 0) & (bg_conf == 0)] = 0
    return label


def ir_label_from_cam(img: np.ndarray, cam_dict: dict, conf_fg_thres: float, conf_bg_thres: float) -> np.ndarray:
    """uint8 [H, W] IR label of one image (0 background, 1-20 class, 255 ignore) from its CAM dict."""
    keys = _keys_array(cam_dict["keys"])
    h, w = img.shape[:2]
    if len(keys) == 0:
        return np.zeros((h, w), np.uint8)
    high_res = cam_dict["high_res"]
    if torch.is_tensor(high_res):
        high_res = high_res.detach().cpu().numpy()
    high_res = np.asarray(high_res, dtype=np.float32)
    if high_res.shape != (len(keys), h, w):
        raise BadInputError(f"'high_res' has shape {high_res.shape}, expected {(len(keys), h, w)} "
                         f"for {len(keys)} keys and a {h}x{w} image")
    label_ids = np.concatenate([[0], keys + 1]).astype(np.int64)
    fg_conf = confident_labels(img, high_res, label_ids, conf_fg_thres)
    bg_conf = confident_labels(img, high_res, label_ids, conf_bg_thres)
    return combine_confident_labels(fg_conf, bg_conf)


def cam_path(args: Namespace, name: str) -> str:
    return os.path.join(args.cam_out_dir, name + ".npy")


def label_path(args: Namespace, name: str, suffix: str = "") -> str:
    return os.path.join(args.ir_label_out_dir, name + suffix + ".png")


def process_image(args: Namespace, name: str, data: SegData | None = None) -> None:
    """Compute and write ``<id>_palette.png`` then ``<id>.png`` for one image of ``data`` (default: the dataset of
    ``args``)."""
    data = data if data is not None else dataset_of(args)
    img = data.load_image(name)
    path = cam_path(args, name)
    cam_dict = load_cam_npy(path)
    try:
        label = ir_label_from_cam(img, cam_dict, args.conf_fg_thres, args.conf_bg_thres)
    except ValueError as e:
        raise BadInputError(f"{path}: {e}: the CAM files do not belong to this {data.root_flag} / image") from None
    # palette copy first: the plain file marks the image as done
    save_png(label_path(args, name, "_palette"), label, palette=data.palette)
    save_png(label_path(args, name), label)


def _work(worker: int, names: list[str], args: Namespace) -> int:
    """Process ``names`` with a progress bar at row ``worker``; the number of images written."""
    data = dataset_of(args)
    for name in tqdm(names, desc=f"cam_to_ir_label[{worker}]", unit="img", position=worker, leave=False):
        process_image(args, name, data)
    return len(names)


def _work_star(job: tuple[int, list[str], Namespace]) -> int:
    return _work(*job)


def check_cams(args: Namespace, names: list[str]) -> None:
    """Fail early, naming the file, when a CAM file is missing."""
    missing = missing_files(names, args.cam_out_dir, ".npy")
    if missing:
        raise MissingInputError(
            f"{len(missing)} CAM files missing, e.g. {cam_path(args, missing[0])}: run the CAM pass "
            "(make_cam or obtain_CAM_masking.py) over --train_list with the same --cam_out_dir first")


def run(args: Namespace) -> dict:
    """Write IR labels for every ``--train_list`` image not done yet; counts and seconds."""
    t0 = time.time()
    data = dataset_of(args)
    names = data.read_list(args.train_list)
    os.makedirs(args.ir_label_out_dir, exist_ok=True)
    todo = distributed.todo_on_main(lambda: missing_files(names, args.ir_label_out_dir, ".png"))
    stats = {"images": 0, "skipped": len(names) - len(todo)}
    log.info("cam_to_ir_label: %d images in %s, %d already in %s, %d to do", len(names), args.train_list,
             stats["skipped"], args.ir_label_out_dir, len(todo))
    if todo:
        check_cams(args, todo)
        mine = distributed.shard(todo)  # this rank's exact share under torchrun; all of it otherwise
        n_proc = max(1, min(distributed.loader_workers(args.num_workers), len(mine)))  # this rank's share
        log.info("reading images from %s and CAMs from %s; fg/bg thresholds %s/%s; %d process(es) per rank, "
                 "%d rank(s)", data.root, args.cam_out_dir, args.conf_fg_thres, args.conf_bg_thres, n_proc,
                 distributed.world_size())
        if n_proc == 1:
            stats["images"] = _work(0, mine, args)
        else:
            jobs = [(i, mine[i::n_proc], args) for i in range(n_proc)]
            with mp.get_context("spawn").Pool(n_proc) as pool:
                stats["images"] = sum(pool.map(_work_star, jobs, chunksize=1))
        stats["images"] = distributed.sum_counts({"images": stats["images"]})["images"]
    stats["seconds"] = time.time() - t0
    log.info("cam_to_ir_label done: wrote %d label maps (+ _palette.png) to %s, skipped %d, %.1f s",
             stats["images"], args.ir_label_out_dir, stats["skipped"], stats["seconds"])
    return stats
