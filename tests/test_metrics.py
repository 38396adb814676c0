"""Tests for advcam.metrics; expected values are computed by hand in the comments."""
from __future__ import annotations

import numpy as np
import pytest

from advcam.metrics import (
    ConfusionMatrix,
    among_predfg_bg,
    confusion_matrix,
    eval_instance_segmentation_voc,
    format_iou_table,
    fp_fn_ratios,
    iou,
    mean_iou,
    pixel_accuracy,
    summarize,
)
from advcam.voc12 import CAT_LIST

# --------------------------------------------------------------------------------------------------
# semantic segmentation
# --------------------------------------------------------------------------------------------------


def test_two_class_iou_by_hand():
    # pixels (gt, pred): (0,0) (1,1) (0,1) (1,1) -> conf [[1,1],[0,2]]
    # IoU0 = 1 / (2 + 1 - 1) = 0.5 ; IoU1 = 2 / (2 + 3 - 2) = 2/3 ; mIoU = 7/12 = 0.5833 ; acc = 3/4
    pred = np.array([[0, 1], [1, 1]])
    gt = np.array([[0, 1], [0, 1]])
    cm = ConfusionMatrix(2)
    cm.update(pred, gt)
    assert cm.matrix.dtype == np.int64
    np.testing.assert_array_equal(cm.matrix, [[1, 1], [0, 2]])
    np.testing.assert_allclose(iou(cm.matrix), [0.5, 2 / 3])
    assert mean_iou(cm.matrix) == pytest.approx(0.5833, abs=1e-4)
    assert pixel_accuracy(cm.matrix) == pytest.approx(0.75)


def test_ignore_label_and_absent_class_nan():
    # the 255 pixels (with any prediction, even out of range) are skipped -> same 2x2 counts as above,
    # now inside a 21x21 matrix; classes 2..20 never occur -> NaN, excluded from the mean
    pred = np.array([[0, 1, 7], [1, 1, 255]])
    gt = np.array([[0, 1, 255], [0, 1, 255]], dtype=np.uint8)
    cm = ConfusionMatrix(21)
    cm.update(pred, gt)
    assert cm.matrix.sum() == 4
    ious = iou(cm.matrix)
    assert ious.shape == (21,)
    np.testing.assert_allclose(ious[:2], [0.5, 2 / 3])
    assert np.all(np.isnan(ious[2:]))
    assert mean_iou(cm.matrix) == pytest.approx(7 / 12)
    # chainercv's -1 ignore convention works too
    cm2 = ConfusionMatrix(21)
    cm2.update(pred, np.where(gt == 255, -1, gt.astype(np.int32)))
    np.testing.assert_array_equal(cm.matrix, cm2.matrix)


def test_class_only_in_prediction_has_zero_iou():
    # gt all 0, pred has one pixel of class 2: IoU2 = 0 / (0 + 1 - 0) = 0 (counted), IoU1 NaN
    gt = np.zeros((1, 3), dtype=np.int64)
    pred = np.array([[0, 0, 2]])
    conf = confusion_matrix([pred], [gt], num_classes=3)
    ious = iou(conf)
    assert ious[0] == pytest.approx(2 / 3) and np.isnan(ious[1]) and ious[2] == 0.0
    assert mean_iou(conf) == pytest.approx(1 / 3)


def test_accumulation_equals_concatenation():
    rng = np.random.default_rng(0)
    preds = [rng.integers(0, 5, size=(3, 4 + i)) for i in range(3)]
    gts = [rng.integers(0, 5, size=(3, 4 + i)) for i in range(3)]
    gts[1][0, 0] = 255
    acc = confusion_matrix(preds, gts, num_classes=5)
    whole = ConfusionMatrix(5)
    whole.update(np.concatenate(preds, axis=1), np.concatenate(gts, axis=1))
    np.testing.assert_array_equal(acc, whole.matrix)
    assert acc.sum() == 3 * (4 + 5 + 6) - 1


