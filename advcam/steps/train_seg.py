"""Pass train_seg: train the final segmentation network (stage 3) on the pseudo masks.

Reads the images of ``--seg_train_list`` (of ``--dataset``: VOC at ``--voc12_root``, or COCO 2014 at
``--coco_root``) with their ``<seg_label_dir>/<id>.png`` labels (default ``--sem_seg_out_dir``, the IRN pseudo
masks; ``<voc12_root>/SegmentationClass`` or ``<coco_root>/mask/train2014`` gives the fully supervised baseline),
pixels labelled 255 ignored; the network has the dataset's label count (21 VOC, 81 COCO). Writes the checkpoint
``<seg_weights_name>.ckpt`` every ``--seg_checkpoint_every`` iterations and at the end, then the state dict
``--seg_weights_name``. An existing ``--seg_weights_name`` skips the pass; an unfinished checkpoint is resumed.
"""
from __future__ import annotations

import logging
import os

from advcam import distributed
from advcam.datasets import dataset_of
from advcam.errors import BadInputError, MissingInputError
from advcam.io import missing_files, save_torch
from advcam.segmentation import (
    SegTrainDataset,
    build_seg_network,
    check_test_export,
    label_path,
    resolve_recipe,
    train_segmentation,
)
from advcam.utils import pick_device

log = logging.getLogger("advcam.train_seg")


def checkpoint_path(args) -> str:
    return args.seg_weights_name + ".ckpt"


def run(args) -> dict:
    """Train (or resume) and write ``args.seg_weights_name``; skipped when that file exists."""
    if os.path.isfile(args.seg_weights_name):
        log.warning("%s exists: skipping segmentation training (delete it to retrain)", args.seg_weights_name)
        return {"skipped": True, "weights": args.seg_weights_name}
    data = dataset_of(args)
    if getattr(args, "make_seg_pass", False):  # refused before training, not after it
        check_test_export(data, getattr(args, "seg_export_test", None))
    recipe = resolve_recipe(args.seg_recipe, args.seg_batch_size, args.seg_iter_size, args.seg_num_iters,
                            args.seg_scales, args.seg_loss)
    label_dir = args.seg_label_dir or args.sem_seg_out_dir
    names = data.read_list(args.seg_train_list)
    missing = missing_files(names, label_dir, ".png")
    if missing:
        raise MissingInputError(
            f"{len(missing)} of {len(names)} training labels missing, e.g. {label_path(label_dir, missing[0])}: "
            "run make_sem_seg (--make_sem_seg_pass True) over the --seg_train_list images, or point "
            "--seg_label_dir at a folder of label PNGs")
    if len(names) < recipe.batch_size:
        raise BadInputError(f"--seg_train_list {args.seg_train_list} has {len(names)} images, fewer than "
                            f"--seg_batch_size {recipe.batch_size}")
    ckpt = checkpoint_path(args)
    seed = distributed.shared_seed(args.seed)  # a resumed run keeps its own
    device = pick_device(getattr(args, "device", None))
    # unset --seg_pretrained: torchvision's ImageNet weights (a clear error offline), never a silent scratch run
    pretrained = "torchvision" if args.seg_pretrained is None else args.seg_pretrained
    model, init = build_seg_network(args.seg_network, pretrained, data.num_seg_classes)
    ds = SegTrainDataset(names, data, label_dir, args.seg_crop_size, recipe.scales, seed)
    log.info("read %d images (%s, %s) with labels from %s; %s (%d classes) from %s; %d iterations of %d x %d crops "
             "of %d, scales %s, %s loss, lr %.2e (head 10x/20x), on %s", len(names), data.name, args.seg_train_list,
             label_dir, args.seg_network, data.num_seg_classes, init, recipe.num_iters, recipe.iter_size,
             recipe.batch_size, args.seg_crop_size, recipe.scales, recipe.loss, args.seg_learning_rate, device)
    config = {"network": args.seg_network, "train_list": args.seg_train_list, "label_dir": label_dir,
              "crop": args.seg_crop_size, "scales": list(recipe.scales)}
    if data.name != "voc12":  # VOC checkpoints of earlier versions keep resuming
        config["dataset"] = data.name
    out = train_segmentation(
        model, ds, batch_size=recipe.batch_size, iter_size=recipe.iter_size, num_iters=recipe.num_iters,
        lr=args.seg_learning_rate, momentum=args.seg_momentum, weight_decay=args.seg_weight_decay,
        power=args.seg_poly_power, loss=recipe.loss, checkpoint_path=ckpt,
        checkpoint_every=args.seg_checkpoint_every, device=device,
        num_workers=distributed.loader_workers(args.num_workers),
        amp=args.seg_amp, train_backbone=args.seg_train_backbone,
        config=config)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if distributed.is_main():
        save_torch(args.seg_weights_name, state)
    distributed.barrier()
    losses = out["losses"]
    log.info("wrote %s and %s; loss %s -> %s over this run's %d iterations, %.0f s", args.seg_weights_name, ckpt,
             f"{losses[0]:.4f}" if losses else "-", f"{losses[-1]:.4f}" if losses else "-", len(losses),
             out["seconds"])
    return {"skipped": False, "weights": args.seg_weights_name, "iterations": recipe.num_iters,
            "resumed_at": out["start_iteration"], "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None, "init": init}
