"""PASCAL VOC 2012 data layer: class names, palette, image lists, labels and datasets."""
import os

from advcam.data import DATA_DIR as _SHIPPED

DATA_DIR: str = os.path.join(_SHIPPED, "voc12")
"""The shipped ``advcam/data/voc12/`` folder: the benchmark's split lists and image-level labels (see its README)."""
PACKAGED_CLS_LABELS: str = os.path.join(DATA_DIR, "cls_labels.npy")
"""The shipped VOC 2012 image-level labels (train_aug and val, 12,031 images) in the reference's format."""

CAT_LIST: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
NUM_CLASSES = len(CAT_LIST)  # 20 foreground classes; segmentation label = index + 1, 0 = background
CAT_NAME_TO_NUM: dict[str, int] = {name: i for i, name in enumerate(CAT_LIST)}
IGNORE_LABEL = 255


def _voc_palette() -> list[int]:
    """The standard VOC colour map (256 RGB triplets, flattened), as in the devkit's labelcolormap."""
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal.extend((r, g, b))
    return pal


VOC_PALETTE: list[int] = _voc_palette()
