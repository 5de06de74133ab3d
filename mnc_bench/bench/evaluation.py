"""Evaluation speed on a synthetic VOC12-val-sized workload: 1,449 images of 500x375 pixels, ~3 ground-truth
instances and 100 scored mask detections per image, 20 classes.

Times (a) VOC region AP (both protocols, from the in-memory results list, validation included) and
(b) COCO segm evaluation with pycocotools and with faster-coco-eval on the same validated inputs.
Run: ``mnc-bench bench eval``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from mnc_bench.evaluation.coco import coco_metrics
from mnc_bench.evaluation.ground_truth import load_ground_truth
from mnc_bench.evaluation.results_io import load_predictions
from mnc_bench.evaluation.voc import evaluate_voc

HEIGHT, WIDTH = 375, 500
NUM_CLASSES = 20


def _ellipse_polygon(cy: float, cx: float, ry: float, rx: float, vertices: int = 24) -> list[float]:
    angles = np.linspace(0, 2 * np.pi, vertices, endpoint=False)
    xs = np.clip(cx + rx * np.cos(angles), 0, WIDTH)
    ys = np.clip(cy + ry * np.sin(angles), 0, HEIGHT)
    return np.stack([xs, ys], axis=1).ravel().tolist()


def _rles(polygons: list[list[float]]) -> list[dict[str, Any]]:
    rles = mask_utils.frPyObjects(polygons, HEIGHT, WIDTH)  # one RLE per polygon
    return [{"size": r["size"], "counts": r["counts"].decode("ascii")} for r in rles]


def synthetic_workload(
    num_images: int = 1449, detections_per_image: int = 100, seed: int = 0
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(COCO ground truth, COCO results list). Ground truths are ellipses; 30% of the detections are
    jittered copies of a ground truth (its class 80% of the time), the rest ellipses anywhere."""
    rng = np.random.default_rng(seed)
    images, annotations, results = [], [], []
    for image_id in range(1, num_images + 1):
        images.append({"id": image_id, "height": HEIGHT, "width": WIDTH})
        num_gt = int(rng.integers(1, 6))
        shapes = np.column_stack([
            rng.uniform(40, HEIGHT - 40, num_gt), rng.uniform(40, WIDTH - 40, num_gt),
            rng.uniform(10, 90, num_gt), rng.uniform(10, 120, num_gt),
        ])
        classes = rng.integers(1, NUM_CLASSES + 1, num_gt)
        for _shape, category_id, rle in zip(shapes, classes, _rles([_ellipse_polygon(*s) for s in shapes])):
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": int(category_id),
                "segmentation": rle, "area": float(mask_utils.area(rle)),
                "bbox": mask_utils.toBbox(rle).tolist(), "iscrowd": 0,
            })
        near = rng.random(detections_per_image) < 0.3
        source = rng.integers(0, num_gt, detections_per_image)
        random_shapes = np.column_stack([
            rng.uniform(20, HEIGHT - 20, detections_per_image),
            rng.uniform(20, WIDTH - 20, detections_per_image),
            rng.uniform(5, 100, detections_per_image),
            rng.uniform(5, 130, detections_per_image),
        ])
        jittered = shapes[source] * rng.normal(1, 0.08, (detections_per_image, 4))
        det_shapes = np.where(near[:, None], jittered, random_shapes)
        det_classes = np.where(near & (rng.random(detections_per_image) < 0.8), classes[source],
                               rng.integers(1, NUM_CLASSES + 1, detections_per_image))
        scores = np.where(
            near, rng.uniform(0.3, 1, detections_per_image), rng.uniform(0, 0.7, detections_per_image)
        )
        det_rles = _rles([_ellipse_polygon(*s) for s in det_shapes])
        boxes = mask_utils.toBbox(det_rles)
        rows = zip(det_classes.tolist(), scores.tolist(), det_rles, boxes.tolist())
        results += [
            {"image_id": image_id, "category_id": c, "segmentation": rle, "bbox": box, "score": score}
            for c, score, rle, box in rows
        ]
    categories = [{"id": c, "name": f"class{c:02d}"} for c in range(1, NUM_CLASSES + 1)]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def bench_evaluation(
    num_images: int = 1449, detections_per_image: int = 100, *, print_fn: Callable[[str], None] = print
) -> dict[str, float]:
    """Time the workload; return the figures (seconds, counts, scores, ratio) and print them as a table.

    ``voc_<protocol>_seconds`` is the whole public call on the in-memory results list (validation
    included: the number to hold against the 30 s target); the ``load`` and per-backend COCO figures
    split validation from scoring so the backend ratio compares the backends alone.
    """
    gt, results = synthetic_workload(num_images, detections_per_image)
    figures: dict[str, float] = {
        "images": num_images,
        "ground_truths": len(gt["annotations"]),
        "detections": len(results),
    }

    def timed(name: str, function: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        value = function()
        figures[f"{name}_seconds"] = time.perf_counter() - start
        return value

    for protocol in ("sds", "mnc"):
        scores = timed(f"voc_{protocol}", partial(evaluate_voc, gt, results, protocol))
        figures[f"voc_{protocol}_mAP@0.5"] = scores["mAP@0.5"]
    loaded_gt = load_ground_truth(gt)
    loaded = timed("load_and_validate", lambda: load_predictions(results, loaded_gt))
    for backend in ("pycocotools", "faster_coco_eval"):
        scores = timed(f"coco_segm_{backend}", partial(coco_metrics, loaded_gt, loaded, "segm", backend))
        figures[f"coco_segm_{backend}_AP"] = scores["AP"]
    figures["faster_coco_eval_speedup"] = (
        figures["coco_segm_pycocotools_seconds"] / figures["coco_segm_faster_coco_eval_seconds"]
    )

    width = max(len(key) for key in figures)
    for key, value in figures.items():
        print_fn(f"{key:<{width}}  " + (f"{value:>10.4g}" if isinstance(value, float) else f"{value:>10}"))
    return figures
