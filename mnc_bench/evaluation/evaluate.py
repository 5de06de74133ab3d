"""One entry point for every metric, with stable flat key names.

Keys (``<name>`` is a category name from the ground truth; NaN marks a number the ground truth leaves
undefined):

* ``coco/<segm|bbox>/{AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl}``
* ``coco/boundary/{AP, AP50, AP75, APs, APm, APl}`` (Boundary AP: :mod:`mnc_bench.evaluation.boundary`)
* ``tide/<segm|bbox>/{base_AP50, dAP_cls, dAP_loc, dAP_both, dAP_dupe, dAP_bkg, dAP_miss, dAP_FP, dAP_FN}``
  (TIDE's error breakdown: :mod:`mnc_bench.evaluation.errors`)
* ``voc_<sds|mnc>/{mAP@0.5, mAP@0.7, mAP_vol}``
* ``voc_<sds|mnc>/{AP@0.5, AP@0.7, AP_vol}/<name>``
* ``proposals/{AR@10, AR@100, AR@300, AR@1000, ARs@1000, ARm@1000, ARl@1000}``
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence

from mnc_bench.errors import UserError
from mnc_bench.evaluation.boundary import boundary_metrics
from mnc_bench.evaluation.coco import IOU_TYPES, coco_metrics
from mnc_bench.evaluation.errors import tide_metrics
from mnc_bench.evaluation.ground_truth import GroundTruthSource, load_ground_truth
from mnc_bench.evaluation.proposals import ProposalArrays, evaluate_proposals
from mnc_bench.evaluation.results_io import PredictionsSource, load_predictions
from mnc_bench.evaluation.voc import PROTOCOLS, voc_metrics

METRICS = ("coco", "voc_sds", "voc_mnc", "all", "proposals", "boundary", "tide")
# Metric families a suite computes only when its `metrics:` names one of their keys: key prefix -> family.
ON_REQUEST = {"coco/boundary/": "boundary", "tide/": "tide"}


def requested_families(keys: Sequence[str]) -> list[str]:
    """The on-request families (:data:`ON_REQUEST`) that ``keys`` name, in that order."""
    return [family for prefix, family in ON_REQUEST.items() if any(key.startswith(prefix) for key in keys)]


def evaluate(
    gt: GroundTruthSource,
    predictions: PredictionsSource | ProposalArrays,
    metric: str | Sequence[str] = "all",
    iou_type: str | Sequence[str] = "segm",
    backend: str = "pycocotools",
) -> dict[str, float]:
    """Score predictions (results file, list of result records, or proposal arrays for
    ``metric="proposals"``) against a COCO ground truth (file or dict).

    ``metric`` is one name of :data:`METRICS` or several; ``"all"`` means COCO plus both VOC protocols
    (Boundary AP and TIDE are asked for by name). ``iou_type`` ("segm", "bbox" or both) selects the IoU of
    COCO and TIDE; VOC region AP and Boundary AP always use masks.
    Predictions are validated once and shared by all metrics.
    """
    metrics = _names(metric, METRICS, "metric")
    iou_types = _names(iou_type, IOU_TYPES, "IoU type")
    gt = load_ground_truth(gt)
    if "proposals" in metrics:
        if len(metrics) > 1:
            raise UserError("'proposals' reads a proposals file and cannot be combined with other metrics")
        return _prefixed("proposals", evaluate_proposals(gt, predictions, backend))
    loaded = load_predictions(predictions, gt)
    results: dict[str, float] = {}
    if {"coco", "all"} & set(metrics):
        for kind in iou_types:
            results.update(_prefixed(f"coco/{kind}", coco_metrics(gt, loaded, kind, backend)))
    for protocol in PROTOCOLS:
        if {f"voc_{protocol}", "all"} & set(metrics):
            results.update(_prefixed(f"voc_{protocol}", voc_metrics(gt, loaded, protocol)))
    if "boundary" in metrics:
        results.update(_prefixed("coco/boundary", boundary_metrics(gt, loaded, backend)))
    if "tide" in metrics:
        for kind in iou_types:
            results.update(_prefixed(f"tide/{kind}", tide_metrics(gt, loaded, kind)))
    return results


def results_to_json(results: Mapping[str, float]) -> str:
    """Strict JSON (one object); NaN becomes null."""
    return json.dumps({k: None if math.isnan(v) else v for k, v in results.items()}, allow_nan=False)


def format_results(results: Mapping[str, float]) -> str:
    """A readable table: one block per metric family, VOC per-class numbers as rows."""
    scalars: dict[str, list[tuple[str, float]]] = {}
    per_class: dict[str, dict[str, dict[str, float]]] = {}
    for key, value in results.items():
        if key.startswith("voc_"):
            section, column, *name = key.split("/", 2)
            row = name[0] if name else "mean"
            column = column.removeprefix("m")
            per_class.setdefault(section, {}).setdefault(row, {})[column] = value
        else:
            section, name = key.rsplit("/", 1)
            scalars.setdefault(section, []).append((name, value))

    lines: list[str] = []
    for section, items in scalars.items():
        lines.append(section)
        width = max(len(name) for name, _ in items)
        lines.extend(f"  {name:<{width}}  {_number(value)}" for name, value in items)
    for section, rows in per_class.items():
        columns = list(rows["mean"])
        width = max(len(section) - 2, *(len(row) for row in rows))
        lines.append(f"{section:<{width + 2}}" + "".join(f"  {c:>7}" for c in columns))
        for row, values in rows.items():
            cells = "".join(f"  {_number(values.get(c, math.nan)):>7}" for c in columns)
            lines.append(f"  {row:<{width}}{cells}")
    return "\n".join(lines)


def _number(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.4f}"


def _prefixed(prefix: str, results: Mapping[str, float]) -> dict[str, float]:
    return {f"{prefix}/{key}": value for key, value in results.items()}


def _names(value: str | Sequence[str], allowed: Sequence[str], what: str) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else tuple(value)
    if not names:
        raise UserError(f"no {what} given; choose from {', '.join(allowed)}")
    for name in names:
        if name not in allowed:
            raise UserError(f"unknown {what} {name!r}; choose from {', '.join(allowed)}")
    return names
