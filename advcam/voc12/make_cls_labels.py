"""Build ``cls_labels.npy`` (image-level multi-hot labels) from VOC ``Annotations/<id>.xml``.

Usage: ``python -m voc12.make_cls_labels --voc12_root ROOT [--train_list ..] [--val_list ..] [--out ..]``.
The output is the reference's format: a pickled dict {id: float32[20]}, keyed by the id's integer form
(``2007_000032`` -> 2007000032) when every id has the VOC form, else by the id string.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import xml.etree.ElementTree as ET

import numpy as np

from advcam.io import save_npy
from advcam.voc12 import CAT_NAME_TO_NUM, NUM_CLASSES
from advcam.voc12.dataloader import load_cls_labels, load_img_name_list

log = logging.getLogger(__name__)
_VOC_ID = re.compile(r"^\d{4}_\d{6}$")


def labels_from_xml(xml_path: str) -> np.ndarray:
    """Multi-hot float32[20]: every ``<object><name>`` that is a VOC class sets its entry."""
    try:
        root = ET.parse(xml_path).getroot()
    except FileNotFoundError:
        raise FileNotFoundError(f"annotation {xml_path} not found: cls_labels are built from "
                                "<voc12_root>/Annotations; pass --cls_labels if you have them") from None
    except ET.ParseError as e:
        raise ValueError(f"annotation {xml_path} is not valid XML: {e}") from None
    label = np.zeros(NUM_CLASSES, np.float32)
    for obj in root.iter("object"):
        name = obj.findtext("name", "").strip()
        if name in CAT_NAME_TO_NUM:
            label[CAT_NAME_TO_NUM[name]] = 1.0
    return label


def build_cls_labels(voc12_root: str, names: list[str]) -> dict:
    """{key: float32[20]} for ``names``, keyed as the reference keys them when possible."""
    as_int = all(_VOC_ID.match(n) for n in names)
    out = {}
    for n in names:
        key = np.int32(int(n.replace("_", ""))) if as_int else n
        out[key] = labels_from_xml(os.path.join(voc12_root, "Annotations", n + ".xml"))
    return out


def cached_cls_labels(voc12_root: str, names: list[str]) -> str:
    """Path of a cls_labels.npy covering ``names``, built from Annotations on first use.

    The cache is ``<voc12_root>/cls_labels.npy`` when that folder is writable, else a file under
    ``~/.cache/advcam/``; nothing in the repository is ever edited.
    """
    candidates = [os.path.join(voc12_root, "cls_labels.npy")]
    key = hashlib.sha1(os.path.abspath(voc12_root).encode()).hexdigest()[:12]
    candidates.append(os.path.join(os.path.expanduser("~/.cache/advcam"), key, "cls_labels.npy"))
    for path in candidates:
        if os.path.isfile(path):
            have = load_cls_labels(path)
            if all(n in have for n in names):
                return path
    table = {}
    for path in candidates:
        if os.path.isfile(path):
            table.update(np.load(path, allow_pickle=True).item())
    table.update(build_cls_labels(voc12_root, names))
    for path in candidates:
        try:
            save_npy(path, table)
        except OSError:
            continue
        log.info("built image-level labels for %d images from %s/Annotations -> %s", len(names), voc12_root, path)
        return path
    raise OSError(f"could not write cls_labels.npy in {candidates}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train_list", default="voc12/train_aug.txt", type=str)
    p.add_argument("--val_list", default="voc12/val.txt", type=str)
    p.add_argument("--out", default="voc12/cls_labels.npy", type=str)
    p.add_argument("--voc12_root", default="Dataset/VOC2012_SEG_AUG/", type=str)
    args = p.parse_args(argv)
    names = load_img_name_list(args.train_list, args.voc12_root) + load_img_name_list(args.val_list, args.voc12_root)
    table = build_cls_labels(args.voc12_root, list(dict.fromkeys(names)))
    save_npy(args.out, table)
    print(f"wrote {len(table)} image labels to {args.out}")


if __name__ == "__main__":
    main()
