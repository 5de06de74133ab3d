"""Boundary AP: checked against an independent computation (boundaries from a chessboard distance transform,
IoU with numpy, AP of one detection as the share of COCO thresholds its IoU passes) on hand-made cases,
against faster-coco-eval's own boundary mode on random data, and through `mnc-bench evaluate --metric
boundary`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from coco_fixtures import random_dataset
from pycocotools import mask as mask_utils
from scipy import ndimage

from mnc_bench.cli import main
from mnc_bench.evaluation import evaluate, load_ground_truth, load_predictions
from mnc_bench.evaluation.boundary import (
    BOUNDARY_METRIC_NAMES,
    boundary_metrics,
    boundary_width,
    mask_boundary,
)
from mnc_bench.evaluation.coco import coco_metrics

SIZE = 128
THRESHOLDS = np.linspace(0.5, 0.95, 10)


def reference_boundary(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels of ``mask`` within chessboard distance ``width`` of a pixel outside it or outside the image."""
    distance = ndimage.distance_transform_cdt(np.pad(mask, 1), metric="chessboard")[1:-1, 1:-1]
    return mask.astype(bool) & (distance <= width)


def reference_iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def reference_boundary_ap(dt: np.ndarray, gt: np.ndarray) -> float:
    """Boundary AP of one detection against one ground truth: the share of COCO's IoU thresholds that
    min(mask IoU, boundary IoU) reaches (precision 1 at recall 1 where it does, no detection where not)."""
    width = boundary_width(*gt.shape)
    boundary_iou = reference_iou(reference_boundary(dt, width), reference_boundary(gt, width))
    iou = min(reference_iou(dt, gt), boundary_iou)
    return float(np.mean(iou >= THRESHOLDS))


def rect(top: int, left: int, height: int, width: int) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    mask[top : top + height, left : left + width] = True
    return mask


def encode(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode()}


def single_image(gts: list[tuple[np.ndarray, int]], dts: list[tuple[np.ndarray, float]]) -> tuple[dict, list]:
    """One 128 px image, one category; ground truth (mask, iscrowd) and detections (mask, score)."""
    annotations = [{"id": i + 1, "image_id": 1, "category_id": 1, "segmentation": encode(m), "iscrowd": crowd,
                    "area": float(m.sum()), "bbox": mask_utils.toBbox(encode(m)).tolist()}
                   for i, (m, crowd) in enumerate(gts)]
    gt = {"images": [{"id": 1, "height": SIZE, "width": SIZE, "file_name": "1.png"}],
          "categories": [{"id": 1, "name": "thing"}], "annotations": annotations}
    results = [{"image_id": 1, "category_id": 1, "segmentation": encode(m), "score": s} for m, s in dts]
    return gt, results


def boundary_ap(gt: dict, results: list, backend: str = "pycocotools") -> dict[str, float]:
    ground_truth = load_ground_truth(gt)
    return boundary_metrics(ground_truth, load_predictions(results, ground_truth), backend)


def mask_ap(gt: dict, results: list) -> dict[str, float]:
    ground_truth = load_ground_truth(gt)
    return coco_metrics(ground_truth, load_predictions(results, ground_truth), "segm", "pycocotools")


def test_boundary_width_follows_the_image_diagonal():
    assert boundary_width(128, 128) == 4  # 0.02 * 181.0 = 3.62
    assert boundary_width(480, 640) == 16  # 0.02 * 800
    assert boundary_width(10, 10) == 1  # never below one pixel


@pytest.mark.parametrize("width", [1, 4, 9])
def test_mask_boundary_equals_the_distance_transform(width):
    rng = np.random.default_rng(width)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    # the second and third touch the image border
    masks = [rect(30, 40, 50, 20), rect(0, 0, 40, 128), rect(100, 90, 28, 38),
             ((yy - 64) ** 2 / 900 + (xx - 50) ** 2 / 400 <= 1), rng.random((SIZE, SIZE)) < 0.7]
    for mask in masks:
        got = mask_boundary(mask.astype(np.uint8), width).astype(bool)
        np.testing.assert_array_equal(got, reference_boundary(mask, width))


