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

from advcam.io import save_npy
from advcam.irn_loop import irn_inference
from advcam.pseudo_labels import empty_detections, instance_labels

log = logging.getLogger("advcam.make_ins_seg")



def run(args) -> dict:
    """Write instance pseudo labels for every ``--infer_list`` image not done yet."""
    t0 = time.time()
    stats = {"images": 0, "instances": 0}
    for name, size, cams, keys, edge, dp in irn_inference(args, args.ins_seg_out_dir, ".npy", "make_ins_seg",
                                                           args.ins_seg_bg_thres, stats):
        det = instance_labels(cams, keys, edge, dp, size, args.beta, args.exp_times,
                                    args.ins_seg_bg_thres) if len(keys) else empty_detections(size)
        save_npy(os.path.join(args.ins_seg_out_dir, name + ".npy"), det)
        stats["images"] += 1
        stats["instances"] += len(det["score"])
    stats["seconds"] = time.time() - t0
    log.info("make_ins_seg done: wrote %d files (%d instances) to %s, skipped %d, %.1f s", stats["images"],
             stats["instances"], args.ins_seg_out_dir, stats["skipped"], stats["seconds"])
    return stats
