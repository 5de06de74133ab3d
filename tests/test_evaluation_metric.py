"""The mmengine metric scores mmdet-style predictions through the same code as `mnc-bench evaluate`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from mnc_bench.errors import UserError
from mnc_bench.evaluation import evaluate
from mnc_bench.evaluation.metric import MNCBenchMetric

H, W = 48, 64


def box_mask(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[y1:y2, x1:x2] = True
    return mask


# Category ids are not 0-based and the file lists "dog" (id 9) before "cat" (id 4).
GT_BOXES = {
    5: [(9, (2, 2, 20, 20)), (4, (30, 10, 60, 40))],
    6: [(4, (5, 5, 25, 45))],
}


@pytest.fixture
def gt_file(tmp_path):
    annotations = []
    for image_id, objects in GT_BOXES.items():
        for category_id, (x1, y1, x2, y2) in objects:
            rle = mask_utils.encode(np.asfortranarray(box_mask(x1, y1, x2, y2).astype(np.uint8)))
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": category_id,
                "segmentation": {"size": [H, W], "counts": rle["counts"].decode()},
                "area": float((x2 - x1) * (y2 - y1)), "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0,
            })
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({
        "images": [{"id": i, "height": H, "width": W} for i in GT_BOXES],
        "categories": [{"id": 9, "name": "dog"}, {"id": 4, "name": "cat"}],
        "annotations": annotations,
    }))
    return path


def data_sample(image_id: int, boxes: list[tuple], labels: list[int], scores: list[float]) -> dict:
    """What mmengine's Evaluator hands a metric: DetDataSample.to_dict() with tensors inside."""
    return {
        "img_id": image_id,
        "ori_shape": (H, W),
        "pred_instances": {
            "bboxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "scores": torch.tensor(scores, dtype=torch.float32),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "masks": torch.from_numpy(np.stack([box_mask(*b) for b in boxes])),
        },
    }


SAMPLES = [
    # Label 0 is "dog" (first in the file), label 1 "cat". Image 5: both found, plus a loose duplicate dog.
    ([(2, 2, 20, 20), (30, 10, 60, 40), (2, 2, 14, 20)], [0, 1, 0], [0.9, 0.8, 0.95]),
    # Image 6: the cat is found with a slightly too small mask.
    ([(5, 5, 25, 40)], [1], [0.7]),
]


def run_metric(metric: MNCBenchMetric) -> dict[str, float]:
    for image_id, (boxes, labels, scores) in zip(GT_BOXES, SAMPLES):
        metric.process({}, [data_sample(image_id, boxes, labels, scores)])
    return metric.evaluate(size=len(GT_BOXES))


def test_metric_equals_evaluate_on_the_written_results(gt_file, tmp_path):
    results_file = tmp_path / "out" / "results.json"
    metric = MNCBenchMetric(ann_file=str(gt_file), results_file=str(results_file))
    metric.dataset_meta = {"classes": ("dog", "cat")}
    scores = run_metric(metric)
    assert {"coco/segm/AP", "coco/bbox/AP", "voc_sds/mAP@0.5", "voc_mnc/AP_vol/cat"} <= scores.keys()
    # The duplicate dog (IoU 12/18 = .67 with the dog) outranks the real one: precision < 1 at some IoUs.
    assert 0 < scores["coco/segm/AP"] < 1
    records = json.loads(results_file.read_text())
    assert [(r["image_id"], r["category_id"]) for r in records] == [(5, 9), (5, 4), (5, 9), (6, 4)]
    assert scores == evaluate(gt_file, results_file, metric=["coco", "voc_sds", "voc_mnc"],
                              iou_type=["segm", "bbox"])
    cli = subprocess.run([sys.executable, "-m", "mnc_bench.cli", "evaluate", "--gt", str(gt_file), "--pred",
                          str(results_file), "--iou-type", "bbox", "--json"], capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["coco/bbox/AP"] == scores["coco/bbox/AP"]


def test_perfect_model_scores_one(gt_file):
    metric = MNCBenchMetric(ann_file=str(gt_file), metric="voc_mnc", iou_type="segm")
    for image_id, objects in GT_BOXES.items():
        labels = [{9: 0, 4: 1}[c] for c, _ in objects]
        metric.process({}, [data_sample(image_id, [b for _, b in objects], labels, [1.0] * len(objects))])
    scores = metric.evaluate(size=2)
    assert scores and all(v == 1.0 for v in scores.values()), scores


def test_label_outside_the_categories_is_a_user_error(gt_file):
    metric = MNCBenchMetric(ann_file=str(gt_file), metric="coco", iou_type="bbox")
    metric.process({}, [data_sample(5, [(2, 2, 20, 20)], [2], [0.9])])
    with pytest.raises(UserError, match="predicted label 2 but the ground truth has 2 categories"):
        metric.evaluate(size=1)


def test_mask_at_wrong_size_is_a_user_error(gt_file):
    metric = MNCBenchMetric(ann_file=str(gt_file), metric="voc_sds")
    sample = data_sample(5, [(2, 2, 20, 20)], [0], [0.9])
    sample["pred_instances"]["masks"] = torch.zeros((1, H // 2, W // 2), dtype=torch.bool)  # not full size
    metric.process({}, [sample])
    with pytest.raises(UserError, match=r"record 0 \(image_id 5\): 'segmentation': RLE 'size' \[24, 32\]"):
        metric.evaluate(size=1)


def test_registered_in_mmdet_metrics(gt_file):
    pytest.importorskip("mmdet.registry", reason="mmdet not importable")
    from mmdet.registry import METRICS

    from mnc_bench.registration import METRIC_NAME, register_all

    register_all()
    metric = METRICS.build({"type": METRIC_NAME, "ann_file": str(gt_file), "metric": "voc_sds"})
    assert isinstance(metric, MNCBenchMetric)
    assert run_metric(metric)["voc_sds/AP@0.5/dog"] == pytest.approx(1.0)


def test_boundary_ap_and_tide_through_the_metric(gt_file, tmp_path):
    results_file = tmp_path / "results.json"
    metric = MNCBenchMetric(ann_file=str(gt_file), metric=("boundary", "tide"), iou_type=("segm", "bbox"),
                            results_file=str(results_file))
    metric.dataset_meta = {"classes": ("dog", "cat")}
    scores = run_metric(metric)
    assert {"coco/boundary/AP", "coco/boundary/APl", "tide/segm/dAP_dupe",
            "tide/bbox/base_AP50"} <= scores.keys()
    assert not any(key.startswith(("coco/segm/", "voc_")) for key in scores)
    assert scores == evaluate(gt_file, results_file, metric=["boundary", "tide"], iou_type=["segm", "bbox"])
    assert scores["tide/segm/base_AP50"] == pytest.approx(1.0)  # every object found at IoU 0.5
