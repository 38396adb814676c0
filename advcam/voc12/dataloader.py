"""VOC 2012 image lists, image-level labels, transforms and datasets."""
from __future__ import annotations

import logging
import os

import imageio.v2 as imageio
import numpy as np
import torch
from torch.utils.data import Dataset

from advcam import imutils
from advcam.errors import BadInputError, MissingInputError
from advcam.io import describe_error, load_label_png
from advcam.voc12 import IGNORE_LABEL, NUM_CLASSES, PACKAGED_CLS_LABELS

log = logging.getLogger(__name__)

IMG_FOLDER_NAME = "JPEGImages"
SEG_FOLDER_NAME = "SegmentationClass"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resolve_list(list_path: str, voc12_root: str | None = None) -> str:
    """The image-list file to read: ``list_path`` itself, or the file of that name in
    ``<voc12_root>/ImageSets/Segmentation/`` (so ``voc12/train.txt`` works without a copy)."""
    if os.path.isfile(list_path):
        return list_path
    if voc12_root is not None:
        alt = os.path.join(voc12_root, "ImageSets", "Segmentation", os.path.basename(list_path))
        if os.path.isfile(alt):
            return alt
    where = f" nor in {voc12_root}/ImageSets/Segmentation/" if voc12_root else ""
    raise MissingInputError(
        f"image list {list_path} not found{where}: give an existing list file "
        "(one image id per line, e.g. 2007_000032)")


def load_img_name_list(list_path: str, voc12_root: str | None = None) -> list[str]:
    """Image ids (strings such as ``2007_000032``), one per non-empty line."""
    path = resolve_list(list_path, voc12_root)
    with open(path) as f:
        names = [line.split()[0] for line in f if line.strip()]
    if not names:
        raise BadInputError(f"image list {path} is empty: give a list with one image id per line")
    return names


def decode_int_filename(key) -> str:
    """Reference cls_labels keys are ints (2007000032); turn one back into ``2007_000032``."""
    if isinstance(key, str):
        return key
    s = str(int(key))
    return s[:4] + "_" + s[4:]


def load_cls_labels(path: str) -> dict[str, np.ndarray]:
    """Image-level labels {id: float32[20] multi-hot}, from ours or the reference's cls_labels.npy."""
    try:
        raw = np.load(path, allow_pickle=True).item()
    except FileNotFoundError:
        raise MissingInputError(
            f"class labels {path} not found: pass an existing --cls_labels file, or build one with "
            "`python -m advcam.voc12.make_cls_labels --voc12_root <VOC root>`") from None
    except (ValueError, OSError, EOFError) as e:
        raise BadInputError(f"class labels {path} could not be read ({e}): expected np.save of a dict "
                            "{id: float32[20]}, as advcam.voc12.make_cls_labels writes") from None
    return {decode_int_filename(k): np.asarray(v, dtype=np.float32) for k, v in raw.items()}


def cls_labels_source(voc12_root: str, names: list[str], cls_labels: str | None = None,
                      packaged: str = PACKAGED_CLS_LABELS) -> tuple[str, str]:
    """Where the labels of ``names`` come from, without reading or building them: ``(kind, path)``.

    In this order: ``("given", cls_labels)`` when a file is given; ``("cached", file)`` when the root's
    cache (``<voc12_root>/cls_labels.npy`` or its copy under ``~/.cache/advcam/``) covers every id;
    ``("annotations", <voc12_root>/Annotations)`` when that folder exists (the labels are built from the XML
    and cached); else ``("packaged", voc12/cls_labels.npy)``, the repository's VOC 2012 labels, as the
    reference always reads them. A root's own labels therefore always win over the packaged file, which is
    only read for a root without labels of its own (a VOC copy without Annotations/).
    """
    if cls_labels is not None:
        return "given", cls_labels
    from advcam.voc12.make_cls_labels import find_cached_cls_labels

    cached = find_cached_cls_labels(voc12_root, names)
    if cached is not None:
        return "cached", cached
    annotations = os.path.join(voc12_root, "Annotations")
    if os.path.isdir(annotations):
        return "annotations", annotations
    if os.path.isfile(packaged):
        return "packaged", packaged
    raise MissingInputError(
        f"no image-level labels: {voc12_root} has no Annotations/ folder and {packaged} does not exist; "
        "pass --cls_labels FILE (a cls_labels.npy)")


def missing_label_hint(kind: str, path: str, voc12_root: str) -> str:
    """What to do about ids that the label source ``(kind, path)`` lacks (one sentence)."""
    if kind == "packaged":
        return (f"{path} is the packaged VOC 2012 labels (train_aug and val), read because {voc12_root} has no "
                "Annotations/ of its own: pass --cls_labels FILE for other images, or add <voc12_root>/Annotations/")
    if kind == "annotations":
        return "add the missing XML files or pass --cls_labels FILE"
    return "pass a --cls_labels file that covers this image list (advcam.voc12.make_cls_labels builds one)"


