"""One prepared GPU check: every figure a GPU machine should measure, in one command, as JSON plus a log.

``python scripts/gpu_check.py --out DIR [--work DIR2] [--tiny] [--device cuda|cpu] [--budget_s S]
[--steps A,B,..] [--step_budget NAME=S]`` (``bash scripts/gpu_check.sh DIR [flags]``: the same under an outer
``timeout`` guard)

Writes ``DIR/gpu_check.json`` (rewritten after every step, so a killed run still leaves what it measured;
``"finished": true`` once complete), ``DIR/gpu_check.log`` (every command and its whole output, with the elapsed
time of each step) and the benchmarks' own JSON files in ``DIR/bench``; the toy set, its classifier (~100 MB), the
seeds and the smoke run's maps go to ``--work`` (default ``DIR``) under ``toy/`` and ``smoke/``.

Steps, in this order (``--steps``: a selection, in the order given), each a separate process with its own time
limit, its failure recorded and the next step run anyway (a step whose input another step should have made is
recorded as failed, with that reason):

toy_data          ``make_toy_voc.py``: the toy VOC set
toy_train_cam     the toy classifier (the demo's train_cam settings, ``get_mask_quality.sh`` step 1)
toy_seeds_fp32    ``obtain_CAM_masking.py`` on a fixed subset (the first N ids of the toy ``train.txt``), then
                  ``run_sample.py --eval_cam_pass True`` on that subset: the seed mIoU
toy_seeds_bf16    the same with ``--amp True``
cam_device_flag   ``obtain_CAM_masking.py --device cuda`` (a bare ``cuda``, as users type it) on 2 toy images
make_cam_pass     ``run_sample.py --make_cam_pass True`` on the smoke images, without ``--device`` (every visible
                  GPU: one spawned worker per GPU when there are several)
make_sem_seg_pass ``run_sample.py --make_sem_seg_pass True`` on those images: make_cam_pass's CAMs and a seeded
                  random IRN (the pass's device handling and random walk on the GPU, not its quality)
train_seg_steps   20 iterations of ``run_sample.py --train_seg_pass True``: DeepLab-v2 over a seeded random ResNet-101
                  with BN statistics calibrated on the toy images (torchvision's file format; frozen BN with the
                  untouched statistics gives a first loss of ~1e5 and then NaN; at the recipe's lr of 2.5e-4 it still
                  diverges from random weights, so the step trains at 1e-6), the recipe's batch of 10 crops of 321,
                  bf16 where the GPU has it; tiny: the EfficientNet-Lite0 head, 2 iterations; on the toy
                  ground truth
train_semi_steps  ``run_sample.py --train_semi_pass True`` at the VOC recipe (CCT over ResNet-50 from scratch, 10
                  labelled + 10 unlabelled crops of 320, the 30 auxiliary decoders, the toy ground truth standing in
                  for the weak masks, bf16 where the GPU has it; tiny: the EfficientNet-Lite0 CCT, 2 + 2 crops of 64)
                  for 5 and for 25 steps, two fresh runs: seconds per step = the difference / 20 (start-up
                  cancels), and the projected hours of the paper's 72,960 steps
torchrun_smoke    ``torchrun --standalone --nproc_per_node 2 obtain_CAM_masking.py`` (run as ``python -m
                  torch.distributed.run``, the module behind ``torchrun``) on a handful of toy images
                  (both ranks on the one GPU, or the CPU) and a plain one-process run of the same images: the two
                  folders must hold the same files, with equal keys and close maps
multi_gpu_spawn   (2 or more GPUs; else recorded as skipped) ``obtain_CAM_masking.py`` without ``--device``: one
                  spawned worker per GPU, on the smoke images; its files against torchrun_smoke's one-process run
ddp_nccl          (2 or more GPUs; else recorded as skipped) ``torchrun --nproc_per_node 2 run_sample.py
                  --train_cam_pass True``: a few DDP steps of the toy classifier over NCCL; the checkpoint loads
                  on the CPU
bench_fast_bf16   ``bench_advcam.py --device cuda --engine fast --amp --images_per_batch B``: rows fast (1 image
                  per climbing batch) and fast-bB; 8 VOC-size 375x500 random images, 1-2 classes (alternating),
                  scales 1.0, 0.5, 1.5, 2.0, T = 27, the pipeline's ``--max_batch_pixels``
mem_scale2_bf16   the same at scale 2.0 alone: its peak memory (``torch.cuda.max_memory_allocated``, reset after
                  the warm-up)
bench_fast_fp32   as bench_fast_bf16 in float32 (TF32 convolutions, torch's default)
mem_scale2_fp32   as mem_scale2_bf16 in float32
bench_reference   ``bench_advcam.py --engine both`` on 2 images (1 and 2 classes): the literal (reference)
                  engine's s/image, the yardstick of the speed target (last, as its time is the least known)

Time: each step has a budget (its share in ``STEPS``, scaled so that they sum to ``--budget_s``: 540 s on a GPU,
so that the check ends within 9 minutes; on one GPU the two multi-GPU steps are skipped at once and their time
passes on to the benchmarks; ``--step_budget`` fixes one); a step may also use whatever the steps before
it left unused, never the budget of a step after it, and it is killed (its whole process group) at its limit.
SIGTERM kills the running step's processes and writes the JSON (exit status 143).

At the end the JSON gets the summary figures ("benchmark", "peak_memory_scale2", "projection", "toy_seed_miou",
"torchrun_smoke") and a "verdict" against the performance targets: the fast engine with bf16 at least 10x the
literal engine (per class climbed, as the two benchmarks need not have the same class mix), VOC train_aug (10,582
images) in under 1 hour on one GPU, scale 2.0 within 16 GiB. Each target's figure is null and its "pass" null when
a step it needs failed.

``--tiny`` (automatic without CUDA): the same steps and code paths at toy sizes (32x32 benchmark images, T = 2,
a 16-image toy set, one epoch), on the CPU in three to four minutes (2 cores): a test of this script, whose figures
say nothing about the targets (the verdict says so: "meaningful": false).

Exit status: 0 when every step succeeded, 1 when one failed (the JSON and the log are written either way).
"""
from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from advcam.advcam import DEFAULT_MAX_BATCH_PIXELS  # noqa: E402
from advcam.io import load_cam_npy  # noqa: E402

PY = sys.executable
VOC_TRAIN_AUG_IMAGES = 10_582
VOC_CLASSES_PER_IMAGE = 1.56  # mean positive classes per train_aug image (scripts/bench_advcam.py)
TARGET_SPEEDUP = 10.0
TARGET_HOURS = 1.0
TARGET_MEMORY_MIB = 16 * 1024  # 16 GiB
SMOKE_ATOL = 1e-3  # the maps are max-normalised to 1; two processes on one GPU may pick other cuDNN kernels
# The smoke run climbs 2 steps: a float-level difference grows by one to two orders of magnitude per climbing step
# (README, "Reproducibility"), so after 27 steps two processes' maps need not be close even when both are right.
SUBSET_LIST = "gpu_check_subset"  # ImageSets/Segmentation/<name>.txt in the toy set: the fixed eval subset
SMOKE_LIST = "gpu_check_smoke"
PIPELINE_MAX_BATCH_PIXELS = DEFAULT_MAX_BATCH_PIXELS

