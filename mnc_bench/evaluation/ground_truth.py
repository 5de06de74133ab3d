"""Load and validate a COCO instances file (the ground truth every metric is scored against)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from mnc_bench.errors import UserError
from mnc_bench.data.predicates import is_finite_number, is_int
from mnc_bench.data.segmentation import SegmentationError, compressed_counts_valid, to_rle


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """A validated COCO ground truth. ``dataset`` is the parsed JSON, never modified."""

    dataset: dict[str, Any]
    source: str
    image_sizes: dict[int, tuple[int, int]]  # image id -> (height, width)
    category_names: dict[int, str]  # category id -> name, in file order
    annotations: list[dict[str, Any]] = field(repr=False)

    @property
    def category_ids(self) -> list[int]:
        return list(self.category_names)

    @cached_property
    def annotation_image_ids(self) -> np.ndarray:
        return np.array([a["image_id"] for a in self.annotations], dtype=np.int64)

    @cached_property
    def annotation_category_ids(self) -> np.ndarray:
        return np.array([a["category_id"] for a in self.annotations], dtype=np.int64)

    @cached_property
    def annotation_crowd(self) -> np.ndarray:
        return np.array([bool(a.get("iscrowd", 0)) for a in self.annotations], dtype=bool)

    @cached_property
    def rles(self) -> list[dict[str, Any]]:
        """Compressed RLE of every annotation (file order); UserError if one is missing or malformed."""
        rles = []
        for ann in self.annotations:
            if "segmentation" not in ann:
                raise UserError(f"{self.source}: annotation id {ann['id']}: missing 'segmentation'")
            height, width = self.image_sizes[ann["image_id"]]
            try:
                rles.append(to_rle(ann["segmentation"], height, width))
            except SegmentationError as exc:
                raise UserError(f"{self.source}: annotation id {ann['id']}: 'segmentation': {exc}") from None
        pixels = np.array([r["size"][0] * r["size"][1] for r in rles], dtype=np.int64)
        bad = np.flatnonzero(~compressed_counts_valid([r["counts"] for r in rles], pixels))
        if len(bad):
            ann_id = self.annotations[bad[0]]["id"]
            raise UserError(
                f"{self.source}: annotation id {ann_id}: 'segmentation': RLE 'counts' is corrupt "
                "(its runs do not cover the image exactly)"
            )
        return rles


GroundTruthSource = str | os.PathLike[str] | dict[str, Any] | GroundTruth


def load_ground_truth(source: GroundTruthSource) -> GroundTruth:
    """Read and validate a COCO instances file (path) or an already parsed dict."""
    if isinstance(source, GroundTruth):
        return source
    if isinstance(source, dict):
        return _validate(source, "ground truth")
    name = str(source)
    try:
        with Path(source).open(encoding="utf-8") as handle:
            dataset = json.load(handle)
    except FileNotFoundError:
        raise UserError(f"{name}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{name}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{name}: invalid JSON: {exc}") from None
    return _validate(dataset, name)


def _validate(dataset: Any, name: str) -> GroundTruth:
    if not isinstance(dataset, dict):
        raise UserError(f"{name}: expected a COCO object with 'images', 'annotations', 'categories'")
    for key in ("images", "annotations", "categories"):
        if not isinstance(dataset.get(key), list):
            raise UserError(f"{name}: '{key}' must be a list")

    image_sizes: dict[int, tuple[int, int]] = {}
    for i, image in enumerate(dataset["images"]):
        where = f"{name}: images[{i}]"
        _require(image, ("id", "height", "width"), where)
        if not is_int(image["id"]) or image["id"] in image_sizes:
            raise UserError(f"{where}: 'id' must be a unique integer, got {image['id']!r}")
        for key in ("height", "width"):
            if not is_int(image[key]) or image[key] <= 0:
                raise UserError(f"{where} (id {image['id']}): '{key}' must be a positive integer")
        image_sizes[image["id"]] = (image["height"], image["width"])

    category_names: dict[int, str] = {}
    for i, category in enumerate(dataset["categories"]):
        where = f"{name}: categories[{i}]"
        _require(category, ("id", "name"), where)
        if not is_int(category["id"]) or category["id"] in category_names:
            raise UserError(f"{where}: 'id' must be a unique integer, got {category['id']!r}")
        # Per-class result keys are built from names, so two equal names would overwrite each other.
        if not isinstance(category["name"], str) or category["name"] in category_names.values():
            raise UserError(f"{where} (id {category['id']}): 'name' must be a unique string")
        category_names[category["id"]] = category["name"]

    seen_ids: set[int] = set()
    for i, ann in enumerate(dataset["annotations"]):
        where = f"{name}: annotations[{i}]"
        _require(ann, ("id", "image_id", "category_id", "bbox", "area"), where)
        # pycocotools stores matched ground-truth ids in an array where 0 means "unmatched".
        if not is_int(ann["id"]) or ann["id"] == 0 or ann["id"] in seen_ids:
            raise UserError(f"{where}: 'id' must be a unique non-zero integer, got {ann['id']!r}")
        seen_ids.add(ann["id"])
        where = f"{name}: annotation id {ann['id']}"
        if not is_int(ann["image_id"]) or ann["image_id"] not in image_sizes:
            raise UserError(f"{where}: 'image_id' {ann['image_id']!r} is not in 'images'")
        if not is_int(ann["category_id"]) or ann["category_id"] not in category_names:
            raise UserError(f"{where}: 'category_id' {ann['category_id']!r} is not in 'categories'")
        bbox = ann["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(is_finite_number(v) for v in bbox)):
            raise UserError(f"{where}: 'bbox' must be 4 finite numbers [x, y, w, h], got {bbox!r}")
        if bbox[2] < 0 or bbox[3] < 0:
            raise UserError(f"{where}: 'bbox' has a negative width or height: {bbox!r}")
        if not is_finite_number(ann["area"]) or ann["area"] < 0:
            raise UserError(f"{where}: 'area' must be a finite non-negative number, got {ann['area']!r}")
        if ann.get("iscrowd", 0) not in (0, 1):
            raise UserError(f"{where}: 'iscrowd' must be 0 or 1, got {ann['iscrowd']!r}")
    return GroundTruth(
        dataset=dataset,
        source=name,
        image_sizes=image_sizes,
        category_names=category_names,
        annotations=dataset["annotations"],
    )


def _require(record: Any, keys: tuple[str, ...], where: str) -> None:
    if not isinstance(record, dict):
        raise UserError(f"{where}: expected an object, got {type(record).__name__}")
    for key in keys:
        if key not in record:
            raise UserError(f"{where}: missing '{key}'")
