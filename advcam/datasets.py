"""One data layer for every pass: a dataset description (:class:`SegData`) and the image datasets built on it.

A description says what a pass needs to know about a benchmark: its name, the foreground class names (20 for
``voc12``, 80 for ``coco14``; segmentation label = class index + 1, 0 = background), palette, ignore value, the
flag that gives its root, how an image id maps to its image and ground-truth mask files, its default lists and how
its image-level labels are obtained. :func:`get_dataset` builds one by name; :func:`dataset_of` from a pass's
arguments (``--dataset``, ``--voc12_root`` / ``--coco_root``).

- ``voc12``: ``<root>/JPEGImages/<id>.jpg``, ``<root>/SegmentationClass/<id>.png``; labels as
  :func:`advcam.voc12.make_cls_labels.get_cls_labels` finds them (``--cls_labels``, the root's cache or
  Annotations/, else the shipped ``voc12/cls_labels.npy``).
- ``coco14``: ids are 12-digit image ids; ``<root>/<split>/COCO_<split>_<id>.jpg`` and
  ``<root>/mask/<split>/<id>.png`` (made by ``python -m advcam.tools.make_coco_masks``), the split being the one
  whose folder holds the image; labels built once from ``<root>/annotations/instances_<split>.json`` and cached in
  ``<cache_dir>/coco14_cls_labels_<split>.npy`` (:func:`advcam.coco14.labels.load_coco_cls_labels`).
"""
from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import imageio.v2 as imageio
import numpy as np
import torch
from torch.utils.data import Dataset

from advcam import coco14, imutils, voc12
from advcam.errors import BadInputError, MissingInputError
from advcam.io import describe_error, load_label_png
from advcam.voc12 import lists as voc12_lists
from advcam.voc12 import make_cls_labels as voc12_labels

DATASETS: tuple[str, ...] = ("voc12", "coco14")


def read_rgb(path: str, root_flag: str) -> np.ndarray:
    """RGB uint8 [H, W, 3] of an image file; a one-line error naming the file when it is missing or unreadable."""
    try:
        img = imageio.imread(path)
    except FileNotFoundError:
        raise MissingInputError(f"image {path} not found (check {root_flag} and the image list)") from None
    except Exception as e:
        raise BadInputError(f"image {path} could not be read ({describe_error(e)}): replace the file, or leave it "
                            "out of the image list (the CAM passes skip it with --skip_bad_images True)") from None
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    return np.ascontiguousarray(img[..., :3])


class SegData:
    """A weakly supervised segmentation benchmark at ``root``: what every pass reads through (see module doc)."""

    name: str = ""
    root_flag: str = ""
    class_names: tuple[str, ...] = ()
    palette: list[int] = voc12.VOC_PALETTE
    ignore_label: int = 255
    cam_eval_thresholds: tuple[float, ...] = tuple(round(0.15 + 0.01 * i, 2) for i in range(20))
    """eval_cam's background-threshold sweep (VOC: AdvCAM's 0.15, 0.16, ..., 0.34)."""
    default_flags: dict[str, object] = {}
    """Pass settings that differ from run_sample.py's (VOC) defaults, applied when the flag is left at its default."""
    default_lists: dict[str, str] = {}
    """``train`` (train_cam, make_cam, cam_to_ir_label, train_irn), ``val`` (train_cam's validation), ``infer``
    (make_sem_seg, make_ins_seg) and ``seg_train`` / ``seg_infer`` (stage 3)."""

    def __init__(self, root: str):
        self.root = root

    @property
    def num_classes(self) -> int:
        """Foreground classes (the classifier's outputs)."""
        return len(self.class_names)

    @property
    def num_seg_classes(self) -> int:
        """Segmentation labels: background + the foreground classes."""
        return len(self.class_names) + 1

    @property
    def seg_class_names(self) -> tuple[str, ...]:
        return ("background",) + tuple(self.class_names)

    def image_path(self, name: str) -> str:
        raise NotImplementedError

    def gt_path(self, name: str) -> str:
        raise NotImplementedError

    def gt_hint(self, name: str) -> str:
        raise NotImplementedError

    def read_list(self, path: str) -> list[str]:
        """Image ids of a list file (given, or shipped as ``voc12/<file>`` / ``coco14/<file>``)."""
        raise NotImplementedError

    def eval_names(self, value: str, flag: str = "--chainer_eval_set") -> list[str]:
        """The ids of an evaluated split: a split name (``train``, ``val``) or a list file."""
        raise NotImplementedError

    def cls_labels(self, names: Sequence[str], cls_labels: str | None = None) -> np.ndarray:
        """float32 [N, num_classes] multi-hot image-level labels of ``names`` (``cls_labels``: a given file)."""
        raise NotImplementedError

    def load_image(self, name: str) -> np.ndarray:
        """RGB uint8 [H, W, 3] of image ``name``."""
        return read_rgb(self.image_path(name), self.root_flag)

    def load_seg_label(self, name: str) -> np.ndarray:
        """Ground-truth label map (uint8: 0 background, 1..num_classes, ``ignore_label``) of image ``name``."""
        return load_label_png(self.gt_path(name), "ground truth", self.gt_hint(name))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.root!r})"