# Sizes of the two modes. Benchmarks: VOC size on a GPU; toy data and classifier: the demo's on a GPU.
GPU_SETTINGS = {
    "bench_size": "375x500", "bench_images": 8, "reference_images": 2, "memory_images": 4, "bench_classes": None,
    "bench_scales": "1.0,0.5,1.5,2.0", "adv_iter": 27, "images_per_batch": 4,
    "toy_train": 160, "toy_size": 128, "toy_epochs": 10, "toy_batch": 16, "toy_crop": 128, "toy_resize": (112, 144),
    "subset": 32, "seed_scales": (1.0, 0.5, 1.5, 2.0), "seed_adv_iter": 27, "seed_images_per_batch": 8,
    "smoke_images": 8, "smoke_adv_iter": 2, "num_workers": 4, "budget_s": 540,
    "seg_network": "deeplab_v2", "seg_iters": 20, "seg_batch": 10, "seg_crop": 321, "irn_infer_pad": 512,
    "ddp_batch": 8, "semi_network": "cct_resnet50", "semi_iters": (5, 25), "semi_batch": 10, "semi_crop": 320,
}
TINY_SETTINGS = {
    "bench_size": "32x32", "bench_images": 2, "reference_images": 2, "memory_images": 2, "bench_classes": 1,
    "bench_scales": "1.0,0.5,1.5,2.0", "adv_iter": 2, "images_per_batch": 2,
    "toy_train": 16, "toy_size": 64, "toy_epochs": 1, "toy_batch": 8, "toy_crop": 64, "toy_resize": (56, 72),
    "subset": 6, "seed_scales": (1.0, 0.5, 1.5, 2.0), "seed_adv_iter": 2, "seed_images_per_batch": 4,
    "smoke_images": 4, "smoke_adv_iter": 2, "num_workers": 0, "budget_s": 480,
    "seg_network": "efficientnet_lite0_seg", "seg_iters": 2, "seg_batch": 2, "seg_crop": 64, "irn_infer_pad": 64,
    "ddp_batch": 4, "semi_network": "cct_efficientnet_lite0", "semi_iters": (1, 3), "semi_batch": 2, "semi_crop": 64,
}

# (name, share of the budget: about 1.3 times the step's time on one H200, 2026-12-04; scaled to --budget_s). The
# order is the order of the run: the toy steps first (their time is the best known, so what they leave unused passes
# on to the benchmarks), the reference last (it gets every second left over).
STEPS: list[tuple[str, float]] = [
    ("toy_data", 30), ("toy_train_cam", 35), ("toy_seeds_fp32", 80), ("toy_seeds_bf16", 80),
    ("cam_device_flag", 20), ("make_cam_pass", 20), ("make_sem_seg_pass", 30), ("train_seg_steps", 45),
    ("train_semi_steps", 55), ("torchrun_smoke", 50), ("multi_gpu_spawn", 30), ("ddp_nccl", 40),
    ("bench_fast_bf16", 70), ("mem_scale2_bf16", 30), ("bench_fast_fp32", 70), ("mem_scale2_fp32", 30),
    ("bench_reference", 60),
]
MULTI_GPU_STEPS = ("multi_gpu_spawn", "ddp_nccl")
STEP_NAMES = [name for name, _ in STEPS]


class StepError(RuntimeError):
    """A step's failure, with the reason recorded in the JSON (and what it measured before failing, if anything:
    the step's "partial")."""

    def __init__(self, msg: str, partial: dict | None = None):
        super().__init__(msg)
        self.partial = partial


class Terminated(BaseException):
    """SIGTERM (e.g. an outer ``timeout``): the running step's processes are killed and the JSON written."""


def _on_sigterm(signum, frame):
    raise Terminated()


# ----------------------------------------------------------------------------------------------
# Running commands under a deadline
# ----------------------------------------------------------------------------------------------

@dataclass
class Context:
    """What a step needs: the settings, the output folder, the log, and its deadline."""

    out: str
    work: str  # the toy set, classifier, seeds and smoke folders (large: keep it off --out to bring back less)
    device: str  # "cuda" or "cpu"
    tiny: bool
    settings: dict
    log: object  # an open text file
    deadline: float = 0.0  # time.monotonic() by which the current step must end
    commands: list = field(default_factory=list)  # of the current step

    def path(self, *parts: str) -> str:
        return os.path.join(self.out, *parts)

    def work_path(self, *parts: str) -> str:
        return os.path.join(self.work, *parts)

    def say(self, msg: str) -> None:
        """To the console and the log."""
        print(msg, flush=True)
        self.log.write(msg + "\n")
        self.log.flush()

    def run(self, argv: Sequence[str], env: dict | None = None) -> None:
        """Run ``argv`` from the repository root, its output appended to the log; killed (with its whole process
        group) at the step's deadline. Raises :class:`StepError` on a non-zero exit or a timeout."""
        argv = [str(a) for a in argv]
        self.commands.append(" ".join(argv))
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise StepError("no time left for: " + _label(argv))
        self.log.write(f"$ {' '.join(argv)}\n")
        self.log.flush()
        full_env = dict(os.environ, PYTHONUNBUFFERED="1")
        full_env.update(env or {})
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, env=full_env,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=left)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise StepError(f"timed out after {time.monotonic() - t0:.1f} s (the step's limit): "
                            f"{_label(argv)}") from None
        except BaseException:  # Terminated, KeyboardInterrupt: leave no process of ours behind
            _kill_group(proc)
            raise
        finally:
            self.log.flush()
        _kill_group(proc)  # whatever it left running in its group (a fork server, data-loader workers)
        self.log.write(f"[exit {rc} after {time.monotonic() - t0:.1f} s]\n")
        self.log.flush()
        if rc != 0:
            raise StepError(f"exit status {rc} after {time.monotonic() - t0:.1f} s: {_label(argv)} "
                            f"(its output is in {os.path.basename(self.log.name)})")


def _label(argv: Sequence[str]) -> str:
    """A command's short name for an error line: the script (or ``-m module``) without the interpreter."""
    rest = list(argv[1:]) if argv and argv[0] == PY else list(argv)
    return " ".join(rest[:2] if rest and rest[0] == "-m" else rest[:1])


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group this check started for ``proc`` (its own session; nothing else is in it), then
    reap ``proc``."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


# ----------------------------------------------------------------------------------------------
# Steps: each returns its figures (a dict) or raises
# ----------------------------------------------------------------------------------------------

def _bench(ctx: Context, name: str, *, amp: bool, engine: str, images: int, scales: str, images_per_batch: int) -> dict:
    s = ctx.settings
    path = ctx.path("bench", name + ".json")
    if os.path.exists(path):
        os.remove(path)
    argv = [PY, "scripts/bench_advcam.py", "--device", ctx.device, "--engine", engine, "--images", images,
            "--size", s["bench_size"], "--scales", scales, "--adv_iter", s["adv_iter"],
            "--max_batch_pixels", PIPELINE_MAX_BATCH_PIXELS, "--images_per_batch", images_per_batch,
            "--seed", 0, "--json", path]
    if amp:
        argv.append("--amp")
    if s["bench_classes"] is not None:
        argv += ["--classes", s["bench_classes"]]
    ctx.run(argv)
    with open(path) as f:
        return {"bench": json.load(f)}


def step_bench_fast_bf16(ctx: Context) -> dict:
    s = ctx.settings
    return _bench(ctx, "bench_fast_bf16", amp=True, engine="fast", images=s["bench_images"], scales=s["bench_scales"],
                  images_per_batch=s["images_per_batch"])


