"""Pass make_advcam (``obtain_CAM_masking.py``): AdvCAM seeds by anti-adversarial climbing.

Reads ``--cam_weights_name`` and the images of ``--train_list``; writes ``<cam_out_dir>/<id>.npy`` in the
reference format ({"keys", "cam" [K, H/4, W/4], "high_res" [K, H, W]}). Existing files are skipped.
"""
from __future__ import annotations

import functools

import torch

from advcam.advcam import advcam_image, advcam_images
from advcam.cam_loop import device_layout, run_cam_pass


def advcam_seeds(model, pairs_list, scales, keys_list, sizes, device, *, args):
    """AdvCAM maps of a group of images of equal size (the group function of the CAM loop).

    The fast engine climbs the classes of all of them in one batch per scale (:func:`advcam_images`);
    the reference engine handles them one at a time.
    """
    amp = torch.bfloat16 if args.amp else None
    model, pairs_list = device_layout(model, pairs_list, channels_last=device.type == "cuda")
    sizes = [tuple(size) for size in sizes]
    kw = dict(adv_iter=args.adv_iter, xi=args.AD_stepsize, lam=args.AD_coeff, tau=args.score_th, amp_dtype=amp,
              max_batch_pixels=args.max_batch_pixels)
    if args.engine == "fast" and args.target_layer == "stage4":
        return advcam_images(model, pairs_list, scales, keys_list, sizes, **kw)
    return [advcam_image(model, pairs, scales, keys, size, engine=args.engine, target_layer=args.target_layer, **kw)
            for pairs, keys, size in zip(pairs_list, keys_list, sizes, strict=True)]


def run(args) -> dict:
    """Write the AdvCAM maps of every ``--train_list`` image not done yet."""
    return run_cam_pass(args, None, functools.partial(advcam_seeds, args=args), f"AdvCAM ({args.engine})")