class VOC12(SegData):
    """PASCAL VOC 2012 (with SBD's train_aug): 20 classes, the devkit's layout."""

    name = "voc12"
    root_flag = "--voc12_root"
    class_names = voc12.CAT_LIST
    palette = voc12.VOC_PALETTE
    ignore_label = voc12.IGNORE_LABEL
    default_lists = {"train": "voc12/train_aug.txt", "val": "voc12/val.txt", "infer": "voc12/train_aug.txt",
                     "seg_train": "voc12/train_aug.txt", "seg_infer": "voc12/val.txt"}

    def image_path(self, name: str) -> str:
        return os.path.join(self.root, "JPEGImages", name + ".jpg")

    def gt_path(self, name: str) -> str:
        return os.path.join(self.root, "SegmentationClass", name + ".png")

    def gt_hint(self, name: str) -> str:
        return "check --voc12_root (SegmentationClass/ of VOC2012) and the split"

    def read_list(self, path: str) -> list[str]:
        return voc12_lists.load_img_name_list(path, self.root)

    def eval_names(self, value: str, flag: str = "--chainer_eval_set") -> list[str]:
        return voc12_lists.eval_list_names(value, self.root, flag)

    def cls_labels(self, names: Sequence[str], cls_labels: str | None = None) -> np.ndarray:
        return voc12_labels.get_cls_labels(self.root, list(names), cls_labels)


