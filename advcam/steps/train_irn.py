"""Pass train_irn: train IRN's boundary and displacement branches on the inter-pixel relation labels.

Reads the images of ``--train_list`` with their ``<ir_label_out_dir>/<id>.png`` labels (from cam_to_ir_label),
trains the two branches of a frozen ResNet-50, then estimates the mean displacement over the images of
``--infer_list`` (stored in ``mean_shift.running_mean``) and writes the state dict to ``--irn_weights_name``.

Backbone initialisation: ``--pretrained PATH`` (an ImageNet ResNet-50 file), torchvision's ImageNet download
(the default), or, with ``--no_pretrained True``, the backbone of the trained CAM classifier
(``--cam_weights_name``). IRN never trains its backbone, so a random one would give useless features; a
classifier trained from scratch is the only source of learned features when ImageNet weights are not used.
"""
from __future__ import annotations

import logging
import os
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from advcam import distributed, imutils
from advcam.datasets import VOC12, ImageDataset, SegData, dataset_of
from advcam.errors import BadInputError, MissingInputError
from advcam.indexing import PathIndex
from advcam.io import load_label_png, missing_files, save_torch
from advcam.nets.resnet50_cam import Net as CamNet
from advcam.nets.resnet50_cam import load_cam_weights
from advcam.nets.resnet50_irn import AffinityDisplacementLoss, compute_irn_loss, relation_labels
from advcam.utils import (
    PolyAdamW,
    PolyOptimizer,
    irn_network,
    pick_device,
    pretrained_source,
    resolve_cam_weights,
)

log = logging.getLogger("advcam.train_irn")

TRAIN_RADIUS = 10  # relation radius of the training labels (152 directions)
SCALE_RANGE = (0.5, 1.5)


def ir_label_path(ir_label_dir: str, name: str) -> str:
    return os.path.join(ir_label_dir, name + ".png")


def load_ir_label(ir_label_dir: str, name: str) -> np.ndarray:
    """The IR label map of one image (uint8: 0 background, 1..num_classes, 255 unsure)."""
    path = ir_label_path(ir_label_dir, name)
    return load_label_png(path, "IR label", "run the cam_to_ir_label pass (--cam_to_ir_label_pass True) with the "
                          "same --ir_label_out_dir")


class _PairGrid:
    """The (source, destination) indices of one grid: what relation_labels needs from a PathIndex, without the
    path tables (large at 512 crops), so that loader workers receive little."""

    def __init__(self, path_index: PathIndex, size: tuple[int, int]):
        self.size = tuple(size)
        self.src_dst = path_index.get_src_dst(self.size)

    def get_src_dst(self, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        if tuple(size) != self.size:
            raise ValueError(f"relation labels of a {tuple(size)} grid requested from a {self.size} grid")
        return self.src_dst


class AffinityDataset(Dataset):
    """Augmented crops with the relation labels (bg-positive, fg-positive, negative) of their IR labels.

    Per item: random rescale in [0.5, 1.5] (image bicubic, label nearest), normalise, random h-flip,
    random ``crop_size`` crop (image padded with 0, label with 255), label reduced to the stride-4 grid
    (nearest). Returns {"name", "img" float [3, crop, crop], "aff_bg_pos_label", "aff_fg_pos_label",
    "aff_neg_label" uint8 [n_dirs, n_src]}.
    """

    def __init__(self, img_name_list_path: str | None, voc12_root: str | None, ir_label_dir: str, crop_size: int,
                 path_index: PathIndex, names: list[str] | None = None, seed: int | None = None,
                 data: SegData | None = None):
        self.data = data if data is not None else VOC12(voc12_root)  # the images (and class count) of a dataset
        self.names = names if names is not None else self.data.read_list(img_name_list_path)
        self.seed, self.epoch = seed, 0  # with a seed, item i of epoch e is augmented by imutils.item_rng(seed, e, i)
        self.voc12_root = self.data.root
        self.ir_label_dir = ir_label_dir
        self.crop_size = crop_size
        self.label_size = imutils.get_strided_size((crop_size, crop_size), 4)
        self.grid = _PairGrid(path_index, self.label_size)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, idx: int) -> dict:
        name = self.names[idx]
        img = self.data.load_image(name)
        label = load_ir_label(self.ir_label_dir, name)
        if label.shape != img.shape[:2]:
            raise BadInputError(f"{ir_label_path(self.ir_label_dir, name)} is {label.shape}, its image is "
                             f"{img.shape[:2]}: the IR labels do not belong to this {self.data.root_flag}; "
                             "rerun cam_to_ir_label")
        rng = imutils.item_rng(self.seed, self.epoch, idx)
        img, label = imutils.random_scale((img, label), SCALE_RANGE, (3, 0), rng)
        img = imutils.normalize(img)
        img, label = imutils.random_lr_flip((img, label), rng)
        img, label = imutils.random_crop((img, label), self.crop_size, (0, 255), rng)
        label = imutils.pil_resize(label, self.label_size, 0)
        bg_pos, fg_pos, neg = relation_labels(torch.from_numpy(np.array(label)), self.grid,
                                              n_labels=self.data.num_seg_classes)
        return {"name": name, "img": torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))),
                "aff_bg_pos_label": bg_pos.to(torch.uint8), "aff_fg_pos_label": fg_pos.to(torch.uint8),
                "aff_neg_label": neg.to(torch.uint8)}


