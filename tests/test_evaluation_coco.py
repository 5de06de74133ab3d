"""COCO metrics: same numbers as pycocotools called directly, same numbers from faster-coco-eval,
and 1.0 everywhere for perfect predictions."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math

import numpy as np
import pytest
from coco_fixtures import H, W, encode, random_dataset
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mnc_bench.evaluation import evaluate, evaluate_coco, evaluate_proposals
from mnc_bench.evaluation.coco import COCO_METRIC_NAMES


def pycocotools_stats(gt_path, results_path, iou_type: str) -> list[float]:
    """pycocotools used directly, the way its README shows."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt_path))
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(str(results_path)), iou_type)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return [math.nan if v == -1 else float(v) for v in coco_eval.stats]


def same(a: float, b: float, tol: float = 0.0) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    gt, results = random_dataset(seed=3)
    (root / "gt.json").write_text(json.dumps(gt))
    (root / "results.json").write_text(json.dumps(results))
    # Segm scoring drops 'bbox' (else pycocotools sizes masks by their box; see coco_records).
    (root / "results_masks_only.json").write_text(json.dumps([{k: v for k, v in r.items() if k != "bbox"}
                                                             for r in results]))
    return root


def test_bbox_equals_pycocotools_on_the_same_files(files):
    ours = evaluate_coco(files / "gt.json", files / "results.json", iou_type="bbox")
    theirs = pycocotools_stats(files / "gt.json", files / "results.json", "bbox")
    assert 0.1 < ours["AP"] < 0.9  # a non-trivial case
    for name, value in zip(COCO_METRIC_NAMES, theirs):
        assert same(ours[name], value), name


def test_segm_equals_pycocotools_on_the_same_files(files):
    ours = evaluate_coco(files / "gt.json", files / "results.json", iou_type="segm")
    masks_only = pycocotools_stats(files / "gt.json", files / "results_masks_only.json", "segm")
    with_boxes = pycocotools_stats(files / "gt.json", files / "results.json", "segm")
    assert 0.1 < ours["AP"] < 0.9
    assert not any(math.isnan(ours[name]) for name in ("APs", "APm", "APl"))  # every size range occurs
    for name, value in zip(COCO_METRIC_NAMES, masks_only):
        assert same(ours[name], value), name
    # On the file with boxes, pycocotools agrees on everything that does not depend on object size.
    for name, value in zip(COCO_METRIC_NAMES, with_boxes):
        if name not in ("APs", "APm", "APl", "ARs", "ARm", "ARl"):
            assert same(ours[name], value), name


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_faster_coco_eval_gives_pycocotools_numbers(iou_type):
    gt, results = random_dataset(seed=11, num_images=15)
    slow = evaluate_coco(gt, copy.deepcopy(results), iou_type=iou_type, backend="pycocotools")
    fast = evaluate_coco(gt, copy.deepcopy(results), iou_type=iou_type, backend="faster_coco_eval")
    assert 0.1 < slow["AP"] < 0.9
    for name in COCO_METRIC_NAMES:
        assert same(slow[name], fast[name], tol=1e-6), name


def test_faster_coco_eval_gives_pycocotools_proposal_recall():
    gt, results = random_dataset(seed=5)
    proposals = [{"image_id": r["image_id"], "bbox": r["bbox"], "score": r["score"]} for r in results]
    slow = evaluate_proposals(gt, proposals, backend="pycocotools")
    fast = evaluate_proposals(gt, proposals, backend="faster_coco_eval")
    assert 0.1 < slow["AR@100"] < 0.9
    assert slow.keys() == fast.keys()
    for name in slow:
        assert same(slow[name], fast[name], tol=1e-6), name


def test_perfect_predictions_score_one_on_every_metric():
    # One instance per class per image, so even AR1 can reach 1; sizes small (8x8), medium (40x40) and
    # large (110x110) so no size metric is undefined.
    images, annotations, results = [], [], []
    for i, sides in enumerate([(8, 40, 110), (110, 8, 40), (40, 110, 8)]):
        images.append({"id": i + 1, "height": H, "width": W})
        for category_id, side in enumerate(sides, start=1):
            mask = np.zeros((H, W), dtype=bool)
            top = 5 + 3 * category_id
            mask[top : top + side, 40 * (category_id - 1) : 40 * (category_id - 1) + side] = True
            rle = encode(mask)
            bbox = mask_utils.toBbox(rle).tolist()
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": category_id,
                                "segmentation": rle, "area": float(mask.sum()), "bbox": bbox, "iscrowd": 0})
            results.append({"image_id": i + 1, "category_id": category_id, "segmentation": rle, "bbox": bbox,
                            "score": 1.0})
    gt = {"images": images, "annotations": annotations,
          "categories": [{"id": c, "name": f"class{c}"} for c in (1, 2, 3)]}
    scores = evaluate(gt, results, metric="all", iou_type=["segm", "bbox"])
    expected_keys = {f"coco/{t}/{m}" for t in ("segm", "bbox") for m in COCO_METRIC_NAMES}
    for protocol in ("sds", "mnc"):
        expected_keys |= {f"voc_{protocol}/{m}" for m in ("mAP@0.5", "mAP@0.7", "mAP_vol")}
        expected_keys |= {
            f"voc_{protocol}/{m}/class{c}" for m in ("AP@0.5", "AP@0.7", "AP_vol") for c in (1, 2, 3)
        }
    assert set(scores) == expected_keys
    for key, value in scores.items():
        assert value == pytest.approx(1.0, abs=1e-12), key
    for backend in ("pycocotools", "faster_coco_eval"):
        proposals = evaluate_proposals(gt, [{"image_id": r["image_id"], "bbox": r["bbox"], "score": 1.0}
                                            for r in results], backend=backend)
        for key, value in proposals.items():
            assert value == pytest.approx(1.0, abs=1e-12), (backend, key)


def test_empty_results_score_zero_and_undefined_stays_nan():
    gt, _ = random_dataset(seed=2, num_images=3)
    gt["annotations"] = [a for a in gt["annotations"] if not 32**2 < a["area"] < 96**2]  # no medium objects
    for backend in ("pycocotools", "faster_coco_eval"):
        for iou_type in ("segm", "bbox"):
            scores = evaluate_coco(gt, [], iou_type=iou_type, backend=backend)
            assert math.isnan(scores["APm"]) and math.isnan(scores["ARm"])
            assert all(v == 0.0 for k, v in scores.items() if k not in ("APm", "ARm")), scores
