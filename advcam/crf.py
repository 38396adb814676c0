"""Dense CRF refinement of a hard label map (the reference's ``crf_inference_label``)."""
from __future__ import annotations

import numpy as np

GAUSSIAN_SXY = 3
GAUSSIAN_COMPAT = 3
BILATERAL_SXY = 50
BILATERAL_SRGB = 5
BILATERAL_COMPAT = 10


def _densecrf():
    """The ``pydensecrf`` modules, or an ImportError that says how to install them."""
    try:
        import pydensecrf.densecrf as dcrf
        from pydensecrf.utils import unary_from_labels
    except ImportError as e:
        raise ImportError(
            "the dense CRF needs pydensecrf: `pip install pydensecrf2==1.1` "
            f"(the original PyPI pydensecrf 1.0rc3 does not build on Python >= 3.7) [{e}]"
        ) from e
    return dcrf, unary_from_labels


def crf_inference_label(img: np.ndarray, labels: np.ndarray, n_labels: int, t: int = 10,
                        gt_prob: float = 0.7) -> np.ndarray:
    """Labels [H, W] (int64, 0..n_labels-1) after ``t`` mean-field steps of a DenseCRF seeded with ``labels``.

    ``img``: RGB uint8 [H, W, 3]; ``labels``: int [H, W] in ``[0, n_labels)``.
    """
    img = np.asarray(img)
    labels = np.asarray(labels)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image [H, W, 3], got {img.dtype} {img.shape}")
    h, w = img.shape[:2]
    if labels.shape != (h, w):
        raise ValueError(f"labels have shape {labels.shape}, the image is {h}x{w}")
    if n_labels < 1:
        raise ValueError(f"n_labels must be >= 1, got {n_labels}")
    if n_labels == 1:
        return np.zeros((h, w), np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= n_labels):
        raise ValueError(f"labels must lie in [0, {n_labels}), got [{labels.min()}, {labels.max()}]")
    dcrf, unary_from_labels = _densecrf()
    d = dcrf.DenseCRF2D(w, h, n_labels)
    unary = unary_from_labels(labels.astype(np.int64), n_labels, gt_prob=gt_prob, zero_unsure=False)
    d.setUnaryEnergy(np.ascontiguousarray(unary))
    d.addPairwiseGaussian(sxy=GAUSSIAN_SXY, compat=GAUSSIAN_COMPAT)
    d.addPairwiseBilateral(sxy=BILATERAL_SXY, srgb=BILATERAL_SRGB, rgbim=np.array(img, order="C", copy=True),
                           compat=BILATERAL_COMPAT)
    q = d.inference(t)
    return np.argmax(np.asarray(q).reshape((n_labels, h, w)), axis=0)


# kazuto1011/deeplab-pytorch configs/voc12.yaml, block CRF: the final segmentation network's refinement
SEG_CRF_ITERS = 10
SEG_GAUSSIAN_SXY, SEG_GAUSSIAN_COMPAT = 1, 3
SEG_BILATERAL_SXY, SEG_BILATERAL_SRGB, SEG_BILATERAL_COMPAT = 67, 3, 4


def crf_inference_probs(img: np.ndarray, probs: np.ndarray, t: int = SEG_CRF_ITERS,
                        gaussian_sxy: float = SEG_GAUSSIAN_SXY, gaussian_compat: float = SEG_GAUSSIAN_COMPAT,
                        bilateral_sxy: float = SEG_BILATERAL_SXY, bilateral_srgb: float = SEG_BILATERAL_SRGB,
                        bilateral_compat: float = SEG_BILATERAL_COMPAT) -> np.ndarray:
    """Class probabilities [C, H, W] (float32) after ``t`` mean-field steps of a DenseCRF whose unary is
    -log ``probs``, with deeplab-pytorch's VOC kernels by default.

    ``img``: the raw RGB uint8 image [H, W, 3] (deeplab-pytorch passes its mean-subtracted image cast to uint8,
    which wraps negative values; that is not reproduced). ``probs``: [C, H, W], each pixel summing to 1.
    """
    img = np.asarray(img)
    probs = np.asarray(probs, dtype=np.float32)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image [H, W, 3], got {img.dtype} {img.shape}")
    if probs.ndim != 3 or probs.shape[1:] != img.shape[:2]:
        raise ValueError(f"probabilities have shape {probs.shape}, the image is {img.shape[0]}x{img.shape[1]}")
    c, h, w = probs.shape
    dcrf, _ = _densecrf()
    from pydensecrf.utils import unary_from_softmax
    d = dcrf.DenseCRF2D(w, h, c)
    d.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs)))
    d.addPairwiseGaussian(sxy=gaussian_sxy, compat=gaussian_compat)
    d.addPairwiseBilateral(sxy=bilateral_sxy, srgb=bilateral_srgb, rgbim=np.ascontiguousarray(img),
                           compat=bilateral_compat)
    return np.asarray(d.inference(t), dtype=np.float32).reshape(c, h, w)
