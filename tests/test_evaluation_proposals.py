"""Proposal recall (COCO-style AR over IoU 0.5:0.95) from files, record lists and in-memory arrays."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mnc_bench.evaluation import evaluate, evaluate_proposals

# Image 1: a 10x10 box (small) and a 40x40 box (medium). Image 2: one 100x100 box (large) and a crowd box.
GT = {
    "images": [{"id": 1, "height": 200, "width": 200}, {"id": 2, "height": 200, "width": 200}],
    "categories": [{"id": 3, "name": "thing"}, {"id": 4, "name": "other"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 10], "area": 100.0, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 4, "bbox": [50, 50, 40, 40], "area": 1600.0, "iscrowd": 0},
        {"id": 3, "image_id": 2, "category_id": 3, "bbox": [0, 0, 100, 100], "area": 10000.0, "iscrowd": 0},
        {"id": 4, "image_id": 2, "category_id": 3, "bbox": [100, 100, 90, 90], "area": 8100.0, "iscrowd": 1},
    ],
}
THRESHOLDS = np.linspace(0.5, 0.95, 10)


def found_fraction(iou: float) -> float:
    """Share of the ten IoU thresholds a proposal with this IoU clears."""
    return float(np.mean(iou >= THRESHOLDS))


def test_average_recall_by_hand():
    # Image 1: exact small box; for the medium box a 32x32 box inside it: IoU 1024/1600 = .64, found at
    # .5, .55, .6 -> 3/10. Image 2: the large box shifted by 10 px: IoU 9000/11000 = .818, found at
    # .5 ... .8 -> 7/10. The crowd box is not a positive. AR = (1 + .3 + .7) / 3.
    proposals = {
        1: np.array([[0, 0, 10, 10, 0.9], [54, 54, 86, 86, 0.8]]),
        2: (np.array([[10, 0, 110, 100]]), np.array([0.7])),
    }
    result = evaluate_proposals(GT, proposals)
    assert found_fraction(1024 / 1600) == 0.3 and found_fraction(9000 / 11000) == 0.7
    for n in (10, 100, 300, 1000):
        assert result[f"AR@{n}"] == pytest.approx((1 + 0.3 + 0.7) / 3)
    assert result["ARs@1000"] == pytest.approx(1.0)
    assert result["ARm@1000"] == pytest.approx(0.3)
    assert result["ARl@1000"] == pytest.approx(0.7)


def test_only_the_top_scored_proposals_count():
    # Eleven proposals on image 1; the one hitting the small box has the lowest score, so it is
    # outside the top 10 but inside the top 100. The medium box is never found.
    boxes = [[150, 150, 160, 160, 0.9 - 0.01 * k] for k in range(10)] + [[0, 0, 10, 10, 0.01]]
    result = evaluate_proposals(GT, {1: np.array(boxes)})
    assert result["AR@10"] == 0.0
    assert result["AR@100"] == pytest.approx(1 / 3)


def test_file_records_and_arrays_agree(tmp_path):
    rng = np.random.default_rng(0)
    arrays, records = {}, []
    for image_id in (1, 2):
        # Noisy copies of the image's ground-truth boxes, from near-exact to far off.
        targets = np.array([a["bbox"] for a in GT["annotations"] if a["image_id"] == image_id], dtype=float)
        picked = targets[rng.integers(len(targets), size=300)]
        scale = rng.uniform(0.1, 0.6, size=(300, 1)) * picked[:, 2:].repeat(2, axis=1)
        noise = rng.normal(size=(300, 4)) * scale
        xy = picked[:, :2] + noise[:, :2]
        wh = np.maximum(picked[:, 2:] + noise[:, 2:], 1)
        scores = rng.random(300)
        arrays[image_id] = np.concatenate([xy, xy + wh, scores[:, None]], axis=1)
        records += [
            {"image_id": image_id, "bbox": [*p, *s], "score": float(c)} for p, s, c in zip(xy, wh, scores)
        ]
    path = tmp_path / "proposals.json"
    path.write_text(json.dumps(records))
    from_arrays = evaluate_proposals(GT, arrays)
    from_file = evaluate(GT, path, metric="proposals")
    assert 0 < from_arrays["AR@10"] < from_arrays["AR@100"] < 1  # non-trivial, and more proposals help
    for key, value in from_arrays.items():
        assert from_file[f"proposals/{key}"] == pytest.approx(value, abs=1e-12), key


def test_no_proposals_scores_zero_and_missing_size_is_nan():
    gt = {**GT, "annotations": GT["annotations"][:2]}  # no large object left
    result = evaluate_proposals(gt, {})
    assert result["AR@1000"] == 0.0 and result["ARs@1000"] == 0.0
    assert math.isnan(result["ARl@1000"])
