"""Pass make_sem_seg: semantic pseudo labels by a random walk of the CAMs over IRN's class boundaries.

Reads ``--irn_weights_name``, ``<cam_out_dir>/<id>.npy`` ("cam" at stride 4 and "keys") and the images of
``--infer_list``; writes ``<sem_seg_out_dir>/<id>.png`` (uint8, 0 background, 1..num_classes) and
``<id>_palette.png`` (the same labels with the dataset's palette). Existing ``<id>.png`` files are skipped.
"""
from __future__ import annotations

import logging
import os
import time

from advcam.datasets import dataset_of
from advcam.io import save_png
from advcam.irn_loop import irn_inference
from advcam.pseudo_labels import sem_seg_from_cams

log = logging.getLogger("advcam.make_sem_seg")


def run(args) -> dict:
    """Write semantic pseudo labels for every ``--infer_list`` image not done yet."""
    t0 = time.time()
    stats = {"images": 0}
    palette = dataset_of(args).palette
    for name, size, cams, keys, edge, _ in irn_inference(args, args.sem_seg_out_dir, ".png", "make_sem_seg",
                                                          args.sem_seg_bg_thres, stats):
        label = sem_seg_from_cams(cams, keys, edge, size, args.beta, args.exp_times, args.sem_seg_bg_thres)
        # palette copy first: the plain file marks the image as done
        save_png(os.path.join(args.sem_seg_out_dir, name + "_palette.png"), label, palette=palette)
        save_png(os.path.join(args.sem_seg_out_dir, name + ".png"), label)
        stats["images"] += 1
    stats["seconds"] = time.time() - t0
    log.info("make_sem_seg done: wrote %d label maps to %s, skipped %d, %.1f s", stats["images"],
             args.sem_seg_out_dir, stats["skipped"], stats["seconds"])
    return stats
