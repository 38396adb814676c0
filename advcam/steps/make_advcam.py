"""Pass make_advcam (``obtain_CAM_masking.py``): AdvCAM seeds by anti-adversarial climbing.

Reads ``--cam_weights_name`` and the images of ``--train_list``; writes ``<cam_out_dir>/<id>.npy`` in the
reference format ({"keys", "cam" [K, H/4, W/4], "high_res" [K, H, W]}). Existing files are skipped.

With ``--save_steps ID[,ID...]`` the maps after every climbing step of those images are written as well, to
``<cam_out_dir>/steps/<id>.npy``: a dict

- "keys": [K] int64, the image's positive classes (0-based), as in ``<id>.npy``;
- "size": (H, W) of the image; "scales": the scales; "iters": the climbing steps T_s of each scale;
- "cam": [T, K, ceil(H/4), ceil(W/4)] float32, T = max T_s: entry t is the accumulated map after step t
  (the sum of R(x_0) .. R(x_t)) of every scale (a scale with fewer steps keeps its last map), fused and
  max-normalised exactly as the "cam" of ``<id>.npy``, so "cam"[-1] equals that file's "cam".

Those images are climbed first, once: their ``<id>.npy`` is written from the same climb when missing (and then
skipped by the main loop), and an existing steps file is not recomputed.
"""
from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Sequence

import numpy as np
import torch

from advcam import distributed
from advcam.advcam import advcam_image, advcam_images, iterations_for_scale
from advcam.cam import fuse_scales
from advcam.cam_loop import cam_devices, device_layout, pack_pairs, run_cam_pass
from advcam.datasets import ImageDatasetMSF, dataset_of
from advcam.errors import BadInputError
from advcam.io import missing_files, save_cam_npy, save_npy
from advcam.utils import cam_network, pick_device, resolve_cam_weights

log = logging.getLogger("advcam.make_advcam")

STEPS_DIR = "steps"


def advcam_seeds(model, pairs_list, scales, keys_list, sizes, device, *, args, step_maps: list | None = None):
    """AdvCAM maps of a group of images of equal size (the group function of the CAM loop).

    The fast engine climbs the classes of all of them in one batch per scale (:func:`advcam_images`);
    the reference engine handles them one at a time. With ``step_maps`` (a list), one entry per image is
    appended: its per-scale accumulated maps after each step ([T_s, K, h', w'] each; empty without a class).
    """
    amp = torch.bfloat16 if args.amp else None
    model, pairs_list = device_layout(model, pairs_list, channels_last=device.type == "cuda")
    sizes = [tuple(size) for size in sizes]
    kw = dict(adv_iter=args.adv_iter, xi=args.AD_stepsize, lam=args.AD_coeff, tau=args.score_th, amp_dtype=amp,
              max_batch_pixels=args.max_batch_pixels)
    if args.engine == "fast" and args.target_layer == "stage4":
        return advcam_images(model, pairs_list, scales, keys_list, sizes, step_maps=step_maps, **kw)
    outs = []
    for pairs, keys, size in zip(pairs_list, keys_list, sizes, strict=True):
        per_image: list | None = None if step_maps is None else []
        outs.append(advcam_image(model, pairs, scales, keys, size, engine=args.engine, target_layer=args.target_layer,
                                 step_maps=per_image, **kw))
        if step_maps is not None:
            step_maps.append(per_image)
    return outs


def fuse_steps(per_scale: Sequence[torch.Tensor], scales: Sequence[float], size: tuple[int, int],
               adv_iter: int) -> torch.Tensor:
    """The fused, max-normalised stride-4 map after each step: [T, K, ceil(H/4), ceil(W/4)], T = max T_s.

    ``per_scale[i]``: [T_i, K, h_i', w_i'] accumulated maps of ``scales[i]`` (empty list: no positive class).
    Step t fuses entry min(t, T_i - 1) of every scale with :func:`advcam.cam.fuse_scales`, so the last step is
    the pass's "cam" bit for bit.
    """
    T = max(iterations_for_scale(s, adv_iter) for s in scales)
    if not per_scale:
        return torch.stack([fuse_scales([torch.zeros(0, 1, 1)], size)[0] for _ in range(T)])
    return torch.stack([fuse_scales([m[min(t, len(m) - 1)] for m in per_scale], size)[0] for t in range(T)])


def parse_ids(value) -> list[str]:
    """``--save_steps`` values: ids separated by commas and/or given as several arguments."""
    if value is None:
        return []
    tokens = [value] if isinstance(value, str) else list(value)
    return [i for tok in tokens for i in str(tok).replace(",", " ").split()]


