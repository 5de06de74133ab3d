"""Load and validate predictions in the COCO results format into columnar arrays.

A results file is a JSON list of ``{"image_id", "category_id", "score", "segmentation", "bbox"}`` records
(``bbox`` is ``[x, y, w, h]``; ``segmentation`` is RLE with ``counts`` as str or bytes, uncompressed RLE,
or polygons). Proposal files use the same records without ``category_id`` and ``segmentation``.
Every problem is a :class:`UserError` naming the record index, its image id when known, and the field
(rules: :func:`mnc_bench.data.coco_format.check_results`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mnc_bench.data.coco_format import check_results, read_json
from mnc_bench.errors import UserError
from mnc_bench.evaluation.ground_truth import GroundTruth


@dataclass(frozen=True, eq=False)
class Predictions:
    """Validated predictions, one row per record, in input order."""

    source: str
    image_ids: np.ndarray  # (N,) int64
    category_ids: np.ndarray  # (N,) int64; 0 for proposals
    scores: np.ndarray  # (N,) float64
    bboxes: np.ndarray  # (N, 4) float64, [x, y, w, h]
    rles: list[dict[str, Any]] | None  # compressed RLE per record (counts as bytes); None: no masks

    def __len__(self) -> int:
        return len(self.scores)

    def require_masks(self, what: str) -> list[dict[str, Any]]:
        if self.rles is None and len(self):
            raise UserError(f"{self.source}: {what} needs masks, but the records have no 'segmentation'")
        return self.rles or []

    def coco_records(self, iou_type: str) -> list[dict[str, Any]]:
        """Fresh COCO result dicts for ``COCO.loadRes`` (which modifies what it is given)."""
        rows = zip(self.image_ids.tolist(), self.category_ids.tolist(), self.scores.tolist())
        if iou_type == "segm":
            # No 'bbox' on purpose: given one, loadRes takes the box area as the instance area, which puts
            # masks in the wrong small/medium/large range (mmdet and detectron2 drop it for the same reason).
            rles = self.require_masks("segm evaluation")
            return [
                {"image_id": i, "category_id": c, "score": s, "segmentation": rle}
                for (i, c, s), rle in zip(rows, rles)
            ]
        return [
            {"image_id": i, "category_id": c, "score": s, "bbox": box}
            for (i, c, s), box in zip(rows, self.bboxes.tolist())
        ]


PredictionsSource = str | os.PathLike[str] | Sequence[dict[str, Any]]


def load_predictions(source: PredictionsSource, gt: GroundTruth, *, proposals: bool = False,
                     name: str = "predictions") -> Predictions:
    """Validate a results file (path) or an in-memory list of result records against ``gt``; ``name``: what
    errors call an in-memory list (a file is named by its path).

    ``proposals=True`` reads proposal records (no ``category_id``; ``segmentation`` ignored).
    An empty list is valid and gives empty predictions.
    """
    if isinstance(source, (str, os.PathLike)):
        name = str(source)
        records = read_json(source)
        if not isinstance(records, list):
            raise UserError(f"{name}: expected a JSON list of result records, got {type(records).__name__}")
    else:
        records = source
        if not isinstance(records, Sequence):
            raise UserError(f"{name}: expected a list of result records, got {type(records).__name__}")
    checked = check_results(records, gt.image_sizes, gt.category_names, name, proposals=proposals)
    return Predictions(source=name, image_ids=checked.image_ids, category_ids=checked.category_ids,
                       scores=checked.scores, bboxes=checked.bboxes, rles=checked.rles)
