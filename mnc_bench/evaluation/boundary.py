"""Boundary AP (Cheng, Girshick, Dollár, Berg, Kirillov, "Boundary IoU", CVPR 2021): COCO mask AP whose
matching IoU is ``min(mask IoU, boundary IoU)``; everything else (greedy matching, crowd handling, area
ranges, 101-point precision) is pycocotools' ``COCOeval``, subclassed so that only ``computeIoU`` changes, as
the authors' boundary-iou-api does.

Definitions (the authors' ``mask_to_boundary`` and ``computeBoundaryIoU``):

* The boundary region of a mask is its pixels within distance ``d`` of the contour: the mask minus its
  erosion by ``d`` iterations of a 3x3 square, pixels outside the image counting as background (a mask cut by
  the image border has a boundary there). Distance is therefore the chessboard distance.
* ``d = max(1, round(dilation_ratio * image diagonal))`` with ``dilation_ratio`` 0.02 (4 px at 128 x 128).
* Boundary IoU of two masks is the IoU of their boundary regions (each region lies inside its own mask).
* Crowd ground truth keeps the plain crowd IoU (intersection over the detection's area): a region of many
  objects has no meaningful boundary, and so a detection inside one is ignored as in mask AP.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval

from mnc_bench.errors import UserError
from mnc_bench.evaluation.coco import COCO_METRIC_NAMES, run_cocoeval, summarize
from mnc_bench.evaluation.ground_truth import GroundTruth
from mnc_bench.evaluation.results_io import Predictions

DILATION_RATIO = 0.02
# Boundary AP reports the AP half of COCO's summary (the authors' tables do too).
BOUNDARY_METRIC_NAMES = COCO_METRIC_NAMES[:6]
_KERNEL = np.ones((3, 3), dtype=np.uint8)


def boundary_width(height: int, width: int, dilation_ratio: float = DILATION_RATIO) -> int:
    """``d`` in pixels for an image of this size: ``max(1, round(ratio * diagonal))``."""
    return max(1, int(round(dilation_ratio * math.hypot(height, width))))


def mask_boundary(mask: np.ndarray, width: int) -> np.ndarray:
    """The boundary region of ``mask`` ((H, W), 0/1 uint8): its pixels within chessboard distance ``width``
    of a pixel outside it or outside the image; (H, W) uint8."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    boundary = np.zeros_like(mask)
    if not len(rows):
        return boundary
    # Eroding the bounding box alone is exact: everything outside it is background already, and the constant
    # 0 border plays both that background and the image's outside.
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    crop = mask[y0:y1, x0:x1]
    eroded = cv2.erode(crop, _KERNEL, iterations=width, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    boundary[y0:y1, x0:x1] = crop - eroded
    return boundary


def boundary_rle(rle: dict[str, Any], dilation_ratio: float = DILATION_RATIO) -> dict[str, Any]:
    """Compressed RLE of the boundary region of the mask ``rle`` (compressed RLE)."""
    mask = mask_utils.decode(rle)
    height, width = mask.shape
    boundary = mask_boundary(mask, boundary_width(height, width, dilation_ratio))
    return mask_utils.encode(np.asfortranarray(boundary))


class BoundaryCOCOeval(COCOeval):
    """pycocotools' COCOeval for masks with ``min(mask IoU, boundary IoU)`` as the IoU of non-crowd ground
    truth. Boundaries are computed once per annotation, only for the image/category pairs that need them."""

    def __init__(self, coco_gt: Any, coco_dt: Any, iou_type: str = "segm", *,
                 dilation_ratio: float = DILATION_RATIO) -> None:
        if iou_type != "segm":
            raise ValueError(f"boundary IoU compares masks, not {iou_type!r}")
        super().__init__(coco_gt, coco_dt, "segm")
        self.dilation_ratio = dilation_ratio

    def computeIoU(self, imgId: int, catId: int) -> Any:  # noqa: N802, N803 (pycocotools' names)
        mask_ious = super().computeIoU(imgId, catId)
        if len(mask_ious) == 0:
            return mask_ious
        if not self.params.useCats:
            raise ValueError("boundary AP is defined per category (useCats=1)")
        gt, dt = self._gts[imgId, catId], self._dts[imgId, catId]
        # The detections in the order and number COCOeval.computeIoU used for mask_ious.
        order = np.argsort([-d["score"] for d in dt], kind="mergesort")[: self.params.maxDets[-1]]
        dt_boundaries = [self._boundary(dt[i]) for i in order]
        gt_boundaries = [self._boundary(g) for g in gt]
        boundary_ious = np.asarray(mask_utils.iou(dt_boundaries, gt_boundaries, [0] * len(gt)))
        ious = np.array(mask_ious, dtype=np.float64)
        plain = np.array([not g["iscrowd"] for g in gt])
        ious[:, plain] = np.minimum(ious[:, plain], boundary_ious.reshape(ious.shape)[:, plain])
        return ious

    def _boundary(self, annotation: dict[str, Any]) -> dict[str, Any]:
        # Cached in the annotation: COCOeval._prepare has made its 'segmentation' an RLE, and these dicts are
        # this evaluation's own copies (run_cocoeval copies the ground truth; loadRes makes the detections).
        if "_boundary" not in annotation:
            annotation["_boundary"] = boundary_rle(annotation["segmentation"], self.dilation_ratio)
        return annotation["_boundary"]


def boundary_metrics(gt: GroundTruth, predictions: Predictions, backend: str = "pycocotools",
                     dilation_ratio: float = DILATION_RATIO) -> dict[str, float]:
    """Boundary AP, APs..APl (keys :data:`BOUNDARY_METRIC_NAMES`) of validated predictions, which need masks.

    ``backend`` "pycocotools" is :class:`BoundaryCOCOeval`; "faster_coco_eval" is that package's own
    ``iouType="boundary"`` (the same definition, in C++)."""
    predictions.require_masks("boundary AP")
    _ = gt.rles  # validates every ground-truth mask before pycocotools sees it
    records = predictions.coco_records("segm")
    if backend == "pycocotools":
        evaluator = functools.partial(BoundaryCOCOeval, dilation_ratio=dilation_ratio)
        coco_eval = run_cocoeval(gt, records, "segm", backend, evaluator=evaluator)
    elif backend == "faster_coco_eval":
        coco_eval = run_cocoeval(gt, records, "boundary", backend,
                                 evaluator_options={"boundary_dilation_ratio": dilation_ratio})
    else:
        raise UserError(f"unknown COCO backend {backend!r}; choose from pycocotools, faster_coco_eval")
    return dict(zip(BOUNDARY_METRIC_NAMES, summarize(coco_eval)[: len(BOUNDARY_METRIC_NAMES)]))
