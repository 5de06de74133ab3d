"""VOC / SBD region AP: mAP^r at mask IoU 0.5 and 0.7, and mAP^r_vol (mean over IoU 0.1, 0.2, ..., 0.9).

Two named protocols share everything except the match test and the AP interpolation:

* ``sds`` -- the SDS benchmark (Hariharan et al., ECCV 2014): a detection matches when IoU > threshold
  (strict); AP is the all-point interpolated area under the precision envelope (VOC2010+ style).
* ``mnc`` -- the MNC authors' code (``lib/utils/voc_eval.py``): a detection matches when IoU >= threshold;
  AP is VOC07 11-point: the mean over recall levels t = 0, 0.1, ..., 1 of the highest precision at
  recall >= t. The levels are ``np.arange(0, 1.1, 0.1)`` exactly as in that code, whose 0.3, 0.6 and 0.7
  are a hair above the decimal: a recall of exactly 3/10 does not reach the 0.3 level.

Matching (VOC convention): all detections of a class are sorted by descending score (stable, so ties keep
input order). Each detection takes the ground truth with the highest mask IoU among all ground truths of
its class in its image (crowd ones included; the first on ties). If that IoU does not pass the threshold
the detection is a false positive. If it passes and that ground truth is a crowd region (COCO
``iscrowd=1``, playing VOC's "difficult"), the detection is ignored: neither true nor false positive.
Otherwise it is a true positive if that ground truth is not yet taken, else a false positive (duplicate).
Crowd ground truths do not count as positives. IoU is the plain mask IoU (pycocotools ``mask.iou`` on
RLEs with ``iscrowd=0``), also for crowd regions.

A class without non-crowd ground truth has AP NaN and is left out of the means; a class with ground truth
but no detections has AP 0, so an empty results list scores 0 on every defined number.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils

from mnc_bench.errors import UserError
from mnc_bench.evaluation.ground_truth import GroundTruth, GroundTruthSource, load_ground_truth
from mnc_bench.evaluation.results_io import Predictions, PredictionsSource, load_predictions

IOU_THRESHOLDS = tuple(k / 10 for k in range(1, 10))
REPORTED_THRESHOLDS = (0.5, 0.7)


def all_point_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision envelope, summed where recall changes (VOC2010+ / SDS)."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    envelope = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * envelope[steps + 1]))


_ELEVEN_LEVELS = np.arange(0.0, 1.1, 0.1)  # as in MNC's voc_ap, not exact tenths (see module docstring)


def eleven_point_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC07 11-point AP: mean over t in 0, 0.1, ..., 1 of max precision at recall >= t (0 if none)."""
    if len(recall) == 0:
        return 0.0
    reached = recall[None, :] >= _ELEVEN_LEVELS[:, None]
    return float(np.where(reached, precision[None, :], 0.0).max(axis=1).sum() / len(_ELEVEN_LEVELS))


@dataclass(frozen=True)
class VocProtocol:
    """How one region-AP protocol matches detections and interpolates AP (see the module docstring)."""

    name: str
    strict: bool  # True: a match needs IoU > threshold; False: IoU >= threshold
    average_precision: Callable[[np.ndarray, np.ndarray], float]


PROTOCOLS = {
    "sds": VocProtocol("sds", strict=True, average_precision=all_point_ap),
    "mnc": VocProtocol("mnc", strict=False, average_precision=eleven_point_ap),
}


def evaluate_voc(
    gt: GroundTruthSource, predictions: PredictionsSource, protocol: str = "sds"
) -> dict[str, float]:
    """Region AP of a results file or list under ``protocol`` ("sds" or "mnc").

    Keys: ``mAP@0.5``, ``mAP@0.7``, ``mAP_vol`` and per class ``AP@0.5/<name>``, ``AP@0.7/<name>``,
    ``AP_vol/<name>`` (category names from the ground truth).
    """
    gt = load_ground_truth(gt)
    return voc_metrics(gt, load_predictions(predictions, gt), protocol)