def step_bench_fast_fp32(ctx: Context) -> dict:
    s = ctx.settings
    return _bench(ctx, "bench_fast_fp32", amp=False, engine="fast", images=s["bench_images"],
                  scales=s["bench_scales"], images_per_batch=s["images_per_batch"])


def step_mem_scale2_bf16(ctx: Context) -> dict:
    s = ctx.settings
    return _bench(ctx, "mem_scale2_bf16", amp=True, engine="fast", images=s["memory_images"], scales="2.0",
                  images_per_batch=s["images_per_batch"])


def step_mem_scale2_fp32(ctx: Context) -> dict:
    s = ctx.settings
    return _bench(ctx, "mem_scale2_fp32", amp=False, engine="fast", images=s["memory_images"], scales="2.0",
                  images_per_batch=s["images_per_batch"])


def step_bench_reference(ctx: Context) -> dict:
    s = ctx.settings
    return _bench(ctx, "bench_reference", amp=False, engine="both", images=s["reference_images"],
                  scales=s["bench_scales"], images_per_batch=1)


def _toy_root(ctx: Context) -> str:
    return ctx.work_path("toy", "voc")


def _toy_list(ctx: Context, name: str) -> str:
    return os.path.join(_toy_root(ctx), "ImageSets", "Segmentation", name + ".txt")


def _weights(ctx: Context) -> str:
    return ctx.work_path("toy", "sess", "res50_cam.pth")


def _device_flag(ctx: Context) -> list[str]:
    """``--device cpu`` on the CPU; on CUDA nothing, so the passes choose their GPU(s) as users run them."""
    return ["--device", "cpu"] if ctx.device == "cpu" else []


def step_toy_data(ctx: Context) -> dict:
    s = ctx.settings
    root = _toy_root(ctx)
    if os.path.isdir(root):
        shutil.rmtree(root)
    ctx.run([PY, "scripts/make_toy_voc.py", "--out", root, "--num_train", s["toy_train"], "--num_val", 0,
             "--size", s["toy_size"], "--seed", 0])
    train = _read_list(_toy_list(ctx, "train"))
    if len(train) < max(s["subset"], s["smoke_images"]):
        raise StepError(f"the toy train list has {len(train)} ids, fewer than the subset ({s['subset']})")
    _write_list(_toy_list(ctx, SUBSET_LIST), train[:s["subset"]])
    _write_list(_toy_list(ctx, SMOKE_LIST), train[:s["smoke_images"]])
    return {"root": root, "train_aug": len(_read_list(_toy_list(ctx, "train_aug"))), "train": len(train),
            "subset": train[:s["subset"]], "smoke": train[:s["smoke_images"]]}


def _require_toy(ctx: Context, weights: bool = True) -> None:
    if not os.path.isfile(_toy_list(ctx, SUBSET_LIST)):
        raise StepError("no toy set: the step toy_data did not succeed")
    if weights and not os.path.isfile(_weights(ctx)):
        raise StepError(f"no toy classifier {_weights(ctx)}: the step toy_train_cam did not succeed")


def step_toy_train_cam(ctx: Context) -> dict:
    s = ctx.settings
    _require_toy(ctx, weights=False)
    if os.path.exists(_weights(ctx)):
        os.remove(_weights(ctx))
    ctx.run([PY, "run_sample.py", "--voc12_root", _toy_root(ctx), "--train_list", _toy_list(ctx, "train_aug"),
             "--val_list", _toy_list(ctx, "train"), "--cam_scales", "1.0", "--cam_weights_name", _weights(ctx),
             "--log_name", ctx.work_path("toy", "train_cam"), "--no_pretrained", "True",
             "--cam_crop_size", s["toy_crop"], "--cam_resize_long", *s["toy_resize"],
             "--cam_batch_size", s["toy_batch"], "--cam_num_epoches", s["toy_epochs"], "--cam_optimizer", "adam",
             "--cam_learning_rate", "0.0005",
             "--train_cam_pass", "True", "--num_workers", s["num_workers"], "--seed", 0, *_device_flag(ctx)])
    if not os.path.isfile(_weights(ctx)):
        raise StepError(f"train_cam wrote no {_weights(ctx)}")
    return {"weights": _weights(ctx), "epochs": s["toy_epochs"], "images": s["toy_train"]}


def _toy_seeds(ctx: Context, precision: str) -> dict:
    s = ctx.settings
    _require_toy(ctx)
    out_dir = ctx.work_path("toy", f"seeds_{precision}")
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    results = ctx.work_path("toy", f"eval_{precision}.json")
    if os.path.exists(results):
        os.remove(results)
    t0 = time.monotonic()
    ctx.run([PY, "obtain_CAM_masking.py", "--voc12_root", _toy_root(ctx), "--train_list", _toy_list(ctx, SUBSET_LIST),
             "--cam_scales", *s["seed_scales"], "--adv_iter", s["seed_adv_iter"], "--cam_weights_name", _weights(ctx),
             "--cam_out_dir", out_dir, "--amp", str(precision == "bf16"), "--images_per_batch",
             s["seed_images_per_batch"], "--num_workers", s["num_workers"], "--log_name", out_dir, *_device_flag(ctx)])
    seconds = time.monotonic() - t0
    ctx.run([PY, "run_sample.py", "--voc12_root", _toy_root(ctx), "--cam_out_dir", out_dir,
             "--chainer_eval_set", SUBSET_LIST, "--eval_cam_pass", "True", "--results_json", results,
             "--log_name", ctx.work_path("toy", f"eval_{precision}"), "--num_workers", 0, *_device_flag(ctx)])
    with open(results) as f:
        entry = json.load(f)[f"eval_cam:{out_dir}"]
    return {"miou": 100 * entry["miou"], "threshold": entry["threshold"], "images": s["subset"],
            "cam_out_dir": out_dir, "seconds_advcam_process": seconds, "amp": precision == "bf16"}


def step_toy_seeds_fp32(ctx: Context) -> dict:
    return _toy_seeds(ctx, "fp32")


def step_toy_seeds_bf16(ctx: Context) -> dict:
    return _toy_seeds(ctx, "bf16")


TWO_LIST = "gpu_check_two"  # the first 2 smoke ids: cam_device_flag's images


def step_cam_device_flag(ctx: Context) -> dict:
    """``--device cuda`` as users type it (no index): it used to crash before the first image."""
    s = ctx.settings
    _require_toy(ctx)
    two = _read_list(_toy_list(ctx, SMOKE_LIST))[:2]
    _write_list(_toy_list(ctx, TWO_LIST), two)
    out_dir = ctx.work_path("passes", "device_flag")
    _fresh(out_dir)
    device = "cuda" if ctx.device == "cuda" else "cpu"
    ctx.run([PY, "obtain_CAM_masking.py", "--voc12_root", _toy_root(ctx), "--train_list", _toy_list(ctx, TWO_LIST),
             "--cam_scales", "1.0", "--adv_iter", s["smoke_adv_iter"], "--cam_weights_name", _weights(ctx),
             "--cam_out_dir", out_dir, "--num_workers", 0, "--device", device])
    return {"device": device, "images": len(two), **_expect_files(out_dir, two, ".npy")}


def _cams_dir(ctx: Context) -> str:
    return ctx.work_path("passes", "cam")


def _pass_argv(ctx: Context, log_name: str) -> list:
    return [PY, "run_sample.py", "--voc12_root", _toy_root(ctx), "--num_workers", ctx.settings["num_workers"],
            "--log_name", ctx.work_path("passes", log_name), *_device_flag(ctx)]


