"""Semi-supervised segmentation the AdvCAM way: CCT (:mod:`advcam.cct`) trained on a few pixel-labelled images and,
for the rest of train_aug, their AdvCAM masks as weak labels.

- the data, read through the data layer (:mod:`advcam.datasets`: images, ground truth and class count of
  ``--dataset``): the labelled list (a file, or for VOC a shipped split by its size:
  ``advcam/data/voc12/semi/labeled_<N>.txt``), the unlabelled list = the training list minus it, and the training
  set, which reads an image with its ground truth (labelled) or its weak mask (unlabelled; never its ground truth);
- :func:`cct_step`, one training step's losses in the three modes of the same code: supervised only (no unlabelled
  batch), CCT (an unlabelled batch, no weak masks) and CCT with weak labels (weak masks given: the weak-label loss
  is on whenever masks are given).

The numeric core takes explicit parameters; the pass translates the command line.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from advcam import distributed, imutils
from advcam.cct import RAMP_UP, UNSUP_WEIGHT, WEAK_WEIGHT, cct_param_groups, consistency_loss, sigmoid_rampup
from advcam.datasets import SegData
from advcam.errors import BadInputError, MissingInputError, UserError
from advcam.io import save_torch
from advcam.metrics import confusion_matrix, mean_iou
from advcam.segmentation import (
    StreamBatchSampler,
    _iteration_seed,
    augment,
    bf16_autocast,
    build_seg_network,
    label_path,
    load_checkpoint,
    load_label,
    poly_scheduler,
    predict_probs,
    seg_data,
)
from advcam.utils import float_list, str2bool
from advcam.voc12 import IGNORE_LABEL

log = logging.getLogger("advcam.semi")

SHIPPED_SPLITS: tuple[int, ...] = (60, 100, 200, 300, 500, 800, 1000, 1464)
"""Sizes of the shipped labelled splits (CCT's ``{N}_train_supervised``; 1464 = the VOC ``train`` list)."""

SEMI_MODES: tuple[str, ...] = ("supervised", "cct", "cct_weak")
"""``--semi_mode``: the labelled batch alone; CCT (consistency on the unlabelled batch); CCT with weak labels."""

SEMI_NETWORKS: tuple[str, ...] = ("cct_resnet50", "cct_resnet50_deepstem", "cct_efficientnet_lite0")

DEFAULT_LISTS: dict[str, str] = {"train": "voc12/train_aug.txt", "val": "voc12/val.txt"}
"""``--semi_train_list`` / ``--semi_val_list`` defaults (VOC's); another dataset's lists by role: :func:`semi_lists`."""

__all__ = ["RAMP_UP", "SEMI_MODES", "SEMI_NETWORKS", "SHIPPED_SPLITS", "SemiTrainDataset", "add_semi_flags",
           "build_semi_network", "cct_step", "check_weak_masks", "inference_state", "naive_mix_labels",
           "semi_lists", "semi_split_path", "train_cct", "unlabeled_names", "validate"]


def semi_split_path(value: str, dataset: str = "voc12") -> str:
    """The labelled list that ``--semi_labeled_list`` names: an existing file, or for ``voc12`` a shipped split by
    its size (``1464``, ``labeled_1464`` or ``labeled_1464.txt``)."""
    if os.path.isfile(value):
        return value
    if dataset != "voc12":
        raise MissingInputError(f"--semi_labeled_list {value}: no such file; for --dataset {dataset} give a list "
                                "file of the pixel-labelled image ids, one a line (the shipped splits are VOC's)")
    m = re.fullmatch(r"(?:labeled_)?(\d+)(?:\.txt)?", os.path.basename(value))
    if m and int(m.group(1)) in SHIPPED_SPLITS:
        from advcam.data import shipped_file
        path = shipped_file(f"voc12/semi/labeled_{int(m.group(1))}.txt")
        if path is not None:
            return path
    sizes = ", ".join(str(n) for n in SHIPPED_SPLITS)
    raise MissingInputError(f"--semi_labeled_list {value}: no such file and not a shipped split; give a list of "
                            f"VOC ids (one a line) or a shipped split's size ({sizes})")


def semi_lists(data: SegData, train_list: str, val_list: str) -> tuple[str, str]:
    """(training list, validation list) of ``data``: the flags' values, where a flag left at its VOC default names
    the dataset's own list of that role (COCO: ``coco14/train14.txt``, ``coco14/val14.txt``)."""
    if data.name == "voc12":
        return train_list, val_list
    return (data.default_lists["seg_train"] if train_list == DEFAULT_LISTS["train"] else train_list,
            data.default_lists["seg_infer"] if val_list == DEFAULT_LISTS["val"] else val_list)


def unlabeled_names(train_names: Sequence[str], labeled_names: Sequence[str],
                    labeled_flag: str = "--semi_labeled_list", allow_empty: bool = False) -> list[str]:
    """train_aug minus the labelled list, in train_aug's order. Every labelled id must be in ``train_names``; an
    empty result is refused unless ``allow_empty``."""
    train = set(train_names)
    outside = [n for n in labeled_names if n not in train]
    if outside:
        raise BadInputError(f"{labeled_flag}: {len(outside)} labelled ids are not in the training list, e.g. "
                            f"{outside[:3]}; give a subset of train_aug")
    labeled = set(labeled_names)
    rest = [n for n in dict.fromkeys(train_names) if n not in labeled]
    if not rest and not allow_empty:
        raise BadInputError(f"{labeled_flag}: labels every image of the training list, so nothing is left "
                            "unlabelled; give a smaller labelled list (or train supervised only)")
    return rest


class SemiTrainDataset(Dataset):
    """Training crops of ``names``, images of ``data`` (a :class:`~advcam.datasets.SegData`, or a VOC root), with
    labels from one source: ``<label_dir>/<id>.png`` (the weak masks of the unlabelled images, or a folder of ground
    truth), the dataset's own ground truth (``ground_truth``; ``label_dir`` None), or none (``label_dir`` None: every
    pixel 255, no label file opened; CCT without weak labels). An unlabelled set never reads the ground truth.

    Indexed by an ``(image index, stream position)`` key; the augmentation (:func:`advcam.segmentation.augment`)
    draws from a generator seeded with (seed, position), as :class:`~advcam.segmentation.SegTrainDataset`, so a
    sample depends on nothing but the key. Returns {"name", "img" float [3, crop, crop], "label" int64 [crop, crop]}.
    """

    def __init__(self, names: Sequence[str], data: SegData | str, label_dir: str | None, crop_size: int,
                 scales: Sequence[float], seed: int, flip: bool = True, ground_truth: bool = False):
        if ground_truth and label_dir is not None:
            raise ValueError("labels from a folder or from the ground truth, not both")
        self.names, self.data, self.label_dir = list(names), seg_data(data), label_dir
        self.ground_truth = ground_truth
        self.crop_size, self.scales, self.seed, self.flip = int(crop_size), tuple(scales), int(seed), flip

    def __len__(self) -> int:
        return len(self.names)

    def label_file(self, name: str) -> str | None:
        """The label file of ``name`` (None when the set has no labels)."""
        if self.ground_truth:
            return self.data.gt_path(name)
        return None if self.label_dir is None else label_path(self.label_dir, name)

    def _label(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        n = self.data.num_seg_classes
        if self.label_dir is not None:
            label = load_label(self.label_dir, name, n)
        elif self.ground_truth:
            label = self.data.load_seg_label(name)
            bad = (label >= n) & (label != IGNORE_LABEL)
            if label.dtype != np.uint8 or bad.any():
                raise BadInputError(f"{self.data.gt_path(name)}: not a ground-truth map of {self.data.name} (classes "
                                    f"0-{n - 1} and {IGNORE_LABEL} in uint8)")
        else:
            return np.full(shape, IGNORE_LABEL, np.uint8)
        if label.shape != shape:
            raise BadInputError(f"{self.label_file(name)} is {label.shape}, its image is {shape}: the labels do not "
                                f"belong to this {self.data.root_flag}")
        return label

    def __getitem__(self, key: tuple[int, int]) -> dict:
        idx, pos = key
        name = self.names[idx]
        img = self.data.load_image(name)
        label = self._label(name, img.shape[:2])
        rng = np.random.default_rng([self.seed, pos])
        img, label = augment(img, label, rng, self.scales, self.crop_size, self.flip)
        return {"name": name, "img": torch.from_numpy(img.transpose(2, 0, 1).copy()),
                "label": torch.from_numpy(label.astype(np.int64))}


def check_weak_masks(names: Sequence[str], weak_dir: str) -> None:
    """MissingInputError naming the first unlabelled image without ``<weak_dir>/<id>.png`` (and the count)."""
    missing = [n for n in names if not os.path.isfile(label_path(weak_dir, n))]
    if missing:
        raise MissingInputError(f"--semi_weak_label_dir {weak_dir}: {len(missing)} of {len(names)} unlabelled "
                                f"images have no weak mask, e.g. {label_path(weak_dir, missing[0])}; run "
                                "make_sem_seg on train_aug or point the flag at the masks")


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                   global_count: Callable[[torch.Tensor], torch.Tensor] | None, world: int) -> torch.Tensor:
    """Cross-entropy summed over the pixels not labelled 255, divided by their count: this batch's, or with
    ``global_count`` (the sum over the ranks) the global batch's, times ``world`` (so that the gradients averaged
    over the ranks are those of the global pixel mean). 0, with a gradient, when no pixel is labelled."""
    nll = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_LABEL, reduction="sum")
    count = (labels != IGNORE_LABEL).sum().double()
    if global_count is not None:
        count = global_count(count)
        nll = nll * world
    return nll / count.clamp_min(1).to(nll.dtype)


