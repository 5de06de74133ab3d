"""Load and validate predictions in the COCO results format into columnar arrays.

A results file is a JSON list of ``{"image_id", "category_id", "score", "segmentation", "bbox"}`` records
(``bbox`` is ``[x, y, w, h]``; ``segmentation`` is RLE with ``counts`` as str or bytes, uncompressed RLE,
or polygons). Proposal files use the same records without ``category_id`` and ``segmentation``.
Every problem is a :class:`UserError` naming the record index, its image id when known, and the field.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from mnc_bench.errors import UserError
from mnc_bench.data.predicates import is_finite_number, is_int
from mnc_bench.evaluation.ground_truth import GroundTruth
from mnc_bench.data.segmentation import SegmentationError, compressed_counts_valid, to_rle


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


def load_predictions(source: PredictionsSource, gt: GroundTruth, *, proposals: bool = False) -> Predictions:
    """Validate a results file (path) or an in-memory list of result records against ``gt``.

    ``proposals=True`` reads proposal records (no ``category_id``; ``segmentation`` ignored).
    An empty list is valid and gives empty predictions.
    """
    if isinstance(source, (str, os.PathLike)):
        name = str(source)
        records = _read_json_list(source)
    else:
        name = "predictions"
        records = source
        if not isinstance(records, Sequence):
            raise UserError(f"{name}: expected a list of result records, got {type(records).__name__}")
    return _validate(records, gt, name, proposals)


def _read_json_list(path: str | os.PathLike[str]) -> list[Any]:
    name = str(path)
    try:
        with Path(path).open(encoding="utf-8") as handle:
            records = json.load(handle)
    except FileNotFoundError:
        raise UserError(f"{name}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{name}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{name}: invalid JSON: {exc}") from None
    if not isinstance(records, list):
        raise UserError(f"{name}: expected a JSON list of result records, got {type(records).__name__}")
    return records


def _validate(records: Sequence[Any], gt: GroundTruth, name: str, proposals: bool) -> Predictions:
    n = len(records)
    image_ids = np.zeros(n, dtype=np.int64)
    category_ids = np.zeros(n, dtype=np.int64)
    scores = np.zeros(n, dtype=np.float64)
    bboxes = np.zeros((n, 4), dtype=np.float64)
    has_box = np.ones(n, dtype=bool)
    rles: list[dict[str, Any]] = []
    with_masks = not proposals and n > 0 and isinstance(records[0], dict) and "segmentation" in records[0]

    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise UserError(f"{name}: record {i}: expected an object, got {type(record).__name__}")
        if "image_id" not in record:
            raise UserError(f"{name}: record {i}: missing 'image_id'")
        image_id = record["image_id"]
        if not is_int(image_id) or image_id not in gt.image_sizes:
            raise UserError(f"{name}: record {i}: 'image_id' {image_id!r} is not a ground-truth image")
        where = f"{name}: record {i} (image_id {image_id})"
        required = ("score",) if proposals else ("category_id", "score")
        for key in required + (("segmentation",) if with_masks else ()):
            if key not in record:
                raise UserError(f"{where}: missing '{key}'")
        if not proposals:
            category_id = record["category_id"]
            if not is_int(category_id) or category_id not in gt.category_names:
                raise UserError(f"{where}: 'category_id' {category_id!r} is not a ground-truth category")
            category_ids[i] = category_id
        if not is_finite_number(record["score"]):
            raise UserError(f"{where}: 'score' must be a finite number, got {record['score']!r}")
        image_ids[i] = image_id
        scores[i] = record["score"]

        if "bbox" in record:
            bboxes[i] = _check_bbox(record["bbox"], where)
        elif with_masks:
            has_box[i] = False
        else:
            raise UserError(f"{where}: missing 'bbox'")
        if with_masks:
            height, width = gt.image_sizes[image_id]
            try:
                rles.append(to_rle(record["segmentation"], height, width))
            except SegmentationError as exc:
                raise UserError(f"{where}: 'segmentation': {exc}") from None
        elif "segmentation" in record and not proposals:
            raise UserError(f"{where}: has 'segmentation' but record 0 has none (all records or none must)")

    if with_masks:
        pixels = np.array([r["size"][0] * r["size"][1] for r in rles], dtype=np.int64)
        bad = np.flatnonzero(~compressed_counts_valid([r["counts"] for r in rles], pixels))
        if len(bad):
            i = int(bad[0])
            raise UserError(
                f"{name}: record {i} (image_id {image_ids[i]}): 'segmentation': RLE 'counts' is corrupt "
                "(its runs do not cover the image exactly)"
            )
        if not has_box.all():
            missing = np.flatnonzero(~has_box)
            bboxes[missing] = mask_utils.toBbox([rles[i] for i in missing])
    return Predictions(
        source=name,
        image_ids=image_ids,
        category_ids=category_ids,
        scores=scores,
        bboxes=bboxes,
        rles=rles if with_masks else None,
    )


def _check_bbox(bbox: Any, where: str) -> list[float]:
    if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(is_finite_number(v) for v in bbox)):
        raise UserError(f"{where}: 'bbox' must be 4 finite numbers [x, y, w, h], got {bbox!r}")
    if bbox[2] < 0 or bbox[3] < 0:
        raise UserError(f"{where}: 'bbox' has a negative width or height: {list(bbox)!r}")
    return [float(v) for v in bbox]

