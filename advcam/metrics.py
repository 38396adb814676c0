"""Evaluation metrics: semantic-segmentation confusion matrix / IoU and VOC instance-segmentation AP.

Re-implements what the reference repositories took from chainercv (confusion matrix, IoU, mIoU and
``eval_instance_segmentation_voc``) plus the extra numbers their eval passes print (FP/FN ratios,
AdvCAM's ``among_predfg_bg``).
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

import numpy as np

from advcam.voc12 import CAT_LIST, IGNORE_LABEL

VOC_SEG_CLASS_NAMES: tuple[str, ...] = ("background",) + tuple(CAT_LIST)


def _nanmean(x: np.ndarray) -> float:
    """Mean over the non-NaN entries; NaN (without a warning) when there are none."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0 or np.all(np.isnan(x)):
        return float("nan")
    return float(np.nanmean(x))


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Element-wise num / den as float64, NaN where den == 0."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


# --------------------------------------------------------------------------------------------------
# semantic segmentation
# --------------------------------------------------------------------------------------------------


class ConfusionMatrix:
    """Pixel confusion matrix accumulated over images: ``matrix[gt, pred]`` (int64, num_classes²).

    Ground-truth pixels equal to 255 (VOC "ignore") or negative (chainercv's -1) are skipped.
    """

    def __init__(self, num_classes: int = 21) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def reset(self) -> None:
        """Zero the accumulated counts."""
        self.matrix[...] = 0

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one image (or any same-shaped pair of label arrays) to the matrix."""
        pred = np.asarray(pred)
        gt = np.asarray(gt)
        if pred.shape != gt.shape:
            raise ValueError(f"prediction shape {pred.shape} does not match ground-truth shape {gt.shape}")
        for what, arr in (("prediction", pred), ("ground truth", gt)):
            if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
                raise ValueError(f"{what} labels must be integers, got dtype {arr.dtype}")
        n = self.num_classes
        gt = gt.astype(np.int64, copy=False).ravel()
        pred = pred.astype(np.int64, copy=False).ravel()
        valid = (gt >= 0) & (gt != IGNORE_LABEL)
        gt = gt[valid]
        pred = pred[valid]
        if gt.size == 0:
            return
        if gt.max() >= n:
            raise ValueError(f"ground-truth label {int(gt.max())} is outside [0, {n}) (only {IGNORE_LABEL} and "
                             f"negative values are ignored)")
        pmin, pmax = int(pred.min()), int(pred.max())
        if pmin < 0 or pmax >= n:
            bad = pmin if pmin < 0 else pmax
            raise ValueError(f"prediction label {bad} is outside [0, {n}); map ignore/void predictions "
                             f"(e.g. {IGNORE_LABEL}) to a valid class before calling update()")
        self.matrix += np.bincount(gt * n + pred, minlength=n * n).reshape(n, n)


def confusion_matrix(preds: Iterable[np.ndarray], gts: Iterable[np.ndarray], num_classes: int = 21) -> np.ndarray:
    """Confusion matrix ``[gt, pred]`` summed over paired prediction / ground-truth label maps."""
    cm = ConfusionMatrix(num_classes)
    for pred, gt in zip(preds, gts, strict=True):
        cm.update(pred, gt)
    return cm.matrix


def iou(conf: np.ndarray) -> np.ndarray:
    """Per-class IoU ``C_ii / (row_i + col_i - C_ii)``; NaN for classes absent from both GT and prediction."""
    conf = np.asarray(conf)
    diag = np.diag(conf)
    return _safe_div(diag, conf.sum(axis=1) + conf.sum(axis=0) - diag)


def mean_iou(conf: np.ndarray) -> float:
    """Mean of the per-class IoUs over classes where it is defined (nanmean)."""
    return _nanmean(iou(conf))


def pixel_accuracy(conf: np.ndarray) -> float:
    """Share of counted pixels whose prediction equals the ground truth (NaN if no pixel was counted)."""
    conf = np.asarray(conf)
    total = conf.sum()
    return float(np.trace(conf) / total) if total else float("nan")


def fp_fn_ratios(conf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class ``(fp, fn)`` as the reference eval_sem_seg names and prints them.

    With ``gtj`` = row sums (GT pixels of class j), ``resj`` = column sums (predicted pixels of class j)
    and ``denom = gtj + resj - C_jj`` (the union):

    - ``fp = 1 - gtj / denom`` = (resj - C_jj) / union: false-positive pixels of class j over the union;
    - ``fn = 1 - resj / denom`` = (gtj - C_jj) / union: false-negative pixels of class j over the union.

    NaN where the union is empty. The reference prints ``fp[0], fn[0]`` (background) and the means of
    ``fp[1:]``, ``fn[1:]`` (foreground).
    """
    conf = np.asarray(conf)
    gtj = conf.sum(axis=1).astype(np.float64)
    resj = conf.sum(axis=0).astype(np.float64)
    denom = gtj + resj - np.diag(conf)
    return 1.0 - _safe_div(gtj, denom), 1.0 - _safe_div(resj, denom)


