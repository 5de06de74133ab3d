"""Proposal recall, COCO style: average recall over box IoU 0.5:0.05:0.95 with at most 10, 100, 300 and
1000 proposals per image, and by object size (COCO small/medium/large ground-truth areas) at 1000.

Class-agnostic (COCOeval with ``useCats=0``); crowd ground truths neither count nor need to be found.
Keys: ``AR@10``, ``AR@100``, ``AR@300``, ``AR@1000``, ``ARs@1000``, ``ARm@1000``, ``ARl@1000``; a size
range without ground truth gives NaN.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from mnc_bench.data.predicates import is_int
from mnc_bench.errors import UserError
from mnc_bench.evaluation.coco import run_cocoeval
from mnc_bench.evaluation.ground_truth import GroundTruth, GroundTruthSource, load_ground_truth
from mnc_bench.evaluation.results_io import Predictions, PredictionsSource, load_predictions

PROPOSAL_MAX_DETS = (10, 100, 300, 1000)
_SIZES = {"s": 1, "m": 2, "l": 3}  # index into COCOeval's area ranges (0 is "all")

# image id -> (N, 5) array [x1, y1, x2, y2, score], or a (boxes (N, 4) xyxy, scores (N,)) pair
ProposalArrays = Mapping[int, Any]


def evaluate_proposals(
    gt: GroundTruthSource,
    proposals: PredictionsSource | ProposalArrays,
    backend: str = "pycocotools",
) -> dict[str, float]:
    """Average recall of proposals given as a file, a list of ``{image_id, bbox [x,y,w,h], score}`` records,
    or in-memory arrays per image id (see :data:`ProposalArrays`); images left out have no proposals.
    Tensors on the CPU work as arrays. With 1000 proposals per image ``backend="faster_coco_eval"`` is
    much faster and gives the same numbers."""
    gt = load_ground_truth(gt)
    if isinstance(proposals, Mapping):
        predictions = proposals_from_arrays(proposals, gt)
    else:
        predictions = load_predictions(proposals, gt, proposals=True)
    return proposal_metrics(gt, predictions, backend)


def proposals_from_arrays(arrays: ProposalArrays, gt: GroundTruth) -> Predictions:
    image_ids, boxes, scores = [], [], []
    for image_id, value in arrays.items():
        where = f"proposals for image_id {image_id!r}"
        if not is_int(image_id) or image_id not in gt.image_sizes:
            raise UserError(f"{where}: not an image of the ground truth")
        if isinstance(value, tuple):
            if len(value) != 2:
                raise UserError(f"{where}: expected a (boxes, scores) pair, got {len(value)} items")
            xyxy = np.asarray(value[0], dtype=np.float64).reshape(-1, 4)
            score = np.asarray(value[1], dtype=np.float64).reshape(-1)
        else:
            array = np.asarray(value, dtype=np.float64)
            if array.ndim != 2 or array.shape[1] != 5:
                raise UserError(f"{where}: expected an (N, 5) array [x1, y1, x2, y2, score]: {array.shape}")
            xyxy, score = array[:, :4], array[:, 4]
        if len(xyxy) != len(score):
            raise UserError(f"{where}: {len(xyxy)} boxes but {len(score)} scores")
        if not (np.isfinite(xyxy).all() and np.isfinite(score).all()):
            raise UserError(f"{where}: NaN or infinite box coordinate or score")
        if (xyxy[:, 2] < xyxy[:, 0]).any() or (xyxy[:, 3] < xyxy[:, 1]).any():
            raise UserError(f"{where}: a box has x2 < x1 or y2 < y1")
        image_ids.append(np.full(len(score), image_id, dtype=np.int64))
        boxes.append(np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1))
        scores.append(score)
    count = sum(len(s) for s in scores)
    return Predictions(
        source="proposals",
        image_ids=np.concatenate(image_ids) if image_ids else np.zeros(0, dtype=np.int64),
        category_ids=np.zeros(count, dtype=np.int64),
        scores=np.concatenate(scores) if scores else np.zeros(0),
        bboxes=np.concatenate(boxes) if boxes else np.zeros((0, 4)),
        rles=None,
    )


def proposal_metrics(gt: GroundTruth, predictions: Predictions, backend: str) -> dict[str, float]:
    """:func:`evaluate_proposals` on already validated inputs."""
    # faster-coco-eval drops detections whose category is not in the ground truth even with useCats=0.
    any_category = gt.category_ids[0] if gt.category_ids else 0
    predictions = dataclasses.replace(predictions, category_ids=np.full(len(predictions), any_category))
    records = predictions.coco_records("bbox")
    coco_eval = run_cocoeval(gt, records, "bbox", backend, use_categories=False, max_dets=PROPOSAL_MAX_DETS)
    recall = np.asarray(coco_eval.eval["recall"])  # (IoU thresholds, 1 category, area ranges, max dets)
    results = {f"AR@{n}": _average(recall[:, 0, 0, m]) for m, n in enumerate(PROPOSAL_MAX_DETS)}
    for size, area in _SIZES.items():
        results[f"AR{size}@{PROPOSAL_MAX_DETS[-1]}"] = _average(recall[:, 0, area, -1])
    return results


def _average(recalls: np.ndarray) -> float:
    """Mean like COCOeval.summarize: -1 marks "no ground truth here"; none defined gives NaN."""
    defined = recalls[recalls > -1]
    return float(defined.mean()) if len(defined) else math.nan
