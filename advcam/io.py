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


CAM_FORMATS = ("float32", "float16", "strided16")
"""The forms of a CAM ``.npy`` (``--cam_format``). ``float32``: the reference's file ("keys"; "cam" [K, ceil(H/4),
ceil(W/4)] as a float32 torch tensor; "high_res" [K, H, W] as a float32 numpy array). ``float16``: the same dict with
both maps in half precision. ``strided16``: "keys", "cam" in half precision and "size" (H, W), no "high_res": the
reader recomputes it from "cam" (:func:`high_res_from_cam`), as the reference's make_sem_seg upsamples "cam"."""


def add_cam_format_flag(group, default: str = "float32") -> None:
    """``--cam_format`` of the passes that write CAM files (make_cam, obtain_CAM_masking.py)."""
    group.add_argument("--cam_format", default=default, choices=CAM_FORMATS,
                       help="how the CAM files are stored: float32 (the reference's), float16 (both maps in half "
                            "precision, half the disk), strided16 (the stride-4 map in half precision only, the "
                            "full-resolution one recomputed on read: 1/34 of the disk; the default with --dataset "
                            "coco14, docs/coco.md); every reader takes all three")


def save_cam_npy(path: str | os.PathLike, keys, cam, high_res, cam_format: str = "float32") -> None:
    """Save one image's maps in the reference format, or a compact form of it (``cam_format``, see
    :data:`CAM_FORMATS`).

    ``keys``: 0-based positive class indices (stored as an int64 torch tensor);
    ``cam``: [K, ceil(H/4), ceil(W/4)] stored as a torch tensor;
    ``high_res``: [K, H, W] stored as a numpy array (``strided16``: only its size is stored).
    """
    if cam_format not in CAM_FORMATS:
        raise ValueError(f"cam_format {cam_format!r}: expected one of {', '.join(CAM_FORMATS)}")
    dtype, np_dtype = (torch.float32, np.float32) if cam_format == "float32" else (torch.float16, np.float16)
    keys_t = torch.as_tensor(np.asarray(keys), dtype=torch.int64).reshape(-1)
    cam_t = torch.as_tensor(cam).detach().to("cpu", dtype)
    hr = high_res.detach().cpu().numpy() if torch.is_tensor(high_res) else np.asarray(high_res)
    if cam_format == "strided16":
        obj = {"keys": keys_t, "cam": cam_t, "size": (int(hr.shape[-2]), int(hr.shape[-1]))}
    else:
        obj = {"keys": keys_t, "cam": cam_t, "high_res": hr.astype(np_dtype, copy=False)}
    save_npy(path, obj)


def high_res_from_cam(cam, size: tuple[int, int]) -> np.ndarray:
    """The full-resolution maps [K, H, W] (float32, each channel divided by its max + 1e-5) of a stride-4 "cam"
    [K, ceil(H/4), ceil(W/4)]: bilinear x4 (align_corners=False) cropped to ``size``, as the reference's
    make_sem_seg upsamples the strided map."""
    cam_t = torch.as_tensor(cam).to(torch.float32)
    h, w = int(size[0]), int(size[1])
    if cam_t.shape[0] == 0:
        return np.zeros((0, h, w), np.float32)
    up = torch.nn.functional.interpolate(cam_t[None], scale_factor=4, mode="bilinear", align_corners=False)[0]
    up = up[:, :h, :w]
    up = up / (up.flatten(1).amax(1)[:, None, None] + 1e-5)
    return up.numpy()


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
    """Load a CAM ``.npy`` as the reference does, in any of :data:`CAM_FORMATS`: the dict of the reference's float32
    file ("cam" a float32 tensor, "high_res" a float32 array; a ``strided16`` file gains "high_res" recomputed by
    :func:`high_res_from_cam`). A missing or damaged file names itself and the CAM pass."""
    d = load_npy_dict(path, "CAM file", CAM_PASSES)
    if torch.is_tensor(d.get("cam")) and d["cam"].dtype != torch.float32:
        d["cam"] = d["cam"].to(torch.float32)
    elif isinstance(d.get("cam"), np.ndarray) and d["cam"].dtype == np.float16:
        d["cam"] = d["cam"].astype(np.float32)
    if "high_res" in d:
        hr = d["high_res"]
        if isinstance(hr, np.ndarray) and hr.dtype == np.float16:
            d["high_res"] = hr.astype(np.float32)
    elif "cam" in d and "size" in d:
        try:
            d["high_res"] = high_res_from_cam(d["cam"], d["size"])
        except (TypeError, ValueError, RuntimeError) as e:
            raise BadInputError(f"{path}: a strided16 CAM file whose 'cam' or 'size' is damaged ({describe_error(e)}); "
                                f"delete it and rerun {CAM_PASSES}") from None
    return d


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