@pytest.mark.parametrize("name, dt, gt", [
    ("square vs shifted square", rect(40, 43, 40, 40), rect(40, 40, 40, 40)),
    ("square vs diagonal shift", rect(42, 42, 40, 40), rect(40, 40, 40, 40)),
    ("mask vs its dilation", ndimage.binary_dilation(rect(40, 40, 40, 40), iterations=2),
     rect(40, 40, 40, 40)),
    ("dilation vs the mask", rect(40, 40, 40, 40),
     ndimage.binary_dilation(rect(40, 40, 40, 40), iterations=3)),
])
def test_hand_made_cases_match_the_independent_computation(name, dt, gt):
    expected = reference_boundary_ap(dt, gt)
    gt_file, results = single_image([(gt, 0)], [(dt, 0.9)])
    got = boundary_ap(gt_file, results)
    assert got["AP"] == pytest.approx(expected, abs=1e-9), name
    assert got["AP50"] == (1.0 if expected >= 0.1 else 0.0)
    # The boundary decides these cases: mask AP is higher, so a test that used mask IoU would fail.
    assert got["AP"] < mask_ap(gt_file, results)["AP"]


def test_crowd_region_keeps_the_crowd_iou():
    """A detection inside a crowd region is ignored, as in mask AP, although its boundary IoU with the region
    is low; were the boundary applied to the crowd region, that top-scored detection would be a false
    positive and AP would drop below 1."""
    crowd = rect(70, 10, 50, 100)
    inside = rect(80, 20, 20, 20)
    person = rect(10, 10, 30, 30)
    width = boundary_width(SIZE, SIZE)
    assert reference_iou(reference_boundary(inside, width), reference_boundary(crowd, width)) < 0.5
    gt, results = single_image([(person, 0), (crowd, 1)], [(inside, 0.99), (person, 0.5)])
    assert boundary_ap(gt, results)["AP"] == pytest.approx(1.0)


def test_identical_masks_score_one():
    gt, _ = random_dataset(seed=3, num_images=10)
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": a["segmentation"],
                "score": 1.0} for a in gt["annotations"] if not a["iscrowd"]]
    got = boundary_ap(gt, perfect)
    assert set(got) == set(BOUNDARY_METRIC_NAMES)
    assert all(v == pytest.approx(1.0) or math.isnan(v) for v in got.values()), got
    assert got["AP"] == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [0, 1])
def test_same_numbers_as_faster_coco_eval_boundary_mode(seed):
    pytest.importorskip("faster_coco_eval")
    gt, results = random_dataset(seed, num_images=20)
    ours, theirs = boundary_ap(gt, results), boundary_ap(gt, results, "faster_coco_eval")
    assert ours["AP"] > 0.02  # not a degenerate comparison
    for key in BOUNDARY_METRIC_NAMES:
        assert ours[key] == pytest.approx(theirs[key], abs=1e-12, nan_ok=True), key


def test_boundary_ap_does_not_exceed_mask_ap_on_imperfect_predictions():
    for seed in range(3):
        gt, results = random_dataset(seed, num_images=20)
        boundary, mask = boundary_ap(gt, results), mask_ap(gt, results)
        assert boundary["AP"] < mask["AP"]
        for key in ("AP", "AP50", "AP75"):
            assert boundary[key] <= mask[key] + 1e-12, (seed, key)


def test_evaluate_gives_the_boundary_keys(tmp_path, capsys):
    gt, results = random_dataset(seed=0, num_images=6)
    keys = evaluate(gt, results, metric="boundary")
    assert list(keys) == [f"coco/boundary/{name}" for name in BOUNDARY_METRIC_NAMES]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps(results))
    assert main(["evaluate", "--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / "pred.json"),
                 "--metric", "boundary", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["coco/boundary/AP"] == pytest.approx(keys["coco/boundary/AP"])


def test_predictions_without_masks_are_one_line_naming_the_file(tmp_path, capsys):
    gt, results = random_dataset(seed=0, num_images=4)
    boxes = [{k: v for k, v in r.items() if k != "segmentation"} for r in results]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    pred = tmp_path / "boxes_only.json"
    pred.write_text(json.dumps(boxes))
    argv = ["evaluate", "--gt", str(tmp_path / "gt.json"), "--pred", str(pred), "--metric", "boundary"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ")
    assert str(pred) in err and "boundary AP needs masks" in err
