"""Small shared helpers: argument types, devices, logging, the poly learning-rate SGD."""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import random
import re
import sys

import numpy as np
import torch

from advcam import distributed
from advcam.distributed import local_device
from advcam.errors import BadInputError, MissingInputError, UserError

DEFAULT_VOC12_ROOT = "Dataset/VOC2012_SEG_AUG/"


def str2bool(v) -> bool:
    """The reference's boolean flags: yes/true/t/y/1 and no/false/f/n/0, any case."""
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("yes", "true", "t", "y", "1"):
        return True
    if s in ("no", "false", "f", "n", "0"):
        return False
    raise argparse.ArgumentTypeError(f"boolean value expected (true/false), got {v!r}")


def float_list(values) -> tuple[float, ...]:
    """Parse scales given as ``1.0 0.5``, ``1.0,0.5`` or ``(1.0, 0.5, 1.5, 2.0)``."""
    if isinstance(values, (int, float)):
        return (float(values),)
    if isinstance(values, str):
        values = [values]
    out = []
    for v in values:
        if isinstance(v, (int, float)):
            out.append(float(v))
            continue
        for tok in re.split(r"[\s,()\[\]]+", str(v)):
            if tok:
                try:
                    out.append(float(tok))
                except ValueError:
                    raise argparse.ArgumentTypeError(f"not a number in a list of scales: {tok!r}") from None
    if not out:
        raise argparse.ArgumentTypeError("empty list of scales")
    return tuple(out)


def flat_scales(value) -> tuple[float, ...]:
    """``--cam_scales`` after parsing: the default tuple, or one tuple per command-line token, flattened."""
    if value and isinstance(value[0], tuple):
        return tuple(s for group in value for s in group)
    return tuple(float(s) for s in value)


NETWORK_DEFAULTS = {"cam_network": "resnet50_cam", "irn_network": "resnet50_irn"}


def network_module(flag: str, value: str):
    """The module that ``--cam_network``/``--irn_network`` names, as the reference's ``importlib`` does:
    ``net.X``, ``advcam.nets.X`` and ``X`` all import ``advcam.nets.X``."""
    name = value.split(".")[-1]
    kind = flag.split("_")[0]  # "cam" or "irn"
    if not name.endswith("_" + kind):
        raise BadInputError(f"--{flag} {value!r}: not an {kind.upper()} network; the {kind.upper()} networks are "
                         f"{', '.join(network_names(kind))}")
    try:
        return importlib.import_module(f"advcam.nets.{name}")
    except ModuleNotFoundError:
        raise BadInputError(f"--{flag} {value!r}: no module advcam.nets.{name}; the {kind.upper()} networks are "
                         f"{', '.join(network_names(kind))}") from None


def network_names(kind: str) -> list[str]:
    """The modules of ``advcam.nets`` named ``*_<kind>`` (kind "cam" or "irn")."""
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nets")
    return sorted(f"advcam.nets.{f[:-3]}" for f in os.listdir(folder) if f.endswith(f"_{kind}.py"))


def irn_network(args):
    """The IRN network module that ``args.irn_network`` names (default: ResNet-50)."""
    return network_module("irn_network", getattr(args, "irn_network", None) or NETWORK_DEFAULTS["irn_network"])


def cam_network(args):
    """The CAM network module that ``args.cam_network`` names (default: ResNet-50); it provides ``Net``,
    ``CAM`` and ``build_cam_net``."""
    return network_module("cam_network", getattr(args, "cam_network", None) or NETWORK_DEFAULTS["cam_network"])


CAM_NETWORK_API = ("Net", "CAM", "build_cam_net")