def among_predfg_bg(conf: np.ndarray) -> float:
    """Share of predicted-foreground pixels (class >= 1) whose ground truth is background (NaN if none)."""
    conf = np.asarray(conf)
    pred_fg = conf[:, 1:].sum()
    return float(conf[0, 1:].sum() / pred_fg) if pred_fg else float("nan")


def format_iou_table(ious: Sequence[float] | np.ndarray,
                     class_names: Sequence[str] = VOC_SEG_CLASS_NAMES) -> str:
    """Per-class IoU table (percent, 2 decimals; "n/a" for NaN) ending with the mIoU row."""
    ious = np.asarray(ious, dtype=np.float64)
    if len(ious) != len(class_names):
        raise ValueError(f"{len(ious)} IoU values but {len(class_names)} class names")

    def pct(v: float) -> str:
        return "n/a" if np.isnan(v) else f"{100.0 * v:.2f}"

    width = max([len(str(c)) for c in class_names] + [len("mIoU"), len("class")])
    lines = [f"{'class':<{width}}  {'IoU (%)':>8}", "-" * (width + 10)]
    lines += [f"{str(name):<{width}}  {pct(v):>8}" for name, v in zip(class_names, ious, strict=True)]
    lines.append("-" * (width + 10))
    lines.append(f"{'mIoU':<{width}}  {pct(_nanmean(ious)):>8}")
    return "\n".join(lines)


def summarize(conf: np.ndarray) -> dict:
    """All semantic-segmentation numbers of a confusion matrix in one dict.

    Keys: "iou" (per class), "miou", "pixel_acc", "fp", "fn" (per class, see fp_fn_ratios), "among_predfg_bg".
    """
    fp, fn = fp_fn_ratios(conf)
    return {
        "iou": iou(conf),
        "miou": mean_iou(conf),
        "pixel_acc": pixel_accuracy(conf),
        "fp": fp,
        "fn": fn,
        "among_predfg_bg": among_predfg_bg(conf),
    }


# --------------------------------------------------------------------------------------------------
# instance segmentation (VOC AP)
# --------------------------------------------------------------------------------------------------


def mask_iou(masks_a: np.ndarray, masks_b: np.ndarray) -> np.ndarray:
    """IoU between every pair of boolean masks: [N,H,W] x [K,H,W] -> [N,K] (0 where both masks are empty)."""
    a = np.asarray(masks_a, dtype=bool)
    b = np.asarray(masks_b, dtype=bool)
    if a.ndim != 3 or b.ndim != 3 or a.shape[1:] != b.shape[1:]:
        raise ValueError(f"mask arrays must be [N,H,W] with equal H,W; got {a.shape} and {b.shape}")
    out = np.zeros((len(a), len(b)), dtype=np.float64)
    if len(a) == 0 or len(b) == 0:
        return out
    area_a = a.reshape(len(a), -1).sum(axis=1)
    area_b = b.reshape(len(b), -1).sum(axis=1)
    for j, mb in enumerate(b):
        inter = np.logical_and(a, mb[None]).reshape(len(a), -1).sum(axis=1)
        out[:, j] = _safe_div(inter, area_a + area_b[j] - inter)
    return np.nan_to_num(out, nan=0.0)


def voc_ap(prec: np.ndarray, rec: np.ndarray, use_07_metric: bool = False) -> float:
    """Average precision of one precision/recall curve (VOC2010+ area, or VOC2007 11-point)."""
    prec = np.nan_to_num(np.asarray(prec, dtype=np.float64))
    rec = np.asarray(rec, dtype=np.float64)
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            sel = rec >= t
            ap += (prec[sel].max() if sel.any() else 0.0) / 11.0
        return float(ap)
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope: non-increasing in recall
    idx = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def match_instances(pred_mask: np.ndarray, pred_label: np.ndarray, pred_score: np.ndarray, gt_mask: np.ndarray,
                    gt_label: np.ndarray, iou_thresh: float = 0.5, image: int = 0) -> dict[int, tuple]:
    """One image's share of VOC instance AP: {class: (ground-truth count, scores [R_c], matches int8 [R_c])}, the
    class's predictions in descending score order, 1 for a true positive (see
    :func:`eval_instance_segmentation_voc`); ``image`` names the image in errors."""
    p_label = np.asarray(pred_label, dtype=np.int64).reshape(-1)
    p_score = np.asarray(pred_score, dtype=np.float64).reshape(-1)
    g_label = np.asarray(gt_label, dtype=np.int64).reshape(-1)
    p_mask = np.asarray(pred_mask, dtype=bool)
    g_mask = np.asarray(gt_mask, dtype=bool)
    if len(p_label) == 0:
        p_mask = p_mask.reshape((0,) + (p_mask.shape[1:] if p_mask.ndim == 3 else (0, 0)))
    if len(g_label) == 0:
        g_mask = g_mask.reshape((0,) + (g_mask.shape[1:] if g_mask.ndim == 3 else (0, 0)))
    if p_mask.ndim != 3 or len(p_mask) != len(p_label) or len(p_score) != len(p_label):
        raise ValueError(f"image {image}: prediction masks {p_mask.shape}, labels {p_label.shape} and scores "
                         f"{p_score.shape} do not agree")
    if g_mask.ndim != 3 or len(g_mask) != len(g_label):
        raise ValueError(f"image {image}: ground-truth masks {g_mask.shape} and labels {g_label.shape} do not agree")
    if np.any(p_label < 0) or np.any(g_label < 0):
        raise ValueError(f"image {image}: class labels must be non-negative (0-based foreground classes)")
    out: dict[int, tuple] = {}
    for lb in np.unique(np.concatenate((p_label, g_label))):
        lb = int(lb)
        psel = p_label == lb
        pm, ps = p_mask[psel], p_score[psel]
        order = ps.argsort()[::-1]
        pm, ps = pm[order], ps[order]
        gm = g_mask[g_label == lb]
        m = np.zeros(len(pm), dtype=np.int8)
        if len(pm) and len(gm):
            if pm.shape[1:] != gm.shape[1:]:
                raise ValueError(f"image {image}: prediction masks are {pm.shape[1:]}, ground-truth masks "
                                 f"{gm.shape[1:]}")
            ious = mask_iou(pm, gm)
            best = ious.argmax(axis=1)
            best[ious.max(axis=1) < iou_thresh] = -1
            taken = np.zeros(len(gm), dtype=bool)
            for k, g in enumerate(best):
                if g >= 0 and not taken[g]:
                    m[k] = 1
                if g >= 0:
                    taken[g] = True
        out[lb] = (len(gm), ps, m)
    return out


