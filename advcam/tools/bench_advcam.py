"""Benchmark the two AdvCAM engines (reference and fast) on the same random inputs, side by side.

``python -m advcam.tools.bench_advcam [--device cpu|cuda] [--images N] [--size HxW] [--classes K] [--adv_iter T]
[--engine both|fast|reference] [--scales 1.0,0.5,1.5,2.0] [--weights PATH] [--amp] [--seed S] [--images_per_batch B]
[--max_batch_pixels N] [--json PATH]``

Prints one table (seconds per image, images per second, peak memory per engine), the floating-point work
per image and the achieved fraction of the device's peak; the last line is
``fast/reference speed ratio: <r>x, max abs diff: <d>`` (``n/a`` where an engine was not run).
``--json PATH`` also writes every figure of the table (and the settings) to PATH: see :func:`json_summary`.
With ``--images_per_batch B`` > 1 the table has one more row, ``fast-bB``: the fast engine with groups of B
consecutive images (all of this benchmark's images have one size) climbing in one batch per scale.

``--amp`` (bf16 autocast of the fast engine) is meant for CUDA; on the CPU it runs too (the pipeline's
``obtain_CAM_masking.py --amp True`` does as well), as a check of the code path, not as a performance figure.

On the CPU each engine runs in its own child process (from a multiprocessing fork server), so that the two peak
RSS figures are separate; a script that calls :func:`main` must therefore guard it with
``if __name__ == "__main__":``. On CUDA both run in-process, with one untimed warm-up image each.
"""
from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import resource
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from advcam.advcam import (
    advcam_image,
    advcam_images,
    climb_fast,
    input_grad_only,
    iterations_for_scale,
)
from advcam.cam_loop import device_layout
from advcam.nets.resnet50_cam import CAM, build_cam_net
from advcam.utils import ArgParser, program_name, run_cli

NUM_CLASSES = 20
VOC_TRAIN_AUG_IMAGES = 10_582
VOC_CLASSES_PER_IMAGE = 1.56
XI, LAM, TAU = 0.08, 7.0, 0.5

# Dense peak TFLOP/s by device-name substring, first match wins: (bf16, fp32, tf32).
CUDA_PEAKS: list[tuple[str, tuple[float, float, float]]] = [
    ("H100 PCIe", (756.0, 51.0, 378.0)),
    ("H100", (989.0, 67.0, 495.0)),
    ("H200", (989.0, 67.0, 495.0)),
    ("A100", (312.0, 19.5, 156.0)),
]

CUDA_DEFAULTS = {"size": "375x500", "images": 8, "scales": "1.0,0.5,1.5,2.0", "adv_iter": 27}
CPU_DEFAULTS = {"size": "48x64", "images": 2, "classes": 2, "scales": "1.0,0.5", "adv_iter": 27}


@dataclass
class EngineResult:
    """Measurements of one engine over all benchmark images."""

    name: str
    seconds: list[float] = field(default_factory=list)  # per timed image
    peak_mib: float = float("nan")  # peak RSS (CPU) or peak allocated (CUDA)
    base_mib: float = float("nan")  # the same quantity just before the run
    maps: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)  # ("cam", "high_res") per image
    reserved_mib: float = float("nan")  # CUDA: peak reserved by the caching allocator (NaN on the CPU)

    @property
    def sec_per_image(self) -> float:
        return sum(self.seconds) / len(self.seconds)


# ----------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------

