"""Pass train_semi: semi-supervised segmentation, the AdvCAM way (CCT with AdvCAM masks as weak labels).

Reads, through the data layer of ``--dataset`` (:func:`advcam.datasets.dataset_of`: images, ground truth, class
count), the images of ``--semi_train_list``: those of ``--semi_labeled_list`` with their ground truth (the
dataset's own, or the folder ``--semi_label_dir``), the others (the unlabelled set) with, in mode ``cct_weak``,
their weak masks ``<semi_weak_label_dir>/<id>.png`` (default ``--sem_seg_out_dir``); the ground truth of an
unlabelled image is never opened. Trains ``--semi_network`` in ``--semi_mode`` (supervised only, CCT, CCT with
weak labels: :func:`advcam.semi.train_cct`), writing ``<semi_weights_name>.ckpt`` every ``--semi_checkpoint_every``
steps and at the end, the best single-scale validation weights to ``<semi_weights_name>.best.pth``, then the final
inference weights ``--semi_weights_name`` (for make_seg / eval_seg with ``--seg_network`` = the network). An
existing ``--semi_weights_name`` skips the pass; an unfinished checkpoint is resumed.
"""
from __future__ import annotations

import logging
import os

from advcam import distributed
from advcam.cct import RAMP_UP
from advcam.datasets import dataset_of
from advcam.errors import BadInputError, MissingInputError
from advcam.io import save_torch
from advcam.semi import (
    SemiTrainDataset,
    build_semi_network,
    check_weak_masks,
    inference_state,
    semi_lists,
    semi_split_path,
    steps_per_epoch,
    train_cct,
    unlabeled_names,
    validate,
)
from advcam.utils import flat_scales, pick_device

log = logging.getLogger("advcam.train_semi")


def resolve_mode(mode: str | None, weak_dir: str) -> str:
    """``--semi_mode``, or by default cct_weak when the weak-mask folder exists and cct (said in the log) when not."""
    if mode is not None:
        return mode
    if os.path.isdir(weak_dir):
        return "cct_weak"
    log.warning("--semi_weak_label_dir %s does not exist: training CCT without weak labels (--semi_mode cct); "
                "make the masks (make_sem_seg on --semi_train_list) or give --semi_mode", weak_dir)
    return "cct"


