"""Measure the memory of make_sem_seg's per-image inference (IRN forward + random walk) at COCO's and VOC's sizes.

``python tools/bench_sem_seg_memory.py [--sizes 640x480 500x375 320x240 1280x960] [--classes 3] [--device cpu]
[--dense_sizes 128x96 192x144 256x192] [--threads N]``

Each measurement runs in a fresh process (``--child``) doing what make_sem_seg does for one image
(:func:`advcam.irn_loop.edge_and_displacement`, then :func:`advcam.pseudo_labels.sem_seg_from_cams` with the pass's
defaults beta 10, exp_times 8, bg threshold 0.25) on a random normalised flip pair [2, 3, H, W], an IRN
(ResNet-50, ``EdgeDisplacement(crop_size=512)`` as ``--irn_infer_pad 512``) with seeded random weights and a
random stride-4 CAM of ``--classes`` classes. Phases, one process each:

- ``irn``: the IRN forward alone; ``walk``: the random walk alone (a random boundary map: the walk's memory does
  not depend on its values); ``full``: both, as the pass runs them;
- ``dense``: the reference's dense random walk (:func:`advcam.indexing.propagate_to_edge_dense`, the hw x hw
  transition matrix squared exp_times times), only at the small ``--dense_sizes``, to measure its (hw)^2 growth.

CPU: the resident set size before the phase (``VmRSS``) and its peak during the phase (``VmHWM`` of
``/proc/self/status`` after resetting it through ``/proc/self/clear_refs``), and the process's peak over its whole
life (imports and model included). CUDA (``--device cuda``): ``torch.cuda.memory_allocated`` before and
``torch.cuda.max_memory_allocated`` during the phase. The shapes behind the bound are printed with the figures:
the stride-4 grid h x w, the walk's neighbours (radius 5: 34 directions), the sparse transition matrix's stored
entries and CSR bytes, and the dense matrix's bytes (hw)^2 x 4. Linux only (``/proc``).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
MIB = 2.0 ** 20
BETA, EXP_TIMES, BG_THRES, INFER_PAD = 10.0, 8, 0.25, 512  # run_sample.py's make_sem_seg defaults


def parse_size(text: str) -> tuple[int, int]:
    """``WxH`` (e.g. 640x480) -> (H, W)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected WIDTHxHEIGHT, e.g. 640x480") from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"size {text!r}: width and height must be positive")
    return h, w


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak_rss() -> None:
    """Set VmHWM to the current VmRSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def shape_facts(size: tuple[int, int]) -> dict:
    """The shapes behind the bound: stride-4 grid, walk directions, sparse and dense transition-matrix sizes, the
    IRN's padded input."""
    import torch

    from advcam import imutils
    from advcam.indexing import PathIndex, transition_matrix_sparse
    from advcam.pseudo_labels import RW_RADIUS

    h, w = imutils.get_strided_size(size, 4)
    hw = h * w
    n_dirs = PathIndex(radius=RW_RADIUS, default_size=(h + RW_RADIUS, w + 2 * RW_RADIUS)).n_directions
    nnz = int(transition_matrix_sparse(torch.rand(h, w), radius=RW_RADIUS, beta=BETA).values().numel())
    ph, pw = (-(-max(INFER_PAD, s) // 16) * 16 for s in size)
    return {"size": list(size), "grid": [h, w], "hw": hw, "n_dirs": n_dirs, "nnz": nnz,
            "nnz_bound": hw * (2 * n_dirs + 1), "csr_bytes": nnz * (4 + 8) + (hw + 1) * 8,
            "dense_bytes": hw * hw * 4, "irn_input": [ph, pw]}


def child(phase: str, size: tuple[int, int], classes: int, device_name: str, threads: int | None) -> dict:
    """One phase in this (fresh) process; returns the figures."""
    import numpy as np
    import torch

    from advcam import imutils
    from advcam.indexing import propagate_to_edge_dense
    from advcam.irn_loop import edge_and_displacement
    from advcam.pseudo_labels import CAM_POWER, RW_RADIUS, sem_seg_from_cams
    from advcam.utils import network_module

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    device = torch.device(device_name)
    cuda = device.type == "cuda"
    H, W = size
    h, w = imutils.get_strided_size(size, 4)
    model = None
    if phase in ("irn", "full"):
        model = network_module("irn_network", "resnet50_irn").EdgeDisplacement(crop_size=INFER_PAD)
        model = model.to(device).eval()  # random weights: the memory does not depend on their values
        img = torch.randn(3, H, W)
        pair = torch.stack([img, img.flip(-1)]).to(device)
    cams = torch.rand(classes, h, w, device=device)
    keys = np.arange(classes, dtype=np.int64)
    edge = torch.rand(h, w, device=device)
    # a walk on an 8x8 grid first, so that the sparse kernels' one-time set-up is not counted as the walk's
    sem_seg_from_cams(cams[:, :8, :8], keys, edge[:8, :8], (32, 32), BETA, EXP_TIMES, BG_THRES)
    gc.collect()
    life_before = _status_kib("VmHWM")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        before_cuda = torch.cuda.memory_allocated(device)
    _reset_peak_rss()
    rss_before = _status_kib("VmRSS")
    t0 = time.perf_counter()
    if phase in ("irn", "full"):
        edge, _ = edge_and_displacement(model, pair)
    if phase in ("walk", "full"):
        label = sem_seg_from_cams(cams, keys, edge, size, BETA, EXP_TIMES, BG_THRES)
        assert label.shape == size
    if phase == "dense":
        with torch.no_grad():
            out = propagate_to_edge_dense(cams.pow(CAM_POWER), edge, radius=RW_RADIUS, beta=BETA, exp_times=EXP_TIMES)
        assert out.shape == cams.shape
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peak = _status_kib("VmHWM")
    out = {"phase": phase, "size": list(size), "device": str(device), "threads": torch.get_num_threads(),
           "rss_before_mib": rss_before / 1024, "rss_peak_mib": peak / 1024,
           "rss_increment_mib": (peak - rss_before) / 1024, "process_peak_mib": max(life_before, peak) / 1024,
           "seconds": seconds}
    if cuda:
        out["cuda_before_mib"] = before_cuda / MIB
        out["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated(device) / MIB
        out["cuda_increment_mib"] = (torch.cuda.max_memory_allocated(device) - before_cuda) / MIB
    return out


def run_child(phase: str, size: tuple[int, int], args) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", phase, "--sizes", f"{size[1]}x{size[0]}",
           "--classes", str(args.classes), "--device", args.device]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"bench_sem_seg_memory.py: error: the {phase} phase at {size[1]}x{size[0]} failed:\n"
                 + res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--sizes", nargs="+", type=parse_size, default=[(480, 640), (375, 500), (240, 320), (960, 1280)],
                   metavar="WxH", help="image sizes of the irn, walk and full phases (default: 640x480 500x375 "
                                       "320x240 1280x960)")
    p.add_argument("--dense_sizes", nargs="*", type=parse_size, default=[(96, 128), (144, 192), (192, 256)],
                   metavar="WxH", help="sizes of the dense reference walk (default: 128x96 192x144 256x192)")
    p.add_argument("--classes", type=int, default=3, help="classes in the CAM (default: 3)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--phases", nargs="+", default=["irn", "walk", "full"], choices=["irn", "walk", "full"],
                   help="phases at --sizes (default: all three)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write every figure to FILE")
    p.add_argument("--child", default=None, choices=["irn", "walk", "full", "dense"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.classes < 1:
        p.error("--classes must be 1 or more")
    if args.child:
        print(json.dumps(child(args.child, args.sizes[0], args.classes, args.device, args.threads)))
        return 0
    rows, facts = [], {}
    for size in args.sizes + args.dense_sizes:
        facts[f"{size[1]}x{size[0]}"] = shape_facts(size)
    for size in args.sizes:
        for phase in args.phases:
            rows.append(run_child(phase, size, args))
    for size in args.dense_sizes:
        rows.append(run_child("dense", size, args))
    print(f"make_sem_seg memory, {args.classes}-class CAM, device {args.device}, torch threads {rows[0]['threads']}")
    print("shapes: image WxH | stride-4 grid WxH | hw | sparse T entries (bound hw*(2*dirs+1)) | CSR MiB | dense T MiB"
          " | IRN input WxH")
    for key, f in facts.items():
        print(f"  {key:>9} | {f['grid'][1]}x{f['grid'][0]} | {f['hw']:,} | {f['nnz']:,} ({f['nnz_bound']:,}, "
              f"{f['n_dirs']} dirs) | {f['csr_bytes'] / MIB:.1f} | {f['dense_bytes'] / MIB:,.1f} | "
              f"{f['irn_input'][1]}x{f['irn_input'][0]}")
    cuda = args.device.startswith("cuda")
    print("phase | image WxH | RSS before MiB | RSS peak MiB | increment MiB | process peak MiB | s"
          + (" | CUDA max allocated MiB | CUDA increment MiB" if cuda else ""))
    for r in rows:
        key = f"{r['size'][1]}x{r['size'][0]}"
        f = facts[key]
        extra = f" | {r['cuda_max_allocated_mib']:.1f} | {r['cuda_increment_mib']:.1f}" if cuda else ""
        per = ""
        if r["phase"] == "walk":
            per = f"  ({r['rss_increment_mib'] * MIB / f['hw']:.0f} B per grid vertex)"
        elif r["phase"] == "dense":
            per = f"  ({r['rss_increment_mib'] * MIB / f['dense_bytes']:.2f} x the dense T)"
        elif r["phase"] == "irn":
            px = f["irn_input"][0] * f["irn_input"][1]
            per = f"  ({r['rss_increment_mib'] * MIB / px:.0f} B per padded input pixel)"
        print(f"  {r['phase']:>5} | {key:>9} | {r['rss_before_mib']:.1f} | {r['rss_peak_mib']:.1f} | "
              f"{r['rss_increment_mib']:.1f} | {r['process_peak_mib']:.1f} | {r['seconds']:.2f}{extra}{per}")
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump({"shapes": facts, "runs": rows}, f, indent=1)
        os.replace(args.json + ".tmp", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