def build_parser() -> ArgParser:
    """The command line of ``bench_advcam.py`` / ``advcam-bench``."""
    p = ArgParser(description=__doc__.splitlines()[0], default_prog="bench_advcam.py")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cpu", "cuda"),
                   help="where the engines run (default: cuda when a GPU is visible, else cpu)")
    p.add_argument("--images", type=int, default=None,
                   help=f"N images (default {CUDA_DEFAULTS['images']} on CUDA, {CPU_DEFAULTS['images']} on CPU)")
    p.add_argument("--size", type=str, default=None,
                   help=f"HxW (default {CUDA_DEFAULTS['size']} on CUDA, {CPU_DEFAULTS['size']} on CPU)")
    p.add_argument("--classes", type=int, default=None,
                   help=f"K positive classes per image (default: alternating 1 and 2 on CUDA, "
                        f"{CPU_DEFAULTS['classes']} on CPU)")
    p.add_argument("--adv_iter", type=int, default=None, help="T climbing steps (default 27)")
    p.add_argument("--engine", default="both", choices=("both", "fast", "reference"), help="the engines timed")
    p.add_argument("--scales", type=str, default=None,
                   help=f"comma list (default {CUDA_DEFAULTS['scales']} on CUDA, {CPU_DEFAULTS['scales']} on CPU)")
    p.add_argument("--weights", type=str, default=None, metavar="PTH",
                   help="CAM classifier weights (default: random, with a seeded N(0, 0.05) head)")
    p.add_argument("--amp", action="store_true",
                   help="bf16 autocast for the fast engine (meant for CUDA; on the CPU a code-path check, slow)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random images, labels and head")
    p.add_argument("--max_batch_pixels", type=int, default=None,
                   help="fast engine: chunk the batched climbs into at most N input pixels (1 = one class per batch, "
                        "to measure batching; default: no chunking)")
    p.add_argument("--images_per_batch", type=int, default=1,
                   help="B > 1 adds a row 'fast-bB': the fast engine with B consecutive images per climbing batch "
                        "(obtain_CAM_masking.py --images_per_batch B)")
    p.add_argument("--json", type=str, default=None, metavar="PATH",
                   help="also write the figures and settings to PATH as JSON (default: print only)")
    return p


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse and complete the arguments with the device's defaults."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    defaults = CUDA_DEFAULTS if args.device == "cuda" else CPU_DEFAULTS
    for key in ("images", "size", "scales", "adv_iter"):
        if getattr(args, key) is None:
            setattr(args, key, defaults[key])
    if args.classes is None and args.device == "cpu":
        args.classes = CPU_DEFAULTS["classes"]
    try:
        h, w = (int(v) for v in args.size.lower().split("x"))
        args.hw = (h, w)
        args.scale_list = [float(s) for s in args.scales.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--size must be HxW (got {args.size!r}) and --scales a comma list (got {args.scales!r})")
    if min(args.hw) < 16 or not args.scale_list or min(args.scale_list) <= 0:
        parser.error("--size must be at least 16x16 and --scales positive")
    if args.images < 1 or args.adv_iter < 1 or args.images_per_batch < 1:
        parser.error("--images, --adv_iter and --images_per_batch must be >= 1")
    if args.images_per_batch > 1 and args.engine == "reference":
        parser.error("--images_per_batch > 1 measures the fast engine: use --engine fast or both")
    if args.classes is not None and not 1 <= args.classes <= NUM_CLASSES:
        parser.error(f"--classes must be in 1..{NUM_CLASSES}")
    return args


# ----------------------------------------------------------------------------------------------
# Model and inputs
# ----------------------------------------------------------------------------------------------

def build_model(weights: str | None, seed: int) -> CAM:
    """The CAM network in eval mode: loaded weights, or random ones with a seeded N(0, 0.05) head."""
    torch.manual_seed(seed)
    if weights is not None:
        return build_cam_net(weights)
    model = CAM().eval()
    with torch.no_grad():
        model.classifier.weight.normal_(0, 0.05)
    return model


def make_inputs(model: nn.Module, args: argparse.Namespace) -> list[tuple[list[torch.Tensor], list[int]]]:
    """N random images as (flip pairs per scale [2, 3, h, w], sorted positive classes).

    The K classes are a random subset of those whose clean class map is positive somewhere at the first
    scale (all classes when fewer), so that no benchmarked map is trivially zero.
    """
    g = torch.Generator().manual_seed(args.seed)
    dev = next(model.parameters()).device
    H, W = args.hw
    out = []
    for i in range(args.images):
        img = torch.randn(3, H, W, generator=g)
        pairs = []
        for s in args.scale_list:
            im = img if s == 1.0 else F.interpolate(img[None], (round(H * s), round(W * s)), mode="bilinear",
                                                    align_corners=False)[0]
            pairs.append(torch.stack([im, im.flip(-1)]))
        k = args.classes if args.classes is not None else 1 + i % 2
        with torch.no_grad():
            live = (model.class_maps(pairs[0].to(dev)) > 0).cpu().flatten(2).any(2).any(0).nonzero()[:, 0]
        pool = live if len(live) >= k else torch.arange(NUM_CLASSES)
        keys = sorted(pool[torch.randperm(len(pool), generator=g)[:k]].tolist())
        out.append((pairs, keys))
    return out


def prepare(model: nn.Module, inputs: list, device: torch.device) -> tuple[nn.Module, list]:
    """Move the model and inputs to the device, in the pipeline's memory format (channels_last on CUDA)."""
    model, pairs_list = device_layout(model.to(device), [[p.to(device) for p in pairs] for pairs, _ in inputs],
                                      channels_last=device.type == "cuda")
    return model, [(pairs, keys) for pairs, (_, keys) in zip(pairs_list, inputs, strict=True)]


def run_one(model: nn.Module, pairs: list[torch.Tensor], keys: list[int], args: argparse.Namespace, engine: str):
    """One image's maps by one engine (bf16 autocast for the fast engine with --amp)."""
    amp = torch.bfloat16 if args.amp and engine == "fast" else None
    return advcam_image(model, pairs, args.scale_list, keys, args.hw, adv_iter=args.adv_iter, xi=XI, lam=LAM,
                        tau=TAU, engine=engine, amp_dtype=amp, max_batch_pixels=args.max_batch_pixels)


def images_per_batch(engine: str) -> int:
    """B of a grouped fast-engine row named ``fast-bB``; 1 for the plain engines."""
    return int(engine[len("fast-b"):]) if engine.startswith("fast-b") else 1


def run_group(model: nn.Module, group: list, args: argparse.Namespace, engine: str) -> list:
    """The maps of a group of images: one at a time for the plain engines, in one batch for ``fast-bB``."""
    if images_per_batch(engine) == 1:
        return [run_one(model, pairs, keys, args, engine) for pairs, keys in group]
    amp = torch.bfloat16 if args.amp else None
    return advcam_images(model, [pairs for pairs, _ in group], args.scale_list, [keys for _, keys in group],
                         [args.hw] * len(group), adv_iter=args.adv_iter, xi=XI, lam=LAM, tau=TAU, amp_dtype=amp,
                         max_batch_pixels=args.max_batch_pixels)


def groups_of(inputs: list, engine: str) -> list[list]:
    """The benchmark images in the engine's groups (consecutive, the last one possibly smaller)."""
    b = images_per_batch(engine)
    return [inputs[i:i + b] for i in range(0, len(inputs), b)]


# ----------------------------------------------------------------------------------------------
# Measurements
# ----------------------------------------------------------------------------------------------

def _rss_mib() -> float:
    """Peak resident set size of this process, MiB (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_child(conn, payload: bytes, args: argparse.Namespace, engine: str, threads: int) -> None:
    """Child process: run one engine over all images; send (seconds, maps, base RSS, peak RSS)."""
    try:
        torch.set_num_threads(threads)
        model, inputs = torch.load(io.BytesIO(payload), weights_only=False)  # our own objects
        del payload
        base = _rss_mib()
        seconds, maps = [], []
        for group in groups_of(inputs, engine):
            t0 = time.perf_counter()
            outs = run_group(model, group, args, engine)
            seconds += [(time.perf_counter() - t0) / len(group)] * len(group)  # per image
            maps += [(cam.numpy(), high.numpy()) for cam, high in outs]  # numpy: plain pickling, no shm handles
        conn.send(("ok", seconds, maps, base, _rss_mib()))
    except BaseException:  # report anything to the parent rather than dying silently
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def bench_cpu(model: nn.Module, inputs: list, args: argparse.Namespace, engine: str) -> EngineResult:
    """Run one engine in its own child process so that its peak RSS (ru_maxrss) is its own.

    Children come from a fork server (a clean process that has only imported torch), not from forking this
    process: a child forked after its parent ran any OpenMP region (as under pytest, or after building the
    inputs) deadlocks in libgomp. Model and inputs travel serialised.
    """
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "advcam.advcam", "advcam.nets.resnet50_cam"])
    buf = io.BytesIO()
    torch.save((model, inputs), buf)
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_cpu_child, args=(send, buf.getvalue(), args, engine, torch.get_num_threads()))
    del buf
    proc.start()
    send.close()
    try:
        msg = recv.recv()
    except EOFError:
        proc.join()
        msg = ("error", f"the child process died (exit code {proc.exitcode})")
    proc.join()
    if msg[0] != "ok":
        raise RuntimeError(f"{engine} engine failed in its child process:\n{msg[1]}")
    _, seconds, maps, base, peak = msg
    maps = [(torch.from_numpy(c), torch.from_numpy(h)) for c, h in maps]
    return EngineResult(engine, seconds, peak, base, maps)


def bench_cuda(model: nn.Module, inputs: list, args: argparse.Namespace, engine: str) -> EngineResult:
    """Run one engine in-process: one untimed warm-up group (one image for the plain engines), then every
    group timed with synchronisation."""
    dev = torch.device("cuda")
    run_group(model, groups_of(inputs, engine)[0], args, engine)
    torch.cuda.synchronize(dev)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(dev)
    base = torch.cuda.memory_allocated(dev) / 2**20
    res = EngineResult(engine, base_mib=base)
    for group in groups_of(inputs, engine):
        torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        outs = run_group(model, group, args, engine)  # maps come back on the CPU (a sync)
        torch.cuda.synchronize(dev)
        res.seconds += [(time.perf_counter() - t0) / len(group)] * len(group)  # per image
        res.maps += outs
    res.peak_mib = torch.cuda.max_memory_allocated(dev) / 2**20
    res.reserved_mib = torch.cuda.max_memory_reserved(dev) / 2**20
    return res


def climb_flops(model: nn.Module, pairs: list[torch.Tensor], args: argparse.Namespace) -> float:
    """Floating-point operations of the fast engine's climb for ONE class at all scales.

    Per scale, FlopCounterMode counts a 1-step climb (one forward) and a 2-step climb (two forwards and the
    input backward between them); a T-step climb is T forwards and T - 1 backwards.
    """
    from torch.utils.flop_counter import FlopCounterMode

    amp = torch.bfloat16 if args.amp else None

    def count(x0: torch.Tensor, T: int) -> int:
        counter = FlopCounterMode(display=False)
        with counter:
            climb_fast(model, x0, [0], T, XI, LAM, TAU, amp)
        return counter.get_total_flops()

    total = 0.0
    with input_grad_only(model):
        for s, pair in zip(args.scale_list, pairs, strict=True):
            x0 = pair[None]
            fwd = count(x0, 1)
            bwd = count(x0, 2) - 2 * fwd
            T = iterations_for_scale(s, args.adv_iter)
            total += T * fwd + (T - 1) * bwd
    return total


def cpu_peak_flops(reps: int = 5, n: int = 1024) -> float:
    """Best measured FLOP/s of a few n x n float32 matmuls (the CPU's practical peak here)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def cuda_peak(name: str, amp: bool) -> tuple[float | None, str]:
    """Known dense peak FLOP/s of this GPU for the precision in use, and its label."""
    for key, (bf16, fp32, tf32) in CUDA_PEAKS:
        if key in name:
            if amp:
                return bf16 * 1e12, f"{key} bf16 dense {bf16:g} TFLOP/s"
            if torch.backends.cudnn.allow_tf32:  # the convolutions run in TF32 by default
                return tf32 * 1e12, f"{key} TF32 dense {tf32:g} TFLOP/s (cuDNN TF32 on; FP32 peak {fp32:g})"
            return fp32 * 1e12, f"{key} FP32 {fp32:g} TFLOP/s"
    return None, f"unknown peak for {name!r}"


def max_abs_diff(a: EngineResult, b: EngineResult) -> tuple[float, float]:
    """Max |a - b| over all images of the saved maps: ("cam", "high_res")."""
    cam = max(float((x[0] - y[0]).abs().max()) for x, y in zip(a.maps, b.maps, strict=True))
    high = max(float((x[1] - y[1]).abs().max()) for x, y in zip(a.maps, b.maps, strict=True))
    return cam, high


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark and print its table; returns the measurements."""
    args = parse_args(argv)
    device = torch.device(args.device)
    engines = ["reference", "fast"] if args.engine == "both" else [args.engine]
    if args.images_per_batch > 1:
        engines.append(f"fast-b{args.images_per_batch}")
    model = build_model(args.weights, args.seed).to(device)
    inputs = make_inputs(model, args)
    ks = [len(keys) for _, keys in inputs]
    k_mean = sum(ks) / len(ks)

    if device.type == "cuda":
        dev_name = torch.cuda.get_device_name(device)
    else:
        dev_name = f"CPU ({torch.get_num_threads()} torch threads)"
    k_note = (f"{args.classes} per image" if args.classes is not None
              else f"alternating 1 and 2 per image (mean {k_mean:g})")
    print(f"AdvCAM engine benchmark on {dev_name}")
    print(f"  images: {args.images} random, {args.hw[0]}x{args.hw[1]} (HxW), flip pairs at scales "
          f"{', '.join(f'{s:g}' for s in args.scale_list)} (bilinear resize)")
    print(f"  positive classes: {k_note}; adv_iter {args.adv_iter} "
          f"(steps per scale: {', '.join(str(iterations_for_scale(s, args.adv_iter)) for s in args.scale_list)})")
    print(f"  weights: {args.weights or 'random (seeded N(0, 0.05) head)'}; seed {args.seed}")
    if device.type == "cuda":
        print(f"  CUDA: channels_last; fast engine {'bf16 autocast' if args.amp else 'float32'}; "
              f"cuDNN TF32 {'on' if torch.backends.cudnn.allow_tf32 else 'off'}; one untimed warm-up image per engine")
    else:
        print("  CPU: each engine runs in its own child process (fork server); peak memory = that process's ru_maxrss "
              "(it includes torch itself and the model)")
        if args.amp:
            print("  CPU --amp: the fast engine under CPU bf16 autocast: a code-path check, not a performance figure")
    sys.stdout.flush()

    results: dict[str, EngineResult] = {}
    if device.type == "cuda":
        model, inputs = prepare(model, inputs, device)
    for engine in engines:
        bench = bench_cuda if device.type == "cuda" else bench_cpu
        results[engine] = bench(model, inputs, args, engine)

    # Work per image: the fast engine's climb, per class, times the classes of each image.
    flops_per_class = climb_flops(model, inputs[0][0], args)
    flops_per_image = flops_per_class * k_mean
    if device.type == "cuda":
        peak, peak_label = cuda_peak(dev_name, args.amp)
    else:
        peak = cpu_peak_flops()
        peak_label = f"measured here: best of 1024x1024 float32 matmuls, {peak / 1e9:.1f} GFLOP/s"

    mem = "peak RSS MiB" if device.type == "cpu" else "peak alloc MiB"
    base = "over base MiB"
    header = f"{'engine':<10} {'s/image':>10} {'images/s':>10} {mem:>15} {base:>14} {'GFLOP/s':>9} {'% of peak':>10}"
    print()
    print(header)
    print("-" * len(header))
    for engine, r in results.items():
        spi = r.sec_per_image
        achieved = flops_per_image / spi
        frac = f"{100 * achieved / peak:.2f}" if peak else "unknown"
        print(f"{engine:<10} {spi:>10.3f} {1 / spi:>10.3f} {r.peak_mib:>15.0f} {r.peak_mib - r.base_mib:>14.0f} "
              f"{achieved / 1e9:>9.1f} {frac:>10}")
    print()
    print(f"work per image: {flops_per_image / 1e9:.2f} GFLOP ({flops_per_class / 1e9:.2f} per class x {k_mean:g} "
          "classes; the fast engine's climb counted with FlopCounterMode, forward + input backward per step)")
    print("  (the reference computes more - a second backward and parameter gradients - but its row divides the "
          "same useful work by its time)")
    print(f"peak: {peak_label}")

    out: dict = {"results": results, "flops_per_image": flops_per_image, "peak": peak}
    if device.type == "cuda":
        for engine, r in results.items():
            hours = r.sec_per_image * VOC_CLASSES_PER_IMAGE / k_mean * VOC_TRAIN_AUG_IMAGES / 3600
            out[f"hours_{engine}"] = hours
            print(f"projected for VOC train_aug ({VOC_TRAIN_AUG_IMAGES} images, {VOC_CLASSES_PER_IMAGE} classes "
                  f"per image): {engine}: {hours:.2f} GPU-hours")

    ratio = diff = None
    if "reference" in results and "fast" in results:
        ratio = results["reference"].sec_per_image / results["fast"].sec_per_image
        d_cam, d_high = max_abs_diff(results["reference"], results["fast"])
        diff = max(d_cam, d_high)
        print(f"max abs diff of the saved maps (max-normalised): cam {d_cam:.1e}, high_res {d_high:.1e}")
    for engine, r in results.items():
        if images_per_batch(engine) > 1:
            speed = results["fast"].sec_per_image / r.sec_per_image
            d_cam, d_high = max_abs_diff(results["fast"], r)
            out[f"speed_{engine}_vs_fast"] = speed
            print(f"{engine}: the fast engine with --images_per_batch {images_per_batch(engine)} (consecutive images "
                  f"in one batch per scale): {speed:.2f}x the fast row's speed, max abs diff vs fast: "
                  f"cam {d_cam:.1e}, high_res {d_high:.1e}")
    out["ratio"], out["max_abs_diff"] = ratio, diff
    if args.json:
        summary = json_summary(args, dev_name, [keys for _, keys in inputs], results, flops_per_image, peak,
                               peak_label)
        write_json(args.json, summary)
        out["json"] = summary
    ratio_s = f"{ratio:.1f}x" if ratio is not None else "n/a"
    diff_s = f"{diff:.1e}" if diff is not None else "n/a"
    print(f"fast/reference speed ratio: {ratio_s}, max abs diff: {diff_s}")
    return out


def _num(x: float | None) -> float | None:
    """A float for JSON: None for a missing or NaN figure (JSON has no NaN)."""
    return None if x is None or x != x else float(x)


def json_summary(args: argparse.Namespace, dev_name: str, keys_list: list[list[int]],
                 results: dict[str, EngineResult], flops_per_image: float, peak: float | None,
                 peak_label: str) -> dict:
    """Every figure of the run as plain JSON types.

    "engines": one entry per table row: "sec_per_image" (mean over the timed images; a group's time is split
    evenly over its images), "seconds" (per image), "peak_mib" / "base_mib" (CUDA: max_memory_allocated after
    a reset that follows the warm-up; CPU: the engine's child-process peak RSS), "reserved_mib" (CUDA:
    max_memory_reserved; null on the CPU), "images_per_batch", "precision" ("bf16" for the fast rows under
    --amp, else "fp32"), "max_abs_diff_vs_reference" / "max_abs_diff_vs_fast" (max over the maps, null where
    that engine was not run).
    """
    device = "cuda" if args.device == "cuda" else "cpu"
    engines = {}
    for name, r in results.items():
        row = {"sec_per_image": r.sec_per_image, "seconds": [float(t) for t in r.seconds],
               "peak_mib": _num(r.peak_mib), "base_mib": _num(r.base_mib), "reserved_mib": _num(r.reserved_mib),
               "images_per_batch": images_per_batch(name),
               "precision": "bf16" if args.amp and name != "reference" else "fp32"}
        for other in ("reference", "fast"):
            row[f"max_abs_diff_vs_{other}"] = (max(max_abs_diff(results[other], r)) if other in results
                                               and other != name else None)
        engines[name] = row
    ks = [len(k) for k in keys_list]
    return {
        "device": device, "device_name": dev_name, "amp": bool(args.amp), "size_hw": list(args.hw),
        "images": args.images, "scales": list(args.scale_list), "adv_iter": args.adv_iter,
        "steps_per_scale": [iterations_for_scale(s, args.adv_iter) for s in args.scale_list],
        "classes_per_image": ks, "classes_mean": sum(ks) / len(ks), "max_batch_pixels": args.max_batch_pixels,
        "seed": args.seed, "weights": args.weights,
        "memory": ("torch.cuda.max_memory_allocated, reset after the untimed warm-up" if device == "cuda"
                   else "peak RSS (ru_maxrss) of the engine's own child process"),
        "engines": engines, "flops_per_image": flops_per_image, "peak_flops": _num(peak), "peak_label": peak_label,
        "torch": torch.__version__,
    }


def write_json(path: str, data: dict) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file, then a rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def cli() -> None:
    """Console entry point: a user error is printed as one line (exit status 2)."""
    run_cli(main, program_name("bench_advcam.py"))


if __name__ == "__main__":
    cli()
