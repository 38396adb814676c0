"""VOC image lists: where a list file is (given, shipped or in the root) and the ids it holds."""
from __future__ import annotations

import os

from advcam.data import DATA_DIR, shipped_file
from advcam.errors import BadInputError, MissingInputError


def resolve_list(list_path: str, voc12_root: str | None = None) -> str:
    """The image-list file to read, in this order: ``list_path`` itself; the file that ships with advcam when
    ``list_path`` is a relative ``voc12/<file>`` or ``coco14/<file>`` (:func:`advcam.data.shipped_file`, so the
    benchmark's lists work from any folder); the file of that name in ``<voc12_root>/ImageSets/Segmentation/``."""
    if os.path.isfile(list_path):
        return list_path
    packaged = shipped_file(list_path)
    if packaged is not None:
        return packaged
    if voc12_root is not None:
        alt = os.path.join(voc12_root, "ImageSets", "Segmentation", os.path.basename(list_path))
        if os.path.isfile(alt):
            return alt
    folder = os.path.normpath(list_path).split(os.sep)[0]
    shipped = os.path.join(DATA_DIR, folder)
    where = f" nor among the lists shipped in {shipped}/" if not os.path.isabs(list_path) and \
        os.path.isdir(shipped) and folder not in (".", "..") else ""
    where += f" nor in {voc12_root}/ImageSets/Segmentation/" if voc12_root else ""
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


def eval_list_path(value: str, voc12_root: str, flag: str = "--chainer_eval_set") -> str:
    """The list file of an evaluated split (``--chainer_eval_set``, the report's ``--eval_set``): a split name
    (``train``, ``val``, ...) names the root's ``ImageSets/Segmentation/<name>.txt``, else the shipped
    ``voc12/<name>.txt``; a path (with a folder or a ``.txt`` ending) is used as given (a relative ``voc12/<file>``
    that does not exist names the shipped file). :class:`MissingInputError`, naming ``flag``, when there is none."""
    if "/" in value or os.sep in value or value.endswith(".txt"):
        try:
            return resolve_list(value)  # as every list flag: the file, else a shipped voc12/<file>
        except MissingInputError:
            raise MissingInputError(f"{flag} {value}: no such list file; give a split name (train, val, ...) or the "
                                    "path of a list file (one image id per line)") from None
    own = os.path.join(voc12_root, "ImageSets", "Segmentation", value + ".txt")
    if os.path.isfile(own):
        return own
    try:
        return resolve_list(f"voc12/{value}.txt")
    except MissingInputError:
        raise MissingInputError(f"{flag} {value}: neither {own} nor a shipped voc12/{value}.txt exists; give a "
                                "split name (train, train_aug, val) or the path of a list file") from None


def eval_list_names(value: str, voc12_root: str, flag: str = "--chainer_eval_set") -> list[str]:
    """The ids of an evaluated split, read from :func:`eval_list_path`'s file (1,464 for ``train``)."""
    return load_img_name_list(eval_list_path(value, voc12_root, flag))