def check_network_flags(args, parser: argparse.ArgumentParser) -> None:
    """``--cam_network``/``--irn_network`` name network modules of ``advcam.nets``, as in the reference.

    A CAM network is a module ``advcam.nets.*_cam`` with ``Net``, ``CAM`` and ``build_cam_net`` (ResNet-50 or
    EfficientNet-Lite0); the IRN network is ResNet-50 or EfficientNet-Lite0. Anything else is refused, not
    ignored."""
    for flag in NETWORK_DEFAULTS:
        value = getattr(args, flag, None)
        if value is None:
            continue
        try:
            module = network_module(flag, value)
        except ValueError as e:
            parser.error(str(e))
        if flag == "cam_network":
            missing = [a for a in CAM_NETWORK_API if not hasattr(module, a)]
            if missing:
                parser.error(f"--cam_network {value!r}: {module.__name__} lacks {', '.join(missing)}; the CAM "
                             f"networks are {', '.join(network_names('cam'))}")


def pretrained_source(args) -> str | None:
    """Where ImageNet weights come from: --pretrained PATH, torchvision's download, or none (scratch)."""
    if getattr(args, "no_pretrained", False):
        return None
    return getattr(args, "pretrained", None) or "torchvision"


RANGES = {
    "positive": (lambda v: v > 0, "must be > 0"),
    "nonnegative": (lambda v: v >= 0, "must be >= 0"),
    "fraction": (lambda v: 0 <= v <= 1, "must lie in [0, 1]"),
}


def check_flag_ranges(args, parser: argparse.ArgumentParser, spec: dict[str, str]) -> None:
    """Refuse flag values outside their range, naming the flag: ``spec`` maps a flag to "positive",
    "nonnegative" or "fraction" (a list-valued flag is checked element by element); absent flags are skipped."""
    for flag, kind in spec.items():
        if not hasattr(args, flag):
            continue
        ok, rule = RANGES[kind]
        value = getattr(args, flag)
        values = value if isinstance(value, (list, tuple)) else [value]
        if not all(ok(v) for v in values):
            parser.error(f"--{flag} {rule}, got {value}")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default once: appends "(default: X)" unless the help states its default itself
    (an option whose default is None says in words what happens when it is not given). Values are named by
    their kind (INT, FLOAT, BOOL, DIR, FILE, STR), so that most options and their help share a line."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 34, width: int | None = None):
        super().__init__(prog, indent_increment, max_help_position, width)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "(default" in text or "%(default)" in text or action.default is None:
            return text
        return super()._get_help_string(action)

    def _get_default_metavar_for_optional(self, action: argparse.Action) -> str:
        if action.type in (None, str):
            if action.dest.endswith(("_root", "_dir")):
                return "DIR"
            if action.dest.endswith(("_list", "_labels", "_json", "_weights_name", "pretrained")):
                return "FILE"
        return {int: "INT", float: "FLOAT", str2bool: "BOOL", float_list: "FLOAT"}.get(action.type, "STR")


