"""VOC / SBD region AP: hand-computed cases for the `sds` and `mnc` protocols.

Masks are pixel rectangles so every IoU is exact arithmetic on pixel counts.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from mnc_bench.evaluation import evaluate_voc, load_ground_truth, load_predictions
from mnc_bench.evaluation.voc import PROTOCOLS, all_point_ap, average_precisions, eleven_point_ap

H, W = 10, 60


def rect(cols: range, rows: range = range(H)) -> dict:
    """Compressed RLE (counts as str, as in a JSON file) of a filled pixel rectangle."""
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[rows.start : rows.stop, cols.start : cols.stop] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"size": rle["size"], "counts": rle["counts"].decode()}


def dataset(gts: list[tuple[int, dict, int]], categories: tuple[str, ...] = ("cat",)) -> dict:
    """gts: (category_id, rle, iscrowd); category ids are 1..len(categories)."""
    annotations = [
        {
            "id": k + 1,
            "image_id": 1,
            "category_id": category_id,
            "segmentation": rle,
            "area": float(mask_utils.area(rle)),
            "bbox": mask_utils.toBbox(rle).tolist(),
            "iscrowd": crowd,
        }
        for k, (category_id, rle, crowd) in enumerate(gts)
    ]
    return {
        "images": [{"id": 1, "height": H, "width": W}],
        "categories": [{"id": k + 1, "name": name} for k, name in enumerate(categories)],
        "annotations": annotations,
    }


def det(rle: dict, score: float, category_id: int = 1) -> dict:
    return {"image_id": 1, "category_id": category_id, "segmentation": rle, "score": score}


A, C, B = range(0, 10), range(20, 30), range(40, 50)  # 100-pixel squares (10 rows x 10 columns)
FAR = range(55, 60)  # overlaps nothing


def test_interpolation_differs_between_protocols():
    # 2 GTs (A, C). By score: TP on A, FP, TP on C -> (recall, precision) = (.5, 1), (.5, .5), (1, 2/3).
    # sds, all-point: envelope is 1 up to recall .5 and 2/3 up to 1: AP = .5 * 1 + .5 * 2/3 = 5/6.
    # mnc, 11-point: levels 0...0.5 (6 of them) reach precision 1, levels .6...1 (5) only 2/3:
    #   AP = (6 * 1 + 5 * 2/3) / 11 = 28/33.
    gt = dataset([(1, rect(A), 0), (1, rect(C), 0)])
    preds = [det(rect(A), 0.9), det(rect(FAR), 0.8), det(rect(C), 0.7)]
    sds, mnc = evaluate_voc(gt, preds, "sds"), evaluate_voc(gt, preds, "mnc")
    for key in ("mAP@0.5", "mAP@0.7", "mAP_vol", "AP@0.5/cat", "AP@0.7/cat", "AP_vol/cat"):
        assert sds[key] == pytest.approx(5 / 6)
        assert mnc[key] == pytest.approx(28 / 33)


@pytest.mark.parametrize("columns, iou", [(5, 0.5), (7, 0.7)])
def test_iou_exactly_at_threshold_is_tp_for_mnc_and_fp_for_sds(columns, iou):
    # The prediction is the left `columns` columns of the 10x10 GT: it lies inside the GT, so
    # IoU = 10*columns / 100 exactly (0.5 or 0.7).
    gt = dataset([(1, rect(A), 0)])
    pred_rle = rect(range(0, columns))
    assert mask_utils.iou([pred_rle], [rect(A)], [0])[0][0] == iou  # the premise: exact equality
    sds = evaluate_voc(gt, [det(pred_rle, 0.9)], "sds")
    mnc = evaluate_voc(gt, [det(pred_rle, 0.9)], "mnc")
    key = f"AP@{iou}/cat"
    assert mnc[key] == 1.0  # IoU >= threshold: the only detection finds the only GT
    assert sds[key] == 0.0  # IoU > threshold fails: a lone false positive
    # mAP_vol over 0.1...0.9: sds is TP strictly below the IoU, mnc also at it.
    below = sum(t < iou for t in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9))
    assert sds["AP_vol/cat"] == pytest.approx(below / 9)
    assert mnc["AP_vol/cat"] == pytest.approx((below + 1) / 9)


def test_detection_takes_best_gt_even_if_taken():
    # d2 covers all of A (100 px) plus 60 px of C (columns 20-25): |d2| = 160,
    # IoU(d2, A) = 100/160 = .625, IoU(d2, C) = 60/(100 + 160 - 60) = .3.
    # At threshold .25 both pass; VOC takes the best GT, A, already taken by d1 -> FP (duplicate),
    # instead of falling back to C. Then d3 finds C: (.5, 1), (.5, .5), (1, 2/3) -> sds AP = 5/6.
    # (Had d2 fallen back to C: (.5, 1), (1, 1), (1, 2/3) -> AP 1.)
    d2_mask = np.zeros((H, W), dtype=np.uint8)
    d2_mask[:, 0:10] = 1
    d2_mask[:, 20:26] = 1
    d2_rle = mask_utils.encode(np.asfortranarray(d2_mask))
    gt = load_ground_truth(dataset([(1, rect(A), 0), (1, rect(C), 0)]))
    preds = load_predictions([det(rect(A), 0.9), det(d2_rle, 0.8), det(rect(C), 0.7)], gt)
    ap = average_precisions(gt, preds, PROTOCOLS["sds"], (0.25,))
    assert ap[0, 0] == pytest.approx(5 / 6)


def test_crowd_matches_are_ignored_and_crowd_is_not_a_positive():
    # GTs: A, C and a crowd region B. By score: TP on A, duplicate on A (FP), exact hit on crowd B
    # (ignored), TP on C. Positives: 2 (B does not count). Without d3: (.5, 1), (.5, .5), (1, 2/3):
    # sds 5/6, mnc 28/33 as above. Were d3 an FP, the last point would be (1, .5): sds .75.
    gt = dataset([(1, rect(A), 0), (1, rect(C), 0), (1, rect(B), 1)])
    preds = [det(rect(A), 0.9), det(rect(A), 0.8), det(rect(B), 0.7), det(rect(C), 0.6)]
    assert evaluate_voc(gt, preds, "sds")["mAP@0.5"] == pytest.approx(5 / 6)
    assert evaluate_voc(gt, preds, "mnc")["mAP@0.5"] == pytest.approx(28 / 33)


def test_weak_overlap_with_crowd_is_a_false_positive():
    # d2 covers 30 of crowd B's 100 pixels: IoU .3 < .5, so at .5 it is an ordinary FP (VOC only ignores
    # detections whose best match passes the threshold). (1, 1), (1, .5) -> AP 1 regardless; so put the FP
    # first: (0, 0), (1, .5) -> sds AP@0.5 = .5; mnc 11-point: every level reaches precision .5 -> .5.
    gt = dataset([(1, rect(A), 0), (1, rect(B), 1)])
    preds = [det(rect(range(40, 43)), 0.9), det(rect(A), 0.8)]
    assert evaluate_voc(gt, preds, "sds")["mAP@0.5"] == pytest.approx(0.5)
    assert evaluate_voc(gt, preds, "mnc")["mAP@0.5"] == pytest.approx(0.5)


def test_equal_scores_keep_input_order():
    # Same score: the stable sort keeps input order. FP first: (0, 0), (1, .5) -> sds AP .5;
    # TP first: (1, 1), (1, .5) -> AP 1.
    gt = dataset([(1, rect(A), 0)])
    fp_first = [det(rect(FAR), 0.5), det(rect(A), 0.5)]
    assert evaluate_voc(gt, fp_first, "sds")["mAP@0.5"] == pytest.approx(0.5)
    assert evaluate_voc(gt, fp_first[::-1], "sds")["mAP@0.5"] == pytest.approx(1.0)


def test_class_without_gt_is_nan_and_left_out_of_the_mean():
    # "dog" has a detection but no GT: AP undefined (NaN), and the mean is "cat" alone.
    # cat: (.5, 1), then the FP on far pixels is of class dog, so cat's curve is (.5, 1): sds AP .5.
    gt = dataset([(1, rect(A), 0), (1, rect(C), 0)], categories=("cat", "dog"))
    preds = [det(rect(A), 0.9), det(rect(FAR), 0.8, category_id=2)]
    result = evaluate_voc(gt, preds, "sds")
    assert math.isnan(result["AP@0.5/dog"]) and math.isnan(result["AP_vol/dog"])
    assert result["AP@0.5/cat"] == pytest.approx(0.5)
    assert result["mAP@0.5"] == pytest.approx(0.5)
    assert result["mAP_vol"] == pytest.approx(0.5)


def test_detection_of_another_class_never_matches():
    gt = dataset([(1, rect(A), 0)], categories=("cat", "dog"))
    result = evaluate_voc(gt, [det(rect(A), 0.9, category_id=2)], "mnc")
    assert result["AP@0.5/cat"] == 0.0


def test_empty_results_score_zero():
    gt = dataset([(1, rect(A), 0)], categories=("cat", "dog"))
    for protocol in PROTOCOLS:
        result = evaluate_voc(gt, [], protocol)
        assert result["mAP@0.5"] == result["mAP@0.7"] == result["mAP_vol"] == result["AP@0.5/cat"] == 0.0
        assert math.isnan(result["AP@0.5/dog"])


def test_all_point_ap_by_hand():
    # Envelope: 1 on (0, .25], .8 on (.25, .5], 0 beyond (recall never reaches more): .25 + .2 = .45.
    recall = np.array([0.25, 0.25, 0.5])
    precision = np.array([1.0, 0.5, 0.8])
    assert all_point_ap(recall, precision) == pytest.approx(0.25 * 1 + 0.25 * 0.8)


def test_all_point_ap_takes_the_envelope_not_the_raw_precision():
    # FP, TP, TP on 2 GTs: (recall, precision) = (0, 0), (.5, .5), (1, 2/3). Precision rises with recall, so
    # the envelope (best precision at any recall >= r) is 2/3 everywhere: AP = 2/3. The raw curve would give
    # .5 * .5 + .5 * 2/3 = 7/12.
    assert all_point_ap(np.array([0.0, 0.5, 1.0]), np.array([0.0, 0.5, 2 / 3])) == pytest.approx(2 / 3)
    gt = dataset([(1, rect(A), 0), (1, rect(C), 0)])
    preds = [det(rect(FAR), 0.9), det(rect(A), 0.8), det(rect(C), 0.7)]
    assert evaluate_voc(gt, preds, "sds")["mAP@0.5"] == pytest.approx(2 / 3)


def test_eleven_point_ap_by_hand():
    # Levels 0, .1, .2 -> 1.0; .3, .4, .5 -> .8; .6 ... 1 -> 0: (3 * 1 + 3 * .8) / 11.
    recall = np.array([0.25, 0.5])
    precision = np.array([1.0, 0.8])
    assert eleven_point_ap(recall, precision) == pytest.approx((3 + 3 * 0.8) / 11)
    assert eleven_point_ap(np.array([]), np.array([])) == 0.0


def test_eleven_point_levels_are_mnc_np_arange():
    # MNC's voc_ap loops over np.arange(0., 1.1, 0.1), whose third level is 0.30000000000000004:
    # a recall of exactly 0.3 reaches only the levels 0, .1, .2 -> 3/11, not 4/11.
    assert eleven_point_ap(np.array([3 / 10]), np.array([1.0])) == pytest.approx(3 / 11)
