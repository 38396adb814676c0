"""Check a COCO 2014 root before a long run: the json of each split, every listed image, every mask.

:func:`check_coco` reads ``annotations/instances_<split>.json`` (checked as
:func:`advcam.coco14.instances.read_instances` checks it: a COCO instances json of that split, every annotation's
image and category known; a bad json raises a one-line :class:`~advcam.errors.UserError`), then counts, for the
split's image list (the shipped ``coco14/train14.txt`` / ``coco14/val14.txt`` or one given), the ids that are in
the json, that have their JPEG and that have their ground-truth mask. It reads no image and writes nothing.
``python -m advcam.tools.check_coco`` is its command line.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from advcam.coco14 import check_split, default_list, id_str, image_path, json_path, mask_dir, read_id_list, resolve_list
from advcam.coco14.instances import read_instances
from advcam.errors import MissingInputError


@dataclass
class SplitReport:
    """One split: how many listed ids are in the json and have their image and mask; the missing ones."""

    split: str
    json_path: str
    json_images: int
    list_path: str
    listed: int
    not_in_json: list[int] = field(default_factory=list)
    missing_images: list[str] = field(default_factory=list)  # paths
    missing_masks: list[str] = field(default_factory=list)  # paths
    masks_checked: bool = True

    @property
    def ok(self) -> bool:
        return not (self.not_in_json or self.missing_images or self.missing_masks)

    def count_line(self) -> str:
        masks = (f", {self.listed - len(self.missing_masks):,} masks" if self.masks_checked else "")
        return (f"{self.split}: json {self.json_images:,} images; list {self.list_path}: {self.listed:,} ids, "
                f"{self.listed - len(self.not_in_json):,} in the json, "
                f"{self.listed - len(self.missing_images):,} images{masks}")


def _present(folder: str) -> set[str]:
    return set(os.listdir(folder)) if os.path.isdir(folder) else set()


def check_split_files(root: str, split: str, list_path: str | None = None, masks: bool = True) -> SplitReport:
    """Check one split of ``root``; see the module docstring."""
    check_split(split)
    jpath = json_path(root, split)
    inst = read_instances(jpath, split, segmentations=False)
    list_path = resolve_list(list_path) if list_path else default_list(split)
    ids = read_id_list(list_path)
    in_json = set(inst.image_ids)
    rep = SplitReport(split, jpath, len(inst.image_ids), list_path, len(ids), masks_checked=masks)
    rep.not_in_json = [i for i in ids if i not in in_json]
    have = _present(os.path.join(root, split))
    rep.missing_images = [p for p in (image_path(root, split, i) for i in ids) if os.path.basename(p) not in have]
    if masks:
        have = _present(mask_dir(root, split))
        rep.missing_masks = [os.path.join(mask_dir(root, split), id_str(i) + ".png") for i in ids
                             if id_str(i) + ".png" not in have]
    return rep


def check_coco(root: str, splits: dict[str, str | None], masks: bool = True) -> list[SplitReport]:
    """Check each split of ``splits`` (split -> its list file, None for the shipped one)."""
    if not os.path.isdir(root):
        raise MissingInputError(f"--coco_root {root}: no such folder; give the COCO 2014 folder (train2014/, "
                                "val2014/, annotations/), or make a toy one with python -m advcam.tools.make_toy_coco")
    return [check_split_files(root, s, lst, masks) for s, lst in splits.items()]


def problem_lines(root: str, reports: list[SplitReport], max_lines: int = 10) -> list[str]:
    """The first missing files of each kind, then what to do about them."""
    out = []
    for r in reports:
        for what, items, hint in (
                ("listed ids not in the json", [id_str(i) for i in r.not_in_json],
                 f"give a list of {r.split}'s images (--{r.split[:-4]}_list) or the json of that split"),
                ("missing images", r.missing_images, f"put the {r.split} JPEGs in {os.path.join(root, r.split)}/"),
                ("missing masks", r.missing_masks,
                 f"make them: python -m advcam.tools.make_coco_masks --coco_root {root} --split {r.split}")):
            if items:
                out.append(f"{r.split}: {len(items):,} {what}; the first:")
                out += [f"  {x}" for x in items[:max_lines]]
                out.append(f"  -> {hint}")
    return out