def run(args) -> dict:
    """Train (or resume) and write ``args.semi_weights_name``; skipped when that file exists."""
    if os.path.isfile(args.semi_weights_name):
        log.warning("%s exists: skipping semi-supervised training (delete it to retrain)", args.semi_weights_name)
        return {"skipped": True, "weights": args.semi_weights_name}
    if args.semi_crop_size % 8:
        raise BadInputError(f"--semi_crop_size {args.semi_crop_size}: give a multiple of 8 (the encoder's stride)")
    scales = flat_scales(args.semi_scales)
    if not scales or min(scales) <= 0:
        raise BadInputError(f"--semi_scales {' '.join(map(str, scales))}: give positive factors")
    weak_dir = args.semi_weak_label_dir or args.sem_seg_out_dir
    mode = resolve_mode(args.semi_mode, weak_dir)
    data = dataset_of(args)
    train_list, val_list = semi_lists(data, args.semi_train_list, args.semi_val_list)
    train = data.read_list(train_list)
    labeled_list = semi_split_path(args.semi_labeled_list, data.name)
    labeled = list(dict.fromkeys(data.read_list(labeled_list)))
    # supervised only needs no unlabelled image (the naive mix labels them all)
    unlabeled = unlabeled_names(train, labeled, allow_empty=mode == "supervised")
    if len(labeled) < args.semi_batch_size:
        raise BadInputError(f"--semi_labeled_list {labeled_list} has {len(labeled)} images, fewer than "
                            f"--semi_batch_size {args.semi_batch_size}")
    # the labelled images' ground truth: the folder --semi_label_dir, or the dataset's own
    lab_ds = SemiTrainDataset(labeled, data, args.semi_label_dir, args.semi_crop_size, scales, 0,
                              ground_truth=args.semi_label_dir is None)
    label_dir = args.semi_label_dir or os.path.dirname(data.gt_path(labeled[0]))
    missing = [n for n in labeled if not os.path.isfile(lab_ds.label_file(n))]
    if missing:
        example = f"{len(missing)} of {len(labeled)} labelled images have no ground truth, e.g. " \
                  f"{lab_ds.label_file(missing[0])}"
        if args.semi_label_dir:
            raise MissingInputError(f"--semi_label_dir {label_dir}: {example}; point the flag at the ground-truth "
                                    "folder (SegmentationClassAug for VOC's SBD images)")
        hint = ("give the ground-truth folder as --semi_label_dir (SegmentationClassAug for SBD images)"
                if data.name == "voc12" else data.gt_hint(missing[0]))
        raise MissingInputError(f"{data.root_flag} {data.root}: {example}; {hint}")
    if mode == "cct_weak":
        check_weak_masks(unlabeled, weak_dir)
    per_epoch = steps_per_epoch(len(unlabeled), args.semi_unlabeled_batch_size)
    num_iters = args.semi_num_iters or args.semi_epochs * per_epoch
    rampup = int(RAMP_UP * args.semi_epochs) * per_epoch if not args.semi_num_iters else int(RAMP_UP * num_iters)
    seed = distributed.shared_seed(args.seed)  # a resumed run keeps its own
    device = pick_device(getattr(args, "device", None))
    pretrained = "torchvision" if args.semi_pretrained is None else args.semi_pretrained
    model, init = build_semi_network(args.semi_network, pretrained, mode, data.num_seg_classes)
    lab_ds.seed = seed
    ul_ds = None if mode == "supervised" else SemiTrainDataset(
        unlabeled, data, weak_dir if mode == "cct_weak" else None, args.semi_crop_size, scales, seed)
    val_names = data.read_list(val_list) if args.semi_val_every > 0 else []
    log.info("%s: %d labelled images (%s, ground truth %s), %d unlabelled%s; %s from %s; %d steps (%d a pass over "
             "the unlabelled images) of %d + %d crops of %d, ramp-up %d steps, on %s", mode, len(labeled),
             labeled_list, label_dir, len(unlabeled), f" (weak masks {weak_dir})" if mode == "cct_weak" else "",
             args.semi_network, init, num_iters, per_epoch, args.semi_batch_size,
             0 if mode == "supervised" else args.semi_unlabeled_batch_size, args.semi_crop_size, rampup, device)
    out = train_cct(
        model, lab_ds, ul_ds, mode=mode, batch_size=args.semi_batch_size,
        unlabeled_batch_size=args.semi_unlabeled_batch_size, num_iters=num_iters, rampup_iters=rampup,
        lr=args.semi_learning_rate, backbone_lr=args.semi_backbone_learning_rate, momentum=args.semi_momentum,
        weight_decay=args.semi_weight_decay, power=args.semi_poly_power, unsup_weight=args.semi_unsup_weight,
        weak_weight=args.semi_weak_weight, checkpoint_path=args.semi_weights_name + ".ckpt",
        checkpoint_every=args.semi_checkpoint_every, device=device,
        num_workers=distributed.loader_workers(args.num_workers), amp=args.semi_amp,
        val=(lambda m: validate(m, data, val_names, args.semi_amp)) if val_names else None,
        val_every=args.semi_val_every, best_path=args.semi_weights_name.removesuffix(".pth") + ".best.pth",
        config={"network": args.semi_network, "train_list": train_list, "labeled_list": labeled_list,
                "label_dir": label_dir, "weak_dir": weak_dir if mode == "cct_weak" else None,
                "crop": args.semi_crop_size, "scales": list(scales)})
    if distributed.is_main():
        save_torch(args.semi_weights_name, inference_state(model))
    distributed.barrier()
    losses, best = out["losses"], out["best"]
    log.info("wrote %s (%s, %s); %d steps in this run, %.0f s%s", args.semi_weights_name, mode, args.semi_network,
             len(losses), out["seconds"],
             f"; best validation mIoU {100 * best[0]:.2f} at step {best[1]}" if best else "")
    return {"skipped": False, "weights": args.semi_weights_name, "mode": mode, "iterations": num_iters,
            "resumed_at": out["start_iteration"], "last": out["last"], "init": init,
            "best_val_miou": best[0] if best else None, "best_step": best[1] if best else None}
