"""Check a VOC root before a long run: every listed image has the files the pipeline will read.

:func:`check_voc` takes the lists the passes will read (resolved exactly as they resolve them, by
:func:`advcam.voc12.dataloader.resolve_list`: the path as given, else the shipped ``voc12/<file>``, else the file of
that name in ``<voc12_root>/ImageSets/Segmentation/``; the evaluated split by
:func:`advcam.voc12.dataloader.eval_list_path`, as the eval passes find it) and reports, per list, how many ids have
their JPEG (``JPEGImages/<id>.jpg``), their ground truth (``SegmentationClass/<id>.png``) and an image-level label
(from the source the pipeline would use, see :func:`advcam.voc12.dataloader.cls_labels_source`), and which files are
missing. It reads no image and writes nothing. ``advcam-check-voc`` (``python -m advcam.tools.check_voc``) is its
command line.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from advcam.errors import MissingInputError, UserError
from advcam.voc12.dataloader import (
    IMG_FOLDER_NAME,
    SEG_FOLDER_NAME,
    cls_labels_source,
    eval_list_path,
    load_cls_labels,
    load_img_name_list,
    missing_label_hint,
    resolve_list,
)

KINDS = ("list", "JPEG", "PNG", "label")
_FOLDER = {"JPEG": (IMG_FOLDER_NAME, ".jpg"), "PNG": (SEG_FOLDER_NAME, ".png")}
_HINTS = {
    "list": "give existing list files (the benchmark's ship with advcam: voc12/train_aug.txt, voc12/train.txt, ...)",
    "JPEG": "put every listed image in <voc12_root>/JPEGImages/ (train_aug needs the SBD images merged into it)",
    "PNG": "put the VOC 2012 train and val ground truth (palette PNGs) in <voc12_root>/SegmentationClass/",
    "label": "give image-level labels for every listed image (--cls_labels FILE, or <voc12_root>/Annotations/)",
}


@dataclass(frozen=True)
class ListSpec:
    """One image list to check and what each of its ids needs."""

    flag: str  # how the report names the list, e.g. "--train_list"
    path: str  # the list file as the pipeline is given it
    jpeg: bool = True
    png: bool = False
    label: bool = False
    eval_set: bool = False  # ``path`` is a --chainer_eval_set value, found as the eval passes find it


@dataclass
class Problem:
    """A missing or unusable input: ``what`` names the file (or the id and the label file)."""

    kind: str  # one of KINDS
    what: str
    lists: list[str] = field(default_factory=list)  # the flags of the lists that need it
    count: int = 1  # how many ids it stands for (a whole missing folder stands for all of them)


@dataclass
class ListReport:
    """Counts for one list: ``present[kind]`` of ``len(names)`` ids have their file of that kind."""

    spec: ListSpec
    path: str  # the file actually read ("" when it was not found)
    names: list[str]
    present: dict[str, int]
    label_source: tuple[str, str] | None = None  # (kind, path) as cls_labels_source gives it


@dataclass
class VocCheckReport:
    """The result of :func:`check_voc`."""

    voc12_root: str
    lists: list[ListReport]
    problems: list[Problem]
    label_hints: list[str] = field(default_factory=list)  # what to do about labels missing from a label file

    @property
    def ok(self) -> bool:
        return not self.problems

    def count_lines(self) -> list[str]:
        """One line per list: its file, its ids and how many have each needed file."""
        rows = []
        for r in self.lists:
            parts = [f"{len(r.names)} ids"]
            needs = [k for k, need in (("JPEG", r.spec.jpeg), ("PNG", r.spec.png), ("label", r.spec.label)) if need]
            parts += [f"{k} {r.present.get(k, 0)}/{len(r.names)}" for k in needs]
            if r.label_source is not None:
                parts[-1] += f" ({r.label_source[0]}: {r.label_source[1]})"
            rows.append((r.spec.flag, r.path or r.spec.path, ", ".join(parts)))
        w1 = max((len(a) for a, _, _ in rows), default=0)
        w2 = max((len(b) for _, b, _ in rows), default=0)
        return [f"  {a:<{w1}}  {b:<{w2}}  {c}" for a, b, c in rows]

    def problem_lines(self, limit: int = 10) -> list[str]:
        """The first ``limit`` problems, one line each, and how many more there are."""
        lines = []
        for p in self.problems[:limit]:
            more = f", stands for {p.count} ids" if p.count > 1 else ""
            lines.append(f"missing {p.kind}: {p.what} ({', '.join(p.lists)}{more})")
        if len(self.problems) > limit:
            lines.append(f"... and {len(self.problems) - limit} more")
        return lines

    def summary(self) -> str:
        """One line: OK, or how many files are missing of each kind and what to do."""
        if self.ok:
            total = len(set().union(*(r.names for r in self.lists)))
            return f"check_voc: OK: {self.voc12_root} has every file that the {total} listed ids need"
        by_kind = {k: sum(p.count for p in self.problems if p.kind == k) for k in KINDS}
        counts = ", ".join(f"{n} {k}" for k, n in by_kind.items() if n)
        hints = [_HINTS[k] for k, n in by_kind.items() if n and k != "label"] + self.label_hints
        hints = "; ".join(hints)
        return f"check_voc: {self.voc12_root} is incomplete ({counts} missing): {hints}"


def default_specs(voc12_root: str, train_list: str | None = "voc12/train_aug.txt",
                  train_seg_list: str | None = "voc12/train.txt", val_list: str | None = "voc12/val.txt",
                  test_list: str | None = None, chainer_eval_set: str | None = "train") -> list[ListSpec]:
    """The lists the reference pipeline reads, with what each needs (``None`` leaves a list out):

    ``train_list`` (train_aug: classifier, AdvCAM, IRN): JPEG and label; ``train_seg_list`` (VOC train: the
    seeds and masks are scored on it) and ``val_list``: JPEG, PNG and label; ``test_list``: JPEG only; and
    ``chainer_eval_set``, the ids the eval passes score (a split name: the root's ``ImageSets/Segmentation/<set>.txt``,
    else the shipped ``voc12/<set>.txt``; or a list file, see :func:`advcam.voc12.dataloader.eval_list_path`): PNG.
    """
    specs = []
    if train_list:
        specs.append(ListSpec("--train_list", train_list, jpeg=True, label=True))
    if train_seg_list:
        specs.append(ListSpec("--train_seg_list", train_seg_list, jpeg=True, png=True, label=True))
    if val_list:
        specs.append(ListSpec("--val_list", val_list, jpeg=True, png=True, label=True))
    if test_list:
        specs.append(ListSpec("--test_list", test_list, jpeg=True))
    if chainer_eval_set:
        specs.append(ListSpec("--chainer_eval_set", chainer_eval_set, jpeg=False, png=True, eval_set=True))
    return specs


class _Problems:
    """Problems deduplicated by (kind, what), each remembering every list that needs it."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], Problem] = {}

    def add(self, kind: str, what: str, flag: str, count: int = 1) -> None:
        p = self.items.setdefault((kind, what), Problem(kind, what, [], count))
        if flag not in p.lists:
            p.lists.append(flag)


