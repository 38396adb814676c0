"""Build ``cls_labels.npy`` (image-level multi-hot labels) from VOC ``Annotations/<id>.xml`` or from a label table.

Usage::

    python -m advcam.voc12.make_cls_labels --voc12_root ROOT [--train_list ..] [--val_list ..] [--out ..]
    python -m advcam.voc12.make_cls_labels --from_tsv voc12/cls_labels.tsv --out advcam/data/voc12/cls_labels.npy
    # (in a clone: rebuilds the shipped labels from the shipped table)

``voc12/<file>`` (lists, ``--from_tsv``) names the file shipped in ``advcam/data/voc12/`` unless it exists relative
to the current folder. ``--out`` defaults to ``cls_labels.npy`` in the current folder.

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

from advcam.data import shipped_file
from advcam.errors import BadInputError, MissingInputError, UserError
from advcam.io import save_npy
from advcam.voc12 import CAT_NAME_TO_NUM, NUM_CLASSES, PACKAGED_CLS_LABELS
from advcam.voc12.lists import load_img_name_list

log = logging.getLogger(__name__)
_VOC_ID = re.compile(r"^\d{4}_\d{6}$")


def labels_from_xml(xml_path: str) -> np.ndarray:
    """Multi-hot float32[20]: every ``<object><name>`` that is a VOC class sets its entry."""
    try:
        root = ET.parse(xml_path).getroot()
    except FileNotFoundError:
        raise MissingInputError(
            f"annotation {xml_path} not found: image-level labels are built from <voc12_root>/Annotations; "
            "pass --cls_labels FILE (e.g. the shipped advcam/data/voc12/cls_labels.npy) if the root has no XML for "
            "this id"
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
                                "(the shipped one is voc12/cls_labels.tsv, in advcam/data/)") from None
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
    and cached); else ``("packaged", advcam/data/voc12/cls_labels.npy)``, the shipped VOC 2012 labels, as the
    reference always reads them. A root's own labels therefore always win over the packaged file, which is
    only read for a root without labels of its own (a VOC copy without Annotations/).
    """
    if cls_labels is not None:
        return "given", cls_labels
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
    else the root's cached or XML-derived labels, else the shipped ``advcam/data/voc12/cls_labels.npy``)."""
    kind, path = cls_labels_source(voc12_root, names, cls_labels)
    if kind == "annotations":
        path = cached_cls_labels(voc12_root, names)
    table = load_cls_labels(path)
    missing = [n for n in names if n not in table]
    if missing:
        raise BadInputError(f"image {missing[0]} has no label in {path} ({len(missing)} of {len(names)} listed "
                            f"images lack one): {missing_label_hint(kind, path, voc12_root)}")
    return np.stack([table[n] for n in names])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train_list", default="voc12/train_aug.txt", type=str)
    p.add_argument("--val_list", default="voc12/val.txt", type=str)
    p.add_argument("--out", default="cls_labels.npy", type=str, help="the labels file written")
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
            tsv = args.from_tsv if os.path.isfile(args.from_tsv) else shipped_file(args.from_tsv) or args.from_tsv
            table, source = cls_labels_from_table(tsv, names), tsv
        else:
            table, source = build_cls_labels(args.voc12_root, names), os.path.join(args.voc12_root, "Annotations")
    except UserError as e:
        p.exit(2, f"make_cls_labels: error: {e}\n")
    save_npy(args.out, table)
    print(f"wrote {len(table)} image labels from {source} to {args.out}")


if __name__ == "__main__":
    main()