def test_fp_fn_and_among_predfg_bg_by_hand():
    # gt   0 0 0 1 1 2 2 2
    # pred 0 1 2 1 1 2 0 2
    # conf rows=gt: [[1,1,1],[0,2,0],[1,0,2]]
    # gtj = [3,2,3], resj = [2,3,3], diag = [1,2,2], denom = [4,3,4]
    # fp = 1 - gtj/denom  = [1/4, 1/3, 1/4]   (= (resj - diag)/denom)
    # fn = 1 - resj/denom = [1/2, 0, 1/4]     (= (gtj - diag)/denom)
    # predicted fg = columns 1,2 -> 3 + 3 = 6 pixels, of which gt bg: conf[0,1] + conf[0,2] = 2 -> 1/3
    gt = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    pred = np.array([0, 1, 2, 1, 1, 2, 0, 2])
    conf = confusion_matrix([pred], [gt], num_classes=3)
    np.testing.assert_array_equal(conf, [[1, 1, 1], [0, 2, 0], [1, 0, 2]])
    fp, fn = fp_fn_ratios(conf)
    np.testing.assert_allclose(fp, [1 / 4, 1 / 3, 1 / 4])
    np.testing.assert_allclose(fn, [1 / 2, 0, 1 / 4])
    assert among_predfg_bg(conf) == pytest.approx(1 / 3)
    s = summarize(conf)
    assert set(s) == {"iou", "miou", "pixel_acc", "fp", "fn", "among_predfg_bg"}
    # IoU = diag/denom = [1/4, 2/3, 1/2]; pixel acc = 5/8
    np.testing.assert_allclose(s["iou"], [1 / 4, 2 / 3, 1 / 2])
    assert s["miou"] == pytest.approx((1 / 4 + 2 / 3 + 1 / 2) / 3)
    assert s["pixel_acc"] == pytest.approx(5 / 8)
    np.testing.assert_allclose(s["fp"], fp)


def test_value_errors():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match=r"\(2, 2\).*\(2, 3\)"):
        cm.update(np.zeros((2, 2), int), np.zeros((2, 3), int))
    with pytest.raises(ValueError, match="outside"):
        cm.update(np.array([0, 3]), np.array([0, 1]))
    with pytest.raises(ValueError, match="outside"):
        cm.update(np.array([0, -1]), np.array([0, 1]))
    with pytest.raises(ValueError, match="outside"):
        cm.update(np.array([0, 255]), np.array([0, 1]))
    assert cm.matrix.sum() == 0


def test_format_iou_table():
    ious = np.full(21, np.nan)
    ious[0], ious[15] = 0.8, 0.41234
    table = format_iou_table(ious)
    for name in ("background",) + CAT_LIST:
        assert name in table
    assert "80.00" in table and "41.23" in table and "n/a" in table
    last = table.splitlines()[-1]
    assert "mIoU" in last and "60.62" in last  # (80 + 41.234) / 2 = 60.617


# --------------------------------------------------------------------------------------------------
# instance segmentation AP
# --------------------------------------------------------------------------------------------------


def _row_masks(*spans: tuple[int, int], width: int = 8) -> np.ndarray:
    """Masks of shape [N, 1, width], mask k covering columns spans[k][0]:spans[k][1]."""
    m = np.zeros((len(spans), 1, width), dtype=bool)
    for k, (a, b) in enumerate(spans):
        m[k, 0, a:b] = True
    return m


def _one_image(pm, pl, ps, gm, gl, **kw):
    return eval_instance_segmentation_voc([pm], [np.array(pl)], [np.array(ps, float)], [gm], [np.array(gl)], **kw)


def test_instance_ap_false_positive_ranked_first():
    # one gt (cols 0:4); pred A (cols 4:8, IoU 0) score 0.9 -> FP, pred B (= gt, IoU 1) score 0.6 -> TP
    # ranked: FP, TP -> tp = [0,1], fp = [1,1], prec = [0, 1/2], rec = [0, 1]
    # envelope of [0, 0, 1/2, 0] over mrec [0, 0, 1, 1] = [1/2, 1/2, 1/2, 0];
    # recall changes only 0 -> 1 with precision 1/2 -> AP = 0.5 (11-point: max prec at rec >= t is 1/2 -> 0.5)
    gm = _row_masks((0, 4))
    pm = _row_masks((4, 8), (0, 4))
    res = _one_image(pm, [0, 0], [0.9, 0.6], gm, [0])
    assert res["ap"].shape == (1,)
    assert res["ap"][0] == pytest.approx(0.5)
    assert res["map"] == pytest.approx(0.5)
    assert _one_image(pm, [0, 0], [0.9, 0.6], gm, [0], use_07_metric=True)["ap"][0] == pytest.approx(0.5)
    # swapped scores: TP first -> prec [1, 1/2], rec [1, 1] -> AP 1
    assert _one_image(pm, [0, 0], [0.6, 0.9], gm, [0])["ap"][0] == pytest.approx(1.0)