def step_make_cam_pass(ctx: Context) -> dict:
    _require_toy(ctx)
    names = _read_list(_toy_list(ctx, SMOKE_LIST))
    _fresh(_cams_dir(ctx))
    ctx.run([*_pass_argv(ctx, "make_cam"), "--train_list", _toy_list(ctx, SMOKE_LIST), "--cam_scales", "1.0", "0.5",
             "--cam_weights_name", _weights(ctx), "--cam_out_dir", _cams_dir(ctx), "--make_cam_pass", "True"])
    return {"images": len(names), **_expect_files(_cams_dir(ctx), names, ".npy")}


def _irn_weights(ctx: Context) -> str:
    return ctx.work_path("passes", "irn_random.pth")


def write_random_irn(path: str) -> None:
    """A seeded random IRN state dict (what make_sem_seg reads): the pass's device handling, not its quality."""
    from advcam.nets.resnet50_irn import EdgeDisplacement
    torch.manual_seed(0)
    net = EdgeDisplacement()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save({k: v.cpu() for k, v in net.state_dict().items()}, path)


def step_make_sem_seg_pass(ctx: Context) -> dict:
    _require_toy(ctx)
    names = _read_list(_toy_list(ctx, SMOKE_LIST))
    if not all(os.path.isfile(os.path.join(_cams_dir(ctx), n + ".npy")) for n in names):
        raise StepError("no CAMs of the smoke images: the step make_cam_pass did not succeed")
    write_random_irn(_irn_weights(ctx))
    out_dir = ctx.work_path("passes", "sem_seg")
    _fresh(out_dir)
    ctx.run([*_pass_argv(ctx, "make_sem_seg"), "--infer_list", _toy_list(ctx, SMOKE_LIST), "--cam_out_dir",
             _cams_dir(ctx), "--irn_weights_name", _irn_weights(ctx), "--irn_infer_pad", ctx.settings["irn_infer_pad"],
             "--sem_seg_out_dir", out_dir, "--make_sem_seg_pass", "True"])
    return {"images": len(names), **_expect_files(out_dir, names, ".png")}


def write_calibrated_resnet101(path: str, device: str, image_paths: Sequence[str], size: int = 224) -> None:
    """A seeded random ResNet-101 state dict (torchvision's format) whose BatchNorm statistics are those of its own
    activations on ``image_paths`` (DeepLab-v2's dilated backbone, ImageNet-normalised ``size`` squares): DeepLab v2
    freezes BN, and with the untouched statistics (mean 0, variance 1) a random ResNet-101's activations grow through
    its 33 blocks until the first loss is ~1e5 and the next NaN (seen on an H200); statistics taken on Gaussian noise
    leave the features of real, smooth images ~80 times too large. It stands in for the ImageNet file a GPU box
    without internet lacks: the pass's device handling and speed, not its quality."""
    from PIL import Image

    from advcam.imutils import normalize
    from advcam.nets.deeplab_v2 import dilated_resnet
    torch.manual_seed(0)
    net = dilated_resnet(101).to(device).train()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # a cumulative average over the batches
    batch = [normalize(np.asarray(Image.open(p).convert("RGB").resize((size, size)), dtype=np.float32))
             for p in image_paths]
    x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).contiguous().to(device)
    with torch.no_grad():
        for chunk in x.split(8):
            net(chunk)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save({k: v.cpu() for k, v in net.state_dict().items()}, path)


def step_train_seg_steps(ctx: Context) -> dict:
    s = ctx.settings
    _require_toy(ctx, weights=False)
    weights = ctx.work_path("passes", "seg", "seg.pth")
    for path in (weights, weights + ".ckpt"):
        if os.path.exists(path):
            os.remove(path)
    if s["seg_network"] == "efficientnet_lite0_seg":
        extra = ["--seg_train_backbone", "False"]  # the Lite0 weights ship with a package
    else:  # no download on a GPU box without internet: calibrated random weights in torchvision's format
        backbone = ctx.work_path("passes", "seg", "resnet101_random_calibrated.pth")
        names = _read_list(_toy_list(ctx, SUBSET_LIST))
        images = [os.path.join(_toy_root(ctx), "JPEGImages", n + ".jpg") for n in names]
        write_calibrated_resnet101(backbone, ctx.device, images)
        # From random weights the recipe's lr diverges (loss ~1e3, then ~1e6, then NaN by the third iteration, on
        # an H200 and on the CPU): the check runs the recipe's iterations (the same kernels and memory) at 1e-6.
        extra = ["--seg_pretrained", backbone, "--seg_learning_rate", 1e-6]
    t0 = time.monotonic()
    ctx.run([*_pass_argv(ctx, "train_seg"), "--seg_network", s["seg_network"], *extra,
             "--seg_label_dir", os.path.join(_toy_root(ctx), "SegmentationClass"),
             "--seg_train_list", _toy_list(ctx, SUBSET_LIST), "--seg_num_iters", s["seg_iters"],
             "--seg_batch_size", s["seg_batch"], "--seg_crop_size", s["seg_crop"], "--seg_checkpoint_every",
             s["seg_iters"], "--seg_weights_name", weights, "--seed", 0, "--train_seg_pass", "True"])
    seconds = time.monotonic() - t0
    if not os.path.isfile(weights):
        raise StepError(f"train_seg wrote no {weights}")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    ckpt = torch.load(weights + ".ckpt", map_location="cpu", weights_only=False)
    return {"network": s["seg_network"], "iterations": int(ckpt["iteration"]), "batch": s["seg_batch"],
            "crop": s["seg_crop"], "seconds_process": seconds, "tensors": len(state),
            "finite": bool(all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()))}


SEMI_PAPER_STEPS = 72_960  # 80 epochs over VOC's 9,118 unlabelled images at 10 a step (1,464 labelled)


def step_train_semi_steps(ctx: Context) -> dict:
    s = ctx.settings
    _require_toy(ctx, weights=False)
    short, long = s["semi_iters"]
    seconds = {}
    for iters in (short, long):
        weights = ctx.work_path("passes", "semi", f"semi_{iters}.pth")
        for path in (weights, weights + ".ckpt"):
            if os.path.exists(path):
                os.remove(path)
        extra = ["--semi_pretrained", "none"] if s["semi_network"] == "cct_resnet50" else []  # no download
        t0 = time.monotonic()
        ctx.run([*_pass_argv(ctx, "train_semi"), "--semi_network", s["semi_network"], *extra,
                 "--semi_mode", "cct_weak", "--semi_train_list", _toy_list(ctx, "train"),
                 "--semi_labeled_list", _toy_list(ctx, SUBSET_LIST),
                 "--semi_weak_label_dir", os.path.join(_toy_root(ctx), "SegmentationClass"),
                 "--semi_num_iters", iters, "--semi_batch_size", s["semi_batch"], "--semi_unlabeled_batch_size",
                 s["semi_batch"], "--semi_crop_size", s["semi_crop"], "--semi_val_every", 0,
                 "--semi_checkpoint_every", iters, "--semi_weights_name", weights, "--seed", 0,
                 "--train_semi_pass", "True"])
        seconds[iters] = time.monotonic() - t0
        if not os.path.isfile(weights):
            raise StepError(f"train_semi wrote no {weights}")
    per_step = (seconds[long] - seconds[short]) / (long - short)
    return {"network": s["semi_network"], "batch": f"{s['semi_batch']}+{s['semi_batch']}", "crop": s["semi_crop"],
            "steps": [short, long], "seconds_process": [seconds[short], seconds[long]], "s_per_step": per_step,
            "projected_hours_paper_schedule": per_step * SEMI_PAPER_STEPS / 3600}


