"""Stage 3: the final segmentation network (shared code of the train_seg, make_seg and eval_seg passes).

- the networks (``--seg_network``: modules of :mod:`advcam.nets` listed in :data:`SEG_NETWORKS`) and their
  ImageNet initialisation;
- the training recipes (:data:`RECIPES`: AdvCAM's, as its author describes it in jbeomlee93/AdvCAM#9, and
  kazuto1011/deeplab-pytorch's ``configs/voc12.yaml``);
- the training set (random scale from a discrete set, mean-padded random crop, flip; labels 255 ignored) with a
  sample stream that depends only on (seed, position), so that a resumed run continues the same run;
- the losses (plain and background/foreground-balanced cross-entropy), the poly schedule, the training loop
  with gradient accumulation, checkpoints and resumption;
- multi-scale + flip inference and the VOC test-server export.

Images and ground truth come through the data layer (:mod:`advcam.datasets`): a VOC root (a plain path, as before)
or any :class:`~advcam.datasets.SegData` (``--dataset coco14``: 81 labels); the stage-3 flags whose default differs
for a dataset are in its ``default_flags`` (docs/coco.md, "Stage 3").

The numeric core takes explicit parameters; the passes translate the command line.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import os
import tarfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from advcam import distributed, imutils
from advcam.datasets import VOC12, SegData
from advcam.errors import BadInputError, MissingInputError, UserError
from advcam.io import atomic_path, load_label_png, save_png, save_torch
from advcam.io import load_checkpoint as read_torch_file
from advcam.voc12 import IGNORE_LABEL, VOC_PALETTE

log = logging.getLogger("advcam.segmentation")

NUM_CLASSES = 21
"""VOC's segmentation labels (background + 20); a dataset's own count is ``SegData.num_seg_classes`` (81 for COCO)."""

SEG_NETWORKS: dict[str, str] = {
    "deeplab_v2": "DeepLab-v2 ResNet-101 (output stride 8, ASPP-v2 rates 6/12/18/24, frozen BN)",
    "deeplabv3_resnet101": "torchvision deeplabv3_resnet101 (output stride 8, ASPP-v3 12/24/36)",
    "deeplabv3_resnet50": "torchvision deeplabv3_resnet50 (output stride 8, ASPP-v3 12/24/36)",
    "efficientnet_lite0_seg": "EfficientNet-Lite0 (pip ImageNet weights) + ASPP and a stride-4 decoder (CPU demo)",
    "cct_resnet50": "CCT (train_semi): ResNet-50 at output stride 8 + PSP + the main decoder",
    "cct_resnet50_deepstem": "CCT (train_semi) over ResNet-50 with CCT's deep stem (3x3resnet50-imagenet.pth)",
    "cct_efficientnet_lite0": "CCT (train_semi) over EfficientNet-Lite0 (pip ImageNet weights), CPU demo",
}

RESNET_WEIGHTS = {"resnet101": "ResNet101_Weights.IMAGENET1K_V1", "resnet50": "ResNet50_Weights.IMAGENET1K_V1"}


@dataclass(frozen=True)
class Recipe:
    """The recipe-dependent training settings (the rest is common: lr 2.5e-4, head 10x/20x, poly 0.9, momentum
    0.9, weight decay 5e-4, crop 321, flip)."""

    batch_size: int
    iter_size: int
    num_iters: int
    scales: tuple[float, ...]
    loss: str


RECIPES: dict[str, Recipe] = {
    # jbeomlee93/AdvCAM#9: batch 10, 30k iterations, lr 2.5e-4, scales 0.5..2.0, balanced CE "similar to DSRG"
    "advcam": Recipe(10, 1, 30000, (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0), "balanced"),
    # kazuto1011/deeplab-pytorch configs/voc12.yaml: 5 x ITER_SIZE 2, 20k, scales 0.5..1.5, plain CE
    "deeplab-pytorch": Recipe(5, 2, 20000, (0.5, 0.75, 1.0, 1.25, 1.5), "ce"),
    # zhaozhengChen/LPCAM#3, the IRN family's COCO config of deeplab-pytorch: BATCH_SIZE 10 x ITER_SIZE 2, ITER_MAX
    # 100k, scales 0.5..1.5 (its LR 2e-4 is in COCO14.default_flags); deeplab-pytorch's loss, plain CE
    "coco": Recipe(10, 2, 100000, (0.5, 0.75, 1.0, 1.25, 1.5), "ce"),
}

def seg_data(root: str | SegData) -> SegData:
    """The dataset of ``root``: a :class:`~advcam.datasets.SegData` as given, a plain path as a VOC root."""
    return root if isinstance(root, SegData) else VOC12(root)


def check_test_export(data: SegData, export_dir: str | None) -> None:
    """Refuse ``--seg_export_test`` (the VOC evaluation server's format) for a dataset other than VOC."""
    if export_dir and data.name != "voc12":
        raise BadInputError(f"--seg_export_test {export_dir}: the test-server export is PASCAL VOC's (comp6, 21 "
                            f"labels) and does not apply to --dataset {data.name}; leave the flag out")


def resolve_recipe(recipe: str, batch_size: int | None = None, iter_size: int | None = None,
                   num_iters: int | None = None, scales: Sequence[float] | None = None,
                   loss: str | None = None) -> Recipe:
    """The settings of ``recipe`` ("advcam" or "deeplab-pytorch"), each replaced by the value given (not None)."""
    if recipe not in RECIPES:
        raise BadInputError(f"--seg_recipe {recipe!r}: choose one of {', '.join(RECIPES)}")
    base = RECIPES[recipe]
    out = Recipe(batch_size or base.batch_size, iter_size or base.iter_size, num_iters or base.num_iters,
                 tuple(float(s) for s in scales) if scales else base.scales, loss or base.loss)
    if out.loss not in LOSSES:
        raise BadInputError(f"--seg_loss {out.loss!r}: choose one of {', '.join(LOSSES)}")
    if min(out.batch_size, out.iter_size, out.num_iters) < 1 or min(out.scales) <= 0:
        raise BadInputError("--seg_batch_size, --seg_iter_size, --seg_num_iters and --seg_scales must be positive")
    return out


# --------------------------------------------------------------------------------------------------
# networks
# --------------------------------------------------------------------------------------------------


def seg_network_module(value: str):
    """The module that ``--seg_network`` names: ``deeplab_v2``, ``net.deeplab_v2`` and ``advcam.nets.deeplab_v2``
    all import ``advcam.nets.deeplab_v2``; only the modules of :data:`SEG_NETWORKS` are accepted."""
    name = value.split(".")[-1]
    if name not in SEG_NETWORKS:
        raise BadInputError(f"--seg_network {value!r}: not a segmentation network; choose one of "
                            f"{', '.join(SEG_NETWORKS)}")
    return importlib.import_module(f"advcam.nets.{name}")


def load_imagenet_state(arch: str, pretrained: str | None) -> dict | None:
    """A torchvision ImageNet ResNet state dict: from the file ``pretrained``, torchvision's download when
    ``pretrained`` is ``"torchvision"``, None for ``"none"``/None (from scratch)."""
    if pretrained is None or str(pretrained).lower() == "none":
        return None
    if pretrained != "torchvision":
        state = read_torch_file(pretrained, f"--seg_pretrained torchvision {arch} ImageNet state dict",
                                "give such a file, or 'none' to train from scratch")
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise BadInputError(f"--seg_pretrained {pretrained}: expected a state dict, got {type(state).__name__}")
        return state
    import torchvision
    enum_name, member = RESNET_WEIGHTS[arch].split(".")
    weights = getattr(getattr(torchvision.models, enum_name), member)
    try:
        return weights.get_state_dict(progress=False)
    except OSError as e:  # URLError, no network, unwritable cache
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise MissingInputError(
            f"could not download torchvision's ImageNet {arch} weights ({weights.url}): {reason}. Offline, give the "
            f"file with --seg_pretrained PATH (a torchvision {arch} state dict such as "
            f"{os.path.basename(weights.url)}), or --seg_pretrained none to train from scratch "
            "(far below the published numbers)") from None


def build_seg_network(network: str, pretrained: str | None = "torchvision",
                      num_classes: int = NUM_CLASSES) -> tuple[nn.Module, str]:
    """(model, description of its initialisation). ``pretrained``: ``"torchvision"`` (download), a file, or
    ``"none"``/None; networks whose weights ship with a package (``BACKBONE``) ignore only the default."""
    module = seg_network_module(network)
    model = module.build(num_classes)
    if hasattr(module, "BACKBONE"):
        if pretrained not in (None, "torchvision"):
            raise BadInputError(f"--seg_pretrained {pretrained}: --seg_network {network} always starts from "
                                f"{module.BACKBONE}; leave --seg_pretrained unset")
        return model, module.BACKBONE
    state = load_imagenet_state(module.BACKBONE_ARCH, pretrained)
    if state is None:
        return model, "random initialisation (--seg_pretrained none)"
    try:
        model.load_backbone(state)
    except ValueError as e:
        raise BadInputError(f"--seg_pretrained {pretrained}: {e}") from None
    return model, f"ImageNet {module.BACKBONE_ARCH} ({pretrained})"


_FLOAT32_NOTED: set[str] = set()


def bf16_autocast(amp: bool, device: torch.device) -> bool:
    """Whether stage 3 runs under bf16 autocast on ``device``: asked for (``--seg_amp``, on by default) and a CUDA
    device with native bf16 (compute capability 8.0 and later, ``torch.cuda.is_bf16_supported(including_emulation=
    False)``). An older GPU runs float32, said once in the log; the CPU always runs float32."""
    if not amp or device.type != "cuda":
        return False
    if torch.cuda.is_bf16_supported(including_emulation=False):
        return True
    if str(device) not in _FLOAT32_NOTED:
        _FLOAT32_NOTED.add(str(device))
        log.info("%s has no native bf16 (compute capability below 8.0): stage 3 runs in float32 there "
                 "(--seg_amp is ignored)", device)
    return False


def param_groups(model: nn.Module, lr: float, weight_decay: float, train_backbone: bool = True) -> list[dict]:
    """SGD groups as deeplab-pytorch's ``get_params``: backbone at ``lr``; head weights at 10x ``lr``; head biases
    (and other 1-d head parameters: BN affine) at 20x ``lr`` without weight decay. Frozen parameters are left out.
    ``model`` has ``backbone`` and ``head`` submodules."""
    backbone = [p for p in model.backbone.parameters() if p.requires_grad] if train_backbone else []
    head_w = [p for p in model.head.parameters() if p.requires_grad and p.ndim > 1]
    head_b = [p for p in model.head.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": backbone, "lr": lr, "weight_decay": weight_decay},
              {"params": head_w, "lr": 10 * lr, "weight_decay": weight_decay},
              {"params": head_b, "lr": 20 * lr, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def poly_scheduler(optimizer: torch.optim.Optimizer, num_iters: int, power: float = 0.9):
    """lr = base * (1 - it / num_iters) ** power, stepped every iteration."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: max(0.0, 1 - it / num_iters) ** power)


# --------------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------------


def label_path(label_dir: str, name: str) -> str:
    return os.path.join(label_dir, name + ".png")


def load_label(label_dir: str, name: str, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """A training label map (uint8 0..num_classes-1, 255 ignored): a pseudo-mask PNG or a (palette) ground truth;
    ``num_classes``: the dataset's label count (21 VOC, 81 COCO)."""
    path = label_path(label_dir, name)
    label = load_label_png(path, "label", "rerun make_sem_seg, or point --seg_label_dir at a folder of label PNGs")
    if label.dtype != np.uint8:
        raise BadInputError(f"{path}: expected a uint8 label map, got {label.dtype}")
    bad = (label >= num_classes) & (label != IGNORE_LABEL)
    if bad.any():
        raise BadInputError(f"{path}: label {int(label[bad][0])} is neither a class (0-{num_classes - 1}) nor "
                            f"{IGNORE_LABEL}")
    return label


def augment(img: np.ndarray, label: np.ndarray, rng: np.random.Generator, scales: Sequence[float], crop: int,
            flip: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """deeplab-pytorch's training transform: scale by a random choice of ``scales`` (image bilinear, label
    nearest), pad to ``crop`` (image with the mean, label with 255), random ``crop`` x ``crop`` crop, random
    horizontal flip. Returns (normalised float32 HWC image, uint8 label)."""
    s = float(scales[rng.integers(len(scales))])
    h, w = label.shape
    size = (max(1, int(h * s + 0.5)), max(1, int(w * s + 0.5)))
    if size != (h, w):
        img = np.asarray(Image.fromarray(img).resize(size[::-1], Image.BILINEAR))
        label = np.asarray(Image.fromarray(label).resize(size[::-1], Image.NEAREST))
    img = imutils.normalize(img)  # the mean maps to 0, so zero padding pads with the mean
    ph, pw = max(crop - size[0], 0), max(crop - size[1], 0)
    if ph or pw:
        img = np.pad(img, ((0, ph), (0, pw), (0, 0)))
        label = np.pad(label, ((0, ph), (0, pw)), constant_values=IGNORE_LABEL)
    y = int(rng.integers(label.shape[0] - crop + 1))
    x = int(rng.integers(label.shape[1] - crop + 1))
    img, label = img[y:y + crop, x:x + crop], label[y:y + crop, x:x + crop]
    if flip and rng.random() < 0.5:
        img, label = img[:, ::-1], label[:, ::-1]
    return np.ascontiguousarray(img), np.ascontiguousarray(label)


class SegTrainDataset(Dataset):
    """Training crops of ``names`` (images of ``voc12_root``: a VOC root, or any dataset of
    :mod:`advcam.datasets`) with their ``<label_dir>/<id>.png`` labels (0 .. the dataset's label count - 1, 255).

    Indexed by a ``(image index, stream position)`` key: the augmentation draws from a generator seeded with
    (seed, position), so a sample depends on nothing but the key. Returns {"name", "img" float [3, crop, crop],
    "label" int64 [crop, crop]}.
    """

    def __init__(self, names: list[str], voc12_root: str | SegData, label_dir: str, crop_size: int,
                 scales: Sequence[float], seed: int, flip: bool = True):
        self.data = seg_data(voc12_root)
        self.names, self.voc12_root, self.label_dir = list(names), self.data.root, label_dir
        self.crop_size, self.scales, self.seed, self.flip = int(crop_size), tuple(scales), int(seed), flip

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        idx, pos = key
        name = self.names[idx]
        img = self.data.load_image(name)
        label = load_label(self.label_dir, name, self.data.num_seg_classes)
        if label.shape != img.shape[:2]:
            raise BadInputError(f"{label_path(self.label_dir, name)} is {label.shape}, its image is "
                                f"{img.shape[:2]}: the labels do not belong to this {self.data.root_flag}")
        rng = np.random.default_rng([self.seed, pos])
        img, label = augment(img, label, rng, self.scales, self.crop_size, self.flip)
        return {"name": name, "img": torch.from_numpy(img.transpose(2, 0, 1).copy()),
                "label": torch.from_numpy(label.astype(np.int64))}


class StreamBatchSampler(Sampler):
    """Batches of ``(index, position)`` keys from an endless stream: position p is image
    ``perm_e[p % n]`` of epoch ``e = p // n``, with ``perm_e`` a permutation seeded by (seed, e).

    Starts at batch ``start_batch`` and yields ``num_batches`` batches, so a resumed run reads what the
    uninterrupted run would have read. With ``world`` > 1 (torchrun), rank ``rank`` yields its contiguous
    ``batch_size / world`` share of each batch: the ranks' shares together are the single-process batch.
    """

    def __init__(self, n: int, batch_size: int, seed: int, start_batch: int, num_batches: int, rank: int = 0,
                 world: int = 1):
        self.n, self.batch_size, self.seed = int(n), int(batch_size), int(seed)
        self.start_batch, self.num_batches = int(start_batch), int(num_batches)
        if self.batch_size % world:
            raise ValueError(f"batch size {batch_size} is not divisible by {world} ranks")
        self.rank, self.world = int(rank), int(world)
        self._perms: dict[int, np.ndarray] = {}

    def _index(self, p: int) -> int:
        e = p // self.n
        if e not in self._perms:
            self._perms = {e: np.random.default_rng([self.seed, e, 7]).permutation(self.n)}
        return int(self._perms[e][p % self.n])

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        share = self.batch_size // self.world
        for b in range(self.start_batch, self.start_batch + self.num_batches):
            first = b * self.batch_size + self.rank * share
            yield [(self._index(p), p) for p in range(first, first + share)]


# --------------------------------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------------------------------


def resize_labels(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[B, H, W] int labels nearest-resized to ``size`` (deeplab-pytorch trains on labels at the logit size)."""
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels
    return F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()


def balanced_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_LABEL
                           ) -> torch.Tensor:
    """Background/foreground-balanced cross-entropy (the DSRG seed-loss form, speedinghzl/DSRG ``SeedLossLayer``):
    per image, the mean NLL over its background-labelled pixels plus the mean NLL over its foreground-labelled
    pixels (a term with no pixels counts 0), averaged over the batch. ``logits`` [B, C, H, W], ``labels`` [B, H, W]
    (``ignore_index`` skipped)."""
    nll = F.cross_entropy(logits.float(), labels, ignore_index=ignore_index, reduction="none").flatten(1)
    valid = (labels != ignore_index).flatten(1)
    bg = valid & (labels == 0).flatten(1)
    fg = valid & ~bg
    terms = []
    for mask in (bg, fg):
        count = mask.sum(1)
        terms.append(torch.where(count > 0, (nll * mask).sum(1) / count.clamp(min=1), torch.zeros_like(nll[:, 0])))
    return (terms[0] + terms[1]).mean()


def plain_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_LABEL
                        ) -> torch.Tensor:
    """Cross-entropy averaged over the non-ignored pixels of the batch (0 when there are none)."""
    if not (labels != ignore_index).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), labels, ignore_index=ignore_index)


LOSSES = {"balanced": balanced_cross_entropy, "ce": plain_cross_entropy}


def seg_loss(logits: torch.Tensor, labels: torch.Tensor, kind: str,
             global_count: Callable[[torch.Tensor], torch.Tensor] | None = None, world: int = 1) -> torch.Tensor:
    """``kind`` ("balanced" or "ce") of ``logits`` against ``labels`` resized (nearest) to the logit size.

    Data-parallel training over ``world`` ranks: with ``global_count`` (the sum over the ranks), "ce" becomes
    ``world`` x this rank's summed loss / the batch's global count of labelled pixels, so that the gradients averaged
    over the ranks are those of the global batch's pixel mean ("balanced", a mean over images, needs nothing)."""
    labels = resize_labels(labels, tuple(logits.shape[-2:]))
    if kind != "ce" or global_count is None:
        return LOSSES[kind](logits, labels)
    count = global_count((labels != IGNORE_LABEL).sum().double())
    if count == 0:
        return logits.sum() * 0.0
    nll = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_LABEL, reduction="sum")
    return world * nll / count.to(nll.dtype)


# --------------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------------


def _iteration_seed(seed: int, it: int) -> int:
    return int(np.random.SeedSequence([seed, it]).generate_state(1)[0])


def load_checkpoint(path: str, config: dict) -> dict | None:
    """The checkpoint at ``path`` if it exists and was written with the same ``config``; None if absent."""
    if not os.path.isfile(path):
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise BadInputError(f"checkpoint {path} could not be read ({e}): delete it to start over") from None
    if not isinstance(ckpt, dict) or not {"model", "optimizer", "iteration"} <= set(ckpt):
        raise BadInputError(f"{path} is not a train_seg checkpoint (model, optimizer, iteration): delete it")
    old = ckpt.get("config", {})
    diff = {k: (old.get(k), v) for k, v in config.items() if k != "seed" and old.get(k) != v}
    if diff:
        changes = ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in diff.items())
        raise BadInputError(f"checkpoint {path} belongs to another run ({changes}): delete it to start over, "
                            "or give the same settings to resume")
    return ckpt


def train_segmentation(model: nn.Module, dataset: SegTrainDataset, *, batch_size: int, iter_size: int,
                       num_iters: int, lr: float, momentum: float, weight_decay: float, power: float, loss: str,
                       checkpoint_path: str, checkpoint_every: int, device: torch.device, num_workers: int = 0,
                       amp: bool = True, train_backbone: bool = True, config: dict | None = None) -> dict:
    """Train ``model`` for ``num_iters`` updates of ``iter_size`` x ``batch_size`` crops (SGD, poly schedule),
    resuming from ``checkpoint_path`` when it holds an unfinished run with the same ``config``.

    A checkpoint {"model", "optimizer", "scheduler", "iteration", "config"} is written atomically every
    ``checkpoint_every`` updates and at the end. The data stream and each iteration's torch generator depend only
    on (dataset.seed, position), so a resumed run equals the uninterrupted one (it takes the checkpoint's seed).
    bf16 autocast (with ``amp``, on a GPU with native bf16: :func:`bf16_autocast`) and channels_last on CUDA. Under
    torchrun: DistributedDataParallel, each rank taking its share of
    each batch of ``batch_size`` crops (the global batch; refused when the rank count does not divide it), rank 0
    writing the checkpoints. Returns {"losses": per-update loss of this call,
    "start_iteration", "iterations", "seconds"}.
    """
    if loss not in LOSSES:
        raise BadInputError(f"unknown segmentation loss {loss!r}: choose one of {', '.join(LOSSES)}")
    if min(batch_size, iter_size, num_iters, checkpoint_every) < 1:
        raise BadInputError("batch size, accumulation steps, iterations and checkpoint interval must be >= 1")
    config = dict(config or {}, batch_size=batch_size, iter_size=iter_size, num_iters=num_iters, lr=lr, loss=loss)
    cuda = device.type == "cuda"
    bf16 = bf16_autocast(amp, device)
    model = model.to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    if not train_backbone:
        for p in model.backbone.parameters():
            p.requires_grad_(False)
    optimizer = torch.optim.SGD(param_groups(model, lr, weight_decay, train_backbone), lr=lr, momentum=momentum,
                                weight_decay=weight_decay)
    scheduler = poly_scheduler(optimizer, num_iters, power)
    start = 0
    ckpt = load_checkpoint(checkpoint_path, config)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start = int(ckpt["iteration"])
        dataset.seed = int(ckpt.get("config", {}).get("seed", dataset.seed))  # the data stream of the run it continues
        log.info("resuming from %s at iteration %d of %d", checkpoint_path, start, num_iters)

    def save(it: int) -> None:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        save_torch(checkpoint_path, {"model": state, "optimizer": optimizer.state_dict(),
                                     "scheduler": scheduler.state_dict(), "iteration": it,
                                     "config": dict(config, seed=dataset.seed)})

    losses: list[float] = []
    t0 = time.time()
    if start < num_iters:
        distributed.local_batch(batch_size, "--seg_batch_size")  # refuses a batch the ranks do not divide
        sampler = StreamBatchSampler(len(dataset), batch_size, dataset.seed, start * iter_size,
                                     (num_iters - start) * iter_size, distributed.rank(), distributed.world_size())
        loader = iter(DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, pin_memory=cuda,
                                 persistent_workers=False))
        model.train()
        ddp = distributed.wrap_ddp(model, device)
        global_count = distributed.all_reduce_tensor if distributed.is_distributed() else None
        bar = tqdm(range(start, num_iters), desc="train_seg", unit="it", initial=start, total=num_iters,
                   disable=not distributed.is_main())
        for it in bar:
            torch.manual_seed(_iteration_seed(dataset.seed, it))  # dropout etc.: the same on a resumed run
            optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for micro in range(iter_size):
                pack = next(loader)
                img = pack["img"].to(device, non_blocking=True)
                if cuda:
                    img = img.contiguous(memory_format=torch.channels_last)
                label = pack["label"].to(device, non_blocking=True)
                last = micro == iter_size - 1  # DDP averages the accumulated gradients once, at the last one
                with ddp.no_sync() if ddp is not model and not last else contextlib.nullcontext():
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                        logits = ddp(img)
                    value = seg_loss(logits.float(), label, loss, global_count,
                                     distributed.world_size()) / iter_size
                    if not torch.isfinite(value):
                        raise UserError(f"train_seg: the loss is {value.item()} at iteration {it}: lower "
                                        "--seg_learning_rate")
                    value.backward()
                total += value.item()
            optimizer.step()
            scheduler.step()
            losses.append(total)
            bar.set_postfix(loss=f"{total:.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}", refresh=False)
            done = it + 1
            if (done % checkpoint_every == 0 or done == num_iters) and distributed.is_main():
                save(done)
            if done % max(1, min(checkpoint_every, 100)) == 0 or done == num_iters:
                log.info("iteration %d/%d: loss %.4f (mean of the last %d), lr %.2e, %.0f s", done, num_iters,
                         float(np.mean(losses[-100:])), min(len(losses), 100), optimizer.param_groups[0]["lr"],
                         time.time() - t0)
    return {"losses": losses, "start_iteration": start, "iterations": num_iters, "seconds": time.time() - t0}


# --------------------------------------------------------------------------------------------------
# inference
# --------------------------------------------------------------------------------------------------


@torch.no_grad()
def predict_probs(model: nn.Module, img: torch.Tensor, scales: Sequence[float] = (1.0,), flip: bool = True,
                  amp: bool = True) -> torch.Tensor:
    """Class probabilities [C, H, W] (float32, on the model's device) of one normalised image [3, H, W]: the mean
    of the softmax over each scale (bilinear resize of the input, logits bilinearly resized back to H x W) and,
    with ``flip``, its mirror (mirrored back). ``model`` must be in eval mode."""
    device = next(model.parameters()).device
    cuda = device.type == "cuda"
    bf16 = bf16_autocast(amp, device)
    h, w = img.shape[-2:]
    x0 = img[None].to(device)
    total, count = None, 0
    for s in scales:
        size = (max(1, int(round(h * s))), max(1, int(round(w * s))))
        x = x0 if size == (h, w) else F.interpolate(x0, size=size, mode="bilinear", align_corners=False)
        if flip:
            x = torch.cat([x, x.flip(-1)])
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        logits = F.interpolate(logits.float(), size=(h, w), mode="bilinear", align_corners=False)
        probs = logits.softmax(1)
        if flip:
            probs = torch.stack([probs[0], probs[1].flip(-1)])
        total = probs.sum(0) if total is None else total + probs.sum(0)
        count += len(probs)
    return total / count


def image_tensor(voc12_root: str | SegData, name: str) -> tuple[np.ndarray, torch.Tensor]:
    """(RGB uint8 image, normalised float tensor [3, H, W]) of one image of a VOC root or a dataset."""
    img = seg_data(voc12_root).load_image(name)
    return img, torch.from_numpy(imutils.normalize(img).transpose(2, 0, 1).copy())


def load_seg_weights(model: nn.Module, path: str) -> None:
    """Load the state dict ``path`` (train_seg's weights, or a checkpoint's "model") into ``model``."""
    state = read_torch_file(path, "segmentation weights", "run the train_seg pass (--train_seg_pass True) or pass "
                            "--seg_weights_name PATH")
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise BadInputError(f"{path} does not fit the network of --seg_network and --dataset (its class count): "
                            f"{str(e).splitlines()[0]}") from None


# --------------------------------------------------------------------------------------------------
# VOC test-server export
# --------------------------------------------------------------------------------------------------

SUBMISSION_SUBDIR = os.path.join("results", "VOC2012", "Segmentation", "comp6_test_cls")


def submission_path(export_dir: str, name: str) -> str:
    """``<export_dir>/results/VOC2012/Segmentation/comp6_test_cls/<id>.png`` (the devkit's layout)."""
    return os.path.join(export_dir, SUBMISSION_SUBDIR, name + ".png")


def save_submission_png(export_dir: str, name: str, label: np.ndarray) -> None:
    """One test prediction as an indexed PNG with the VOC palette (labels 0-20)."""
    label = np.asarray(label)
    if label.ndim != 2 or label.size and (label.min() < 0 or label.max() >= NUM_CLASSES):
        raise ValueError(f"{name}: a test prediction must be a 2-d map of labels 0-{NUM_CLASSES - 1}")
    save_png(submission_path(export_dir, name), label.astype(np.uint8), palette=VOC_PALETTE)


def write_submission_tarball(export_dir: str, names: list[str]) -> str:
    """``<export_dir>/results.tgz`` holding ``results/VOC2012/Segmentation/comp6_test_cls/<id>.png`` for every id
    (as ``tar zcf results.tgz results``), written atomically; returns its path."""
    missing = [n for n in names if not os.path.isfile(submission_path(export_dir, n))]
    if missing:
        raise UserError(f"{len(missing)} test predictions missing, e.g. {submission_path(export_dir, missing[0])}")
    out = os.path.join(export_dir, "results.tgz")
    with atomic_path(out) as tmp, tarfile.open(tmp, "w:gz") as tar:
        for n in sorted(names):
            tar.add(submission_path(export_dir, n), arcname=os.path.join(SUBMISSION_SUBDIR, n + ".png"))
    return out