class ArgParser(argparse.ArgumentParser):
    """An argument parser for this package's commands: flags are never abbreviated (``--adv`` is not
    ``--adv_iter``), the program is named as the user called it, defaults are shown once in ``--help``,
    and a flag error is one line, ``<prog>: error: <message> (see --help)``, with exit status 2."""

    def __init__(self, *args, default_prog: str | None = None, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", HelpFormatter)
        if "prog" not in kwargs and default_prog is not None:
            kwargs["prog"] = program_name(default_prog)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def program_name(default: str) -> str:
    """The command as the user typed it: ``python -m advcam.<module>``, or the console command's or the script's
    file name (``sys.argv[0]``), else ``default`` (under ``python -c``, an interpreter, or a runner's
    ``__main__.py``)."""
    arg0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if arg0 and spec is not None and spec.name.startswith("advcam.") and \
            os.path.abspath(arg0) == os.path.abspath(getattr(main, "__file__", "") or ""):
        return f"python -m {spec.name}"
    name = os.path.basename(arg0)
    return default if name in ("", "-c", "__main__.py") else name


_WORKER_PREFIX = re.compile(r"^Caught \w+ in (DataLoader worker process \d+|pin memory thread)")
_USER_ERROR_LINE = re.compile(r"^advcam\.errors\.(\w+): ", re.MULTILINE)


def _wrapped_user_message(text: str) -> str | None:
    """The message of the last advcam UserError in a traceback text (as DataLoader workers and spawned
    processes pass exceptions on), or None when there is none."""
    from advcam import errors

    for m in reversed(list(_USER_ERROR_LINE.finditer(text))):
        cls = getattr(errors, m.group(1), None)
        if isinstance(cls, type) and issubclass(cls, UserError):
            return text[m.end():].strip()
    return None


def user_message(e: BaseException) -> str | None:
    """What the user should read of ``e``: a :class:`UserError`'s own message (without the traceback that a
    DataLoader worker or a spawned process wraps around it), or None when ``e`` is not a user error."""
    text = str(e)
    if isinstance(e, UserError):
        if _WORKER_PREFIX.match(text):
            return _wrapped_user_message(text) or text.splitlines()[-1]
        return text
    from torch.multiprocessing import ProcessRaisedException

    if isinstance(e, ProcessRaisedException):
        return _wrapped_user_message(text)
    return None


def _close_progress_bars() -> None:
    """End the open tqdm bars' lines, so that an error message starts a line of its own."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def run_cli(main, prog: str | None = None) -> None:
    """Run ``main()``; a :class:`~advcam.errors.UserError` (raised here, in a DataLoader worker or in a spawned
    worker process) is printed as one line, ``<prog>: error: <message>``, and exits with status 2.

    ``prog`` defaults to the command as the user typed it (:func:`program_name`). Any other exception is a bug
    and keeps its traceback."""
    try:
        main()
    except Exception as e:
        message = user_message(e)
        if message is None:
            raise
        _close_progress_bars()
        print(f"{prog or program_name('advcam')}: error: {message}", file=sys.stderr)
        sys.exit(2)


IMAGE_FOLDERS: dict[str, str] = {"voc12": "JPEGImages/", "coco14": "train2014/ and val2014/"}
"""Where a dataset's root keeps its images (named in the messages about unreadable images)."""


def dataset_root_words(args) -> str:
    """``--voc12_root DIR and its JPEGImages/`` or, for ``--dataset coco14``, ``--coco_root DIR and its train2014/
    and val2014/``: the flag, root and image folders of the dataset that ``args`` reads."""
    name = getattr(args, "dataset", None) or "voc12"
    if name == "coco14":
        from advcam.datasets import default_coco_root

        flag, root = "--coco_root", getattr(args, "coco_root", None) or default_coco_root()
    else:
        flag, root = "--voc12_root", getattr(args, "voc12_root", None)
    return f"{flag} {root} and its {IMAGE_FOLDERS.get(name, 'image folders')}"


def check_all_unreadable(stats: dict, args) -> None:
    """Refuse a CAM pass that wrote nothing because every image it tried was unreadable (``--skip_bad_images
    True`` skips them one by one): ``stats`` is what :func:`advcam.cam_loop.run_cam_pass` returns. The message
    names the root flag of the run's dataset (``--voc12_root``, or ``--coco_root`` for ``--dataset coco14``)."""
    if stats.get("bad") and not stats.get("images"):
        raise BadInputError(
            f"none of the {stats['bad']} images to do of --train_list {args.train_list} could be read (each is "
            f"logged above), so nothing was written to {args.cam_out_dir}: check {dataset_root_words(args)}")


def check_voc12_root(root: str, parser: argparse.ArgumentParser, prog: str) -> None:
    """Stop with one line of guidance when ``root`` has no JPEGImages/ (the default path most of all)."""
    if os.path.isdir(os.path.join(root, "JPEGImages")):
        return
    if root == default_voc12_root() and "VOC12_ROOT" not in os.environ:
        hint = ("No VOC data at the default --voc12_root. Either point --voc12_root (or the VOC12_ROOT environment "
                "variable) at PASCAL VOC 2012 with SBD (a folder with JPEGImages/, SegmentationClass/, Annotations/ "
                "and ImageSets/Segmentation/), or run the toy demo on this machine: `advcam-mask-quality` (in a clone: "
                "`bash get_mask_quality.sh`; it builds a toy VOC set with advcam-make-toy-voc).")
    else:
        hint = (f"--voc12_root {root} has no JPEGImages/ folder: point it at a VOC2012 devkit folder "
                "(JPEGImages/, SegmentationClass/, Annotations/, ImageSets/Segmentation/); "
                "`advcam-check-voc --voc12_root DIR` (python -m advcam.tools.check_voc) checks one.")
    parser.exit(2, f"{prog}: error: {hint}\n")


def default_voc12_root() -> str:
    return os.environ.get("VOC12_ROOT", DEFAULT_VOC12_ROOT)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (DataLoader workers derive theirs from torch's)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str | None = None) -> torch.device:
    """``name`` if given, else this rank's GPU under torchrun (cuda:LOCAL_RANK), else the current CUDA device when
    one is visible, else the CPU."""
    return local_device(name)


def setup_logging(log_file: str | None = None) -> None:
    """Log to stdout and, if given, append to ``log_file`` (the reference tees stdout to <log_name>.log).

    Under torchrun only rank 0 does so; the other ranks print their warnings and errors to stderr, tagged."""
    r = distributed.rank()
    if r:
        logging.basicConfig(level=logging.WARNING, format=f"%(asctime)s [rank {r}] %(name)s: %(message)s",
                            datefmt="%H:%M:%S", handlers=[logging.StreamHandler(sys.stderr)], force=True)
        return
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if log_file:
        if os.path.dirname(log_file):
            os.makedirs(os.path.dirname(log_file), exist_ok=True)  # --log_name DIR/name: DIR is made, as outputs are
        handlers.append(logging.FileHandler(log_file, mode="a"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        handlers=handlers, force=True)


class _PolyLR:
    """lr_t = lr_0 * (1 - t / max_step) ** power, set before each optimizer step."""

    def _init_poly(self, max_step: int, power: float) -> None:
        self.global_step, self.max_step, self.power = 0, max(1, max_step), power
        self._initial_lr = [g["lr"] for g in self.param_groups]

    def step(self, closure=None):
        if self.global_step < self.max_step:
            factor = (1 - self.global_step / self.max_step) ** self.power
            for g, lr0 in zip(self.param_groups, self._initial_lr, strict=True):
                g["lr"] = lr0 * factor
        out = super().step(closure)
        self.global_step += 1
        return out


class PolyOptimizer(_PolyLR, torch.optim.SGD):
    """SGD with the poly learning-rate decay, stepped once per iteration.

    The reference passed (params, lr, weight_decay) positionally to SGD, whose third positional
    argument is momentum: it trained with momentum 1e-4 (practically none) and called the poly power
    0.9 "momentum". Here momentum is 0 unless asked for, weight decay is the given one, power is 0.9.
    """

    def __init__(self, params, lr: float, weight_decay: float, max_step: int, power: float = 0.9,
                 momentum: float = 0.0):
        torch.optim.SGD.__init__(self, params, lr=lr, weight_decay=weight_decay, momentum=momentum)
        self._init_poly(max_step, power)


class PolyAdamW(_PolyLR, torch.optim.AdamW):
    """AdamW with the same poly decay (an option for classifiers trained from scratch)."""

    def __init__(self, params, max_step: int, power: float = 0.9):
        torch.optim.AdamW.__init__(self, params)
        self._init_poly(max_step, power)


def resolve_cam_weights(path: str) -> str:
    """The classifier file: ``path`` as given, else the reference's ``<path>.pth`` form."""
    if os.path.isfile(path):
        return path
    if os.path.isfile(path + ".pth"):
        return path + ".pth"
    raise MissingInputError(
        f"CAM weights not found at {path} (nor at the reference's {path}.pth): run the train_cam pass "
        "(python run_sample.py --train_cam_pass True) or pass --cam_weights_name PATH")