def ap_from_matches(per_image: Sequence[dict[int, tuple]], use_07_metric: bool = False,
                    num_classes: int | None = None) -> dict:
    """{"ap", "map"} from the :func:`match_instances` records of every image, in image order (predictions of a
    class are then ranked by score over all images)."""
    n_pos: dict[int, int] = {}
    scores: dict[int, list[np.ndarray]] = {}
    matches: dict[int, list[np.ndarray]] = {}
    for record in per_image:
        for lb, (npos, ps, m) in record.items():
            n_pos[lb] = n_pos.get(lb, 0) + npos
            scores.setdefault(lb, []).append(ps)
            matches.setdefault(lb, []).append(m)
    n_cls = (max(n_pos) + 1) if n_pos else 0
    if num_classes is not None:
        if num_classes < n_cls:
            raise ValueError(f"num_classes={num_classes} but class label {n_cls - 1} occurs")
        n_cls = num_classes
    ap = np.full(n_cls, np.nan)
    for lb, npos in n_pos.items():
        if npos == 0:
            continue  # no ground truth: recall undefined, AP stays NaN
        s = np.concatenate(scores[lb])
        m = np.concatenate(matches[lb])
        order = s.argsort()[::-1]
        m = m[order]
        tp = np.cumsum(m == 1)
        fp = np.cumsum(m == 0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            prec = tp / (tp + fp)
        rec = tp / npos
        ap[lb] = voc_ap(prec, rec, use_07_metric=use_07_metric)
    return {"ap": ap, "map": _nanmean(ap)}


def eval_instance_segmentation_voc(pred_masks: Sequence[np.ndarray], pred_labels: Sequence[np.ndarray],
                                   pred_scores: Sequence[np.ndarray], gt_masks: Sequence[np.ndarray],
                                   gt_labels: Sequence[np.ndarray], iou_thresh: float = 0.5,
                                   use_07_metric: bool = False, num_classes: int | None = None) -> dict:
    """PASCAL VOC instance-segmentation AP (chainercv ``eval_instance_segmentation_voc`` semantics).

    Arguments are lists over images: masks bool [R,H,W], labels int [R] (0-based), scores float [R].
    Returns {"ap": per-class AP (NaN for classes without ground truth), "map": nanmean of "ap"}.
    The "ap" array has length ``max label seen + 1`` (as chainercv), or ``num_classes`` if given.

    Matching, per image and class, in descending score order: a prediction's candidate is the GT
    instance with the highest mask IoU; it is a true positive if that IoU >= iou_thresh and the
    candidate is not yet matched, otherwise a false positive (a better-matched, already-taken GT is
    not replaced by the next-best one). Then predictions of a class are ranked by score over all images.
    """
    n_img = len(pred_masks)
    if not (len(pred_labels) == len(pred_scores) == len(gt_masks) == len(gt_labels) == n_img):
        raise ValueError("pred_masks, pred_labels, pred_scores, gt_masks and gt_labels must have one entry per "
                         f"image; got lengths {len(pred_masks)}, {len(pred_labels)}, {len(pred_scores)}, "
                         f"{len(gt_masks)}, {len(gt_labels)}")
    per_image = [match_instances(pred_masks[i], pred_labels[i], pred_scores[i], gt_masks[i], gt_labels[i],
                                 iou_thresh, image=i) for i in range(n_img)]
    return ap_from_matches(per_image, use_07_metric, num_classes)
