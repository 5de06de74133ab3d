"""TIDE error breakdown (Bolya, Foley, Hays, Hoffman, "TIDE: A General Toolbox for Identifying Object
Detection Errors", ECCV 2020), computed by the authors' package ``tidecv`` on our validated ground truth and
predictions.

At IoU threshold t_f = 0.5 (foreground) and t_b = 0.1 (background), every false positive gets one error type,
tested in this order (``tidecv.quantify.TIDERun._eval_image``, which follows the paper's definitions):

* ``loc``: right class, t_b <= IoU <= t_f with a ground truth of its class;
* ``cls``: wrong class, IoU >= t_f with a ground truth of another class;
* ``dupe``: right class, IoU >= t_f with a ground truth already taken by a higher-scored detection;
* ``bkg``: IoU <= t_b with every ground truth;
* ``both``: everything else, i.e. wrong class and t_b < IoU < t_f;
* ``miss``: a ground truth no detection matched and no cls/loc error can claim.

dAP of a type is AP50 with the errors of that type fixed by an oracle (cls and loc: the detection becomes the
true positive of its ground truth unless that is taken; dupe, bkg and both: the detection is removed; miss:
the ground truth is removed) minus AP50, each type fixed alone (not cumulatively), clipped at 0 as tidecv
does. The summaries: ``FP`` is the AP gain of scoring every false positive below every true positive, ``FN``
of removing every missed ground truth. ``base_AP50`` is tidecv's own AP at IoU 0.5, the base of the dAPs: it
uses at most 100 detections per image (COCO: per image and category) and so can differ slightly from COCO's
AP50. Crowd ground truth is an ignore region: an unmatched detection of its class with crowd IoU > t_f is not
counted. Masks use mask IoU, boxes box IoU. All numbers are fractions (x 100 for points).
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from typing import Any

from mnc_bench.errors import UserError
from mnc_bench.evaluation.ground_truth import GroundTruth
from mnc_bench.evaluation.results_io import Predictions

FOREGROUND_IOU = 0.5
BACKGROUND_IOU = 0.1
MAX_DETS = 100
ERROR_TYPES = ("cls", "loc", "both", "dupe", "bkg", "miss")
SUMMARY_TYPES = ("FP", "FN")
TIDE_METRIC_NAMES = ("base_AP50", *(f"dAP_{e}" for e in ERROR_TYPES + SUMMARY_TYPES))
# tidecv's short names of its error classes -> ours.
_SHORT_NAMES = {"Cls": "cls", "Loc": "loc", "Both": "both", "Dupe": "dupe", "Bkg": "bkg", "Miss": "miss",
                "FalsePos": "FP", "FalseNeg": "FN"}
_MODES = {"segm": "mask", "bbox": "bbox"}


def tide_metrics(gt: GroundTruth, predictions: Predictions, iou_type: str = "segm") -> dict[str, float]:
    """TIDE's AP50 and dAP per error type and summary (keys :data:`TIDE_METRIC_NAMES`), for masks ("segm") or
    boxes ("bbox"). NaN everywhere when the ground truth has no non-crowd instance (AP is undefined)."""
    if iou_type not in _MODES:
        raise UserError(f"unknown IoU type {iou_type!r} for TIDE; choose from {', '.join(_MODES)}")
    if iou_type == "segm":
        predictions.require_masks("TIDE on masks")
    if gt.annotation_crowd.all():
        return dict.fromkeys(TIDE_METRIC_NAMES, math.nan)
    quantify = _tidecv()
    truth, detections = _tide_data(gt, predictions, iou_type)
    with contextlib.redirect_stdout(io.StringIO()):
        run = quantify.TIDERun(truth, detections, FOREGROUND_IOU, BACKGROUND_IOU, _MODES[iou_type], MAX_DETS,
                               True)
        errors = {**run.fix_main_errors(), **run.fix_special_errors()}
    results = {"base_AP50": run.ap / 100}
    results.update({f"dAP_{_SHORT_NAMES[error.short_name]}": value / 100 for error, value in errors.items()})
    return {name: float(results[name]) for name in TIDE_METRIC_NAMES}


def _tide_data(gt: GroundTruth, predictions: Predictions, iou_type: str) -> tuple[Any, Any]:
    """tidecv ``Data`` of the ground truth (every image, crowd as ignore regions) and of the predictions."""
    from tidecv import Data

    with_masks = iou_type == "segm"
    truth = Data("ground truth", max_dets=MAX_DETS)
    for image_id in gt.image_sizes:
        truth.add_image(image_id, str(image_id))
    for category_id, name in gt.category_names.items():
        truth.add_class(category_id, name)
    gt_masks = gt.rles if with_masks else [None] * len(gt.annotations)
    for ann, rle in zip(gt.annotations, gt_masks):
        add = truth.add_ignore_region if ann["iscrowd"] else truth.add_ground_truth
        add(ann["image_id"], ann["category_id"], box=list(ann["bbox"]), mask=rle)
    detections = Data("predictions", max_dets=MAX_DETS)
    dt_masks = predictions.rles if with_masks else None
    rows = zip(predictions.image_ids.tolist(), predictions.category_ids.tolist(), predictions.scores.tolist(),
               predictions.bboxes.tolist())
    for k, (image_id, category_id, score, box) in enumerate(rows):
        detections.add_detection(image_id, category_id, score, box=box,
                                 mask=dt_masks[k] if dt_masks is not None else None)
    return truth, detections


def _tidecv() -> Any:
    """``tidecv.quantify`` (its plotting module, imported with it, warns about seaborn styles on import)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from tidecv import quantify
    except ImportError:
        raise UserError("the TIDE error breakdown needs the tidecv package (pip install tidecv)") from None
    return quantify