def get_cls_labels(voc12_root: str, names: list[str], cls_labels: str | None = None) -> np.ndarray:
    """[N, 20] labels for ``names``, from the source :func:`cls_labels_source` picks (``cls_labels`` if given,
    else the root's cached or XML-derived labels, else the packaged ``voc12/cls_labels.npy``)."""
    kind, path = cls_labels_source(voc12_root, names, cls_labels)
    if kind == "annotations":
        from advcam.voc12.make_cls_labels import cached_cls_labels
        path = cached_cls_labels(voc12_root, names)
    table = load_cls_labels(path)
    missing = [n for n in names if n not in table]
    if missing:
        raise BadInputError(f"image {missing[0]} has no label in {path} ({len(missing)} of {len(names)} listed "
                            f"images lack one): {missing_label_hint(kind, path, voc12_root)}")
    return np.stack([table[n] for n in names])


def get_img_path(voc12_root: str, name: str) -> str:
    return os.path.join(voc12_root, IMG_FOLDER_NAME, name + ".jpg")


def load_image(voc12_root: str, name: str) -> np.ndarray:
    """RGB uint8 [H, W, 3]; a clear error naming the file when it is missing or unreadable."""
    path = get_img_path(voc12_root, name)
    try:
        img = imageio.imread(path)
    except FileNotFoundError:
        raise MissingInputError(f"image {path} not found (check --voc12_root and the image list)") from None
    except Exception as e:
        raise BadInputError(f"image {path} could not be read ({describe_error(e)}): replace the file, or leave it "
                            "out of the image list (the CAM passes skip it with --skip_bad_images True)") from None
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    return np.ascontiguousarray(img[..., :3])


def load_seg_label(voc12_root: str, name: str) -> np.ndarray:
    """Ground-truth class map (uint8, 0..20 and 255 = ignore) from SegmentationClass/<id>.png."""
    path = os.path.join(voc12_root, SEG_FOLDER_NAME, name + ".png")
    # palette PNG: the indices are the labels
    return load_label_png(path, "ground truth", "check --voc12_root (SegmentationClass/ of VOC2012) and the split")


class VOC12ImageDataset(Dataset):
    """Images with the reference's optional augmentations, normalised and CHW."""

    def __init__(self, img_name_list_path: str, voc12_root: str, resize_long=None, rescale=None,
                 img_normal=True, hor_flip: bool = False, crop_size: int | None = None,
                 crop_method: str | None = None, to_torch: bool = True, names: list[str] | None = None,
                 seed: int | None = None):
        self.img_name_list = names if names is not None else load_img_name_list(img_name_list_path, voc12_root)
        self.seed, self.epoch = seed, 0  # with a seed, item i of epoch e is augmented by imutils.item_rng(seed, e, i)
        self.voc12_root = voc12_root
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
        img = load_image(self.voc12_root, name)
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


class VOC12ClassificationDataset(VOC12ImageDataset):
    """Images with their 20-dim multi-hot labels (for classifier training)."""

    def __init__(self, img_name_list_path: str, voc12_root: str, cls_labels: str | None = None, **kw):
        super().__init__(img_name_list_path, voc12_root, **kw)
        self.label_list = get_cls_labels(voc12_root, self.img_name_list, cls_labels)

    def __getitem__(self, idx: int) -> dict:
        out = super().__getitem__(idx)
        out["label"] = torch.from_numpy(self.label_list[idx])
        return out


class VOC12ImageDatasetMSF(VOC12ImageDataset):
    """Multi-scale inference input: per scale a [2, 3, h, w] stack of the image and its mirror (no labels)."""

    def __init__(self, img_name_list_path: str | None, voc12_root: str, scales=(1.0,),
                 names: list[str] | None = None):
        super().__init__(img_name_list_path, voc12_root, names=names)
        self.scales = tuple(float(s) for s in scales)

    def __getitem__(self, idx: int) -> dict:
        name = self.img_name_list[idx]
        img = load_image(self.voc12_root, name)
        ms = []
        for s in self.scales:
            im = img if s == 1.0 else imutils.pil_rescale(img, s, order=3)
            im = imutils.normalize(im).transpose(2, 0, 1)
            ms.append(torch.from_numpy(np.ascontiguousarray(np.stack([im, im[..., ::-1]], 0))))
        return {"name": name, "img": ms if len(self.scales) > 1 else ms[0], "size": (img.shape[0], img.shape[1])}


__all__ = [
    "IGNORE_LABEL", "NUM_CLASSES", "IMAGENET_MEAN", "IMAGENET_STD", "load_img_name_list", "load_cls_labels",
    "get_cls_labels", "load_image", "load_seg_label", "VOC12ImageDataset", "VOC12ClassificationDataset",
    "VOC12ImageDatasetMSF",
    "resolve_list", "cls_labels_source",
]