def test_instance_ap_area_vs_11_point():
    # two gts (cols 0:2, 4:6); preds TP(0.9) FP(0.8, cols 7:8) TP(0.7)
    # rec = [1/2, 1/2, 1], prec = [1, 1/2, 2/3]
    # area: 1/2 * 1 + 1/2 * 2/3 = 5/6
    # 11-point: t = 0..0.5 (6 points) -> 1 ; t = 0.6..1.0 (5 points) -> 2/3 ; (6 + 10/3) / 11 = 28/33
    gm = _row_masks((0, 2), (4, 6))
    pm = _row_masks((0, 2), (7, 8), (4, 6))
    args = (pm, [3, 3, 3], [0.9, 0.8, 0.7], gm, [3, 3])
    res = _one_image(*args)
    assert res["ap"].shape == (4,)
    assert np.all(np.isnan(res["ap"][:3]))
    assert res["ap"][3] == pytest.approx(5 / 6)
    assert res["map"] == pytest.approx(5 / 6)
    assert _one_image(*args, use_07_metric=True)["ap"][3] == pytest.approx(28 / 33)


def test_instance_ap_perfect_over_images():
    # every gt predicted exactly, two images, classes 0 and 2 -> AP 1 for both, class 1 NaN, mAP 1
    gm0, gm1 = _row_masks((0, 3), (5, 8)), _row_masks((2, 6))
    res = eval_instance_segmentation_voc(
        [gm0, gm1], [np.array([0, 2]), np.array([0])], [np.array([0.5, 0.7]), np.array([0.9])],
        [gm0, gm1], [np.array([0, 2]), np.array([0])])
    np.testing.assert_allclose(res["ap"], [1.0, np.nan, 1.0])
    assert res["map"] == pytest.approx(1.0)
    res21 = eval_instance_segmentation_voc(
        [gm0, gm1], [np.array([0, 2]), np.array([0])], [np.array([0.5, 0.7]), np.array([0.9])],
        [gm0, gm1], [np.array([0, 2]), np.array([0])], num_classes=20)
    assert res21["ap"].shape == (20,) and res21["map"] == pytest.approx(1.0)


def test_instance_ap_iou_thresh():
    # gt cols 0:3 (3 px), pred cols 0:5 (5 px): IoU = 3/5 = 0.6 -> TP at 0.5 (AP 1), FP at 0.75 (AP 0)
    gm, pm = _row_masks((0, 3)), _row_masks((0, 5))
    assert _one_image(pm, [1], [0.8], gm, [1], iou_thresh=0.5)["ap"][1] == pytest.approx(1.0)
    assert _one_image(pm, [1], [0.8], gm, [1], iou_thresh=0.75)["ap"][1] == pytest.approx(0.0)


def test_instance_taken_gt_makes_fp():
    # gts A = cols 0:4, B = cols 2:6. pred1 = A (score 0.9) -> TP on A.
    # pred2 = cols 0:5 (score 0.8): IoU with A = 4/5, with B = 3/6 = 0.5; its best gt (A) is taken -> FP
    # (chainercv semantics: no fallback to B). rec = [1/2, 1/2], prec = [1, 1/2] -> AP = 1/2 * 1 = 0.5
    gm = _row_masks((0, 4), (2, 6))
    pm = _row_masks((0, 4), (0, 5))
    assert _one_image(pm, [0, 0], [0.9, 0.8], gm, [0, 0])["ap"][0] == pytest.approx(0.5)


def test_instance_empty_images():
    # image 0: one gt of class 1, no predictions; image 1: one prediction of class 0, no gt;
    # image 2: nothing at all. class 1 has gt but no prediction -> AP 0; class 0 has no gt -> NaN
    empty = np.zeros((0, 1, 8), dtype=bool)
    res = eval_instance_segmentation_voc(
        [empty, _row_masks((0, 2)), empty],
        [np.zeros(0, int), np.array([0]), np.zeros(0, int)],
        [np.zeros(0), np.array([0.5]), np.zeros(0)],
        [_row_masks((0, 2)), empty, empty],
        [np.array([1]), np.zeros(0, int), np.zeros(0, int)])
    assert np.isnan(res["ap"][0])
    assert res["ap"][1] == pytest.approx(0.0)
    assert res["map"] == pytest.approx(0.0)
    nothing = eval_instance_segmentation_voc([], [], [], [], [])
    assert nothing["ap"].shape == (0,) and np.isnan(nothing["map"])
