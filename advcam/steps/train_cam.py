"""Pass train_cam: train the classifier (``--cam_network``, default ResNet-50) on image-level labels (multi-label
soft margin)."""
from __future__ import annotations

import logging
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from advcam.errors import BadInputError
from advcam.io import save_torch
from advcam.utils import PolyAdamW, PolyOptimizer, cam_network, pick_device, pretrained_source
from advcam.voc12.dataloader import VOC12ClassificationDataset

log = logging.getLogger("advcam.train_cam")


@torch.no_grad()
def validate(model: torch.nn.Module, loader: DataLoader, device: torch.device) -> tuple[float, float]:
    """(mean loss, exact-match accuracy of thresholded predictions) over ``loader``."""
    model.eval()
    losses, exact, n = [], 0, 0
    for pack in loader:
        img, label = pack["img"].to(device), pack["label"].to(device)
        x = model(img)
        losses.append(F.multilabel_soft_margin_loss(x, label).item())
        exact += ((x > 0).float() == label).all(1).sum().item()
        n += len(label)
    model.train()
    return sum(losses) / max(1, len(losses)), exact / max(1, n)


def run(args) -> None:
    device = pick_device(getattr(args, "device", None))
    crop = args.cam_crop_size
    train_ds = VOC12ClassificationDataset(
        args.train_list, voc12_root=args.voc12_root, cls_labels=getattr(args, "cls_labels", None),
        resize_long=tuple(args.cam_resize_long), hor_flip=True, crop_size=crop, crop_method="random")
    if len(train_ds) < args.cam_batch_size:
        raise BadInputError(f"--train_list {args.train_list} has {len(train_ds)} images, fewer than "
                         f"--cam_batch_size {args.cam_batch_size}")
    loader = DataLoader(train_ds, batch_size=args.cam_batch_size, shuffle=True, num_workers=args.num_workers,
                        pin_memory=device.type == "cuda", drop_last=True)
    max_step = (len(train_ds) // args.cam_batch_size) * args.cam_num_epoches
    val_ds = VOC12ClassificationDataset(args.val_list, voc12_root=args.voc12_root,
                                        cls_labels=getattr(args, "cls_labels", None), crop_size=crop)
    val_loader = DataLoader(val_ds, batch_size=args.cam_batch_size, shuffle=False, num_workers=args.num_workers)

    model = cam_network(args).Net(pretrained=pretrained_source(args)).to(device)
    backbone, head = model.trainable_parameters()
    groups = [{"params": backbone, "lr": args.cam_learning_rate, "weight_decay": args.cam_weight_decay},
              {"params": head, "lr": 10 * args.cam_learning_rate, "weight_decay": args.cam_weight_decay}]
    if getattr(args, "cam_optimizer", "sgd") == "adam":
        optimizer = PolyAdamW(groups, max_step=max_step)
    else:
        optimizer = PolyOptimizer(groups, lr=args.cam_learning_rate, weight_decay=args.cam_weight_decay,
                                  max_step=max_step, momentum=getattr(args, "cam_momentum", 0.0))
    log.info("read %d training images (%s), %d validation images (%s); %d steps on %s, %s",
             len(train_ds), args.train_list, len(val_ds), args.val_list, max_step, device,
             "ImageNet init" if pretrained_source(args) else "from scratch")
    model.train()
    t0 = time.time()
    for ep in range(args.cam_num_epoches):
        running = []
        bar = tqdm(loader, desc=f"train_cam epoch {ep + 1}/{args.cam_num_epoches}", leave=False, mininterval=5)
        for pack in bar:
            img = pack["img"].to(device, non_blocking=True)
            label = pack["label"].to(device, non_blocking=True)
            loss = F.multilabel_soft_margin_loss(model(img), label)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            running.append(loss.item())
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        val_loss, val_acc = validate(model, val_loader, device)
        log.info("epoch %d/%d: train loss %.4f, val loss %.4f, val exact-match %.3f, lr %.2e, %.0fs",
                 ep + 1, args.cam_num_epoches, sum(running) / len(running), val_loss, val_acc,
                 optimizer.param_groups[0]["lr"], time.time() - t0)
    save_torch(args.cam_weights_name, model.state_dict())
    log.info("wrote %s", args.cam_weights_name)