def _fresh(folder: str) -> None:
    if os.path.isdir(folder):
        shutil.rmtree(folder)


def _expect_files(folder: str, names: Sequence[str], suffix: str) -> dict:
    """{"files": how many of ``<folder>/<name><suffix>`` exist}; a StepError when one is missing."""
    missing = [n for n in names if not os.path.isfile(os.path.join(folder, n + suffix))]
    if missing:
        raise StepError(f"{len(missing)} of {len(names)} outputs missing in {folder}, e.g. {missing[0]}{suffix}")
    return {"files": len(names)}


def _gpu_count(ctx: Context) -> int:
    return torch.cuda.device_count() if ctx.device == "cuda" else 0


def multi_gpu_skip(ctx: Context) -> dict | None:
    """The figures of a multi-GPU step on a machine with fewer than 2 GPUs: it is skipped (and counts as done)."""
    n = _gpu_count(ctx)
    return None if n >= 2 else {"skipped": f"needs 2 or more GPUs, {n} visible"}


def step_multi_gpu_spawn(ctx: Context) -> dict:
    s = ctx.settings
    skip = multi_gpu_skip(ctx)
    if skip:
        return skip
    _require_toy(ctx)
    out_dir = ctx.work_path("passes", "spawn")
    _fresh(out_dir)
    t0 = time.monotonic()
    ctx.run([PY, "obtain_CAM_masking.py", "--voc12_root", _toy_root(ctx), "--train_list", _toy_list(ctx, SMOKE_LIST),
             "--cam_scales", "1.0", "--adv_iter", s["smoke_adv_iter"], "--cam_weights_name", _weights(ctx),
             "--num_workers", 0, "--cam_out_dir", out_dir])
    names = _read_list(_toy_list(ctx, SMOKE_LIST))
    out = {"gpus": _gpu_count(ctx), "seconds": time.monotonic() - t0, **_expect_files(out_dir, names, ".npy")}
    single = ctx.work_path("smoke", "single")
    if os.path.isdir(single):  # torchrun_smoke's one-process run of the same images and settings
        cmp = compare_cam_dirs(single, out_dir)
        out.update(vs_one_process=cmp)
        if not (cmp["same_files"] and cmp["keys_equal"] and cmp["max_abs_diff"] is not None
                and cmp["max_abs_diff"] <= SMOKE_ATOL):
            raise StepError("the per-GPU workers' files differ from the one-process run's", partial=out)
    return out


def step_ddp_nccl(ctx: Context) -> dict:
    s = ctx.settings
    skip = multi_gpu_skip(ctx)
    if skip:
        return skip
    _require_toy(ctx, weights=False)
    weights = ctx.work_path("passes", "ddp", "cam.pth")
    if os.path.exists(weights):
        os.remove(weights)
    log_name = ctx.work_path("passes", "ddp", "train_cam")
    ctx.run([PY, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", 2, "run_sample.py",
             "--voc12_root", _toy_root(ctx), "--train_list", _toy_list(ctx, SUBSET_LIST), "--val_list",
             _toy_list(ctx, SMOKE_LIST), "--cam_weights_name", weights, "--log_name", log_name,
             "--no_pretrained", "True", "--cam_crop_size", s["toy_crop"], "--cam_resize_long", *s["toy_resize"],
             "--cam_batch_size", s["ddp_batch"], "--cam_num_epoches", 1, "--cam_optimizer", "adam",
             "--cam_learning_rate", "0.0005", "--num_workers", 0, "--seed", 0, "--train_cam_pass", "True"])
    with open(log_name + ".log", errors="replace") as f:
        text = f.read()
    backend = re.search(r"torchrun job of (\d+) ranks, backend (\w+)", text)
    if not backend or backend.group(2) != "nccl":
        raise StepError(f"the 2-rank job did not run over NCCL ({backend.group(0) if backend else 'no job line'})")
    state = torch.load(weights, weights_only=True)  # no map_location: CUDA tensors would land on the GPU
    devices = sorted({str(v.device) for v in state.values()})
    if devices != ["cpu"]:
        raise StepError(f"the checkpoint holds tensors on {devices}, not only on the CPU")
    return {"ranks": int(backend.group(1)), "backend": backend.group(2), "steps": s["subset"] // s["ddp_batch"],
            "checkpoint_devices": devices}


def step_torchrun_smoke(ctx: Context) -> dict:
    s = ctx.settings
    _require_toy(ctx)
    smoke = ctx.work_path("smoke")
    if os.path.isdir(smoke):
        shutil.rmtree(smoke)
    single, dist, logs = (os.path.join(smoke, d) for d in ("single", "dist", "torchrun_logs"))
    common = ["--voc12_root", _toy_root(ctx), "--train_list", _toy_list(ctx, SMOKE_LIST), "--cam_scales", "1.0",
              "--adv_iter", s["smoke_adv_iter"], "--cam_weights_name", _weights(ctx), "--num_workers", 0,
              *_device_flag(ctx)]
    t0 = time.monotonic()
    ctx.run([PY, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", 2, "--log-dir", logs,
             "--tee", 3, "obtain_CAM_masking.py", *common, "--cam_out_dir", dist])
    seconds_dist = time.monotonic() - t0
    t0 = time.monotonic()
    ctx.run([PY, "obtain_CAM_masking.py", *common, "--cam_out_dir", single])
    seconds_single = time.monotonic() - t0
    cmp = compare_cam_dirs(single, dist)
    names = _read_list(_toy_list(ctx, SMOKE_LIST))
    cmp.update({"ranks": 2, "images": len(names), "seconds_torchrun": seconds_dist, "seconds_single": seconds_single,
                "atol": SMOKE_ATOL, "sharding": sharding_evidence(rank_logs(logs), len(names))})
    cmp["all_files"] = cmp["files_single"] == len(names)
    cmp["close"] = bool(cmp["same_files"] and cmp["all_files"] and cmp["keys_equal"]
                        and cmp["max_abs_diff"] is not None and cmp["max_abs_diff"] <= SMOKE_ATOL)
    if not cmp["close"]:
        raise StepError("the 2-rank run's files differ from the 1-process run's (see the step's partial figures)",
                        partial=cmp)
    if cmp["sharding"]["sharded"] is False:
        raise StepError("each rank processed the whole list (no sharding under torchrun)", partial=cmp)
    return cmp


STEP_FUNCTIONS: dict[str, Callable[[Context], dict]] = {
    "bench_fast_bf16": step_bench_fast_bf16, "mem_scale2_bf16": step_mem_scale2_bf16,
    "bench_fast_fp32": step_bench_fast_fp32, "mem_scale2_fp32": step_mem_scale2_fp32,
    "toy_data": step_toy_data, "toy_train_cam": step_toy_train_cam, "toy_seeds_fp32": step_toy_seeds_fp32,
    "toy_seeds_bf16": step_toy_seeds_bf16, "torchrun_smoke": step_torchrun_smoke,
    "cam_device_flag": step_cam_device_flag, "make_cam_pass": step_make_cam_pass,
    "make_sem_seg_pass": step_make_sem_seg_pass, "train_seg_steps": step_train_seg_steps,
    "train_semi_steps": step_train_semi_steps,
    "multi_gpu_spawn": step_multi_gpu_spawn, "ddp_nccl": step_ddp_nccl,
    "bench_reference": step_bench_reference,
}


