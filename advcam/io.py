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

from advcam.errors import BadInputError, MissingInputError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    An interrupted write never leaves a truncated ``path`` behind, so "skip existing outputs"
    resumption stays correct. The file gets the permissions a plain ``open(path, "w")`` would give it
    (0666 less the umask), not the private 0600 of a temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
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


def describe_error(e: BaseException) -> str:
    """``Type: first line of the message`` of a library's exception (some span many lines)."""
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0] if lines else ''}".rstrip(": ")


CAM_PASSES = "the CAM pass (make_cam or obtain_CAM_masking.py)"


def load_npy_dict(path: str | os.PathLike, what: str, make_pass: str) -> dict:
    """A dict saved with ``np.save`` (``np.load(..., allow_pickle=True).item()``, as the reference reads it).

    A missing, truncated or foreign file raises one error that names it and the pass that writes it."""
    try:
        obj = np.load(path, allow_pickle=True)
        obj = obj.item() if obj.ndim == 0 else obj
    except FileNotFoundError:
        raise MissingInputError(f"{what} {path} not found: run {make_pass} with the same output folder first") from None
    except Exception as e:  # truncated (EOFError, ValueError), not an .npy (ValueError, UnpicklingError), ...
        raise BadInputError(f"{path}: unreadable {what} ({describe_error(e)}); delete it and rerun "
                            f"{make_pass}, which rewrites missing files") from None
    if not isinstance(obj, dict):
        raise BadInputError(f"{path}: not a {what} (a dict saved with np.save); delete it and rerun {make_pass}")
    return obj


def load_cam_npy(path: str | os.PathLike) -> dict:
    """Load a CAM ``.npy`` as the reference does; a missing or damaged file names itself and the CAM pass."""
    return load_npy_dict(path, "CAM file", CAM_PASSES)


def load_label_png(path: str | os.PathLike, what: str, make_pass: str) -> np.ndarray:
    """A single-channel label PNG as uint8 [H, W] (palette indices for a palette PNG).

    A missing or damaged file raises one error naming it and ``make_pass``, the step that (re)writes it."""
    try:
        with Image.open(path) as img:
            arr = np.asarray(img)
    except FileNotFoundError:
        raise MissingInputError(f"{what} {path} not found: {make_pass}") from None
    except Exception as e:  # truncated or not an image
        raise BadInputError(f"{path}: unreadable {what} ({describe_error(e)}); delete it and rerun: "
                            f"{make_pass}") from None
    if arr.ndim != 2:
        raise BadInputError(f"{path}: expected a single-channel label map, got shape {arr.shape}")
    return arr


def load_checkpoint(path: str | os.PathLike, what: str, make_pass: str):
    """``torch.load`` of a weights file (``weights_only``), with one error naming the file when it is missing or
    is not a torch checkpoint."""
    if not os.path.isfile(path):
        raise MissingInputError(f"{what} {path} not found: {make_pass}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a foreign or truncated file: pickle errors, "invalid load key", zip errors, EOF
        raise BadInputError(f"{path}: not a torch checkpoint ({describe_error(e)}); point the flag at the "
                            f"{what} file, or delete it and {make_pass}") from None