class COCO14(SegData):
    """MS COCO 2014: 80 classes (category ids 1..90 mapped to 1..80), the official layout; ids are 12-digit."""

    name = "coco14"
    root_flag = "--coco_root"
    class_names = coco14.CAT_LIST
    palette = coco14.PALETTE
    ignore_label = coco14.IGNORE_LABEL
    default_lists = {"train": "coco14/train14.txt", "val": "coco14/val14.txt", "infer": "coco14/train14.txt",
                     "seg_train": "coco14/train14.txt", "seg_infer": "coco14/val14.txt"}
    EVAL_SPLITS = {"train": "coco14/train14.txt", "val": "coco14/val14.txt"}
    cam_eval_thresholds = tuple(round(0.10 + 0.01 * i, 2) for i in range(41))  # 0.10..0.50, RIB's eval_cam sweep
    default_flags = {"conf_bg_thres": 0.10,  # ReCAM's run_sample_coco.py (docs/coco.md, "Defaults")
                     "cam_format": "strided16",  # COCO train's CAM files in 9 GB, not 314 GB (docs/coco.md)
                     # stage 3, LPCAM#3 (docs/coco.md, "Stage 3"): its recipe, and SOLVER.LR 2e-4, not VOC's 2.5e-4
                     "seg_recipe": "coco", "seg_learning_rate": 2e-4}

    def __init__(self, root: str, cache_dir: str | None = None):
        super().__init__(root)
        self.cache_dir = cache_dir if cache_dir is not None else root
        self._tables: dict[str, dict[int, np.ndarray]] = {}

    def split_of(self, name: str) -> str:
        """``train2014`` or ``val2014``: the split whose image folder holds ``name`` (train2014 if neither does)."""
        for split in coco14.SPLITS:
            if os.path.isfile(coco14.image_path(self.root, split, name)):
                return split
        return coco14.SPLITS[0]

    def image_path(self, name: str) -> str:
        return coco14.image_path(self.root, self.split_of(name), name)

    def gt_path(self, name: str) -> str:
        return coco14.mask_path(self.root, self.split_of(name), name)

    def gt_hint(self, name: str) -> str:
        return (f"make the masks with `python -m advcam.tools.make_coco_masks --coco_root {self.root} "
                f"--split {self.split_of(name)}`")

    def read_list(self, path: str) -> list[str]:
        ids = coco14.read_id_list(path)
        if not ids:
            raise BadInputError(f"image list {path} is empty: give a list with one image id per line")
        return [coco14.id_str(i) for i in ids]

    def eval_names(self, value: str, flag: str = "--chainer_eval_set") -> list[str]:
        if value in self.EVAL_SPLITS:
            return self.read_list(self.EVAL_SPLITS[value])
        if "/" in value or os.sep in value or value.endswith(".txt"):
            try:
                return self.read_list(value)
            except MissingInputError:
                pass
        raise MissingInputError(f"{flag} {value}: give a split name (train, val) or the path of a list file of "
                                "COCO image ids")

    def _table(self, split: str) -> dict[int, np.ndarray]:
        if split not in self._tables:
            from advcam.coco14.labels import load_coco_cls_labels

            cache = os.path.join(self.cache_dir, f"coco14_cls_labels_{split}.npy")
            self._tables[split] = load_coco_cls_labels(coco14.json_path(self.root, split), cache, split)
        return self._tables[split]

    def cls_labels(self, names: Sequence[str], cls_labels: str | None = None) -> np.ndarray:
        ids = [int(n) for n in names]
        if cls_labels is not None:
            try:
                raw = np.load(cls_labels, allow_pickle=True).item()
            except FileNotFoundError:
                raise MissingInputError(f"--cls_labels {cls_labels} not found: give an existing file, or leave the "
                                        "flag out to build the labels from the instances json") from None
            except (ValueError, OSError, EOFError, AttributeError) as e:
                raise BadInputError(f"--cls_labels {cls_labels} could not be read ({e}): expected np.save of a dict "
                                    "{image id: float32[80]}") from None
            table = {int(k): np.asarray(v, np.float32) for k, v in raw.items()}
            sources = [cls_labels]
        else:
            table, sources = {}, []
            for split in coco14.SPLITS:  # the val json is read only when an id is not in train
                if all(i in table for i in ids):
                    break
                table.update(self._table(split))
                sources.append(coco14.json_path(self.root, split))
        missing = [n for n, i in zip(names, ids, strict=True) if i not in table]
        if missing:
            raise BadInputError(f"image {missing[0]} has no label in {' or '.join(sources)} ({len(missing)} of "
                                f"{len(ids)} listed images lack one): list only images of the COCO 2014 jsons")
        out = np.stack([table[i] for i in ids]) if ids else np.zeros((0, self.num_classes), np.float32)
        if out.shape[1] != self.num_classes:
            raise BadInputError(f"{sources[0]}: labels of {out.shape[1]} classes, expected {self.num_classes}")
        return out.astype(np.float32, copy=False)


_CONSTRUCTORS = {"voc12": VOC12, "coco14": COCO14}


def get_dataset(name: str, root: str, cache_dir: str | None = None) -> SegData:
    """The description of dataset ``name`` (``voc12`` or ``coco14``) at ``root``; ``cache_dir``: where COCO's
    image-level labels are cached (default: the root)."""
    if name not in _CONSTRUCTORS:
        raise BadInputError(f"--dataset {name}: expected one of {', '.join(DATASETS)}")
    if name == "coco14":
        return COCO14(root, cache_dir)
    return _CONSTRUCTORS[name](root)