def save_climbing_steps(args, ids: list[str], device: str | None = None) -> dict:
    """Climb the images ``ids`` once, keeping every step: write ``<cam_out_dir>/steps/<id>.npy`` (and
    ``<cam_out_dir>/<id>.npy`` when missing), on ``device`` (default ``--device``). Ids must be in
    ``--train_list``; done ones are skipped."""
    t0 = time.time()
    data = dataset_of(args)
    names = data.read_list(args.train_list)
    unknown = sorted(set(ids) - set(names))
    if unknown:
        raise BadInputError(f"--save_steps: {', '.join(unknown[:5])} not in --train_list {args.train_list} "
                            f"({len(unknown)} of {len(ids)} ids); give ids of the images the pass processes")
    steps_dir = os.path.join(args.cam_out_dir, STEPS_DIR)
    todo = missing_files(list(dict.fromkeys(ids)), steps_dir, ".npy")
    if todo:
        device = pick_device(device or args.device)
        model = cam_network(args).build_cam_net(resolve_cam_weights(args.cam_weights_name),
                                                num_classes=data.num_classes).to(device)
        labels = data.cls_labels(todo, getattr(args, "cls_labels", None))
        ds = ImageDatasetMSF(data, todo, scales=args.cam_scales)
        for idx, name in enumerate(todo):
            pack = ds[idx]
            pairs = [p.to(device) for p in pack_pairs(pack)]
            keys = np.nonzero(labels[idx])[0].tolist()
            size = tuple(pack["size"])
            step_maps: list = []
            (cam, high_res), = advcam_seeds(model, [pairs], args.cam_scales, [keys], [size], device, args=args,
                                            step_maps=step_maps)
            out = os.path.join(args.cam_out_dir, name + ".npy")
            if not os.path.isfile(out):
                save_cam_npy(out, keys, cam, high_res, getattr(args, "cam_format", "float32"))
            steps = fuse_steps(step_maps[0], args.cam_scales, size, args.adv_iter)
            save_npy(os.path.join(steps_dir, name + ".npy"),
                     {"keys": np.asarray(keys, np.int64), "size": size, "scales": tuple(args.cam_scales),
                      "iters": tuple(iterations_for_scale(s, args.adv_iter) for s in args.cam_scales),
                      "cam": steps.numpy().astype(np.float32)})
    stats = {"images": len(todo), "skipped": len(set(ids)) - len(todo), "seconds": time.time() - t0}
    log.info("AdvCAM climbing steps: %d images written to %s, %d already there, %.1f s", stats["images"], steps_dir,
             stats["skipped"], stats["seconds"])
    return stats


def _call_into(queue, fn, *fn_args) -> None:
    """Run ``fn(*fn_args)`` and put ("ok", result) or ("error", exception) into ``queue``."""
    try:
        queue.put(("ok", fn(*fn_args)))
    except BaseException as e:  # handed to the parent, which raises it
        queue.put(("error", e))


def _in_spawned_process(fn, *fn_args):
    """``fn(*fn_args)`` computed in a spawned child process (whose CUDA memory is freed when it ends); its
    exception is raised here."""
    ctx = torch.multiprocessing.get_context("spawn")
    queue = ctx.SimpleQueue()
    proc = ctx.Process(target=_call_into, args=(queue, fn, *fn_args))
    proc.start()
    status, value = queue.get() if _wait_for_output(proc, queue) else ("error", None)
    proc.join()
    if status == "error":
        if value is None:
            raise RuntimeError(f"the process computing {fn.__name__} died (exit status {proc.exitcode})")
        raise value
    return value


def _wait_for_output(proc, queue) -> bool:
    """Wait until ``queue`` has the child's output (True) or the child ``proc`` ended without giving one
    (False)."""
    while queue.empty():
        if not proc.is_alive() and queue.empty():
            return False
        proc.join(timeout=0.2)
    return True


def run(args) -> dict:
    """Write the AdvCAM maps of every ``--train_list`` image not done yet (and the climbing steps of
    ``--save_steps`` images first)."""
    log.info("AdvCAM settings: engine %s, adv_iter %d, AD_stepsize %g, AD_coeff %g, score_th %g, scales %s, "
             "target_layer %s, weights %s, train_list %s, out %s", args.engine, args.adv_iter, args.AD_stepsize,
             args.AD_coeff, args.score_th, ",".join(f"{s:g}" for s in args.cam_scales), args.target_layer,
             args.cam_weights_name, args.train_list, args.cam_out_dir)
    ids = parse_ids(getattr(args, "save_steps", None))
    steps = None
    if ids and distributed.is_main():  # the other ranks wait for its list of what is left
        devices = cam_devices(args)
        if len(devices) > 1:  # per-GPU workers follow: climb in a process of its own, so that none stays on GPU 0
            steps = _in_spawned_process(save_climbing_steps, args, ids, devices[0])
        else:
            steps = save_climbing_steps(args, ids)
    stats = run_cam_pass(args, functools.partial(advcam_seeds, args=args), f"AdvCAM ({args.engine})")
    if steps is not None:
        stats["steps"] = steps
    return stats