# ----------------------------------------------------------------------------------------------
# Helpers: lists, CAM folders, torchrun logs
# ----------------------------------------------------------------------------------------------

def _read_list(path: str) -> list[str]:
    with open(path) as f:
        return [line.split()[0] for line in f if line.strip()]


def _write_list(path: str, names: list[str]) -> None:
    with open(path, "w") as f:
        f.write("".join(n + "\n" for n in names))


def compare_cam_dirs(a: str, b: str) -> dict:
    """Compare the ``<id>.npy`` files of two CAM folders: the same ids, equal "keys", and the largest |a - b| of
    "cam" and "high_res" (null where no file pair has maps of equal shape)."""
    fa = sorted(os.path.basename(p) for p in glob.glob(os.path.join(a, "*.npy")))
    fb = sorted(os.path.basename(p) for p in glob.glob(os.path.join(b, "*.npy")))
    keys_equal, diffs, shapes_equal = True, {"cam": [], "high_res": []}, True
    for name in sorted(set(fa) & set(fb)):
        da, db = load_cam_npy(os.path.join(a, name)), load_cam_npy(os.path.join(b, name))
        if not np.array_equal(np.asarray(da["keys"]), np.asarray(db["keys"])):
            keys_equal = False
            continue
        for k in diffs:
            xa, xb = np.asarray(da[k], np.float64), np.asarray(db[k], np.float64)
            if xa.shape != xb.shape:
                shapes_equal = False
            elif xa.size:
                diffs[k].append(float(np.abs(xa - xb).max()))
            else:
                diffs[k].append(0.0)
    d_cam = max(diffs["cam"], default=None)
    d_high = max(diffs["high_res"], default=None)
    both = [d for d in (d_cam, d_high) if d is not None]
    return {"files_single": len(fa), "files_dist": len(fb), "same_files": fa == fb and bool(fa),
            "keys_equal": keys_equal and bool(set(fa) & set(fb)), "shapes_equal": shapes_equal,
            "max_abs_diff_cam": d_cam, "max_abs_diff_high_res": d_high,
            "max_abs_diff": max(both) if both and shapes_equal else None,
            "identical": bool(both) and max(both) == 0.0 and shapes_equal}


def rank_logs(log_dir: str) -> dict[int, str]:
    """The text each local rank wrote (stdout and stderr), from torchrun's ``--log-dir`` (the files lie in
    ``<log_dir>/<run id>/attempt_<n>/<local rank>/std{out,err}.log``)."""
    texts: dict[int, str] = {}
    for path in sorted(glob.glob(os.path.join(log_dir, "**", "std*.log"), recursive=True)):
        rank_dir = os.path.basename(os.path.dirname(path))
        if rank_dir.isdigit():
            with open(path, errors="replace") as f:
                texts[int(rank_dir)] = texts.get(int(rank_dir), "") + f.read()
    return texts


TQDM_COUNT = re.compile(r"\|\s*(\d+)/(\d+)\s*\[")  # a progress bar's "| done/total ["


def sharding_evidence(texts: dict[int, str], n_images: int) -> dict:
    """How many images each rank's progress bar counted (the total of its last "done/total": the pass's one bar).

    "sharded": true when the totals add up to ``n_images`` and every rank had fewer (an exact split), false when
    every rank counted all of them (each rank ran the whole list), null when the logs do not tell."""
    per_rank: dict[str, int | None] = {}
    for rank, text in sorted(texts.items()):
        counts = TQDM_COUNT.findall(text)
        per_rank[str(rank)] = int(counts[-1][1]) if counts else None
    totals = list(per_rank.values())
    if len(totals) >= 2 and all(t is not None for t in totals):
        if sum(totals) == n_images and all(t < n_images for t in totals):
            sharded: bool | None = True
        elif all(t == n_images for t in totals):
            sharded = False
        else:
            sharded = None
    else:
        sharded = None
    return {"images_per_rank": per_rank, "sharded": sharded}


# ----------------------------------------------------------------------------------------------
# Summary and verdict (from the steps' figures alone)
# ----------------------------------------------------------------------------------------------

def _figures(steps: dict, name: str) -> dict | None:
    step = steps.get(name)
    return step["figures"] if step and step.get("ok") else None


def bench_rows(steps: dict, names: Sequence[str]) -> list[dict]:
    """One row per engine row of the named benchmark steps that succeeded."""
    rows = []
    for name in names:
        fig = _figures(steps, name)
        if not fig:
            continue
        b = fig["bench"]
        for engine, r in b["engines"].items():
            rows.append({"step": name, "engine": "reference" if engine == "reference" else "fast",
                         "row": engine, "precision": r["precision"], "images_per_batch": r["images_per_batch"],
                         "sec_per_image": r["sec_per_image"], "classes_mean": b["classes_mean"],
                         "sec_per_class": r["sec_per_image"] / b["classes_mean"], "images": b["images"],
                         "scales": b["scales"], "size_hw": b["size_hw"], "peak_mib": r["peak_mib"],
                         "reserved_mib": r["reserved_mib"], "max_abs_diff_vs_reference": r["max_abs_diff_vs_reference"],
                         "device_name": b["device_name"]})
    return rows


def projection(row: dict) -> dict:
    """Hours for VOC train_aug at the speed of ``row``, scaled to VOC's classes per image."""
    hours = VOC_TRAIN_AUG_IMAGES * row["sec_per_image"] * (VOC_CLASSES_PER_IMAGE / row["classes_mean"]) / 3600
    return {"images": VOC_TRAIN_AUG_IMAGES, "sec_per_image": row["sec_per_image"],
            "classes_per_image_measured": row["classes_mean"], "classes_per_image_voc": VOC_CLASSES_PER_IMAGE,
            "hours": hours, "precision": row["precision"], "images_per_batch": row["images_per_batch"],
            "step": row["step"]}


PROJECTION_FORMULA = ("hours = images * sec_per_image * (classes_per_image_voc / classes_per_image_measured) / 3600 "
                      "(the climb's time grows with the classes climbed; the climbing alone, as bench_advcam.py times "
                      "it: no JPEG decoding or .npy writing)")


def _target(value: float | None, op: str, limit: float, unit: str, what: str) -> dict:
    passed = None if value is None else (value >= limit if op == ">=" else value < limit if op == "<" else
                                         value <= limit)
    return {"what": what, "value": value, "target": f"{op} {limit:g} {unit}".strip(), "pass": passed}


CUDA_PATH_STEPS = ("cam_device_flag", "make_cam_pass", "make_sem_seg_pass", "train_seg_steps", "multi_gpu_spawn",
                   "ddp_nccl")


def cuda_paths(steps: dict) -> dict:
    """Each step that drives a pass's device handling: "ok", "skipped: <why>", "not run", or its error."""
    out = {}
    for name in CUDA_PATH_STEPS:
        step = steps.get(name)
        if step is None:
            out[name] = "not run"
        elif not step.get("ok"):
            out[name] = step.get("error", "failed")
        elif step["figures"].get("skipped"):
            out[name] = "skipped: " + step["figures"]["skipped"]
        else:
            out[name] = "ok"
    return out


