"""COCO AP/AR for masks ("segm") and boxes ("bbox"), computed by pycocotools or faster-coco-eval.

The numbers are those backends' own ``COCOeval.stats``; two conventions are ours and documented:
a metric the ground truth leaves undefined (pycocotools' ``-1``, e.g. APs with no small objects) is NaN,
and an empty results list is scored like any other (AP 0 wherever ground truth exists) instead of
tripping ``COCO.loadRes``.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
from collections.abc import Callable
from typing import Any

from mnc_bench.errors import UserError
from mnc_bench.evaluation.ground_truth import GroundTruth, GroundTruthSource, load_ground_truth
from mnc_bench.evaluation.results_io import Predictions, PredictionsSource, load_predictions
from mnc_bench.suites.contract import COCO_IOU_TYPES as IOU_TYPES
from mnc_bench.suites.contract import COCO_METRIC_NAMES  # the first twelve entries of COCOeval.stats

BACKENDS = ("pycocotools", "faster_coco_eval")


def evaluate_coco(
    gt: GroundTruthSource,
    predictions: PredictionsSource,
    iou_type: str = "segm",
    backend: str = "pycocotools",
) -> dict[str, float]:
    """COCO metrics (keys :data:`COCO_METRIC_NAMES`) of a results file or list against a COCO ground truth."""
    gt = load_ground_truth(gt)
    return coco_metrics(gt, load_predictions(predictions, gt), iou_type, backend)


def coco_metrics(gt: GroundTruth, predictions: Predictions, iou_type: str, backend: str) -> dict[str, float]:
    """:func:`evaluate_coco` on already validated inputs."""
    if iou_type not in IOU_TYPES:
        raise UserError(f"unknown IoU type {iou_type!r}; choose from {', '.join(IOU_TYPES)}")
    if iou_type == "segm":
        _ = gt.rles  # validates every ground-truth mask before pycocotools sees it
    coco_eval = run_cocoeval(gt, predictions.coco_records(iou_type), iou_type, backend)
    return dict(zip(COCO_METRIC_NAMES, summarize(coco_eval)))


def summarize(coco_eval: Any) -> list[float]:
    """The first twelve ``COCOeval.stats`` of an accumulated evaluation, undefined ones (-1) as NaN."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval.summarize()
    return [_undefined_to_nan(value) for value in coco_eval.stats[:12]]


def run_cocoeval(
    gt: GroundTruth,
    records: list[dict[str, Any]],
    iou_type: str,
    backend: str,
    *,
    use_categories: bool = True,
    max_dets: tuple[int, ...] | None = None,
    evaluator: Callable[[Any, Any, str], Any] | None = None,
    evaluator_options: dict[str, Any] | None = None,
) -> Any:
    """Run the chosen backend's COCOeval up to ``accumulate()`` and return it.

    ``evaluator(coco_gt, coco_dt, iou_type)`` replaces the backend's COCOeval class (a subclass that changes
    the IoU, e.g. Boundary AP); ``evaluator_options`` are keyword arguments of the backend's class."""
    coco_cls, cocoeval_cls = _backend(backend)
    if evaluator is None:
        evaluator = functools.partial(cocoeval_cls, **(evaluator_options or {}))
    # pycocotools prints progress to stdout, which would corrupt `mnc-bench evaluate --json`.
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = coco_cls()
        coco_gt.dataset = {
            **gt.dataset,
            # Shallow copies: COCOeval writes 'ignore' and converted segmentations into these dicts.
            "annotations": [dict(ann) for ann in gt.annotations],
        }
        coco_gt.createIndex()
        if records:
            coco_dt = coco_gt.loadRes(records)
        else:
            coco_dt = coco_cls()
            coco_dt.dataset = {**gt.dataset, "annotations": []}
            coco_dt.createIndex()
        coco_eval = evaluator(coco_gt, coco_dt, iou_type)
        coco_eval.params.useCats = int(use_categories)
        if max_dets is not None:
            coco_eval.params.maxDets = list(max_dets)
        coco_eval.evaluate()
        coco_eval.accumulate()
    return coco_eval


def _backend(backend: str) -> tuple[type, type]:
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        return COCO, COCOeval
    if backend == "faster_coco_eval":
        try:
            from faster_coco_eval import COCO, COCOeval_faster
        except ImportError:
            raise UserError(
                "backend 'faster_coco_eval' needs the faster-coco-eval package "
                "(pip install 'mnc-bench[fast-eval]')"
            ) from None
        return COCO, COCOeval_faster
    raise UserError(f"unknown COCO backend {backend!r}; choose from {', '.join(BACKENDS)}")


def _undefined_to_nan(value: float) -> float:
    return math.nan if value == -1 else float(value)
