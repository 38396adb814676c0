"""A run report: per-image figures, the climbing animation, the threshold sweep, per-class IoU and ``report.html``.

Reads a run's folders (given explicitly, or found under one output folder in the layout of the toy demo:
``cam/``, ``cam_adv_mask/`` (with ``cam_adv_mask/steps/`` from ``obtain_CAM_masking.py --save_steps``),
``ir_label/``, ``sem_seg/``, ``seg/``, ``results.json``, ``demo.log``) and the dataset's root (images and ground
truth) through the data layer :mod:`advcam.datasets`: PASCAL VOC 2012 (21 labels) or, for a ``--dataset coco14``
run, MS COCO 2014 (81 labels, COCO's class names and image paths). Every number in the report is recomputed from
those files with :mod:`advcam.metrics`; the mIoUs that ``results.json`` recorded are shown next to them.

Entry point: :func:`make_report` (``advcam-report``, ``python -m advcam.tools.report``, is its command line).
"""
from __future__ import annotations

import csv
import dataclasses
import datetime
import html
import json
import logging
import os
import random
import re
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import imageio.v3 as iio  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from advcam.datasets import DATASETS, VOC12, SegData, default_coco_root, get_dataset  # noqa: E402
from advcam.errors import BadInputError, MissingInputError  # noqa: E402
from advcam.evaluation import (  # noqa: E402
    label_confusion,
    load_prediction,
    seed_prediction,
    update_seed_sweep,
)
from advcam.io import atomic_path, load_cam_npy, load_label_png, load_npy_dict  # noqa: E402
from advcam.metrics import VOC_SEG_CLASS_NAMES, ConfusionMatrix, iou, mean_iou  # noqa: E402
from advcam.voc12 import VOC_PALETTE  # noqa: E402

log = logging.getLogger("advcam.report")

ATTRIBUTION_CMAP = "inferno"  # perceptually uniform, dark = 0, yellow = 1
OVERLAY_ALPHA = 0.6  # share of the colour-mapped attribution in an overlay (the rest is the image)
PALETTE = np.asarray(VOC_PALETTE, np.uint8).reshape(256, 3)


# ----------------------------------------------------------------------------------------------
# The run's folders
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Stage:
    """One stage of the pipeline: its name, the folder of its outputs and their kind ("cam" .npy or "label" .png)."""

    name: str
    folder: str
    kind: str  # "cam": <id>.npy CAM dicts, seeds by a background threshold; "label": <id>.png label maps
    evaluated: bool = True  # False for IR labels (255 = "not sure" is part of their meaning)


@dataclasses.dataclass
class RunFolders:
    """Where a run's outputs are; ``None`` for what it does not have. ``voc12_root`` is the root of ``dataset``
    (the ``--coco_root`` of a ``coco14`` run)."""

    voc12_root: str
    cam_dir: str | None = None
    adv_dir: str | None = None
    ir_label_dir: str | None = None
    sem_seg_dir: str | None = None
    seg_dir: str | None = None
    results_json: str | None = None
    log_files: tuple[str, ...] = ()
    out: str | None = None
    steps_dir: str | None = None  # climbing steps (``obtain_CAM_masking.py --save_steps``): <adv_dir>/steps
    dataset: str = "voc12"  # a name of advcam.datasets.DATASETS

    @property
    def data(self) -> SegData:
        """The dataset description (class names, palette, image and ground-truth paths) at the run's root."""
        return get_dataset(self.dataset, self.voc12_root)

    def stages(self) -> list[Stage]:
        """The stages present, in pipeline order."""
        specs = [("CAM", self.cam_dir, "cam", True), ("AdvCAM", self.adv_dir, "cam", True),
                 ("IR label", self.ir_label_dir, "label", False), ("IRN mask", self.sem_seg_dir, "label", True),
                 ("Segmentation", self.seg_dir, "label", True)]
        return [Stage(n, d, k, e) for n, d, k, e in specs if d is not None]


def _output_file(name: str, suffix: str) -> bool:
    """A finished output ``<id><suffix>``: not the hidden temporary file that a killed atomic write leaves."""
    return name.endswith(suffix) and not name.startswith(".")


def _existing_dir(path: str | None) -> str | None:
    return path if path is not None and os.path.isdir(path) else None


def voc_root_from_logs(log_files: Sequence[str]) -> str | None:
    """The ``--voc12_root`` of the last command line recorded in the run's logs (None if none is)."""
    root = None
    for path in log_files:
        with open(path, errors="replace") as f:
            for line in f:
                m = re.search(r"(?:run_sample|obtain_CAM_masking)\.py .*?--voc12_root (\S+)", line)
                if m:
                    root = m.group(1)
    return root


_COMMAND = re.compile(r"(?:run_sample|obtain_CAM_masking|obtain_cam_masking)(?:\.py)? (.*)$")