def voc_metrics(gt: GroundTruth, predictions: Predictions, protocol: str) -> dict[str, float]:
    """:func:`evaluate_voc` on already validated inputs."""
    if protocol not in PROTOCOLS:
        raise UserError(f"unknown VOC protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    ap = average_precisions(gt, predictions, PROTOCOLS[protocol], IOU_THRESHOLDS)
    names = list(gt.category_names.values())
    ap_vol = ap.mean(axis=0)
    results: dict[str, float] = {}
    for threshold in REPORTED_THRESHOLDS:
        results[f"mAP@{threshold:.1f}"] = _nanmean(ap[IOU_THRESHOLDS.index(threshold)])
    results["mAP_vol"] = _nanmean(ap_vol)
    for threshold in REPORTED_THRESHOLDS:
        row = ap[IOU_THRESHOLDS.index(threshold)]
        results.update({f"AP@{threshold:.1f}/{name}": float(v) for name, v in zip(names, row)})
    results.update({f"AP_vol/{name}": float(v) for name, v in zip(names, ap_vol)})
    return results


def average_precisions(
    gt: GroundTruth, predictions: Predictions, protocol: VocProtocol, thresholds: tuple[float, ...]
) -> np.ndarray:
    """AP per threshold and ground-truth category (file order): array of shape (thresholds, categories)."""
    best_iou, best_gt = best_overlaps(gt, predictions)
    order = np.argsort(-predictions.scores, kind="stable")
    ap = np.full((len(thresholds), len(gt.category_names)), np.nan)
    positive = ~gt.annotation_crowd
    num_positives = [
        np.count_nonzero(positive & (gt.annotation_category_ids == c)) for c in gt.category_names
    ]
    for t, threshold in enumerate(thresholds):
        true_positive, ignored = _match(best_iou, best_gt, gt.annotation_crowd, order, threshold, protocol)
        counted = order[~ignored[order]]
        for c, category_id in enumerate(gt.category_names):
            if num_positives[c] == 0:
                continue
            hits = true_positive[counted[predictions.category_ids[counted] == category_id]]
            tp = np.cumsum(hits)
            fp = np.cumsum(~hits)
            ap[t, c] = protocol.average_precision(tp / num_positives[c], tp / (tp + fp))
    return ap


def best_overlaps(gt: GroundTruth, predictions: Predictions) -> tuple[np.ndarray, np.ndarray]:
    """Per detection: the highest mask IoU with a same-class ground truth of its image, and that ground
    truth's annotation index (-1 and -1 when the image has none of that class)."""
    dt_rles = predictions.require_masks("VOC region AP")
    gt_rles = gt.rles
    best_iou = np.full(len(predictions), -1.0)
    best_gt = np.full(len(predictions), -1, dtype=np.int64)
    gt_order = np.argsort(gt.annotation_image_ids, kind="stable")
    gt_images, gt_starts = np.unique(gt.annotation_image_ids[gt_order], return_index=True)
    gt_groups = dict(zip(gt_images.tolist(), np.split(gt_order, gt_starts[1:])))
    dt_order = np.argsort(predictions.image_ids, kind="stable")
    dt_images, dt_starts = np.unique(predictions.image_ids[dt_order], return_index=True)
    for image_id, dets in zip(dt_images.tolist(), np.split(dt_order, dt_starts[1:])):
        gts = gt_groups.get(image_id)
        if gts is None:
            continue
        ious = np.asarray(
            mask_utils.iou([dt_rles[d] for d in dets], [gt_rles[g] for g in gts], [0] * len(gts))
        ).reshape(len(dets), len(gts))
        same_class = predictions.category_ids[dets][:, None] == gt.annotation_category_ids[gts][None, :]
        ious = np.where(same_class, ious, -1.0)
        best = ious.argmax(axis=1)
        best_iou[dets] = ious[np.arange(len(dets)), best]
        best_gt[dets] = np.where(best_iou[dets] >= 0, gts[best], -1)
    return best_iou, best_gt


def _match(
    best_iou: np.ndarray,
    best_gt: np.ndarray,
    crowd: np.ndarray,
    order: np.ndarray,
    threshold: float,
    protocol: VocProtocol,
) -> tuple[np.ndarray, np.ndarray]:
    """(true positive, ignored) flags per detection; everything else is a false positive.

    A detection's best ground truth does not depend on what earlier detections took, so greedy matching
    reduces to: among detections passing the threshold on the same ground truth, the highest-scored wins.
    """
    passes = best_iou > threshold if protocol.strict else best_iou >= threshold
    ignored = passes & crowd[np.maximum(best_gt, 0)] if len(crowd) else np.zeros_like(passes)
    candidates = order[(passes & ~ignored)[order]]
    _, first = np.unique(best_gt[candidates], return_index=True)
    true_positive = np.zeros(len(best_iou), dtype=bool)
    true_positive[candidates[first]] = True
    return true_positive, ignored


def _nanmean(values: np.ndarray) -> float:
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if len(defined) else float("nan")