def cct_step(model: nn.Module, labeled_batch: tuple[torch.Tensor, torch.Tensor],
             unlabeled_batch: torch.Tensor | None, weak_masks: torch.Tensor | None, iteration: int, *,
             rampup_iters: int, unsup_weight: float = UNSUP_WEIGHT, weak_weight: float = WEAK_WEIGHT,
             global_count: Callable[[torch.Tensor], torch.Tensor] | None = None, world: int = 1
             ) -> dict[str, torch.Tensor | float]:
    """One step's losses (the caller runs ``backward`` on "total" and steps the optimizer).

    ``model``: a :class:`~advcam.cct.CCTModel` (or its DDP wrapper), in training mode. ``labeled_batch`` = (images
    [B, 3, H, W], labels [B, H, W] int64, 255 ignored). ``unlabeled_batch``: images [B', 3, H', W'] (multiples of 8),
    or None for supervised only. ``weak_masks``: [B', H', W'] int64 (255 ignored) for CCT with weak labels, or None.
    ``iteration``: the 0-based step, for the ramp-up over ``rampup_iters`` steps. Data-parallel over ``world``
    ranks: ``global_count`` sums a count over the ranks, so that the cross-entropies are means over the global
    batch's labelled pixels (the consistency loss, a mean over equal shares, needs nothing).

    Returns {"total", "sup", "unsup", "weak"} (tensors; "unsup"/"weak" unweighted, zero when off) and the weights
    "w_unsup" = ``unsup_weight`` x ramp, "w_weak" = ``weak_weight`` x ramp (floats, 0 when off).
    total = sup + w_unsup unsup + w_weak weak.
    """
    images, labels = labeled_batch
    if weak_masks is not None and unlabeled_batch is None:
        raise ValueError("weak masks need an unlabelled batch")
    zero = torch.zeros((), device=images.device)
    if unlabeled_batch is None:
        sup = _cross_entropy(model(images), labels, global_count, world)
        return {"total": sup, "sup": sup, "unsup": zero, "weak": zero, "w_unsup": 0.0, "w_weak": 0.0}
    out = model(images, unlabeled_batch)
    sup = _cross_entropy(out["main_l"], labels, global_count, world)
    ramp = sigmoid_rampup(iteration, rampup_iters)
    unsup = consistency_loss(out["aux_ul"], out["main_ul"])
    w_unsup = unsup_weight * ramp
    total = sup + w_unsup * unsup
    weak, w_weak = zero, 0.0
    if weak_masks is not None:
        weak = sum(_cross_entropy(a, weak_masks, global_count, world) for a in out["aux_ul"]) / len(out["aux_ul"])
        w_weak = weak_weight * ramp
        total = total + w_weak * weak
    return {"total": total, "sup": sup, "unsup": unsup, "weak": weak, "w_unsup": w_unsup, "w_weak": w_weak}