def summarize(steps: dict, tiny: bool) -> dict:
    """The summary sections and the verdict, computed from ``steps`` (a step that failed leaves nulls)."""
    out: dict = {}
    rows = bench_rows(steps, ["bench_fast_bf16", "bench_fast_fp32", "bench_reference"])
    out["device_name"] = rows[0]["device_name"] if rows else None
    out["benchmark"] = {"rows": rows, "note": "sec_per_class = sec_per_image / classes_mean; fp32 rows run TF32 "
                        "convolutions on CUDA (torch's default); every row is a measurement of its step"}
    bf16 = [r for r in rows if r["step"] == "bench_fast_bf16"]
    best = min(bf16, key=lambda r: r["sec_per_image"]) if bf16 else None
    ref = next((r for r in rows if r["step"] == "bench_reference" and r["engine"] == "reference"), None)
    fast_same = next((r for r in rows if r["step"] == "bench_reference" and r["engine"] == "fast"), None)
    speedup = ref["sec_per_class"] / best["sec_per_class"] if ref and best else None
    out["speed"] = {
        "reference_sec_per_class": ref["sec_per_class"] if ref else None,
        "best_bf16_sec_per_class": best["sec_per_class"] if best else None,
        "best_bf16_images_per_batch": best["images_per_batch"] if best else None,
        "speedup_bf16_vs_reference": speedup,
        "formula": "speedup = reference sec_per_class (bench_reference) / best bf16 sec_per_class (bench_fast_bf16)",
        "fp32_fast_vs_reference_same_images": (ref["sec_per_class"] / fast_same["sec_per_class"]
                                               if ref and fast_same else None),
        "fp32_fast_vs_reference_max_abs_diff": fast_same["max_abs_diff_vs_reference"] if fast_same else None,
    }
    out["projection"] = {"formula": PROJECTION_FORMULA, "best_bf16": projection(best) if best else None,
                         "rows": [projection(r) for r in rows]}

    mem_rows = []
    for r in bench_rows(steps, ["mem_scale2_bf16", "mem_scale2_fp32"]):
        mem_rows.append({k: r[k] for k in ("step", "precision", "images_per_batch", "peak_mib", "reserved_mib",
                                           "scales", "size_hw", "images")})
    chosen = next((m for m in mem_rows if best and m["precision"] == best["precision"]
                   and m["images_per_batch"] == best["images_per_batch"]), None)
    mem_kind = None
    for name in ("mem_scale2_bf16", "mem_scale2_fp32"):
        if _figures(steps, name):
            mem_kind = _figures(steps, name)["bench"]["memory"]
    out["peak_memory_scale2"] = {
        "rows": mem_rows, "kind": mem_kind, "max_batch_pixels": PIPELINE_MAX_BATCH_PIXELS,
        "chosen_config_peak_mib": chosen["peak_mib"] if chosen else None,
        "max_peak_mib": max((m["peak_mib"] for m in mem_rows), default=None),
        "note": ("peak allocated by tensors; the CUDA context and the allocator's cache (reserved_mib) come on top"
                 if mem_kind and "cuda" in mem_kind else "CPU: the peak RSS includes torch and the model"),
    }

    s32, s16 = _figures(steps, "toy_seeds_fp32"), _figures(steps, "toy_seeds_bf16")
    seeds = {"fp32": s32["miou"] if s32 else None, "bf16": s16["miou"] if s16 else None,
             "threshold_fp32": s32["threshold"] if s32 else None, "threshold_bf16": s16["threshold"] if s16 else None,
             "images": (s32 or s16 or {}).get("images"), "list": SUBSET_LIST}
    seeds["bf16_minus_fp32"] = seeds["bf16"] - seeds["fp32"] if s32 and s16 else None
    if s32 and s16:
        cmp = compare_cam_dirs(s32["cam_out_dir"], s16["cam_out_dir"])
        seeds["maps_max_abs_diff"] = cmp["max_abs_diff"]
        seeds["same_files"] = cmp["same_files"]
    out["toy_seed_miou"] = seeds
    smoke_step = steps.get("torchrun_smoke", {})
    out["torchrun_smoke"] = _figures(steps, "torchrun_smoke") or {
        "ok": False, "error": smoke_step.get("error", "not run"), "partial": smoke_step.get("partial")}

    out["cuda_paths"] = cuda_paths(steps)
    out["semi_training"] = _figures(steps, "train_semi_steps") or {
        "ok": False, "error": steps.get("train_semi_steps", {}).get("error", "not run")}

    verdict = {
        "speed_10x_bf16": _target(speedup, ">=", TARGET_SPEEDUP, "x",
                                  "fast engine, bf16, vs the literal (reference) engine, per class climbed"),
        "train_aug_under_1h": _target(out["projection"]["best_bf16"]["hours"] if best else None, "<", TARGET_HOURS,
                                      "h", "projected hours for the 10,582 train_aug images, best bf16 setting"),
        "scale2_within_16GiB": _target(out["peak_memory_scale2"]["chosen_config_peak_mib"], "<=", TARGET_MEMORY_MIB,
                                       "MiB", "peak memory at scale 2.0 of the best bf16 setting"),
    }
    passes = [v["pass"] for v in verdict.values()]
    verdict["all_targets_met"] = None if None in passes else all(passes)
    verdict["torchrun_smoke_ok"] = bool(_figures(steps, "torchrun_smoke"))
    ran = [v for v in out["cuda_paths"].values() if v != "not run" and not str(v).startswith("skipped")]
    verdict["cuda_paths_ok"] = all(v == "ok" for v in ran) if ran else None
    verdict["meaningful"] = not tiny
    verdict["note"] = ("tiny mode: toy sizes (and the CPU where there is no GPU), a check that this script works; "
                       "its figures say nothing about the targets" if tiny else
                       "GPU figures at VOC size; the memory target is read as 16 GiB of max_memory_allocated")
    out["verdict"] = verdict
    return out


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="folder for gpu_check.json, gpu_check.log and the step files")
    p.add_argument("--work", default=None,
                   help="folder for the toy set, classifier (~100 MB), seeds and smoke outputs (default: --out)")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tiny", action="store_true", help="toy sizes (automatic on the CPU)")
    p.add_argument("--full", action="store_true",
                   help="the GPU sizes even on the CPU (hours there: only to try the GPU mode's commands, with "
                        "--steps and a small --budget_s)")
    p.add_argument("--budget_s", type=float, default=None,
                   help="seconds for all selected steps (default 540 on a GPU, 480 in tiny mode)")
    p.add_argument("--step_budget", action="append", default=[], metavar="NAME=S",
                   help="this step's budget in seconds (repeatable); the other steps share what is left of "
                        "--budget_s")
    p.add_argument("--steps", type=str, default=None,
                   help=f"comma list of steps to run, in the order given (default all: {','.join(STEP_NAMES)}); "
                        "the figures of the others are kept from an earlier gpu_check.json of the same mode in "
                        "--out, if any")
    return p


def environment(device: str) -> dict:
    env = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda_available": torch.cuda.is_available(),
           "cuda_devices": torch.cuda.device_count() if torch.cuda.is_available() else 0,
           "cpu_count": os.cpu_count(), "device": device, "torch_cuda": torch.version.cuda,
           "distributed_support": sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "advcam",
                                         "*.py")) if "distributed" in open(p).read())}
    if device == "cuda" and shutil.which("nvidia-smi"):
        try:
            env["nvidia_smi"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=20).stdout.strip()
        except (subprocess.SubprocessError, OSError) as e:
            env["nvidia_smi"] = f"failed: {e}"
    return env