def default_coco_root() -> str | None:
    """``$COCO_ROOT`` (None when unset)."""
    return os.environ.get("COCO_ROOT") or None


def dataset_of(args) -> SegData:
    """The dataset a pass reads, from its arguments: ``args.dataset`` (absent: ``voc12``) at ``args.voc12_root`` or
    ``args.coco_root``; COCO labels cached next to the classifier weights (``dirname(--cam_weights_name)``)."""
    name = getattr(args, "dataset", None) or "voc12"
    if name == "coco14":
        root = getattr(args, "coco_root", None) or default_coco_root()
        if not root:
            raise MissingInputError("--dataset coco14 needs a COCO root: pass --coco_root DIR or set COCO_ROOT")
        weights = getattr(args, "cam_weights_name", None)
        cache = os.path.dirname(weights) if weights else None
        return COCO14(root, cache or ".")
    return get_dataset(name, args.voc12_root)


def add_dataset_flags(group) -> None:
    """``--dataset {voc12,coco14}`` and ``--coco_root`` (default ``$COCO_ROOT``) in an argparse group."""
    group.add_argument("--dataset", default="voc12", choices=DATASETS,
                       help="voc12: PASCAL VOC 2012 at --voc12_root; coco14: MS COCO 2014 at --coco_root (the list "
                            "defaults become coco14/train14.txt and coco14/val14.txt; docs/coco.md)")
    group.add_argument("--coco_root", default=default_coco_root(), type=str,
                       help="COCO 2014 root (train2014/, val2014/, annotations/, mask/ from advcam-make-coco-masks) "
                            "of --dataset coco14 (default: the environment variable COCO_ROOT)")


def apply_dataset_defaults(args, parser, roles: dict[str, str], argv: Sequence[str] | None = None) -> None:
    """For a dataset other than voc12, every list flag of ``roles`` ({flag: role in ``default_lists``}) that the
    command line ``argv`` (default ``sys.argv[1:]``) does not give takes the dataset's default list instead of the
    parser's VOC one, and so does every flag of the dataset's ``default_flags`` that the parser has."""
    name = getattr(args, "dataset", None) or "voc12"
    if name == "voc12":
        return
    argv = sys.argv[1:] if argv is None else argv
    given = {a.split("=", 1)[0][2:] for a in argv if a.startswith("--")}
    cls = _CONSTRUCTORS[name]
    for flag, role in roles.items():
        if flag not in given:
            setattr(args, flag, cls.default_lists[role])
    for flag, value in cls.default_flags.items():
        if hasattr(args, flag) and flag not in given:
            setattr(args, flag, value)


def refuse_unsupported(args, parser, passes: Sequence[str], supported: Sequence[str] = ("voc12",)) -> None:
    """Stop with one line when a pass of ``passes`` is switched on for a dataset it does not support yet."""
    name = getattr(args, "dataset", None) or "voc12"
    if name in supported:
        return
    on = [p for p in passes if getattr(args, f"{p}_pass", False)]
    if on:
        parser.exit(2, f"{parser.prog}: error: --dataset {name}: the {', '.join(on)} pass"
                       f"{'es are' if len(on) > 1 else ' is'} not yet supported for {name}; switch "
                       f"{'them' if len(on) > 1 else 'it'} off (it runs with --dataset voc12)\n")


def check_dataset_root(args, parser) -> bool:
    """For a dataset other than voc12, stop with one line when its root is missing or holds no image folder;
    False for voc12 (whose root the caller checks as before)."""
    name = getattr(args, "dataset", None) or "voc12"
    if name == "voc12":
        return False
    if not getattr(args, "coco_root", None):
        parser.exit(2, f"{parser.prog}: error: --dataset coco14 needs a COCO 2014 root: pass --coco_root DIR or "
                       "set COCO_ROOT (`python -m advcam.tools.make_toy_coco --out DIR` builds a toy one)\n")
    hint = check_root(dataset_of(args))
    if hint:
        parser.exit(2, f"{parser.prog}: error: {hint}\n")
    return True