# --------------------------------------------------------------------------------------------------
# the network, the naive-mix label folder
# --------------------------------------------------------------------------------------------------


def build_semi_network(network: str, pretrained: str | None, mode: str,
                       num_classes: int = 21) -> tuple[nn.Module, str]:
    """(CCT model, description of its initialisation) for ``--semi_network`` in ``mode``: the 30 auxiliary
    decoders for "cct"/"cct_weak", none for "supervised"; ``num_classes`` segmentation labels (background
    included). ``pretrained`` as ``--seg_pretrained``."""
    if network.split(".")[-1] not in SEMI_NETWORKS:
        raise BadInputError(f"--semi_network {network!r}: choose one of {', '.join(SEMI_NETWORKS)}")
    if mode not in SEMI_MODES:
        raise BadInputError(f"--semi_mode {mode!r}: choose one of {', '.join(SEMI_MODES)}")
    if network.split(".")[-1] == "cct_resnet50_deepstem" and pretrained in (None, "torchvision"):
        raise BadInputError(f"--semi_network {network}: its ImageNet weights cannot be downloaded; pass "
                            "--semi_pretrained 3x3resnet50-imagenet.pth (CCT's deep-stem file) or none")
    model, init = build_seg_network(network, pretrained, num_classes)
    if mode == "supervised":
        model.aux_decoders = nn.ModuleList()  # the same network, trained on the labelled batch alone
    return model, init


