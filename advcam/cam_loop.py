"""The image loop shared by the CAM passes (make_cam, obtain_CAM_masking): resumable; one worker per GPU, or one
exact shard per rank under torchrun."""
from __future__ import annotations

import logging
import os
import queue
import time
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from advcam import distributed
from advcam.datasets import ImageDatasetMSF, dataset_of
from advcam.io import missing_files, save_cam_npy
from advcam.utils import cam_network, resolve_cam_weights

log = logging.getLogger("advcam.cam")

# fn(model, pairs on device, scales, keys, (H, W), device) -> (cam [K, H/4, W/4], high_res [K, H, W])
PerImage = Callable[..., tuple[torch.Tensor, torch.Tensor]]
# group_fn(model, [pairs], scales, [keys], [(H, W)], device) -> [(cam, high_res)], one per image (equal sizes)
PerGroup = Callable[..., list[tuple[torch.Tensor, torch.Tensor]]]


def device_layout(model, pairs_list: list[list[torch.Tensor]], channels_last: bool):
    """The memory format the engines run in: channels_last model and flip pairs when asked (as on CUDA)."""
    if not channels_last:
        return model, pairs_list
    model = model.to(memory_format=torch.channels_last)
    return model, [[p.contiguous(memory_format=torch.channels_last) for p in pairs] for pairs in pairs_list]


class _Tolerant(Dataset):
    """Wraps the multi-scale dataset; with ``skip_bad`` an unreadable image becomes an error record."""

    def __init__(self, ds: Dataset, skip_bad: bool):
        self.ds, self.skip_bad = ds, skip_bad

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict:
        try:
            return self.ds[i]
        except (OSError, ValueError) as e:
            if not self.skip_bad:
                raise
            return {"name": self.ds.img_name_list[i], "error": str(e)}


def _first(batch: list) -> dict:
    return batch[0]


def pack_pairs(pack: dict) -> list[torch.Tensor]:
    """The flip pairs of a pack, one per scale (the dataset gives a bare tensor for a single scale)."""
    return pack["img"] if isinstance(pack["img"], list) else [pack["img"]]


class PerImageGroup:
    """The group function that calls the per-image ``fn`` on each image of the group in turn.

    A class, not a closure, so that it pickles (to the per-GPU worker processes) whenever ``fn`` does (a
    module-level function, or a :func:`functools.partial` of one)."""

    def __init__(self, fn: PerImage):
        self.fn = fn

    def __call__(self, model, pairs_list, scales, keys_list, sizes, device) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [self.fn(model, pairs, scales, keys, size, device)
                for pairs, keys, size in zip(pairs_list, keys_list, sizes, strict=True)]


def per_image_group(fn: PerImage) -> PerGroup:
    """The group function that calls the per-image ``fn`` on each image of the group in turn
    (:class:`PerImageGroup`)."""
    return PerImageGroup(fn)


def _groups(loader, per_group: int, on_bad):
    """Consecutive readable packs of equal original size, up to ``per_group`` of them; ``on_bad(pack)`` for
    each unreadable one (it is left out, and does not end a group)."""
    group: list[dict] = []
    for pack in loader:
        if "error" in pack:
            on_bad(pack)
            continue
        if group and (len(group) == per_group or tuple(pack["size"]) != tuple(group[0]["size"])):
            yield group
            group = []
        group.append(pack)
    if group:
        yield group