VOC12AffinityDataset = AffinityDataset  # the name before the data layer


def build_model(args, path_index: PathIndex) -> tuple[AffinityDisplacementLoss, str]:
    """The training network with its backbone initialised as ``args`` asks; (model, description of the init)."""
    network = irn_network(args)
    if hasattr(network, "BACKBONE"):  # a backbone whose ImageNet weights ship with the package
        return network.AffinityDisplacementLoss(path_index), network.BACKBONE
    source = pretrained_source(args)
    model = AffinityDisplacementLoss(path_index, pretrained=source)
    if source is not None:
        return model, f"ImageNet ResNet-50 ({source})"
    cam_path = resolve_cam_weights(args.cam_weights_name)
    cam = CamNet(pretrained=None, num_classes=dataset_of(args).num_classes)
    load_cam_weights(cam, cam_path)  # accepts reference checkpoints and their aliased keys
    model.load_backbone(cam.state_dict())
    return model, f"the CAM classifier's backbone ({cam_path}, --no_pretrained True)"


def build_optimizer(model: AffinityDisplacementLoss, args, max_step: int) -> torch.optim.Optimizer:
    """Poly-decay optimiser of the two branches: edge at --irn_learning_rate, displacement at 10x.

    ``--irn_optimizer sgd`` is the reference's SGD (see PolyOptimizer for its momentum quirk); ``adam`` is
    AdamW, for a backbone trained from scratch, whose features the reference's SGD schedule hardly moves.
    """
    edge_params, dp_params = model.trainable_parameters()
    lr, wd = args.irn_learning_rate, args.irn_weight_decay
    groups = [{"params": list(edge_params), "lr": lr, "weight_decay": wd},
              {"params": list(dp_params), "lr": 10 * lr, "weight_decay": wd}]
    if getattr(args, "irn_optimizer", "sgd") == "adam":
        return PolyAdamW(groups, max_step=max_step)
    return PolyOptimizer(groups, lr=lr, weight_decay=wd, max_step=max_step)


@torch.no_grad()
def estimate_mean_displacement(model: AffinityDisplacementLoss, args, device: torch.device) -> torch.Tensor:
    """Mean displacement per channel over top-left crops of the ``--infer_list`` images, in eval mode (a pass
    of its own after training, as upstream IRN does since its multi-GPU fix; under torchrun over exact shards,
    summed over the ranks)."""
    data = dataset_of(args)
    ds = ImageDataset(data, data.read_list(args.infer_list), crop_size=args.irn_crop_size, crop_method="top_left")
    loader = DataLoader(Subset(ds, distributed.shard(range(len(ds)))), batch_size=args.irn_batch_size,
                        shuffle=False, num_workers=distributed.loader_workers(args.num_workers),
                        pin_memory=device.type == "cuda")
    model.eval()
    model.mean_shift.running_mean.zero_()
    total = torch.zeros(2, dtype=torch.float64, device=device)
    for pack in tqdm(loader, desc="train_irn: mean displacement", unit="batch", leave=False,
                     disable=not distributed.is_main()):
        img = pack["img"].to(device, non_blocking=True)
        _, dp = model(img, return_loss=False)
        total += dp.double().mean(dim=(2, 3)).sum(0)
    total = distributed.all_reduce_tensor(total)  # over the ranks' shards
    mean = (total / len(ds)).float()
    log.info("mean displacement over %d images of %s: (%.4f, %.4f)", len(ds), args.infer_list, *mean.tolist())
    return mean