def inference_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of the inference network (encoder and main decoder; the auxiliary decoders only train): what
    make_seg / eval_seg load with ``--seg_network cct_...``."""
    model = distributed.unwrap(model)
    return {k: v.detach().cpu() for k, v in model.state_dict().items() if not k.startswith("aux_decoders.")}


def naive_mix_labels(out_dir: str, labeled: Sequence[str], gt_dir: str, unlabeled: Sequence[str], weak_dir: str,
                     copy: bool = False) -> dict[str, int]:
    """The "naive mix" baseline's label folder: ``<out_dir>/<id>.png`` = the ground truth ``<gt_dir>/<id>.png`` of
    each labelled id and the weak (pseudo) mask ``<weak_dir>/<id>.png`` of each unlabelled one, as symbolic links
    (absolute) or, with ``copy``, copies. Existing entries are replaced. Returns {"labeled", "unlabeled"} counts."""
    overlap = set(labeled) & set(unlabeled)
    if overlap:
        raise BadInputError(f"{len(overlap)} ids are both labelled and unlabelled, e.g. {sorted(overlap)[:3]}")
    os.makedirs(out_dir, exist_ok=True)
    for names, src_dir, what in ((labeled, gt_dir, "ground truth"), (unlabeled, weak_dir, "weak mask")):
        for n in names:
            src = os.path.abspath(label_path(src_dir, n))
            if not os.path.isfile(src):
                raise MissingInputError(f"{src}: no {what} for {n}; the naive mix needs one for every id")
            dst = label_path(out_dir, n)
            tmp = dst + ".tmp"
            if os.path.lexists(tmp):
                os.remove(tmp)
            if copy:
                shutil.copyfile(src, tmp)
            else:
                os.symlink(src, tmp)
            os.replace(tmp, dst)
    return {"labeled": len(labeled), "unlabeled": len(unlabeled)}


# --------------------------------------------------------------------------------------------------
# validation and training
# --------------------------------------------------------------------------------------------------


@torch.no_grad()
def validate(model: nn.Module, data: SegData | str, names: Sequence[str], amp: bool = True) -> float:
    """Single-scale, no-flip mIoU (0-1, over the dataset's segmentation classes, from the confusion matrix summed
    over the images) of the main decoder on ``names`` of ``data`` (or a VOC root) against the ground truth, as CCT's
    in-training validation. Under torchrun each rank predicts its shard and the matrices are summed. ``model`` is
    put in eval mode and left so."""
    data = seg_data(data)
    model.eval()
    preds, gts = [], []
    for name in distributed.shard(list(names)):
        x = torch.from_numpy(imutils.normalize(data.load_image(name)).transpose(2, 0, 1).copy())
        preds.append(predict_probs(model, x, (1.0,), flip=False, amp=amp).argmax(0).cpu().numpy())
        gts.append(data.load_seg_label(name))
    n = data.num_seg_classes
    conf = confusion_matrix(preds, gts, n) if preds else np.zeros((n, n), np.int64)
    return float(mean_iou(distributed.all_reduce_sum(conf)))


def train_cct(model: nn.Module, labeled: Dataset, unlabeled: SemiTrainDataset | None, *, mode: str,
              batch_size: int, unlabeled_batch_size: int, num_iters: int, rampup_iters: int, lr: float,
              backbone_lr: float, momentum: float, weight_decay: float, power: float, unsup_weight: float,
              weak_weight: float, checkpoint_path: str, checkpoint_every: int, device: torch.device,
              num_workers: int = 0, amp: bool = True, val: Callable[[nn.Module], float] | None = None,
              val_every: int = 0, best_path: str | None = None, config: dict | None = None) -> dict:
    """Train ``model`` (a :class:`~advcam.cct.CCTModel`) for ``num_iters`` steps of ``batch_size`` labelled crops of
    ``labeled`` (a :class:`SemiTrainDataset`, or any set of keyed crops with a ``seed``, such as
    :class:`~advcam.segmentation.SegTrainDataset`), plus ``unlabeled_batch_size`` unlabelled ones unless ``mode``
    is "supervised" (their weak masks in "cct_weak"): SGD
    (``lr`` for the PSP and decoders, ``backbone_lr`` for the backbone), poly schedule, losses of :func:`cct_step`.

    Both streams are :class:`~advcam.segmentation.StreamBatchSampler` streams of their own seeds: the labelled one
    is reshuffled and re-augmented on each pass over the labelled list (CCT's ``itertools.cycle`` replays its first
    pass). A checkpoint {"model", "optimizer", "scheduler", "iteration", "config", "best"} is written atomically
    every ``checkpoint_every`` steps and at the end; an unfinished one with the same ``config`` is resumed and the
    run continues as if uninterrupted (each step's torch generator is seeded from (seed, step)). With ``val``
    (model -> mIoU) every ``val_every`` steps (0: never) and at the end, the inference weights of the best score
    so far are written to ``best_path``. Under torchrun: DistributedDataParallel, each rank taking its share of both
    batches (the global batches are one process's), rank 0 writing. Returns {"losses": per-step totals of this call,
    "last": the last step's loss terms, "start_iteration", "best": (mIoU, step) or None, "seconds"}."""
    if mode not in SEMI_MODES:
        raise BadInputError(f"--semi_mode {mode!r}: choose one of {', '.join(SEMI_MODES)}")
    if (mode == "supervised") != (unlabeled is None):
        raise ValueError("an unlabelled set is needed by (and only by) the cct modes")
    if mode == "cct_weak" and unlabeled.label_dir is None:
        raise ValueError("cct_weak needs the unlabelled set's weak masks")
    if min(batch_size, num_iters, checkpoint_every) < 1 or (unlabeled is not None and unlabeled_batch_size < 1):
        raise BadInputError("batch sizes, iterations and the checkpoint interval must be >= 1")
    seed = labeled.seed
    config = dict(config or {}, mode=mode, batch_size=batch_size, unlabeled_batch_size=unlabeled_batch_size,
                  num_iters=num_iters, rampup_iters=rampup_iters, lr=lr, backbone_lr=backbone_lr,
                  unsup_weight=unsup_weight, weak_weight=weak_weight, aux=len(model.aux_decoders))
    cuda = device.type == "cuda"
    bf16 = bf16_autocast(amp, device)
    model = model.to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(cct_param_groups(model, lr, backbone_lr, weight_decay), lr=lr, momentum=momentum,
                                weight_decay=weight_decay)
    scheduler = poly_scheduler(optimizer, num_iters, power)
    start, best = 0, None
    ckpt = load_checkpoint(checkpoint_path, config)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start, best = int(ckpt["iteration"]), ckpt.get("best")
        seed = int(ckpt.get("config", {}).get("seed", seed))  # the data stream of the run it continues
        log.info("resuming from %s at step %d of %d", checkpoint_path, start, num_iters)
    labeled.seed = seed
    if unlabeled is not None:
        unlabeled.seed = unlabeled_seed(seed)

    def save(it: int) -> None:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        save_torch(checkpoint_path, {"model": state, "optimizer": optimizer.state_dict(),
                                     "scheduler": scheduler.state_dict(), "iteration": it, "best": best,
                                     "config": dict(config, seed=seed)})

    def validate_now(it: int) -> None:
        nonlocal best
        score = val(model)
        model.train()
        improved = best is None or score > best[0]
        if improved:
            best = (score, it)
            if distributed.is_main() and best_path:
                save_torch(best_path, inference_state(model))
        log.info("step %d: validation mIoU %.2f (single scale)%s", it, 100 * score,
                 ", the best so far" if improved else f"; best {100 * best[0]:.2f} at step {best[1]}")

    losses: list[float] = []
    last: dict[str, float] = {}
    t0 = time.time()
    if start < num_iters:
        world, rank = distributed.world_size(), distributed.rank()
        distributed.local_batch(batch_size, "--semi_batch_size")
        streams = [iter(DataLoader(labeled, batch_sampler=StreamBatchSampler(
            len(labeled), batch_size, labeled.seed, start, num_iters - start, rank, world),
            num_workers=num_workers, pin_memory=cuda))]
        if unlabeled is not None:
            distributed.local_batch(unlabeled_batch_size, "--semi_unlabeled_batch_size")
            streams.append(iter(DataLoader(unlabeled, batch_sampler=StreamBatchSampler(
                len(unlabeled), unlabeled_batch_size, unlabeled.seed, start, num_iters - start, rank, world),
                num_workers=num_workers, pin_memory=cuda)))
        model.train()
        ddp = distributed.wrap_ddp(model, device)
        global_count = distributed.all_reduce_tensor if distributed.is_distributed() else None

        def to_device(t: torch.Tensor, image: bool) -> torch.Tensor:
            t = t.to(device, non_blocking=True)
            return t.contiguous(memory_format=torch.channels_last) if image and cuda else t

        bar = tqdm(range(start, num_iters), desc=f"train_semi ({mode})", unit="it", initial=start, total=num_iters,
                   disable=not distributed.is_main())
        for it in bar:
            torch.manual_seed(_iteration_seed(seed, it))  # the perturbations: the same on a resumed run
            optimizer.zero_grad(set_to_none=True)
            packs = [next(s) for s in streams]
            img_l, lab_l = to_device(packs[0]["img"], True), to_device(packs[0]["label"], False)
            img_ul = to_device(packs[1]["img"], True) if unlabeled is not None else None
            weak = to_device(packs[1]["label"], False) if mode == "cct_weak" else None
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                out = cct_step(ddp, (img_l, lab_l), img_ul, weak, it, rampup_iters=rampup_iters,
                               unsup_weight=unsup_weight, weak_weight=weak_weight, global_count=global_count,
                               world=world)
            if not torch.isfinite(out["total"]):
                raise UserError(f"train_semi: the loss is {out['total'].item()} at step {it}: lower "
                                "--semi_learning_rate")
            out["total"].backward()
            optimizer.step()
            scheduler.step()
            last = {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in out.items()}
            losses.append(last["total"])
            bar.set_postfix(sup=f"{last['sup']:.3f}", unsup=f"{last['unsup']:.4f}", weak=f"{last['weak']:.3f}",
                            refresh=False)
            done = it + 1
            if val is not None and val_every > 0 and (done % val_every == 0 or done == num_iters):
                validate_now(done)
            if (done % checkpoint_every == 0 or done == num_iters) and distributed.is_main():
                save(done)
            if done % max(1, min(checkpoint_every, 100)) == 0 or done == num_iters:
                log.info("step %d/%d: loss %.4f (mean of the last %d; sup %.4f, unsup %.5f x %.2f, weak %.4f x %.3f "
                         "at this step), lr %.2e, %.0f s", done, num_iters, float(np.mean(losses[-100:])),
                         min(len(losses), 100), last["sup"], last["unsup"], last["w_unsup"], last["weak"],
                         last["w_weak"], optimizer.param_groups[-1]["lr"], time.time() - t0)
    return {"losses": losses, "last": last, "start_iteration": start, "best": best, "seconds": time.time() - t0}


def unlabeled_seed(seed: int) -> int:
    """The unlabelled stream's seed, derived from the run's (the two streams draw independently)."""
    return int(np.random.SeedSequence([seed, 1]).generate_state(1)[0])


def steps_per_epoch(num_unlabeled: int, unlabeled_batch_size: int) -> int:
    """Steps of one pass over the unlabelled list (CCT's epoch): ceil(n / batch) (912 for 9,118 at 10)."""
    return math.ceil(num_unlabeled / unlabeled_batch_size)


# --------------------------------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------------------------------


def add_semi_flags(p: argparse.ArgumentParser) -> None:
    """The ``--semi_*`` flags of the train_semi pass (run_sample.py)."""
    g = p.add_argument_group("Semi-supervised (train_semi)", "CCT on a few pixel labels + weak masks (docs/semi.md)")
    g.add_argument("--semi_mode", default=None, choices=SEMI_MODES,
                   help="supervised: the labelled images alone; cct: + consistency on the unlabelled ones; "
                        "cct_weak: + the weak masks (default: cct_weak when --semi_weak_label_dir exists, else cct)")
    g.add_argument("--semi_network", default="cct_resnet50", choices=SEMI_NETWORKS,
                   help="CCT over ResNet-50 with torchvision's stem, or with CCT's deep stem (its "
                        "3x3resnet50-imagenet.pth weights via --semi_pretrained), or over EfficientNet-Lite0 (CPU "
                        "demos)")
    g.add_argument("--semi_pretrained", default=None, type=str,
                   help="cct_resnet50's torchvision ResNet-50 ImageNet state dict (default: torchvision's download; "
                        "'none': from scratch); cct_resnet50_deepstem's 3x3resnet50-imagenet.pth (required, or "
                        "'none'); cct_efficientnet_lite0 always starts from its pip weights")
    g.add_argument("--semi_train_list", default=DEFAULT_LISTS["train"], type=str,
                   help="all training images; the unlabelled ones are this list minus --semi_labeled_list "
                        "(--dataset coco14: default coco14/train14.txt)")
    g.add_argument("--semi_labeled_list", default="1464", type=str,
                   help="the pixel-labelled images: a list file, or for VOC a shipped split by size (60, 100, 200, "
                        "300, 500, 800, 1000, 1464 = VOC train; also labeled_<N>)")
    g.add_argument("--semi_label_dir", default=None, type=str,
                   help="a folder of the labelled images' ground truth <id>.png (default: the dataset's own, "
                        "<voc12_root>/SegmentationClass for VOC)")
    g.add_argument("--semi_weak_label_dir", default=None, type=str,
                   help="weak masks <id>.png of the unlabelled images (default: --sem_seg_out_dir)")
    g.add_argument("--semi_val_list", default=DEFAULT_LISTS["val"], type=str,
                   help="images of the in-training validation (--dataset coco14: default coco14/val14.txt)")
    g.add_argument("--semi_batch_size", default=10, type=int, help="labelled crops per step")
    g.add_argument("--semi_unlabeled_batch_size", default=10, type=int, help="unlabelled crops per step")
    g.add_argument("--semi_crop_size", default=320, type=int, help="random crop (a multiple of 8)")
    g.add_argument("--semi_scales", default=(0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6), type=float_list, nargs="+",
                   help="random rescaling factors before the crop (CCT: long side 200-800 px of 500 px images)")
    g.add_argument("--semi_learning_rate", default=1e-2, type=float, help="lr of the PSP module and the decoders")
    g.add_argument("--semi_backbone_learning_rate", default=1e-3, type=float, help="lr of the backbone")
    g.add_argument("--semi_momentum", default=0.9, type=float, help="SGD momentum")
    g.add_argument("--semi_weight_decay", default=1e-4, type=float, help="weight decay")
    g.add_argument("--semi_poly_power", default=0.9, type=float, help="power of the poly learning-rate decay")
    g.add_argument("--semi_epochs", default=80, type=int,
                   help="passes over the unlabelled list (80 at 1,464 labelled: 72,960 steps)")
    g.add_argument("--semi_num_iters", default=None, type=int, help="steps (default: from --semi_epochs)")
    g.add_argument("--semi_unsup_weight", default=UNSUP_WEIGHT, type=float,
                   help="final weight of the consistency loss (sigmoid ramp-up over the first 10%% of the steps)")
    g.add_argument("--semi_weak_weight", default=WEAK_WEIGHT, type=float,
                   help="final weight of the weak-label loss (same ramp)")
    g.add_argument("--semi_checkpoint_every", default=4560, type=int,
                   help="write <semi_weights_name>.ckpt every N steps (and at the end); a rerun resumes")
    g.add_argument("--semi_val_every", default=4560, type=int,
                   help="single-scale validation on --semi_val_list every N steps and at the end, the best kept "
                        "in <semi_weights_name>.best.pth (0: none)")
    g.add_argument("--semi_amp", default=True, type=str2bool, help="bf16 autocast on a GPU with native bf16")
    g.add_argument("--semi_weights_name", default="sess/semi_cct.pth", type=str,
                   help="the trained network's final weights (make_seg/eval_seg: --seg_network <--semi_network> "
                        "--seg_weights_name this)")