def _worker(rank: int, n_workers: int, devices: list[str], names: list[str], labels: np.ndarray, args,
            group_fn: PerGroup, desc: str, queue, bar_row: int | None = None) -> None:
    device = distributed.local_device(devices[rank])  # a concrete index, made the current CUDA device
    data = dataset_of(args)
    model = cam_network(args).build_cam_net(resolve_cam_weights(args.cam_weights_name),
                                            num_classes=data.num_classes).to(device)
    mine = names[rank::n_workers]
    label_of = dict(zip(mine, labels[rank::n_workers], strict=True))  # the labels the pass read, not reloaded
    ds = ImageDatasetMSF(data, mine, scales=args.cam_scales)
    workers = min(distributed.loader_workers(args.num_workers) // max(1, n_workers), 4)  # --num_workers split
    loader = DataLoader(_Tolerant(ds, args.skip_bad_images), batch_size=1, shuffle=False, collate_fn=_first,
                        num_workers=workers, pin_memory=device.type == "cuda")
    per_group = max(1, getattr(args, "images_per_batch", 1))
    done = classes = bad = 0
    t0 = time.time()
    where = devices[rank] if bar_row is None else f"rank {distributed.rank()}, {devices[rank]}"
    bar = tqdm(total=len(mine), desc=f"{desc} [{where}]", position=rank if bar_row is None else bar_row, unit="img",
               dynamic_ncols=True)

    def on_bad(pack: dict) -> None:
        nonlocal bad
        log.warning("skipping unreadable image %s: %s", pack["name"], pack["error"])
        bad += 1
        bar.update(1)

    for group in _groups(loader, per_group, on_bad):
        keys = [torch.nonzero(torch.from_numpy(label_of[pack["name"]]))[:, 0] for pack in group]
        pairs = [[p.to(device, non_blocking=True) for p in pack_pairs(pack)] for pack in group]
        outs = group_fn(model, pairs, args.cam_scales, [k.tolist() for k in keys], [pack["size"] for pack in group],
                        device)
        for pack, k, (cam, high_res) in zip(group, keys, outs, strict=True):
            save_cam_npy(os.path.join(args.cam_out_dir, pack["name"] + ".npy"), k, cam, high_res,
                         getattr(args, "cam_format", "float32"))
            done += 1
            classes += len(k)
        bar.update(len(group))
        bar.set_postfix(img_per_s=f"{done / (time.time() - t0):.2f}", refresh=False)
    bar.close()
    queue.put((done, classes, bad))


def cam_devices(args) -> list[str]:
    """The devices of a CAM pass, one worker each: under torchrun this rank's own device; else ``--device`` (a bare
    ``cuda`` made ``cuda:0``); else every visible CUDA device (one spawned worker process per GPU); else the CPU."""
    if distributed.is_distributed():
        return [str(distributed.resolve_device(getattr(args, "device", None)))]
    if getattr(args, "device", None):
        return [str(distributed.resolve_device(args.device))]
    if torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu"]


def run_cam_pass(args, group_fn: PerGroup, desc: str) -> dict:
    """Run ``group_fn`` over the images of ``args.train_list``, writing ``<cam_out_dir>/<id>.npy``.

    Finished images are skipped, so an interrupted run resumes. Under torchrun each rank takes an exact shard of
    the images still to do, on its own device (:mod:`advcam.distributed`); otherwise one worker process per visible
    CUDA device (the list split round-robin), or the CPU in this process when there is none.

    Up to ``args.images_per_batch`` (absent: 1) consecutive images of equal original size are handed
    together to ``group_fn`` (:func:`per_image_group` turns a per-image function into one); each image is
    still written to its own file, atomically, as soon as its group is done. Returns the counts summed over ranks.
    """
    t0 = time.time()
    data = dataset_of(args)
    names = data.read_list(args.train_list)
    os.makedirs(args.cam_out_dir, exist_ok=True)
    todo = distributed.todo_on_main(lambda: missing_files(names, args.cam_out_dir, ".npy"))
    resolve_cam_weights(args.cam_weights_name)  # fail early, before any worker starts
    log.info("%s: %d images in %s, %d already in %s, %d to do", desc, len(names), args.train_list,
             len(names) - len(todo), args.cam_out_dir, len(todo))
    counts = {"images": 0, "classes": 0, "bad": 0}
    bar_row = None
    devices = cam_devices(args)
    mine = todo
    if distributed.is_distributed():  # this rank's exact share, on its own device
        mine = distributed.shard(todo)
        bar_row = int(os.environ.get("LOCAL_RANK", "0"))
    if mine:
        labels = data.cls_labels(mine, getattr(args, "cls_labels", None))
        if len(devices) == 1:
            q = queue.SimpleQueue()
            _worker(0, 1, devices, mine, labels, args, group_fn, desc, q, bar_row=bar_row)
            results = [q.get()]
        else:
            ctx = torch.multiprocessing.get_context("spawn")
            q = ctx.SimpleQueue()
            torch.multiprocessing.start_processes(
                _worker, nprocs=len(devices), start_method="spawn",
                args=(len(devices), devices, mine, labels, args, group_fn, desc, q))
            results = [q.get() for _ in devices]
        for result in results:
            for k, v in zip(counts, result, strict=True):
                counts[k] += v
    if todo:
        counts = distributed.sum_counts(counts)  # the totals over the ranks (collective: every rank has the same todo)
    stats = dict(counts, skipped=len(names) - len(todo), seconds=time.time() - t0)
    log.info("%s done: %d images (%d classes) written, %d skipped as done, %d unreadable, %.1f s, output %s",
             desc, stats["images"], stats["classes"], stats["skipped"], stats["bad"], stats["seconds"],
             args.cam_out_dir)
    return stats
