"""Validate a COCO-format instance-segmentation dataset (``mnc-bench data check``).

Every problem is reported with the offending record's id, so a user can fix the file instead of debugging a
crash deep inside pycocotools or a training run.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from mnc_bench.data.predicates import is_finite_number
from mnc_bench.data.segmentation import SegmentationError, compressed_counts_valid, to_rle
from mnc_bench.errors import UserError

REQUIRED_TOP_LEVEL = ("images", "annotations", "categories")
REQUIRED_IMAGE_KEYS = ("id", "file_name", "width", "height")
REQUIRED_ANNOTATION_KEYS = ("id", "image_id", "category_id", "segmentation", "bbox", "area", "iscrowd")
REQUIRED_CATEGORY_KEYS = ("id", "name")
# Boxes may poke out of the image by rounding; more than this is a real error.
BBOX_TOLERANCE_PX = 1.0
# Polygon areas (shoelace) and rasterised areas differ near edges: only flag gross disagreement.
AREA_RELATIVE_TOLERANCE = 0.25
AREA_ABSOLUTE_TOLERANCE_PX = 10.0


@dataclass
class CheckReport:
    """Problems found (one line each, naming the record) and counts for the summary line."""

    path: str
    problems: list[str] = field(default_factory=list)
    num_images: int = 0
    num_annotations: int = 0
    per_class: dict[str, int] = field(default_factory=dict)
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if not self.ok:
            more = " (listing stopped early)" if self.truncated else ""
            return f"FAILED {self.path}: {len(self.problems)} problem(s){more}"
        classes = ", ".join(f"{name} {count}" for name, count in self.per_class.items())
        return f"OK {self.path}: {self.num_images} images, {self.num_annotations} annotations ({classes})"


class _TooManyProblems(Exception):
    pass


class _Collector:
    def __init__(self, report: CheckReport, limit: int) -> None:
        self.report, self.limit = report, limit

    def add(self, message: str) -> None:
        self.report.problems.append(message)
        if len(self.report.problems) >= self.limit:
            self.report.truncated = True
            raise _TooManyProblems


def load_coco_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a COCO json, turning unreadable or invalid files into a UserError naming the position."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: annotation file not found")
    try:
        with path.open(encoding="utf-8") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: top level must be a JSON object with images/annotations/categories")
    return data


def _check_ids(records: list, kind: str, required: tuple[str, ...], out: _Collector) -> dict[Any, dict]:
    """Check required keys and unique ids; return the valid records by id."""
    by_id: dict[Any, dict] = {}
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            out.add(f"{kind}[{index}]: not a JSON object")
            continue
        name = f"{kind} id={record['id']}" if "id" in record else f"{kind}[{index}]"
        missing = [key for key in required if key not in record]
        if missing:
            out.add(f"{name}: missing key(s) {', '.join(missing)}")
            continue
        if not isinstance(record["id"], int) or isinstance(record["id"], bool):
            out.add(f"{name}: id must be an integer")
            continue
        if record["id"] in by_id:
            out.add(f"{name}: duplicate id")
            continue
        by_id[record["id"]] = record
    return by_id


def _segmentation_rle(segmentation: Any, height: int, width: int, name: str, out: _Collector) -> dict | None:
    """Validate a polygon list or RLE and return it as one compressed RLE, or None after reporting why not."""
    try:
        rle = to_rle(segmentation, height, width)
    except SegmentationError as exc:
        out.add(f"{name}: segmentation: {exc}")
        return None
    if not compressed_counts_valid([rle["counts"]], np.array([height * width]))[0]:
        out.add(f"{name}: segmentation: malformed RLE counts (runs do not cover the {width}x{height} image)")
        return None
    return rle


def _check_annotation(ann: dict, image: dict, name: str, out: _Collector) -> None:
    height, width = image["height"], image["width"]
    bbox = ann["bbox"]
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(is_finite_number(v) for v in bbox)):
        out.add(f"{name}: bbox must be 4 finite numbers [x, y, w, h], got {bbox!r}")
    else:
        x, y, w, h = bbox
        if w <= 0 or h <= 0:
            out.add(f"{name}: bbox {bbox} has non-positive width or height")
        elif x < -BBOX_TOLERANCE_PX or y < -BBOX_TOLERANCE_PX or x + w > width + BBOX_TOLERANCE_PX or (
            y + h > height + BBOX_TOLERANCE_PX
        ):
            out.add(f"{name}: bbox {bbox} lies outside image id={image['id']} ({width}x{height})")
    if ann["iscrowd"] not in (0, 1) or isinstance(ann["iscrowd"], bool):
        out.add(f"{name}: iscrowd must be 0 or 1, got {ann['iscrowd']!r}")
    if not is_finite_number(ann["area"]) or ann["area"] <= 0:
        out.add(f"{name}: area must be a positive number, got {ann['area']!r}")
        return
    rle = _segmentation_rle(ann["segmentation"], height, width, name, out)
    if rle is None:
        return
    mask_area = float(mask_utils.area(rle))
    if mask_area == 0:
        out.add(f"{name}: segmentation is empty (0 pixels)")
        return
    difference = abs(mask_area - ann["area"])
    if difference > AREA_ABSOLUTE_TOLERANCE_PX and difference > AREA_RELATIVE_TOLERANCE * mask_area:
        out.add(f"{name}: area {ann['area']} is inconsistent with its mask ({mask_area:.0f} pixels)")


def check_coco_dataset(
    annotations: str | os.PathLike[str], *, images_dir: str | os.PathLike[str] | None = None, max_problems: int = 200
) -> CheckReport:
    """Check a COCO instances json (and, given ``images_dir``, that every image file exists)."""
    data = load_coco_json(annotations)
    report = CheckReport(path=str(annotations))
    out = _Collector(report, max_problems)
    try:
        missing = [key for key in REQUIRED_TOP_LEVEL if not isinstance(data.get(key), list)]
        if missing:
            out.add(f"{annotations}: top level needs list(s) {', '.join(missing)}")
            return report
        images = _check_ids(data["images"], "image", REQUIRED_IMAGE_KEYS, out)
        categories = _check_ids(data["categories"], "category", REQUIRED_CATEGORY_KEYS, out)
        anns = _check_ids(data["annotations"], "annotation", REQUIRED_ANNOTATION_KEYS, out)
        for image_id, image in list(images.items()):
            if not all(isinstance(image[k], int) and image[k] > 0 for k in ("width", "height")):
                out.add(f"image id={image_id}: width and height must be positive integers")
                del images[image_id]
            elif images_dir is not None and not (Path(images_dir) / image["file_name"]).is_file():
                out.add(f"image id={image_id}: file {Path(images_dir) / image['file_name']} not found")
        counts: Counter[int] = Counter()
        for ann_id, ann in anns.items():
            name = f"annotation id={ann_id}"
            if ann["image_id"] not in images:
                out.add(f"{name}: unknown image_id {ann['image_id']!r}")
                continue
            if ann["category_id"] not in categories:
                out.add(f"{name}: unknown category_id {ann['category_id']!r}")
                continue
            _check_annotation(ann, images[ann["image_id"]], name, out)
            counts[ann["category_id"]] += 1
        report.num_images = len(images)
        report.num_annotations = len(anns)
        report.per_class = {str(cat["name"]): counts.get(cat_id, 0) for cat_id, cat in categories.items()}
    except _TooManyProblems:
        pass
    return report


def require_valid_dataset(annotations: str | os.PathLike[str], images_dir: str | os.PathLike[str] | None) -> None:
    """Raise a UserError naming the first problems if the dataset is not valid (used before building models)."""
    report = check_coco_dataset(annotations, images_dir=images_dir, max_problems=5)
    if not report.ok:
        shown = "; ".join(report.problems[:3])
        raise UserError(f"{annotations}: {len(report.problems)}+ problem(s), e.g. {shown} "
                        f"(run `mnc-bench data check {annotations}` for the full list)")

