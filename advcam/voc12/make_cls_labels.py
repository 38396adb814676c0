"""Build ``cls_labels.npy`` (image-level multi-hot labels) from VOC ``Annotations/<id>.xml`` or from a label table.

Usage::

    python -m advcam.voc12.make_cls_labels --voc12_root ROOT [--train_list ..] [--val_list ..] [--out ..]
    python -m advcam.voc12.make_cls_labels --from_tsv voc12/cls_labels.tsv   # rebuilds voc12/cls_labels.npy

The images are those of ``--train_list`` then ``--val_list`` (the reference's order). The output is the reference's
format: a pickled dict {id: float32[20]} saved with ``np.save`` (a 0-d object array), keyed by the id's integer
form as ``np.int32`` (``2007_000032`` -> 2007000032) when every id has the VOC form, else by the id string.
A label table (``--from_tsv``) has one line per image: the id, a tab, its positive classes as space-separated
0-based indices over the 20 classes (aeroplane = 0 ... tvmonitor = 19).
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import xml.etree.ElementTree as ET

import numpy as np

from advcam.errors import BadInputError, MissingInputError, UserError
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
        raise MissingInputError(
            f"annotation {xml_path} not found: image-level labels are built from <voc12_root>/Annotations; "
            "pass --cls_labels FILE (e.g. the shipped voc12/cls_labels.npy) if the root has no XML for this id"
        ) from None
    except ET.ParseError as e:
        raise BadInputError(f"annotation {xml_path} is not valid XML ({e}): restore it from the VOC2012 "
                            "devkit or pass --cls_labels FILE") from None
    label = np.zeros(NUM_CLASSES, np.float32)
    for obj in root.iter("object"):
        name = obj.findtext("name", "").strip()
        if name in CAT_NAME_TO_NUM:
            label[CAT_NAME_TO_NUM[name]] = 1.0
    return label


def read_label_table(tsv_path: str) -> dict[str, np.ndarray]:
    """{id: float32[20] multi-hot} from a label table (``id<TAB>0-based class indices``, one image a line)."""
    try:
        with open(tsv_path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise MissingInputError(f"label table {tsv_path} not found: give --from_tsv an existing file "
                                "(the shipped one is voc12/cls_labels.tsv)") from None
    table: dict[str, np.ndarray] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        name, sep, rest = line.partition("\t")
        try:
            idx = [int(i) for i in rest.split()]
        except ValueError:
            idx = None
        if not sep or not name.strip() or not idx or any(not 0 <= i < NUM_CLASSES for i in idx) or name in table:
            raise BadInputError(f"{tsv_path}:{n}: expected a new image id, a tab and one or more class indices "
                                f"0-{NUM_CLASSES - 1} separated by spaces, got {line!r}")
        label = np.zeros(NUM_CLASSES, np.float32)
        label[idx] = 1.0
        table[name.strip()] = label
    if not table:
        raise BadInputError(f"label table {tsv_path} is empty")
    return table


def _keyed(names: list[str], label_of) -> dict:
    """{key: label_of(name)} in the order of ``names``, keyed as the reference keys them when possible."""
    as_int = all(_VOC_ID.match(n) for n in names)
    return {(np.int32(int(n.replace("_", ""))) if as_int else n): label_of(n) for n in names}


def build_cls_labels(voc12_root: str, names: list[str]) -> dict:
    """{key: float32[20]} for ``names`` from ``<voc12_root>/Annotations``, keyed as the reference keys them."""
    return _keyed(names, lambda n: labels_from_xml(os.path.join(voc12_root, "Annotations", n + ".xml")))


def cls_labels_from_table(tsv_path: str, names: list[str]) -> dict:
    """{key: float32[20]} for ``names`` from a label table, keyed as the reference keys them."""
    table = read_label_table(tsv_path)
    missing = [n for n in names if n not in table]
    if missing:
        raise BadInputError(f"{tsv_path} has no line for {len(missing)} listed images, e.g. {missing[0]}: "
                            "give a table that covers --train_list and --val_list")
    return _keyed(names, lambda n: table[n].copy())


def _cache_candidates(voc12_root: str) -> list[str]:
    key = hashlib.sha1(os.path.abspath(voc12_root).encode()).hexdigest()[:12]
    return [os.path.join(voc12_root, "cls_labels.npy"),
            os.path.join(os.path.expanduser("~/.cache/advcam"), key, "cls_labels.npy")]


def find_cached_cls_labels(voc12_root: str, names: list[str]) -> str | None:
    """The root's cached labels file (see :func:`cached_cls_labels`) if one covers every id of ``names``."""
    for path in _cache_candidates(voc12_root):
        if os.path.isfile(path):
            have = load_cls_labels(path)
            if all(n in have for n in names):
                return path
    return None


def cached_cls_labels(voc12_root: str, names: list[str]) -> str:
    """Path of a cls_labels.npy covering ``names``, built from Annotations on first use.

    The cache is ``<voc12_root>/cls_labels.npy`` when that folder is writable, else a file under
    ``~/.cache/advcam/``; nothing in the repository is ever edited.
    """
    found = find_cached_cls_labels(voc12_root, names)
    if found is not None:
        return found
    candidates = _cache_candidates(voc12_root)
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
    p.add_argument("--voc12_root", default="Dataset/VOC2012_SEG_AUG/", type=str,
                   help="labels from <voc12_root>/Annotations/<id>.xml (unless --from_tsv)")
    p.add_argument("--from_tsv", default=None, type=str,
                   help="labels from this table instead of XML (id TAB 0-based class indices), "
                        "e.g. voc12/cls_labels.tsv")
    args = p.parse_args(argv)
    try:
        names = load_img_name_list(args.train_list, args.voc12_root) + load_img_name_list(args.val_list,
                                                                                           args.voc12_root)
        names = list(dict.fromkeys(names))
        if args.from_tsv:
            table, source = cls_labels_from_table(args.from_tsv, names), args.from_tsv
        else:
            table, source = build_cls_labels(args.voc12_root, names), os.path.join(args.voc12_root, "Annotations")
    except UserError as e:
        p.exit(2, f"make_cls_labels: error: {e}\n")
    save_npy(args.out, table)
    print(f"wrote {len(table)} image labels from {source} to {args.out}")


if __name__ == "__main__":
    main()
