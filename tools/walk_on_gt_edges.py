"""What IRN's random walk would give with perfect boundaries: the walk of a set of CAM seeds over ground-truth outlines.

``python tools/walk_on_gt_edges.py --voc12_root toy_voc --list train --cam_out_dir DIR [--exp_times 8 ...]``

For every image of ``ImageSets/Segmentation/<list>.txt`` the boundary map is 1 on every stride-4 cell that holds a
ground-truth outline pixel (a change of label between 4-neighbours, or VOC's 255 band) and 0 elsewhere; the
seeds' "cam" maps go through make_sem_seg's walk (CAM**1.5, radius 5, ``--beta``, ``--exp_times``, background
threshold ``--sem_seg_bg_thres``). Prints the mIoU of those masks next to the mIoU of the seeds themselves at the same
background threshold, so that a learned IRN can be placed between the two.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from advcam import imutils  # noqa: E402
from advcam.evaluation import seed_prediction  # noqa: E402
from advcam.io import load_cam_npy, missing_files  # noqa: E402
from advcam.irn_loop import load_cams  # noqa: E402
from advcam.metrics import ConfusionMatrix, mean_iou  # noqa: E402
from advcam.pseudo_labels import sem_seg_from_cams  # noqa: E402
from advcam.voc12 import IGNORE_LABEL  # noqa: E402
from advcam.voc12.dataloader import load_img_name_list, load_seg_label  # noqa: E402


def gt_boundary(label: np.ndarray) -> np.ndarray:
    """Float [ceil(H/4), ceil(W/4)] map: 1 on stride-4 cells holding an outline pixel of ``label`` [H, W], else 0."""
    outline = label == IGNORE_LABEL
    outline[:, 1:] |= label[:, 1:] != label[:, :-1]
    outline[1:, :] |= label[1:, :] != label[:-1, :]
    h, w = imutils.get_strided_size(label.shape, 4)
    padded = np.zeros((h * 4, w * 4), bool)
    padded[:label.shape[0], :label.shape[1]] = outline
    return padded.reshape(h, 4, w, 4).any(axis=(1, 3)).astype(np.float32)


def walk_masks_miou(voc12_root: str, names: Sequence[str], cam_dir: str, beta: float, exp_times: int,
                    bg_thres: float) -> tuple[float, float]:
    """(mIoU of the seeds at ``bg_thres``, mIoU of their walk over ground-truth outlines), in percent."""
    seeds, walked = ConfusionMatrix(21), ConfusionMatrix(21)
    for name in tqdm(names, desc="walk on GT outlines", unit="img"):
        gt = load_seg_label(voc12_root, name)
        seeds.update(seed_prediction(load_cam_npy(os.path.join(cam_dir, name + ".npy")), bg_thres), gt)
        cams, keys = load_cams(cam_dir, name, gt.shape, torch.device("cpu"))
        walked.update(sem_seg_from_cams(cams, keys, torch.from_numpy(gt_boundary(gt)), gt.shape, beta, exp_times,
                                         bg_thres), gt)
    return 100 * mean_iou(seeds.matrix), 100 * mean_iou(walked.matrix)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--voc12_root", required=True)
    p.add_argument("--list", default="train", help="ImageSets/Segmentation/<list>.txt")
    p.add_argument("--cam_out_dir", required=True, help="the seeds: <id>.npy with 'cam', 'high_res' and 'keys'")
    p.add_argument("--beta", default=10, type=float)
    p.add_argument("--exp_times", default=8, type=int)
    p.add_argument("--sem_seg_bg_thres", default=0.25, type=float)
    args = p.parse_args(argv)
    names = load_img_name_list(os.path.join(args.voc12_root, "ImageSets", "Segmentation", args.list + ".txt"))
    missing = missing_files(names, args.cam_out_dir, ".npy")
    if missing:
        p.error(f"--cam_out_dir {args.cam_out_dir}: {len(missing)} of {len(names)} CAM files missing, e.g. "
                f"{missing[0]}.npy: make the seeds for --list {args.list} first")
    seed_miou, walk_miou = walk_masks_miou(args.voc12_root, names, args.cam_out_dir, args.beta, args.exp_times,
                                           args.sem_seg_bg_thres)
    print(f"{len(names)} images of {args.list}, background threshold {args.sem_seg_bg_thres}: seeds {seed_miou:.2f} "
          f"mIoU, their walk over ground-truth outlines (beta {args.beta:g}, 2^{args.exp_times} steps) "
          f"{walk_miou:.2f}")


if __name__ == "__main__":
    main()