def _flag_value(args: Sequence[str], flag: str) -> str | None:
    """The value of the last ``flag VALUE`` / ``flag=VALUE`` in a command line's tokens (None if absent)."""
    value = None
    for i, tok in enumerate(args):
        if tok == flag and i + 1 < len(args):
            value = args[i + 1]
        elif tok.startswith(flag + "="):
            value = tok[len(flag) + 1:]
    return value


def dataset_from_logs(log_files: Sequence[str]) -> tuple[str | None, str | None]:
    """(``--dataset``, ``--coco_root``) of the last command line of ``run_sample`` / ``obtain_CAM_masking`` recorded
    in the run's logs (``run_sample.py ...`` or ``python -m advcam.run_sample ...``): the dataset is ``voc12`` for
    a command line without ``--dataset``; (None, None) when the logs record no command line."""
    found: tuple[str | None, str | None] = (None, None)
    for path in log_files:
        with open(path, errors="replace") as f:
            for line in f:
                m = _COMMAND.search(line.rstrip("\n"))
                if m:
                    args = m.group(1).split()
                    found = (_flag_value(args, "--dataset") or "voc12", _flag_value(args, "--coco_root"))
    return found


def _coco_root_ok(root: str | None) -> bool:
    return root is not None and any(os.path.isdir(os.path.join(root, split)) for split in ("train2014", "val2014"))


def find_run_folders(out: str | None = None, voc12_root: str | None = None, *, cam_dir: str | None = None,
                     adv_dir: str | None = None, ir_label_dir: str | None = None, sem_seg_dir: str | None = None,
                     seg_dir: str | None = None, results_json: str | None = None,
                     log_files: Sequence[str] | None = None, steps_dir: str | None = None,
                     dataset: str | None = None, coco_root: str | None = None) -> RunFolders:
    """The run's folders: each given path as is, the rest from the demo layout under ``out`` when it exists there.

    ``dataset`` (``voc12`` or ``coco14``) defaults to ``coco14`` when ``coco_root`` is given, ``voc12`` when
    ``voc12_root`` is, else to the ``--dataset`` of the run's logged command lines (``voc12`` if they name none).
    The root defaults to the ``--voc12_root`` / ``--coco_root`` of those command lines, then to ``$VOC12_ROOT`` /
    ``$COCO_ROOT``. Raises :class:`MissingInputError` for a given folder that does not exist, or when no root of
    the dataset is known; :class:`BadInputError` for a root flag of the other dataset.
    """
    given = dict(cam_dir=cam_dir, adv_dir=adv_dir, ir_label_dir=ir_label_dir, sem_seg_dir=sem_seg_dir, seg_dir=seg_dir,
                 steps_dir=steps_dir)
    for flag, path in given.items():
        if path is not None and not os.path.isdir(path):
            raise MissingInputError(f"--{flag} {path} is not a folder")
    layout = dict(cam_dir="cam", adv_dir="cam_adv_mask", ir_label_dir="ir_label", sem_seg_dir="sem_seg", seg_dir="seg",
                  steps_dir=os.path.join("cam_adv_mask", "steps"))
    if out is not None and not os.path.isdir(out):
        raise MissingInputError(f"--out {out} is not a folder: give the run's output folder (e.g. demo_out)")
    folders = {k: v if v is not None else (_existing_dir(os.path.join(out, layout[k])) if out else None)
               for k, v in given.items()}
    if steps_dir is None and adv_dir is not None:
        folders["steps_dir"] = _existing_dir(os.path.join(adv_dir, "steps"))
    if results_json is None and out and os.path.isfile(os.path.join(out, "results.json")):
        results_json = os.path.join(out, "results.json")
    if results_json is not None and not os.path.isfile(results_json):
        raise MissingInputError(f"--results_json {results_json} not found")
    if log_files is None:
        log_files = sorted(os.path.join(out, f) for f in os.listdir(out) if f.endswith(".log")) if out else []
    for path in log_files:
        if not os.path.isfile(path):
            raise MissingInputError(f"log file {path} not found")
    logged_dataset, logged_coco_root = (None, None) if voc12_root or coco_root else dataset_from_logs(log_files)
    if dataset is None:
        dataset = "coco14" if coco_root is not None else "voc12" if voc12_root is not None else logged_dataset
    dataset = dataset or "voc12"
    if dataset not in DATASETS:
        raise BadInputError(f"--dataset {dataset}: expected one of {', '.join(DATASETS)}")
    if dataset == "coco14":
        if voc12_root is not None:
            raise BadInputError("--voc12_root goes with --dataset voc12; give the COCO root as --coco_root DIR")
        voc12_root = coco_root or logged_coco_root or default_coco_root()
        if not _coco_root_ok(voc12_root):
            raise MissingInputError(f"no COCO root with train2014/ or val2014/ ({voc12_root!r}): give --coco_root "
                                    "(the run's logs do not name one that exists here)")
    else:
        if coco_root is not None:
            raise BadInputError(f"--coco_root goes with --dataset coco14, not {dataset}")
        if voc12_root is None:
            voc12_root = voc_root_from_logs(log_files) or os.environ.get("VOC12_ROOT")
        if voc12_root is None or not os.path.isdir(os.path.join(voc12_root, "JPEGImages")):
            raise MissingInputError(f"no VOC root with JPEGImages/ ({voc12_root!r}): give --voc12_root (the run's "
                                    "logs do not name one that exists here)")
    if not any(v for k, v in folders.items() if k != "steps_dir"):
        raise MissingInputError(f"no run folders found{f' under {out}' if out else ''}: give --out (the layout "
                                "cam/, cam_adv_mask/, ir_label/, sem_seg/, seg/) or the folders themselves")
    return RunFolders(voc12_root=voc12_root, results_json=results_json, log_files=tuple(log_files), out=out,
                      dataset=dataset, **folders)