def check_voc(voc12_root: str, lists: Sequence[ListSpec], cls_labels: str | None = None) -> VocCheckReport:
    """Check that ``voc12_root`` has every file that ``lists`` need (see the module docstring).

    ``cls_labels`` is the ``--cls_labels`` file the pipeline will be given, if any. Raises
    :class:`~advcam.errors.MissingInputError` when ``voc12_root`` is not a folder; every other gap is a
    :class:`Problem` of the report, in the order found.
    """
    if not os.path.isdir(voc12_root):
        raise MissingInputError(f"--voc12_root {voc12_root} is not a folder: point it at PASCAL VOC 2012 "
                                "(JPEGImages/, SegmentationClass/, ImageSets/Segmentation/)")
    from advcam.voc12.make_cls_labels import labels_from_xml

    problems = _Problems()
    reports = []
    hints: dict[str, None] = {}  # what to do about missing labels, per label source (ordered, unique)
    tables: dict[str, dict] = {}
    xml_ok: dict[str, str | None] = {}  # xml path -> None if usable, else what is wrong with it
    for spec in lists:
        try:
            if spec.eval_set:
                path = eval_list_path(spec.path, voc12_root, spec.flag)
            else:
                path = resolve_list(spec.path, voc12_root)
            names = load_img_name_list(path)
        except UserError as e:
            problems.add("list", str(e) if spec.eval_set else f"{spec.path} ({e})", spec.flag)
            reports.append(ListReport(spec, "", [], {}))
            continue
        present: dict[str, int] = {}
        for kind, need in (("JPEG", spec.jpeg), ("PNG", spec.png)):
            if not need:
                continue
            sub, suffix = _FOLDER[kind]
            folder = os.path.join(voc12_root, sub)
            if not os.path.isdir(folder):
                problems.add(kind, folder + os.sep + " (the folder)", spec.flag, count=len(names))
                present[kind] = 0
                continue
            files = [os.path.join(folder, n + suffix) for n in names]
            gone = [f for f in files if not os.path.isfile(f)]
            for f in gone:
                problems.add(kind, f, spec.flag)
            present[kind] = len(names) - len(gone)
        source = None
        if spec.label:
            try:
                source = cls_labels_source(voc12_root, names, cls_labels)
            except MissingInputError as e:
                problems.add("label", str(e), spec.flag, count=len(names))
                hints.setdefault(_HINTS["label"])
                present["label"] = 0
            else:
                kind, src = source
                if kind == "annotations":
                    bad = 0
                    for n in names:
                        xml = os.path.join(src, n + ".xml")
                        if xml not in xml_ok:
                            try:
                                labels_from_xml(xml)
                                xml_ok[xml] = None
                            except MissingInputError:
                                xml_ok[xml] = xml
                            except UserError:
                                xml_ok[xml] = xml + " (not valid XML)"
                        if xml_ok[xml] is not None:
                            problems.add("label", xml_ok[xml], spec.flag)
                            bad += 1
                    if bad:
                        hints.setdefault(missing_label_hint(kind, src, voc12_root))
                    present["label"] = len(names) - bad
                else:
                    if src not in tables:
                        tables[src] = load_cls_labels(src)
                    gone = [n for n in names if n not in tables[src]]
                    for n in gone:
                        problems.add("label", f"{n} in {src}", spec.flag)
                    if gone:
                        hints.setdefault(missing_label_hint(kind, src, voc12_root))
                    present["label"] = len(names) - len(gone)
        reports.append(ListReport(spec, path, names, present, source))
    # a missing list or folder first: it explains more than any one file
    found = sorted(problems.items.values(), key=lambda p: (p.kind != "list", p.count == 1))
    return VocCheckReport(voc12_root, reports, found, list(hints))
