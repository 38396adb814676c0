"""The input loop shared by the IRN inference passes (make_sem_seg, make_ins_seg): resume list, input checks,
the trained IRN, and the boundary map and displacement field of each image."""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from advcam import distributed, imutils
from advcam.datasets import ImageDatasetMSF, dataset_of
from advcam.errors import BadInputError, MissingInputError
from advcam.io import load_cam_npy, missing_files
from advcam.nets.resnet50_irn import EdgeDisplacement, load_irn_weights
from advcam.utils import irn_network, pick_device

log = logging.getLogger("advcam.irn")


def _first(batch: list) -> dict:
    return batch[0]


def pair_loader(names: list[str], args, device: torch.device) -> DataLoader:
    """Batch-size-1 loader of scale-1.0 flip pairs: {"name", "img" [2, 3, H, W] (image, mirror), "size"}."""
    ds = ImageDatasetMSF(dataset_of(args), names)
    return DataLoader(ds, batch_size=1, shuffle=False, collate_fn=_first,
                      num_workers=distributed.loader_workers(args.num_workers), pin_memory=device.type == "cuda")


def build_irn(args, device: torch.device) -> EdgeDisplacement:
    """The inference IRN with the trained weights, in eval mode."""
    model = irn_network(args).EdgeDisplacement(crop_size=getattr(args, "irn_infer_pad", 512))
    load_irn_weights(model, args.irn_weights_name)
    return model.to(device).eval()


@torch.no_grad()
def edge_and_displacement(model: EdgeDisplacement, pair: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Boundary map [h, w] and displacement [2, h, w] (h = ceil(H/4), w = ceil(W/4)) of a flip pair [2, 3, H, W].

    The network pads the pair to at least its ``crop_size`` and crops its outputs back before merging the mirror
    copy: padding the pair here, before the merge, would shift the mirror copy's boundaries by the padded width
    (tested)."""
    edge, dp = model(pair)
    return edge[0, 0], dp[0]


def load_cams(cam_dir: str, name: str, size: tuple[int, int], device: torch.device) -> tuple[torch.Tensor, np.ndarray]:
    """("cam" float [K, h, w] on ``device``, keys int64 [K]) of one image, checked against its size."""
    path = os.path.join(cam_dir, name + ".npy")
    cam_dict = load_cam_npy(path)
    if not isinstance(cam_dict, dict) or not {"cam", "keys"} <= set(cam_dict):
        raise BadInputError(f"{path}: not a CAM file with 'cam' and 'keys' (as make_cam / obtain_CAM_masking.py write)")
    keys = np.asarray(cam_dict["keys"], dtype=np.int64).reshape(-1)
    cams = torch.as_tensor(cam_dict["cam"], dtype=torch.float32)
    if cams.ndim != 3 or len(cams) != len(keys):
        raise BadInputError(f"{path}: 'cam' has shape {tuple(cams.shape)} for {len(keys)} keys; expected [K, h, w]")
    hw = imutils.get_strided_size(size, 4)
    if tuple(cams.shape[1:]) != hw:
        raise BadInputError(f"{path}: 'cam' is {tuple(cams.shape[1:])}, expected {hw} for the {size[0]}x{size[1]} "
                         "image: the CAM files do not belong to this dataset root")
    return cams.to(device), keys


def check_inputs(args, names: list[str]) -> None:
    """Fail early, naming the file, when the IRN weights or a CAM file is missing."""
    if not os.path.isfile(args.irn_weights_name):
        raise MissingInputError(f"IRN weights {args.irn_weights_name} not found: run the train_irn pass "
                                "(--train_irn_pass True) or point --irn_weights_name at them")
    missing = missing_files(names, args.cam_out_dir, ".npy")
    if missing:
        raise MissingInputError(
            f"{len(missing)} CAM files missing, e.g. {os.path.join(args.cam_out_dir, missing[0] + '.npy')}: run the "
            "CAM pass (make_cam or obtain_CAM_masking.py) over --infer_list with the same --cam_out_dir first")


def irn_inference(args, out_dir: str, suffix: str, desc: str, bg_thres: float, stats: dict) -> Iterator[tuple]:
    """Yield (name, size, cams, keys, edge, displacement) for every ``--infer_list`` image without
    ``<out_dir>/<id><suffix>``; edge and displacement are None for an image without a positive class.

    Records the number of finished images it skips in ``stats["skipped"]``; the IRN network is built only
    when there is something to do. Under torchrun each rank yields its exact shard of the images to do, and when
    the loop ends, the counts the caller kept in ``stats`` are summed over the ranks.
    """
    device = pick_device(getattr(args, "device", None))
    names = dataset_of(args).read_list(args.infer_list)
    os.makedirs(out_dir, exist_ok=True)
    todo = distributed.todo_on_main(lambda: missing_files(names, out_dir, suffix))
    stats["skipped"] = len(names) - len(todo)
    log.info("%s: %d images in %s, %d already in %s, %d to do", desc, len(names), args.infer_list,
             stats["skipped"], out_dir, len(todo))
    if not todo:
        return
    check_inputs(args, todo)
    model = build_irn(args, device)
    log.info("read IRN weights %s, CAMs from %s; random walk beta %s, exp_times %s, bg threshold %s, on %s",
             args.irn_weights_name, args.cam_out_dir, args.beta, args.exp_times, bg_thres, device)
    mine = distributed.shard(todo)
    for pack in tqdm(pair_loader(mine, args, device), desc=desc, unit="img", total=len(mine),
                     position=distributed.rank() if distributed.is_distributed() else None):
        name, size = pack["name"], tuple(pack["size"])
        cams, keys = load_cams(args.cam_out_dir, name, size, device)
        edge = dp = None
        if len(keys):
            edge, dp = edge_and_displacement(model, pack["img"].to(device, non_blocking=True))
        yield name, size, cams, keys, edge, dp
    stats.update(distributed.sum_counts({k: v for k, v in stats.items() if k != "skipped"}))