def run(args) -> dict:
    """Train IRN and write ``args.irn_weights_name`` (skipped when that file already exists)."""
    if os.path.isfile(args.irn_weights_name):
        log.warning("%s exists: skipping IRN training (delete it to retrain)", args.irn_weights_name)
        return {"skipped": True, "weights": args.irn_weights_name}
    device = pick_device(getattr(args, "device", None))
    crop, bs = args.irn_crop_size, args.irn_batch_size
    label_size = imutils.get_strided_size((crop, crop), 4)
    path_index = PathIndex(radius=TRAIN_RADIUS, default_size=label_size)
    if path_index.source_shape(label_size) == (0, 0):
        min_crop = 4 * (2 * path_index.radius_floor + 1)
        raise BadInputError(f"--irn_crop_size {crop} gives a {label_size[0]}x{label_size[1]} label grid, too small for "
                         f"relations of radius {TRAIN_RADIUS}: use at least {min_crop} (the reference uses 512)")

    data = dataset_of(args)
    names = data.read_list(args.train_list)
    missing = missing_files(names, args.ir_label_out_dir, ".png")
    if missing:
        raise MissingInputError(
            f"{len(missing)} of {len(names)} IR labels missing, e.g. "
            f"{ir_label_path(args.ir_label_out_dir, missing[0])}: "
            "run the cam_to_ir_label pass (--cam_to_ir_label_pass True) with the same --train_list and "
            "--ir_label_out_dir first")
    seed = distributed.shared_seed(args.seed)
    ds = AffinityDataset(args.train_list, None, args.ir_label_out_dir, crop, path_index, names=names,
                         seed=seed, data=data)
    if len(ds) < bs:
        raise BadInputError(f"--train_list {args.train_list} has {len(ds)} images, fewer than --irn_batch_size {bs}: "
                         "lower --irn_batch_size")
    loader = distributed.train_loader(ds, bs, "--irn_batch_size", seed, args.num_workers, device.type == "cuda")
    max_step = (len(ds) // bs) * args.irn_num_epoches

    net, init = build_model(args, path_index)
    net = net.to(device)
    optimizer = build_optimizer(net, args, max_step)
    log.info("read %d images and IR labels (%s, %s); backbone from %s; %d steps of batch %d, crop %d, %s, on %s "
             "(%d rank(s))", len(ds), args.train_list, args.ir_label_out_dir, init, max_step, bs, crop,
             type(optimizer).__name__, device, distributed.world_size())

    net.train()  # freezes the backbone: before DDP records the parameters it reduces
    # every buffer is a constant while it trains (frozen BN statistics, the index tables): none is re-sent each step
    model = distributed.wrap_ddp(net, device, broadcast_buffers=False)
    t0 = time.time()
    for ep in range(args.irn_num_epoches):
        distributed.set_epoch(loader, ep)
        sums = {"loss": 0.0, "pos_aff": 0.0, "neg_aff": 0.0, "dp_fg": 0.0, "dp_bg": 0.0}
        n = 0
        bar = tqdm(loader, desc=f"train_irn epoch {ep + 1}/{args.irn_num_epoches}", unit="batch", leave=False,
                   disable=not distributed.is_main())
        for pack in bar:
            img = pack["img"].to(device, non_blocking=True)
            bg_pos = pack["aff_bg_pos_label"].to(device, non_blocking=True).float()
            fg_pos = pack["aff_fg_pos_label"].to(device, non_blocking=True).float()
            neg = pack["aff_neg_label"].to(device, non_blocking=True).float()
            pos_aff, neg_aff, dp_fg, dp_bg = model(img, return_loss=True)
            loss, parts = compute_irn_loss(pos_aff, neg_aff, dp_fg, dp_bg, bg_pos, fg_pos, neg,
                                           distributed.all_reduce_tensor, distributed.world_size())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            n += 1
            sums["loss"] += loss.item()
            for k, v in parts.items():
                sums[k] += v
            bar.set_postfix({k: f"{v:.4f}" for k, v in parts.items()}, refresh=False)
        sums = distributed.sum_counts(dict(sums, steps=n))
        n = sums.pop("steps")
        log.info("epoch %d/%d: %s, lr %.2e, %.0f s", ep + 1, args.irn_num_epoches,
                 ", ".join(f"{k} {v / max(n, 1):.4f}" for k, v in sums.items()), optimizer.param_groups[0]["lr"],
                 time.time() - t0)

    net.mean_shift.running_mean.copy_(estimate_mean_displacement(net, args, device))
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    if distributed.is_main():
        save_torch(args.irn_weights_name, state)
        log.info("wrote %s (%d tensors, mean displacement %s), %.0f s", args.irn_weights_name, len(state),
                 [round(v, 4) for v in net.mean_shift.running_mean.tolist()], time.time() - t0)
    distributed.barrier()
    return {"skipped": False, "weights": args.irn_weights_name, "steps": max_step, "backbone": init,
            "mean_displacement": net.mean_shift.running_mean.tolist()}