# ----------------------------------------------------------------------------------------------
# Colours
# ----------------------------------------------------------------------------------------------

def palette_of(data: SegData) -> np.ndarray:
    """The dataset's palette as uint8 [256, 3] (VOC's; COCO's is the same VOC devkit colour map, which extends to
    every label value 0..255)."""
    return np.asarray(data.palette, np.uint8).reshape(256, 3)


def colorize_labels(labels: np.ndarray, palette: np.ndarray = PALETTE) -> np.ndarray:
    """A label map (0..20 for VOC, 0..80 for COCO, 255) as RGB uint8 [H, W, 3] in ``palette`` ([256, 3], default
    the VOC palette; 255 = "ignore" is light beige)."""
    return palette[np.asarray(labels, np.uint8)]


def overlay_attribution(image: np.ndarray, attribution: np.ndarray, cmap: str = ATTRIBUTION_CMAP,
                        alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """An attribution map in [0, 1] [H, W], colour-mapped and blended over the RGB image: uint8 [H, W, 3]."""
    a = np.clip(np.asarray(attribution, np.float64), 0, 1)
    if a.shape != image.shape[:2]:
        raise BadInputError(f"attribution map {a.shape} and image {image.shape[:2]} differ in size")
    colours = matplotlib.colormaps[cmap](a)[..., :3] * 255
    return np.clip((1 - alpha) * image.astype(np.float64) + alpha * colours, 0, 255).round().astype(np.uint8)


def class_legend(labels: Sequence[int], class_names: Sequence[str] = VOC_SEG_CLASS_NAMES,
                 palette: np.ndarray = PALETTE) -> list[Patch]:
    """Legend handles (colour, class name) for the given label values; ``class_names`` indexed by label
    (background first; default VOC's)."""
    return [Patch(facecolor=palette[c] / 255, edgecolor="black", linewidth=0.5, label=class_names[c])
            for c in sorted(set(int(c) for c in labels)) if c < len(class_names)]


# ----------------------------------------------------------------------------------------------
# Evaluation from the files
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class StageScores:
    """A stage's scores over the evaluated images: per-threshold confusion matrices for CAM stages."""

    stage: Stage
    names: list[str]  # the evaluated ids (those with a file and ground truth)
    thresholds: tuple[float, ...] | None  # CAM stages only
    confusions: list[np.ndarray]  # one per threshold (CAM) or one (labels)

    @property
    def mious(self) -> list[float]:
        return [mean_iou(c) for c in self.confusions]

    @property
    def best(self) -> int:
        return int(np.argmax(self.mious))

    @property
    def miou(self) -> float:
        return self.mious[self.best]

    @property
    def threshold(self) -> float | None:
        return None if self.thresholds is None else self.thresholds[self.best]

    @property
    def ious(self) -> np.ndarray:
        """Per-class IoU [num_seg_classes] at the best threshold (NaN for classes absent from prediction and ground
        truth)."""
        return iou(self.confusions[self.best])


def _suffix(stage: Stage) -> str:
    return ".npy" if stage.kind == "cam" else ".png"


def score_stage(stage: Stage, data: SegData | str, names: Sequence[str],
                thresholds: Sequence[float] | None = None) -> StageScores:
    """Confusion matrices of ``stage`` against the ground truth of ``data`` (a dataset, or a VOC root) over
    ``names`` (ids without a file are left out).

    CAM stages are swept over the background ``thresholds`` (default: the dataset's ``eval_cam`` sweep) as
    ``eval_cam`` does (foreground where the largest class map exceeds the threshold; ties go to background); label
    stages are read as ``eval_sem_seg`` reads them (255 counts as background)."""
    if isinstance(data, str):
        data = VOC12(data)
    thresholds = data.cam_eval_thresholds if thresholds is None else thresholds
    present = [n for n in names if os.path.isfile(os.path.join(stage.folder, n + _suffix(stage)))]
    if stage.kind == "cam":
        confs = [ConfusionMatrix(data.num_seg_classes) for _ in thresholds]
        for name in present:
            d = load_cam_npy(os.path.join(stage.folder, name + ".npy"))
            update_seed_sweep(confs, thresholds, d, data.load_seg_label(name),
                              os.path.join(stage.folder, name + ".npy"))
        return StageScores(stage, present, tuple(thresholds), [c.matrix for c in confs])
    return StageScores(stage, present, None, [label_confusion(data, present, stage.folder)])


def recorded_result(results: dict, stage: Stage) -> dict | None:
    """The ``results.json`` entry of a stage: key ``eval_cam:<folder>`` / ``eval_sem_seg:<folder>`` with the same
    folder (compared as real paths, else by the folder's last two path components when that is unambiguous)."""
    kind = "eval_cam" if stage.kind == "cam" else "eval_sem_seg"
    entries = [(k.split(":", 1)[1], v) for k, v in results.items() if k.startswith(kind + ":")]
    for folder, v in entries:
        if os.path.realpath(folder) == os.path.realpath(stage.folder):
            return v
    tail = os.path.join(*os.path.normpath(stage.folder).split(os.sep)[-2:])
    matches = [v for folder, v in entries if os.path.normpath(folder).endswith(tail)]
    return matches[0] if len(matches) == 1 else None


# ----------------------------------------------------------------------------------------------
# Logs: settings and timings
# ----------------------------------------------------------------------------------------------

_LINE = re.compile(r"^(\d\d):(\d\d):(\d\d) (\S+): (.*)$")


@dataclasses.dataclass
class LogSummary:
    """What a run's log files say: the command lines and settings lines, and how long each pass took."""

    commands: list[str]
    settings: list[str]
    timings: list[tuple[str, str, float]]  # (pass, started at, seconds)


def summarize_logs(log_files: Sequence[str]) -> LogSummary:
    """Command lines (``run_sample.py ...``), settings lines and pass durations from ``advcam`` log files.

    A pass starts at its ``step.<name>:`` line (``run_sample.py``) or ``AdvCAM settings:`` line
    (``obtain_CAM_masking.py``) and ends with the last line before the next pass or command line starts.
    """
    commands: list[str] = []
    settings: list[str] = []
    timings: list[tuple[str, str, float]] = []
    for path in log_files:
        current: list | None = None  # [name, started, start seconds, last seconds]
        day = 0
        last = None
        with open(path, errors="replace") as f:
            lines = f.read().splitlines()
        for line in lines:
            m = _LINE.match(line)
            if not m:
                continue
            secs = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + int(m.group(3)) + day
            if last is not None and secs < last - 600:  # the clock passed midnight
                day += 86400
                secs += 86400
            last = secs
            msg = m.group(5)
            start = None
            if msg.startswith(("run_sample.py ", "obtain_CAM_masking.py ")):
                commands.append(msg)
            elif msg.startswith("step."):
                start = msg.split(":", 1)[0][len("step."):]
            elif msg.startswith("AdvCAM settings:"):
                settings.append(msg)
                start = "make_advcam (obtain_CAM_masking.py)"
            if (start is not None or msg.startswith(("run_sample.py ", "obtain_CAM_masking.py "))) and current:
                timings.append((current[0], current[1], current[3] - current[2]))
                current = None
            if start is not None:
                current = [start, line[:8], secs, secs]
            elif current is not None:
                current[3] = secs
        if current:
            timings.append((current[0], current[1], current[3] - current[2]))
    return LogSummary(commands, settings, timings)


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------

def _save(fig, path: str, dpi: int = 100) -> str:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return path


def _attribution(cam_dict: dict) -> np.ndarray:
    """Max over the image's classes of the max-normalised "high_res" maps: [H, W] in [0, 1]."""
    hr = np.asarray(cam_dict["high_res"], np.float64)
    return hr.max(0) if len(hr) else np.zeros(hr.shape[1:])


def image_panels(folders: RunFolders, name: str, seed_thresholds: dict[str, float]) -> list[tuple[str, np.ndarray]]:
    """The panels of one image's figure, (title, RGB uint8 [H, W, 3]), for the stages that have the image."""
    data = folders.data
    names, palette = data.seg_class_names, palette_of(data)
    image = data.load_image(name)
    panels = [("image", image)]
    seeds = []
    for stage in folders.stages():
        path = os.path.join(stage.folder, name + _suffix(stage))
        if not os.path.isfile(path):
            continue
        if stage.kind == "cam":
            d = load_cam_npy(path)
            classes = ", ".join(names[int(k) + 1] for k in np.asarray(d["keys"]))
            panels.append((f"{stage.name} ({classes or 'no class'})", overlay_attribution(image, _attribution(d))))
            th = seed_thresholds.get(stage.name, 0.25)
            seeds.append((f"{stage.name} seed (bg {th:.2f})", colorize_labels(seed_prediction(d, th), palette)))
        else:
            labels = (np.asarray(load_prediction(stage.folder, name, data.num_seg_classes)) if stage.evaluated
                      else load_label_png(path, "IR label", "rerun the cam_to_ir_label pass"))
            panels.append((stage.name, colorize_labels(labels, palette)))
    # seeds after the attribution maps, before the label stages
    n_cam = 1 + sum(1 for s in folders.stages() if s.kind == "cam"
                    and os.path.isfile(os.path.join(s.folder, name + ".npy")))
    panels[n_cam:n_cam] = seeds
    if os.path.isfile(data.gt_path(name)):
        panels.append(("ground truth", colorize_labels(data.load_seg_label(name), palette)))
    return panels


def image_figure(folders: RunFolders, name: str, path: str, seed_thresholds: dict[str, float]) -> str:
    """One image's figure: image, CAM and AdvCAM overlays, their seeds, IR label, IRN mask, segmentation and ground
    truth side by side, with a legend of the classes shown. Returns ``path``."""
    panels = image_panels(folders, name, seed_thresholds)
    h, w = panels[0][1].shape[:2]
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(2.3 * n, 2.3 * h / w + 0.9), squeeze=False)
    labels_seen: set[int] = set()
    for ax, (title, rgb) in zip(axes[0], panels, strict=True):
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.set_axis_off()
    for stage_labels in _labels_in(folders, name):
        labels_seen |= stage_labels
    fig.suptitle(name, fontsize=9, x=0.01, ha="left")
    data = folders.data
    palette, ignore = palette_of(data), data.ignore_label
    handles = class_legend(sorted(labels_seen - {ignore}), data.seg_class_names, palette)
    if ignore in labels_seen:
        handles.append(Patch(facecolor=palette[ignore] / 255, edgecolor="black", linewidth=0.5,
                             label=f"ignore / not sure ({ignore})"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8) or 1, fontsize=7, frameon=False)
    sm = plt.cm.ScalarMappable(cmap=ATTRIBUTION_CMAP, norm=plt.Normalize(0, 1))
    fig.subplots_adjust(left=0.01, right=0.96, top=0.8, bottom=0.16, wspace=0.05)
    cax = fig.add_axes((0.965, 0.2, 0.008, 0.55))
    fig.colorbar(sm, cax=cax).ax.tick_params(labelsize=6)
    return _save(fig, path)