def _clean(obj):
    """``obj`` with NaN and infinities as null (JSON has neither) and tuples as lists."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def write_json(path: str, data: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(_clean(data), f, indent=1, allow_nan=False, default=str)
    os.replace(tmp, path)


def _fmt(x, spec: str = ".3g") -> str:
    return "n/a" if x is None else format(x, spec)


def print_summary(ctx: Context, report: dict) -> None:
    """The figures and the verdict in a few lines (console and log)."""
    for r in report["benchmark"]["rows"]:
        ctx.say(f"  {r['step']:<16} {r['row']:<9} {r['precision']}  {r['sec_per_image']:.3f} s/image "
                f"({r['sec_per_class']:.3f} s/class), peak {_fmt(r['peak_mib'], '.0f')} MiB")
    for m in report["peak_memory_scale2"]["rows"]:
        ctx.say(f"  scale 2.0 peak: {m['precision']} images_per_batch {m['images_per_batch']}: "
                f"{_fmt(m['peak_mib'], '.0f')} MiB (reserved {_fmt(m['reserved_mib'], '.0f')})")
    seeds, smoke = report["toy_seed_miou"], report["torchrun_smoke"]
    ctx.say(f"  toy seed mIoU on {seeds['images']} images: fp32 {_fmt(seeds['fp32'], '.2f')}, "
            f"bf16 {_fmt(seeds['bf16'], '.2f')} (maps max abs diff {_fmt(seeds.get('maps_max_abs_diff'), '.1e')})")
    ctx.say(f"  torchrun smoke: {'ok' if smoke.get('close') else 'FAILED'}; max abs diff "
            f"{_fmt(smoke.get('max_abs_diff'), '.1e')}, sharding {smoke.get('sharding', {}).get('images_per_rank')}")
    for name, state in report.get("cuda_paths", {}).items():
        ctx.say(f"  {name}: {state}")
    v = report["verdict"]
    for key in ("speed_10x_bf16", "train_aug_under_1h", "scale2_within_16GiB"):
        ctx.say(f"  verdict {key}: {_fmt(v[key]['value'], '.4g')} (target {v[key]['target']}): "
                f"{ {True: 'pass', False: 'FAIL', None: 'not measured'}[v[key]['pass']] }")
    if not v["meaningful"]:
        ctx.say("  (tiny mode: toy sizes; these figures are no verdict on the targets)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        build_parser().error("--device cuda: no CUDA device is visible")
    tiny = args.tiny or (args.device == "cpu" and not args.full)
    settings = dict(TINY_SETTINGS if tiny else GPU_SETTINGS)
    selected = STEP_NAMES if args.steps is None else [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = sorted(set(selected) - set(STEP_NAMES))
    if unknown:
        build_parser().error(f"--steps: unknown {', '.join(unknown)}; the steps are {', '.join(STEP_NAMES)}")
    budget_s = args.budget_s if args.budget_s is not None else settings["budget_s"]
    fixed: dict[str, float] = {}
    for item in args.step_budget:
        name, _, value = item.partition("=")
        try:
            fixed[name] = float(value)
        except ValueError:
            build_parser().error(f"--step_budget {item!r}: give NAME=SECONDS")
        if name not in selected or fixed[name] <= 0:
            build_parser().error(f"--step_budget {item!r}: {name} is not a selected step, or the seconds are not > 0")
    shares = {name: share for name, share in STEPS if name in selected and name not in fixed}
    if shares and sum(fixed.values()) >= budget_s:
        build_parser().error(f"--step_budget: {sum(fixed.values()):g} s leave nothing of --budget_s {budget_s:g} "
                             "for the other steps")
    scale = (budget_s - sum(fixed.values())) / sum(shares.values()) if shares else 0.0
    budgets = {name: fixed[name] if name in fixed else dict(STEPS)[name] * scale for name in selected}
    budget_s = sum(budgets.values())

    os.makedirs(args.out, exist_ok=True)
    json_path = os.path.join(args.out, "gpu_check.json")
    steps: dict = {}
    if args.steps is not None and os.path.isfile(json_path):
        with open(json_path) as f:
            earlier = json.load(f)
        if earlier.get("mode") == ("tiny" if tiny else "gpu"):
            steps = {k: dict(v, from_earlier_run=True) for k, v in earlier.get("steps", {}).items()
                     if k not in selected}
    t_start = time.monotonic()
    log = open(os.path.join(args.out, "gpu_check.log"), "a")
    ctx = Context(out=os.path.abspath(args.out), work=os.path.abspath(args.work or args.out), device=args.device,
                  tiny=tiny, settings=settings, log=log)
    report = {"schema": "advcam gpu_check 1", "finished": False, "mode": "tiny" if tiny else "gpu",
              "started": datetime.datetime.now().isoformat(timespec="seconds"), "budget_s": budget_s,
              "environment": environment(args.device), "settings": settings, "step_budgets_s": budgets,
              "steps": steps}
    ctx.say(f"gpu_check: {report['mode']} mode on {args.device}, {len(selected)} steps, budget {budget_s:.0f} s, "
            f"out {args.out}")
    write_json(json_path, report)
    end = t_start + budget_s
    signal.signal(signal.SIGTERM, _on_sigterm)
    terminated = False
    for i, name in enumerate(selected):
        later = sum(budgets[n] for n in selected[i + 1:])
        ctx.deadline = end - later  # its own budget plus what the steps before it left unused
        ctx.commands = []
        allotted = ctx.deadline - time.monotonic()
        ctx.say(f"[{name}] start (limit {allotted:.0f} s, elapsed {time.monotonic() - t_start:.0f} s)")
        t0 = time.monotonic()
        entry: dict = {"ok": False, "limit_s": allotted}
        try:
            entry["figures"] = STEP_FUNCTIONS[name](ctx)
            entry["ok"] = True
        except StepError as e:
            entry["error"] = str(e)
            if e.partial is not None:
                entry["partial"] = e.partial
        except Terminated:
            entry["error"] = "terminated (SIGTERM) during this step"
            terminated = True
        except Exception as e:  # a bug in this script's step: record it and go on
            entry["error"] = f"{type(e).__name__}: {e}"
            log.write(traceback.format_exc())
        entry["seconds"] = time.monotonic() - t0
        entry["commands"] = list(ctx.commands)
        steps[name] = entry
        status = "ok" if entry["ok"] else f"FAILED: {entry['error']}"
        ctx.say(f"[{name}] {status} in {entry['seconds']:.1f} s (elapsed {time.monotonic() - t_start:.0f} s)")
        report["elapsed_s"] = time.monotonic() - t_start
        write_json(json_path, report)
        if terminated:
            break
    try:
        report.update(summarize(steps, tiny))
    except Exception as e:  # a bug here must not lose the steps' figures, already in the JSON
        report["summary_error"] = f"{type(e).__name__}: {e}"
        log.write(traceback.format_exc())
        report["verdict"] = {"all_targets_met": None, "error": report["summary_error"]}
    report["elapsed_s"] = time.monotonic() - t_start
    report["finished"] = True
    write_json(json_path, report)
    ctx.say(f"gpu_check: done in {report['elapsed_s']:.0f} s; figures in {json_path}")
    try:
        print_summary(ctx, report)
    except Exception as e:  # the JSON is written; a summary line must not turn a good run into a crash
        ctx.say(f"  (summary lines failed: {type(e).__name__}: {e})")
    log.close()
    if terminated:
        return 143
    return 0 if all(steps[n]["ok"] for n in selected) else 1


if __name__ == "__main__":
    sys.exit(main())
