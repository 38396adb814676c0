"""Pass train_cam: train the classifier (``--cam_network``, default ResNet-50) on image-level labels (multi-label
soft margin), its head over the classes of ``--dataset`` (20 for voc12, 80 for coco14)."""
from __future__ import annotations

import logging
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from advcam import distributed
from advcam.datasets import ClassificationDataset, dataset_of
from advcam.errors import BadInputError
from advcam.io import save_torch
from advcam.utils import PolyAdamW, PolyOptimizer, cam_network, pick_device, pretrained_source

log = logging.getLogger("advcam.train_cam")


def cpu_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s state dict with every tensor detached and on the CPU (a checkpoint that loads anywhere)."""
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


@torch.no_grad()
def validate(model: torch.nn.Module, loader: DataLoader, device: torch.device) -> tuple[float, float]:
    """(mean loss, exact-match accuracy of thresholded predictions) over ``loader`` (summed over the ranks under
    torchrun, each rank's loader holding its shard)."""
    model.eval()
    sums = {"loss": 0.0, "batches": 0, "exact": 0, "n": 0}
    for pack in loader:
        img, label = pack["img"].to(device), pack["label"].to(device)
        x = model(img)
        sums["loss"] += F.multilabel_soft_margin_loss(x, label).item()
        sums["batches"] += 1
        sums["exact"] += int(((x > 0).float() == label).all(1).sum().item())
        sums["n"] += len(label)
    model.train()
    sums = distributed.sum_counts(sums)
    return sums["loss"] / max(1, sums["batches"]), sums["exact"] / max(1, sums["n"])


def run(args) -> None:
    """Train the classifier and write ``--cam_weights_name``; under torchrun with DistributedDataParallel, the global
    batch ``--cam_batch_size`` split over the ranks (the same batches and schedule as one process), rank 0 writing."""
    device = pick_device(getattr(args, "device", None))
    crop = args.cam_crop_size
    seed = distributed.shared_seed(args.seed)
    data = dataset_of(args)
    train_ds = ClassificationDataset(
        data, data.read_list(args.train_list), cls_labels=getattr(args, "cls_labels", None),
        resize_long=tuple(args.cam_resize_long), hor_flip=True, crop_size=crop, crop_method="random", seed=seed)
    if len(train_ds) < args.cam_batch_size:
        raise BadInputError(f"--train_list {args.train_list} has {len(train_ds)} images, fewer than "
                         f"--cam_batch_size {args.cam_batch_size}")
    loader = distributed.train_loader(train_ds, args.cam_batch_size, "--cam_batch_size", seed, args.num_workers,
                                      device.type == "cuda")
    max_step = (len(train_ds) // args.cam_batch_size) * args.cam_num_epoches
    val_ds = ClassificationDataset(data, data.read_list(args.val_list), cls_labels=getattr(args, "cls_labels", None),
                                   crop_size=crop)
    val_loader = DataLoader(Subset(val_ds, distributed.shard(range(len(val_ds)))), batch_size=args.cam_batch_size,
                            shuffle=False, num_workers=distributed.loader_workers(args.num_workers))

    net = cam_network(args).Net(pretrained=pretrained_source(args), num_classes=data.num_classes).to(device)
    backbone, head = net.trainable_parameters()
    groups = [{"params": backbone, "lr": args.cam_learning_rate, "weight_decay": args.cam_weight_decay},
              {"params": head, "lr": 10 * args.cam_learning_rate, "weight_decay": args.cam_weight_decay}]
    if getattr(args, "cam_optimizer", "sgd") == "adam":
        optimizer = PolyAdamW(groups, max_step=max_step)
    else:
        optimizer = PolyOptimizer(groups, lr=args.cam_learning_rate, weight_decay=args.cam_weight_decay,
                                  max_step=max_step, momentum=getattr(args, "cam_momentum", 0.0))
    net.train()  # freezes the stem of an ImageNet backbone: before DDP records the parameters it reduces
    model = distributed.wrap_ddp(net, device)  # BN that trains (from scratch) syncs over the ranks on CUDA
    log.info("read %d training images (%s), %d validation images (%s); %d steps of batch %d on %s (%d rank(s)), %s",
             len(train_ds), args.train_list, len(val_ds), args.val_list, max_step, args.cam_batch_size, device,
             distributed.world_size(), "ImageNet init" if pretrained_source(args) else "from scratch")
    model.train()
    t0 = time.time()
    for ep in range(args.cam_num_epoches):
        distributed.set_epoch(loader, ep)
        running = {"loss": 0.0, "steps": 0}
        bar = tqdm(loader, desc=f"train_cam epoch {ep + 1}/{args.cam_num_epoches}", leave=False, mininterval=5,
                   disable=not distributed.is_main())
        for pack in bar:
            img = pack["img"].to(device, non_blocking=True)
            label = pack["label"].to(device, non_blocking=True)
            loss = F.multilabel_soft_margin_loss(model(img), label)
            optimizer.zero_grad()
            loss.backward()  # under DDP: the gradients averaged over the ranks, i.e. those of the global batch
            optimizer.step()
            running["loss"] += loss.item()
            running["steps"] += 1
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        running = distributed.sum_counts(running)
        val_loss, val_acc = validate(distributed.unwrap(model), val_loader, device)
        log.info("epoch %d/%d: train loss %.4f, val loss %.4f, val exact-match %.3f, lr %.2e, %.0fs",
                 ep + 1, args.cam_num_epoches, running["loss"] / max(1, running["steps"]), val_loss, val_acc,
                 optimizer.param_groups[0]["lr"], time.time() - t0)
    if distributed.is_main():
        save_torch(args.cam_weights_name, cpu_state_dict(distributed.unwrap(model)))
        log.info("wrote %s", args.cam_weights_name)
    distributed.barrier()
