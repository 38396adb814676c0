"""Image helpers: PIL resizing, random augmentation, crops, normalisation, strided sizes."""
from __future__ import annotations

import random

import numpy as np
from PIL import Image

IMAGENET_MEAN = np.array((0.485, 0.456, 0.406), dtype=np.float32)
IMAGENET_STD = np.array((0.229, 0.224, 0.225), dtype=np.float32)
_MEAN64 = np.array((0.485, 0.456, 0.406), dtype=np.float64)
_STD64 = np.array((0.229, 0.224, 0.225), dtype=np.float64)


def pil_resize(img: np.ndarray, size: tuple[int, int], order: int) -> np.ndarray:
    """Resize to ``size`` = (H, W) with PIL: order 3 bicubic, order 0 nearest."""
    if tuple(size) == img.shape[:2]:
        return img
    resample = Image.BICUBIC if order == 3 else Image.NEAREST
    return np.asarray(Image.fromarray(img).resize((size[1], size[0]), resample))


def pil_rescale(img: np.ndarray, scale: float, order: int) -> np.ndarray:
    """Rescale by ``scale``; the target size is round(H*s) x round(W*s)."""
    h, w = img.shape[:2]
    return pil_resize(img, (int(np.round(h * scale)), int(np.round(w * scale))), order)


def item_rng(seed: int | None, epoch: int, index: int):
    """The generator of one training item's augmentation: seeded by (seed, epoch, index), so that an item is
    augmented alike whatever the number of loader workers or torchrun ranks; Python's global ``random`` when
    ``seed`` is None."""
    if seed is None:
        return random
    return random.Random(int(np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(1)[0]))


def random_resize_long(img: np.ndarray, min_long: int, max_long: int, rng=random) -> np.ndarray:
    """Resize so the long side is a random integer in [min_long, max_long] (bicubic)."""
    target_long = rng.randint(min_long, max_long)
    h, w = img.shape[:2]
    scale = target_long / max(h, w)
    return pil_rescale(img, scale, 3)


def random_scale(img, scale_range: tuple[float, float], order, rng=random):
    """Rescale one array or a tuple of arrays by one random factor in ``scale_range``."""
    s = scale_range[0] + rng.random() * (scale_range[1] - scale_range[0])
    if isinstance(img, tuple):
        return tuple(pil_rescale(i, s, o) for i, o in zip(img, order, strict=True))
    return pil_rescale(img, s, order)


def random_lr_flip(img, rng=random):
    """Flip one array or a tuple of arrays left-right with probability 0.5."""
    if rng.random() < 0.5:
        if isinstance(img, tuple):
            return tuple(np.ascontiguousarray(np.fliplr(m)) for m in img)
        return np.ascontiguousarray(np.fliplr(img))
    return img


def normalize(img: np.ndarray) -> np.ndarray:
    """uint8 RGB -> float32 (x / 255 - mean) / std, computed in float64 and stored as float32, as the reference's
    ``Normalize`` does (so the same image gives the same input tensor bit for bit)."""
    arr = np.asarray(img)
    out = np.empty(arr.shape, np.float32)
    out[...] = (arr / 255.0 - _MEAN64) / _STD64
    return out


def denormalize(img: np.ndarray) -> np.ndarray:
    """Inverse of :func:`normalize` for an HWC float array, back to uint8."""
    return np.clip((img * IMAGENET_STD + IMAGENET_MEAN) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _crop_offsets(length: int, cropsize: int, rng=random) -> tuple[int, int]:
    """(offset in the container, offset in the image) along one side, drawn at random."""
    space = length - cropsize
    if space > 0:
        return 0, rng.randrange(space + 1)
    return rng.randrange(-space + 1), 0


def _crop_boxes(imgsize: tuple[int, int], cropsize: int, rng=random) -> tuple[int, ...]:
    h, w = imgsize
    ch, cw = min(cropsize, h), min(cropsize, w)
    cont_top, img_top = _crop_offsets(h, cropsize, rng)
    cont_left, img_left = _crop_offsets(w, cropsize, rng)
    return cont_top, cont_top + ch, cont_left, cont_left + cw, img_top, img_top + ch, img_left, img_left + cw


def random_crop(images, cropsize: int, default_values, rng=random):
    """Random ``cropsize`` square crop; images smaller than the crop are placed at a random offset in a
    container filled with ``default_values``. Accepts one array or a tuple (same box for all)."""
    single = isinstance(images, np.ndarray)
    if single:
        images, default_values = (images,), (default_values,)
    box = _crop_boxes(images[0].shape[:2], cropsize, rng)
    out = []
    for img, f in zip(images, default_values, strict=True):
        cont = np.full((cropsize, cropsize) + img.shape[2:], f, dtype=img.dtype)
        cont[box[0]:box[1], box[2]:box[3]] = img[box[4]:box[5], box[6]:box[7]]
        out.append(cont)
    return out[0] if single else tuple(out)


def top_left_crop(img: np.ndarray, cropsize: int, default_value) -> np.ndarray:
    """Top-left ``cropsize`` square crop, padded with ``default_value``."""
    h, w = img.shape[:2]
    ch, cw = min(cropsize, h), min(cropsize, w)
    cont = np.full((cropsize, cropsize) + img.shape[2:], default_value, dtype=img.dtype)
    cont[:ch, :cw] = img[:ch, :cw]
    return cont


def get_strided_size(orig_size: tuple[int, int], stride: int) -> tuple[int, int]:
    """ceil(size / stride) per side."""
    return ((orig_size[0] - 1) // stride + 1, (orig_size[1] - 1) // stride + 1)


def get_strided_up_size(orig_size: tuple[int, int], stride: int) -> tuple[int, int]:
    """The smallest multiple of ``stride`` >= size, per side."""
    s = get_strided_size(orig_size, stride)
    return s[0] * stride, s[1] * stride


def colorize_label(label: np.ndarray, palette: list[int]) -> np.ndarray:
    """uint8 label map -> RGB uint8 image through ``palette``."""
    pal = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    return pal[label]