def _labels_in(folders: RunFolders, name: str) -> list[set[int]]:
    """The label values of the image's ground truth, label stages and seeds (for the legend)."""
    out = []
    data = folders.data
    if os.path.isfile(data.gt_path(name)):
        out.append(set(np.unique(data.load_seg_label(name)).tolist()))
    for stage in folders.stages():
        path = os.path.join(stage.folder, name + _suffix(stage))
        if not os.path.isfile(path):
            continue
        if stage.kind == "cam":
            out.append({0} | {int(k) + 1 for k in np.asarray(load_cam_npy(path)["keys"])})
        else:
            out.append(set(np.unique(load_label_png(path, "label map", "rerun the pass that writes it")).tolist()))
    return out


def sweep_figure(scores: Sequence[StageScores], path: str) -> dict[str, list[float]]:
    """mIoU (%) against the background threshold for each CAM stage, best marked. Returns the plotted data
    {"threshold": [...], "<stage>": [mIoU fractions]} (also written beside the figure as ``.csv``)."""
    cams = [s for s in scores if s.thresholds is not None]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    data: dict[str, list[float]] = {"threshold": list(cams[0].thresholds) if cams else []}
    for s in cams:
        ax.plot(s.thresholds, [100 * m for m in s.mious], marker="o", markersize=3,
                label=f"{s.stage.name} seeds ({len(s.names)} images)")
        ax.plot([s.threshold], [100 * s.miou], marker="*", markersize=12, color=ax.lines[-1].get_color())
        ax.annotate(f"best {100 * s.miou:.2f} at {s.threshold:.2f}", (s.threshold, 100 * s.miou),
                    textcoords="offset points", xytext=(0, 9), ha="right" if s.threshold > 0.3 else "left",
                    fontsize=8)
        data[s.stage.name] = list(s.mious)
    ax.margins(y=0.15)  # room for the labels of the best points
    ax.set_xlabel("background threshold")
    ax.set_ylabel("mIoU (%)")
    ax.set_title("Seed mIoU against the background threshold", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    with atomic_path(os.path.splitext(path)[0] + ".csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(list(data))
        for row in zip(*data.values(), strict=True):
            w.writerow([f"{v:.10g}" for v in row])
    return data


def per_class_figure(scores: Sequence[StageScores], path: str,
                     class_names: Sequence[str] = VOC_SEG_CLASS_NAMES) -> dict[str, list[float]]:
    """Grouped bars of per-class IoU (%) per evaluated stage (CAM stages at their best threshold), over the classes
    any stage scores; ``class_names`` indexed by label (background first; default VOC's 21). Returns
    {"classes": [...], "<stage>": [IoU fractions, NaN where undefined]}."""
    ious = {s.stage.name: s.ious for s in scores}
    keep = [c for c in range(len(class_names)) if any(not np.isnan(v[c]) for v in ious.values())]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(keep) * max(1, len(ious)) / 2 + 2), 3.6))
    width = 0.8 / max(1, len(ious))
    for i, (name, v) in enumerate(ious.items()):
        xs = np.arange(len(keep)) + (i - (len(ious) - 1) / 2) * width
        ax.bar(xs, [100 * np.nan_to_num(v[c]) for c in keep], width, label=name)
    ax.set_xticks(np.arange(len(keep)), [class_names[c] for c in keep], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("IoU (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Per-class IoU (seeds at their best background threshold)", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=len(ious))
    fig.tight_layout()
    _save(fig, path)
    return {"classes": [class_names[c] for c in keep],
            **{name: [float(v[c]) for c in keep] for name, v in ious.items()}}


# ----------------------------------------------------------------------------------------------
# The climbing animation
# ----------------------------------------------------------------------------------------------

def load_steps(path: str) -> dict:
    """A ``<cam_out_dir>/steps/<id>.npy`` file of ``obtain_CAM_masking.py --save_steps`` (see make_advcam)."""
    d = load_npy_dict(path, "climbing-steps file", "obtain_CAM_masking.py with --save_steps for this image")
    cam = np.asarray(d.get("cam"))
    if cam.ndim != 4 or cam.shape[1] != len(d["keys"]):
        raise BadInputError(f"{path}: expected 'cam' [T, K, h, w] with K = len(keys), got {cam.shape}")
    return d


def step_maps_at_image_size(steps: dict) -> np.ndarray:
    """The steps' stride-4 maps upsampled (bilinear) to the image: [T, K, H, W] in [0, 1]."""
    cam = torch.from_numpy(np.asarray(steps["cam"], np.float32))
    H, W = (int(v) for v in steps["size"])
    if cam.shape[1] == 0:
        return np.zeros((cam.shape[0], 0, H, W), np.float32)
    return F.interpolate(cam, (H, W), mode="bilinear", align_corners=False).clamp(0, 1).numpy()


def _frame(image: np.ndarray, maps: np.ndarray, keys: Sequence[int], t: int, T: int, name: str,
           class_names: Sequence[str] = VOC_SEG_CLASS_NAMES) -> np.ndarray:
    """One animation frame: the image and one overlay per class after step t, rendered by matplotlib (RGB)."""
    h, w = image.shape[:2]
    n = 1 + len(keys)
    fig, axes = plt.subplots(1, n, figsize=(2.4 * n, 2.4 * h / w + 0.5), squeeze=False)
    axes[0, 0].imshow(image)
    axes[0, 0].set_title(name, fontsize=8)
    for ax, k, m in zip(axes[0, 1:], keys, maps, strict=True):
        ax.imshow(overlay_attribution(image, m))
        ax.set_title(f"AdvCAM {class_names[int(k) + 1]}: step {t + 1}/{T}", fontsize=8)
    for ax in axes[0]:
        ax.set_axis_off()
    fig.subplots_adjust(left=0.01, right=0.99, top=0.85, bottom=0.02, wspace=0.04)
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return rgb


def climbing_animation(steps_path: str, data: SegData | str, gif_path: str, strip_path: str | None = None,
                       frame_ms: int = 200) -> dict:
    """The accumulated AdvCAM map after each climbing step as an animated GIF (``gif_path``, looping, the last
    frame held three times as long) and, with ``strip_path``, a still PNG strip of 5 of the steps per class.
    ``data``: the dataset whose image the steps file is of (or a VOC root).

    Returns {"frames": T, "classes": K, "size": (H, W)}."""
    if isinstance(data, str):
        data = VOC12(data)
    class_names = data.seg_class_names
    steps = load_steps(steps_path)
    name = os.path.splitext(os.path.basename(steps_path))[0]
    image = data.load_image(name)
    if tuple(image.shape[:2]) != tuple(int(v) for v in steps["size"]):
        what = f"{name}.jpg of {data.root}" if isinstance(data, VOC12) else data.image_path(name)
        raise BadInputError(f"{steps_path}: size {steps['size']} but {what} is {image.shape[:2]}")
    maps = step_maps_at_image_size(steps)
    keys = [int(k) for k in np.asarray(steps["keys"])]
    T = maps.shape[0]
    frames = [_frame(image, maps[t], keys, t, T, name, class_names) for t in range(T)]
    with atomic_path(gif_path) as tmp:
        iio.imwrite(tmp, np.stack(frames), extension=".gif", duration=[frame_ms] * (T - 1) + [3 * frame_ms], loop=0)
    if strip_path is not None and keys:
        picks = sorted(set(np.linspace(0, T - 1, 5).round().astype(int).tolist()))
        fig, axes = plt.subplots(len(keys), len(picks), figsize=(
            2.2 * len(picks), len(keys) * (2.2 * image.shape[0] / image.shape[1] + 0.3) + 0.4), squeeze=False)
        for r, k in enumerate(keys):
            for c, t in enumerate(picks):
                axes[r, c].imshow(overlay_attribution(image, maps[t, r]))
                axes[r, c].set_title(f"{class_names[k + 1]}, after step {t + 1}/{T}", fontsize=8)
                axes[r, c].set_axis_off()
        fig.suptitle(f"{name}: the accumulated AdvCAM map during the climb (each map max-normalised)", fontsize=9)
        fig.tight_layout()
        _save(fig, strip_path)
    return {"frames": T, "classes": len(keys), "size": tuple(image.shape[:2])}


# ----------------------------------------------------------------------------------------------
# The report
# ----------------------------------------------------------------------------------------------

def choose_ids(folders: RunFolders, names: Sequence[str], ids: Sequence[str] | None, num_images: int,
               seed: int = 0) -> list[str]:
    """The ids shown: ``ids`` as given, else the images with climbing steps, then a seeded sample of ``names``
    (those some stage has a file for) up to ``num_images``."""
    if ids:
        return list(dict.fromkeys(ids))
    with_steps = sorted(f[:-4] for f in os.listdir(folders.steps_dir) if _output_file(f, ".npy")) if folders.steps_dir \
        else []
    pool = [n for n in names if n not in with_steps and any(
        os.path.isfile(os.path.join(s.folder, n + _suffix(s))) for s in folders.stages())]
    rest = random.Random(seed).sample(pool, min(len(pool), max(0, num_images - len(with_steps))))
    return (with_steps + sorted(rest))[:max(num_images, len(with_steps))]


def _pct(v: float | None) -> str:
    return "" if v is None or np.isnan(v) else f"{100 * v:.2f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    h = "".join(f"<th>{html.escape(str(c))}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


_ROOT_WORDS = {"voc12": "VOC root", "coco14": "COCO 2014 root"}
_PALETTE_WORDS = {"voc12": "VOC palette", "coco14": "COCO palette (the VOC devkit's colour map over labels 0-80)"}

_CSS = """body{font-family:sans-serif;max-width:1400px;margin:1em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #bbb;padding:3px 8px;font-size:13px}
th{background:#eee}img{max-width:100%}pre{background:#f6f6f6;padding:6px;white-space:pre-wrap;font-size:12px}
h2{border-bottom:1px solid #ccc;margin-top:1.5em}.fig{margin:0.8em 0}"""


def make_report(folders: RunFolders, report_dir: str, ids: Sequence[str] | None = None, num_images: int = 6,
                eval_set: str = "train", seed: int = 0, seg_eval_set: str = "val") -> str:
    """Write ``<report_dir>/report.html`` with its figures beside it (``figures/``); return the HTML's path.

    Evaluates every stage over the ids of ``eval_set`` (the ids that have a file) in the run's dataset: a split
    name reads the VOC root's ``ImageSets/Segmentation/<eval_set>.txt``, else the shipped ``voc12/<eval_set>.txt``
    (COCO: the shipped ``coco14/train14.txt`` / ``val14.txt``); a path is read as given
    (:meth:`advcam.datasets.SegData.eval_names`). Draws one figure per chosen image, the threshold sweep, the
    per-class IoU bars and, for every image with climbing steps, the animation; reads settings and timings from the
    run's logs and ``results.json``.
    A segmentation network that predicted another split (``seg_eval_set``, val in the demo) gets its own row.
    """
    os.makedirs(os.path.join(report_dir, "figures"), exist_ok=True)
    data = folders.data
    names = data.eval_names(eval_set, "--eval_set")
    scores = [score_stage(s, data, names) for s in folders.stages() if s.evaluated]
    scores = [s for s in scores if s.names]
    other_split = []  # (split, scores) of the segmentation network when it predicted another split than eval_set
    seg = [s for s in folders.stages() if s.name == "Segmentation"]
    if seg and seg_eval_set != eval_set and not any(s.stage.name == "Segmentation" for s in scores):
        try:
            seg_names = data.eval_names(seg_eval_set, "seg_eval_set")
        except MissingInputError:
            seg_names = []  # no such split: no row for it
        seg_scores = score_stage(seg[0], data, seg_names)
        if seg_scores.names:
            other_split.append((seg_eval_set, seg_names, seg_scores))
    results = {}
    if folders.results_json:
        with open(folders.results_json) as f:
            results = json.load(f)
    logs = summarize_logs(folders.log_files)
    seed_th = {s.stage.name: s.threshold for s in scores if s.threshold is not None}
    fig_rel: dict[str, str] = {}

    def fig(rel: str) -> str:
        return os.path.join(report_dir, rel)

    run = f"<code>{html.escape(folders.out)}</code>" if folders.out else "(folders given one by one)"
    parts = [f"<h1>advcam run report</h1><p>Run folder: {run}; "
             f"{_ROOT_WORDS.get(data.name, data.name + ' root')} <code>{html.escape(folders.voc12_root)}</code>; "
             "evaluated on "
             f"<code>{html.escape(eval_set)}</code> ({len(names)} ids); written "
             f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}.</p>"]
    # results
    rows = []
    for s in scores:
        rec = recorded_result(results, s.stage)
        rows.append([s.stage.name + (" seeds" if s.thresholds else ""), s.stage.folder, f"{len(s.names)}/{len(names)}",
                     _pct(s.miou), "" if s.threshold is None else f"{s.threshold:.2f}",
                     _pct(rec["miou"]) if rec and "miou" in rec else "n/a"])
    for split, split_names, sc in other_split:
        rec = results.get(f"eval_seg:{sc.stage.folder}")
        rows.append([f"{sc.stage.name} ({split})", sc.stage.folder, f"{len(sc.names)}/{len(split_names)}",
                     _pct(sc.miou), "", _pct(rec["miou"]) if rec and "miou" in rec else "n/a"])
    parts.append("<h2>Results</h2>" + _table(
        ["stage", "folder", "images", "mIoU (%)", "best bg threshold", "results.json mIoU (%)"], rows)
        + "<p>mIoU recomputed from the files with <code>advcam.metrics</code> (seeds: the best background threshold "
          "of the sweep; masks: 255 counted as background, as <code>eval_sem_seg</code>).</p>")
    if any(s.thresholds for s in scores):
        fig_rel["sweep"] = "figures/threshold_sweep.png"
        sweep_figure(scores, fig(fig_rel["sweep"]))
        parts.append("<h2>Threshold sweep</h2>" + _img(fig_rel["sweep"])
                     + '<p>Data: <a href="figures/threshold_sweep.csv">threshold_sweep.csv</a></p>')
    if scores:
        fig_rel["iou"] = "figures/per_class_iou.png"
        per_class = per_class_figure(scores, fig(fig_rel["iou"]), data.seg_class_names)
        parts.append("<h2>Per-class IoU</h2>" + _img(fig_rel["iou"]) + _table(
            ["class"] + [s.stage.name for s in scores],
            [[c] + [_pct(per_class[s.stage.name][i]) for s in scores] for i, c in enumerate(per_class["classes"])]))
    # the climb
    steps_files = (sorted(f for f in os.listdir(folders.steps_dir) if _output_file(f, ".npy"))
                   if folders.steps_dir else [])
    if steps_files:
        parts.append("<h2>The climb</h2><p>The accumulated AdvCAM map after each climbing step (each frame "
                     "max-normalised), from <code>obtain_CAM_masking.py --save_steps</code>.</p>")
        for f in steps_files:
            n = f[:-4]
            gif, strip = f"figures/climb_{n}.gif", f"figures/climb_{n}.png"
            info = climbing_animation(os.path.join(folders.steps_dir, f), data, fig(gif), fig(strip))
            parts.append(f"<div class='fig'><p>{html.escape(n)}: {info['frames']} steps</p>{_img(gif)}"
                         + (_img(strip) if os.path.isfile(fig(strip)) else "") + "</div>")
    # per-image figures
    shown = choose_ids(folders, names, ids, num_images, seed)
    parts.append(f"<h2>Images</h2><p>Attributions: max over the image's classes, colour map {ATTRIBUTION_CMAP} "
                 f"(0 dark, 1 yellow) blended {OVERLAY_ALPHA:.0%} over the image. Labels in the "
                 f"{_PALETTE_WORDS.get(data.name, data.name + ' palette')}. Seeds at "
                 "the stage's best background threshold.</p>")
    for n in shown:
        rel = f"figures/image_{n}.png"
        image_figure(folders, n, fig(rel), seed_th)
        parts.append(f"<div class='fig'>{_img(rel)}</div>")
    # settings and timings
    parts.append("<h2>Settings</h2>")
    if logs.commands or logs.settings:
        parts.append("<pre>" + html.escape("\n".join(logs.commands + logs.settings)) + "</pre>")
    else:
        parts.append("<p>No command lines found in the logs.</p>")
    parts.append("<p>Logs read: " + (", ".join(f"<code>{html.escape(p)}</code>" for p in folders.log_files) or "none")
                 + "</p>")
    if logs.timings:
        parts.append("<h2>Timings</h2>" + _table(["pass", "started", "seconds"],
                                                  [[p, s, f"{sec:.0f}"] for p, s, sec in logs.timings]))
    if results:
        parts.append("<h2>results.json</h2><details><summary>"
                     f"{html.escape(str(folders.results_json))}</summary><pre>"
                     + html.escape(json.dumps(results, indent=1, default=float)) + "</pre></details>")
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>advcam report</title>"
            f"<style>{_CSS}</style></head><body>" + "\n".join(parts) + "</body></html>\n")
    path = os.path.join(report_dir, "report.html")
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(page)
    log.info("report: %s (%d images, %d animations)", path, len(shown), len(steps_files))
    return path


def _img(rel: str) -> str:
    return f'<a href="{html.escape(rel)}"><img src="{html.escape(rel)}" alt="{html.escape(os.path.basename(rel))}"></a>'
