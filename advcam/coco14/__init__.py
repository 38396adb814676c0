"""MS COCO 2014 for weakly supervised segmentation: the 80 classes, their label values, the root's layout.

Category ids run 1..90 with ten unused ids (12, 26, 29, 30, 45, 66, 68, 69, 71, 83); the IRN family maps them
monotonically to the labels 1..80 (the rank of the sorted id), 0 being background: 81 outputs for a segmentation
network, 80 for the classifier. The image-level label vector's index ``k`` is label ``k + 1``.

Root layout (the official one): ``<root>/train2014/COCO_train2014_<12-digit id>.jpg``, ``<root>/val2014/...``,
``<root>/annotations/instances_{train,val}2014.json``; ground-truth masks made by
``python -m advcam.tools.make_coco_masks`` go to ``<root>/mask/<split>/<12-digit id>.png``.
"""
from __future__ import annotations

import os

from advcam.data import DATA_DIR as _SHIPPED
from advcam.data import shipped_file
from advcam.errors import BadInputError, MissingInputError
from advcam.voc12 import VOC_PALETTE

DATA_DIR: str = os.path.join(_SHIPPED, "coco14")
"""The packaged ``coco14/`` lists (``train14.txt``: 82,783 ids, ``val14.txt``: 40,504 ids; see its README)."""

# (category id, name) in category-id order, as in instances_{train,val}2014.json
CATEGORIES: tuple[tuple[int, str], ...] = (
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"), (7, "train"),
    (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"), (13, "stop sign"),
    (14, "parking meter"), (15, "bench"), (16, "bird"), (17, "cat"), (18, "dog"), (19, "horse"), (20, "sheep"),
    (21, "cow"), (22, "elephant"), (23, "bear"), (24, "zebra"), (25, "giraffe"), (27, "backpack"),
    (28, "umbrella"), (31, "handbag"), (32, "tie"), (33, "suitcase"), (34, "frisbee"), (35, "skis"),
    (36, "snowboard"), (37, "sports ball"), (38, "kite"), (39, "baseball bat"), (40, "baseball glove"),
    (41, "skateboard"), (42, "surfboard"), (43, "tennis racket"), (44, "bottle"), (46, "wine glass"), (47, "cup"),
    (48, "fork"), (49, "knife"), (50, "spoon"), (51, "bowl"), (52, "banana"), (53, "apple"), (54, "sandwich"),
    (55, "orange"), (56, "broccoli"), (57, "carrot"), (58, "hot dog"), (59, "pizza"), (60, "donut"), (61, "cake"),
    (62, "chair"), (63, "couch"), (64, "potted plant"), (65, "bed"), (67, "dining table"), (70, "toilet"),
    (72, "tv"), (73, "laptop"), (74, "mouse"), (75, "remote"), (76, "keyboard"), (77, "cell phone"),
    (78, "microwave"), (79, "oven"), (80, "toaster"), (81, "sink"), (82, "refrigerator"), (84, "book"),
    (85, "clock"), (86, "vase"), (87, "scissors"), (88, "teddy bear"), (89, "hair drier"), (90, "toothbrush"),
)
CATEGORY_IDS: tuple[int, ...] = tuple(c for c, _ in CATEGORIES)
CAT_LIST: tuple[str, ...] = tuple(n for _, n in CATEGORIES)
NUM_CLASSES = len(CAT_LIST)  # 80 foreground classes; segmentation label = index + 1, 0 = background
CAT_ID_TO_LABEL: dict[int, int] = {c: i + 1 for i, c in enumerate(CATEGORY_IDS)}
"""COCO category id (1..90) -> segmentation label (1..80)."""
LABEL_TO_CAT_ID: dict[int, int] = {v: k for k, v in CAT_ID_TO_LABEL.items()}
IGNORE_LABEL = 255
BACKGROUND = 0
PALETTE: list[int] = VOC_PALETTE
"""256 RGB triplets, flattened (the VOC devkit's colour map, which extends to any label value)."""

SPLITS: tuple[str, ...] = ("train2014", "val2014")
PACKAGED_LIST: dict[str, str] = {"train2014": "train14.txt", "val2014": "val14.txt"}


def check_split(split: str) -> str:
    """``split`` if it is one of :data:`SPLITS`, else a one-line error."""
    if split not in SPLITS:
        raise BadInputError(f"--split {split}: expected one of {', '.join(SPLITS)}")
    return split


def id_str(image_id: int | str) -> str:
    """The 12-digit zero-padded form of an image id (``57870`` -> ``000000057870``)."""
    return f"{int(image_id):012d}"


def json_path(root: str, split: str) -> str:
    """``<root>/annotations/instances_<split>.json``."""
    return os.path.join(root, "annotations", f"instances_{split}.json")


def image_path(root: str, split: str, image_id: int | str) -> str:
    """``<root>/<split>/COCO_<split>_<12-digit id>.jpg``."""
    return os.path.join(root, split, f"COCO_{split}_{id_str(image_id)}.jpg")


def mask_dir(root: str, split: str) -> str:
    """``<root>/mask/<split>``: where the ground-truth label PNGs go."""
    return os.path.join(root, "mask", split)


def mask_path(root: str, split: str, image_id: int | str) -> str:
    """``<root>/mask/<split>/<12-digit id>.png``."""
    return os.path.join(mask_dir(root, split), id_str(image_id) + ".png")


def resolve_list(path: str) -> str:
    """``path`` if it exists, else the shipped file it names (``coco14/val14.txt``) from any folder."""
    if os.path.isfile(path):
        return path
    shipped = shipped_file(path)
    if shipped is not None:
        return shipped
    raise MissingInputError(f"{path}: no such list file; give a file of image ids, one a line "
                            f"(the shipped ones are coco14/train14.txt and coco14/val14.txt)")


def default_list(split: str) -> str:
    """The packaged list of every image of ``split`` (the IRN-family convention)."""
    return os.path.join(DATA_DIR, PACKAGED_LIST[check_split(split)])


def read_id_list(path: str) -> list[int]:
    """Image ids from a list file: one a line, as 12-digit ids, plain integers or ``COCO_<split>_<id>`` stems."""
    path = resolve_list(path)
    ids = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            s = line.strip()
            if not s:
                continue
            s = s.rsplit("_", 1)[-1].split(".")[0]
            if not s.isdigit():
                raise BadInputError(f"{path}, line {n}: {line.strip()!r} is not an image id; "
                                    "a list holds one id a line (e.g. 000000057870)")
            ids.append(int(s))
    return ids