def check_root(data: SegData) -> str | None:
    """A one-line hint when ``data.root`` lacks the images folder, else None."""
    if isinstance(data, COCO14):
        if not any(os.path.isdir(os.path.join(data.root, s)) for s in coco14.SPLITS):
            return (f"--coco_root {data.root} has neither train2014/ nor val2014/: point it at a COCO 2014 root "
                    "(train2014/, val2014/, annotations/); `python -m advcam.tools.check_coco` checks one")
        return None
    if not os.path.isdir(os.path.join(data.root, "JPEGImages")):
        return f"{data.root_flag} {data.root} has no JPEGImages/ folder"
    return None


class ImageDataset(Dataset):
    """Images of ``data`` with the reference's optional augmentations, normalised and CHW: {"name", "img"}."""

    def __init__(self, data: SegData, names: Sequence[str], resize_long=None, rescale=None, img_normal=True,
                 hor_flip: bool = False, crop_size: int | None = None, crop_method: str | None = None,
                 to_torch: bool = True, seed: int | None = None):
        self.data = data
        self.img_name_list = list(names)
        self.seed, self.epoch = seed, 0  # with a seed, item i of epoch e is augmented by imutils.item_rng(seed, e, i)
        self.resize_long = resize_long
        self.rescale = rescale
        self.crop_size = crop_size
        self.img_normal = img_normal
        self.hor_flip = hor_flip
        self.crop_method = crop_method
        self.to_torch = to_torch

    def __len__(self) -> int:
        return len(self.img_name_list)

    def __getitem__(self, idx: int) -> dict:
        name = self.img_name_list[idx]
        img = self.data.load_image(name)
        rng = imutils.item_rng(self.seed, self.epoch, idx)
        if self.resize_long:
            img = imutils.random_resize_long(img, self.resize_long[0], self.resize_long[1], rng)
        if self.rescale:
            img = imutils.random_scale(img, scale_range=self.rescale, order=3, rng=rng)
        if self.img_normal:
            img = imutils.normalize(img)
        if self.hor_flip:
            img = imutils.random_lr_flip(img, rng)
        if self.crop_size:
            if self.crop_method == "random":
                img = imutils.random_crop(img, self.crop_size, 0, rng)
            else:
                img = imutils.top_left_crop(img, self.crop_size, 0)
        if self.to_torch:
            img = np.ascontiguousarray(img.transpose(2, 0, 1))
        return {"name": name, "img": img}


class ClassificationDataset(ImageDataset):
    """Images with their multi-hot image-level labels (for classifier training): adds "label" float32[C]."""

    def __init__(self, data: SegData, names: Sequence[str], cls_labels: str | None = None, **kw):
        super().__init__(data, names, **kw)
        self.label_list = data.cls_labels(self.img_name_list, cls_labels)

    def __getitem__(self, idx: int) -> dict:
        out = super().__getitem__(idx)
        out["label"] = torch.from_numpy(self.label_list[idx])
        return out


class ImageDatasetMSF(ImageDataset):
    """Multi-scale inference input: per scale a [2, 3, h, w] stack of the image and its mirror (no labels)."""

    def __init__(self, data: SegData, names: Sequence[str], scales=(1.0,)):
        super().__init__(data, names)
        self.scales = tuple(float(s) for s in scales)

    def __getitem__(self, idx: int) -> dict:
        name = self.img_name_list[idx]
        img = self.data.load_image(name)
        ms = []
        for s in self.scales:
            im = img if s == 1.0 else imutils.pil_rescale(img, s, order=3)
            im = imutils.normalize(im).transpose(2, 0, 1)
            ms.append(torch.from_numpy(np.ascontiguousarray(np.stack([im, im[..., ::-1]], 0))))
        return {"name": name, "img": ms if len(self.scales) > 1 else ms[0], "size": (img.shape[0], img.shape[1])}


__all__ = ["DATASETS", "SegData", "VOC12", "COCO14", "get_dataset", "dataset_of", "default_coco_root", "check_root",
           "add_dataset_flags", "apply_dataset_defaults", "refuse_unsupported", "check_dataset_root", "read_rgb",
           "ImageDataset", "ClassificationDataset", "ImageDatasetMSF"]
