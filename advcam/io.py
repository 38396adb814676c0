"""Atomic file output and the reference CAM ``.npy`` format."""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    An interrupted write never leaves a truncated ``path`` behind, so "skip existing outputs"
    resumption stays correct.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def missing_files(names: list[str], folder: str, suffix: str) -> list[str]:
    """Ids whose ``<folder>/<id><suffix>`` does not exist.

    Outputs are written atomically, so an existing file is a complete one: this is both the "still to do"
    list of a resumable pass and the "missing inputs" list of the pass that reads them.
    """
    return [n for n in names if not os.path.isfile(os.path.join(folder, n + suffix))]


def save_npy(path: str | os.PathLike, obj) -> None:
    """``np.save`` written atomically (a dict is stored as a 0-d object array, as the reference does)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, obj)


def save_torch(path: str | os.PathLike, obj) -> None:
    """``torch.save`` written atomically."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_png(path: str | os.PathLike, array: np.ndarray, palette: list[int] | None = None) -> None:
    """Write a uint8 label map (or an RGB image) as PNG atomically; with ``palette`` as a palette PNG."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"{path}: expected a uint8 array, got {array.dtype}")
    img = Image.fromarray(array)
    if palette is not None:
        img = img.convert("P")
        img.putpalette(palette)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def save_cam_npy(path: str | os.PathLike, keys, cam, high_res) -> None:
    """Save one image's maps in the reference format.

    ``keys``: 0-based positive class indices (stored as an int64 torch tensor);
    ``cam``: [K, ceil(H/4), ceil(W/4)] stored as a float32 torch tensor;
    ``high_res``: [K, H, W] stored as a float32 numpy array.
    """
    keys_t = torch.as_tensor(np.asarray(keys), dtype=torch.int64).reshape(-1)
    cam_t = torch.as_tensor(cam).detach().to("cpu", torch.float32)
    hr = high_res.detach().cpu().numpy() if torch.is_tensor(high_res) else np.asarray(high_res)
    save_npy(path, {"keys": keys_t, "cam": cam_t, "high_res": hr.astype(np.float32, copy=False)})


def load_cam_npy(path: str | os.PathLike) -> dict:
    """Load a CAM ``.npy`` as the reference does (``np.load(..., allow_pickle=True).item()``)."""
    try:
        return np.load(path, allow_pickle=True).item()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"CAM file {path} not found: run the CAM pass (make_cam or obtain_CAM_masking.py) "
            f"with the same --cam_out_dir first"
        ) from None
