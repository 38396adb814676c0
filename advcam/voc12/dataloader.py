"""VOC 2012 image lists, image-level labels, transforms and datasets (the ``voc12`` instance of
:mod:`advcam.datasets`; these names are kept for existing imports)."""
from __future__ import annotations

import logging

import numpy as np

from advcam.datasets import VOC12, ClassificationDataset, ImageDataset, ImageDatasetMSF
from advcam.voc12 import IGNORE_LABEL, NUM_CLASSES
from advcam.voc12.lists import eval_list_names, eval_list_path, load_img_name_list, resolve_list
from advcam.voc12.make_cls_labels import (
    cls_labels_source,
    decode_int_filename,
    get_cls_labels,
    load_cls_labels,
    missing_label_hint,
)

log = logging.getLogger(__name__)

IMG_FOLDER_NAME = "JPEGImages"
SEG_FOLDER_NAME = "SegmentationClass"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def get_img_path(voc12_root: str, name: str) -> str:
    return VOC12(voc12_root).image_path(name)


def load_image(voc12_root: str, name: str) -> np.ndarray:
    """RGB uint8 [H, W, 3]; a clear error naming the file when it is missing or unreadable."""
    return VOC12(voc12_root).load_image(name)


def load_seg_label(voc12_root: str, name: str) -> np.ndarray:
    """Ground-truth class map (uint8, 0..20 and 255 = ignore) from SegmentationClass/<id>.png."""
    return VOC12(voc12_root).load_seg_label(name)


class VOC12ImageDataset(ImageDataset):
    """Images with the reference's optional augmentations, normalised and CHW."""

    def __init__(self, img_name_list_path: str, voc12_root: str, resize_long=None, rescale=None,
                 img_normal=True, hor_flip: bool = False, crop_size: int | None = None,
                 crop_method: str | None = None, to_torch: bool = True, names: list[str] | None = None,
                 seed: int | None = None):
        data = VOC12(voc12_root)
        super().__init__(data, names if names is not None else data.read_list(img_name_list_path),
                         resize_long=resize_long, rescale=rescale, img_normal=img_normal, hor_flip=hor_flip,
                         crop_size=crop_size, crop_method=crop_method, to_torch=to_torch, seed=seed)
        self.voc12_root = voc12_root


class VOC12ClassificationDataset(ClassificationDataset):
    """Images with their 20-dim multi-hot labels (for classifier training)."""

    def __init__(self, img_name_list_path: str, voc12_root: str, cls_labels: str | None = None,
                 names: list[str] | None = None, **kw):
        data = VOC12(voc12_root)
        super().__init__(data, names if names is not None else data.read_list(img_name_list_path), cls_labels, **kw)
        self.voc12_root = voc12_root


class VOC12ImageDatasetMSF(ImageDatasetMSF):
    """Multi-scale inference input: per scale a [2, 3, h, w] stack of the image and its mirror (no labels)."""

    def __init__(self, img_name_list_path: str | None, voc12_root: str, scales=(1.0,),
                 names: list[str] | None = None):
        data = VOC12(voc12_root)
        super().__init__(data, names if names is not None else data.read_list(img_name_list_path), scales)
        self.voc12_root = voc12_root


__all__ = [
    "IGNORE_LABEL", "NUM_CLASSES", "IMAGENET_MEAN", "IMAGENET_STD", "load_img_name_list", "load_cls_labels",
    "get_cls_labels", "load_image", "load_seg_label", "VOC12ImageDataset", "VOC12ClassificationDataset",
    "VOC12ImageDatasetMSF", "resolve_list", "cls_labels_source", "eval_list_names", "eval_list_path",
    "decode_int_filename", "missing_label_hint", "get_img_path",
]
