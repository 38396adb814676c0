"""Pass make_seg: label maps of the trained segmentation network, with and without the dense CRF.

Reads ``--seg_weights_name`` and the images of ``--seg_infer_list`` (of ``--dataset``: VOC, or COCO 2014's
val14); multi-scale (``--seg_infer_scales``) and flip (``--seg_infer_flip``) averaged softmax; writes
``<seg_out_dir>/<id>.png`` (uint8 labels: 0-20 VOC, 0-80 COCO) and ``<id>_palette.png`` (the dataset's palette, the
VOC devkit's colour map) and, with ``--seg_crf True``, the same after the dense CRF (deeplab-pytorch's VOC settings,
on the raw RGB image) in ``--seg_crf_out_dir``. Images whose outputs exist are skipped.

With ``--seg_export_test DIR`` (VOC only) it then predicts the images of ``--seg_test_list`` (under
``--seg_test_root``, default ``--voc12_root``), CRF-refined when ``--seg_crf True``, as VOC palette PNGs in
``DIR/results/VOC2012/Segmentation/comp6_test_cls/`` and packs them into ``DIR/results.tgz`` for the server.
"""
from __future__ import annotations

import logging
import os
import time

import numpy as np
from tqdm import tqdm

from advcam import distributed
from advcam.crf import crf_inference_probs
from advcam.datasets import SegData, dataset_of
from advcam.io import missing_files, save_png
from advcam.segmentation import (
    build_seg_network,
    check_test_export,
    image_tensor,
    load_seg_weights,
    predict_probs,
    save_submission_png,
    submission_path,
    write_submission_tarball,
)
from advcam.utils import pick_device
from advcam.voc12.dataloader import load_img_name_list

log = logging.getLogger("advcam.make_seg")


def _todo(names: list[str], folders: list[str]) -> list[str]:
    """The ids of ``names`` (in list order) missing a ``.png`` in one of ``folders``."""
    missing = {n for f in folders for n in missing_files(names, f, ".png")}
    return [n for n in names if n in missing]


def run(args) -> dict:
    """Write the label maps of every ``--seg_infer_list`` image not done yet (and the test export if asked)."""
    t0 = time.time()
    data = dataset_of(args)
    check_test_export(data, args.seg_export_test)
    device = pick_device(getattr(args, "device", None))
    model, _ = build_seg_network(args.seg_network, pretrained=None, num_classes=data.num_seg_classes)
    load_seg_weights(model, args.seg_weights_name)
    model = model.to(device).eval()
    scales, flip = tuple(args.seg_infer_scales), args.seg_infer_flip

    def labels_of(root: str | SegData, name: str) -> tuple[np.ndarray, np.ndarray | None]:
        img, x = image_tensor(root, name)
        probs = predict_probs(model, x, scales, flip, amp=args.seg_amp).cpu().numpy()
        crf = crf_inference_probs(img, probs).argmax(0).astype(np.uint8) if args.seg_crf else None
        return probs.argmax(0).astype(np.uint8), crf

    names = data.read_list(args.seg_infer_list)
    folders = [args.seg_out_dir] + ([args.seg_crf_out_dir] if args.seg_crf else [])
    todo = distributed.todo_on_main(lambda: _todo(names, folders))
    log.info("%s (%s, %d classes) on %d images of %s (%s), %d to do; scales %s, flip %s, CRF %s, on %s (%d rank(s))",
             args.seg_weights_name, args.seg_network, data.num_seg_classes, len(names), args.seg_infer_list,
             data.name, len(todo), scales, flip, args.seg_crf, device, distributed.world_size())
    for name in tqdm(distributed.shard(todo), desc="make_seg", unit="img"):
        label, crf = labels_of(data, name)
        for folder, lab in ((args.seg_out_dir, label), (args.seg_crf_out_dir, crf)):
            if lab is not None:  # palette copy first: the plain file marks the image as done
                save_png(os.path.join(folder, name + "_palette.png"), lab, palette=data.palette)
                save_png(os.path.join(folder, name + ".png"), lab)
    stats = {"images": len(todo), "skipped": len(names) - len(todo)}
    log.info("wrote %d label maps to %s%s, skipped %d", len(todo), args.seg_out_dir,
             f" and {args.seg_crf_out_dir}" if args.seg_crf else "", stats["skipped"])

    if args.seg_export_test:
        root = args.seg_test_root or args.voc12_root
        test = load_img_name_list(args.seg_test_list, root)
        todo = distributed.todo_on_main(
            lambda: [n for n in test if not os.path.isfile(submission_path(args.seg_export_test, n))])
        for name in tqdm(distributed.shard(todo), desc="make_seg: VOC test", unit="img"):
            label, crf = labels_of(root, name)
            save_submission_png(args.seg_export_test, name, crf if crf is not None else label)
        distributed.barrier()  # every rank's predictions are in before rank 0 packs them
        tarball = write_submission_tarball(args.seg_export_test, test) if distributed.is_main() else None
        log.info("test export: %d predictions (%s, CRF %s) in %s, packed as %s", len(test), args.seg_test_list,
                 args.seg_crf, os.path.dirname(submission_path(args.seg_export_test, test[0])), tarball)
        stats.update(test_images=len(test), tarball=tarball)
    stats["seconds"] = time.time() - t0
    return stats
