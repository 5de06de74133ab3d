"""The COCO instances and results formats, field by field: the one set of rules every reader applies.

Readers report what the rules find to a :class:`Problems` sink, in one of two modes:

* :class:`CollectProblems` -- ``mnc-bench data check`` lists every problem, one line each, naming records by
  id;
* :class:`RaiseOnFirst` -- the evaluators (ground truth, results files) stop at the first problem with a
  one-line :class:`UserError` naming the file, the record and the field.

A training dataset and evaluation ground truth follow the same rules. A dataset must also hold what training
reads (``file_name``, ``segmentation``); evaluation ground truth may be box-only, and its masks are checked,
by the same rules, once a mask metric needs them (:func:`ground_truth_masks`).

Decisions where the readers used to disagree:

* A ground-truth ``bbox`` needs width and height > 0: a zero-width box can never be matched (box IoU 0), so
  it would only lower recall, and mmdet's dataset silently drops it in training. A *result* box may be
  empty (w = h = 0, e.g. the box of an empty predicted mask): a poor prediction, scored as one, not a
  malformed file. Negative sizes are malformed in both.
* ``area`` must be > 0 and agree with the mask: COCO's size ranges (APs/APm/APl) are read from it, and an
  empty object is one no prediction can find. Results carry no area (pycocotools computes it).
* ``iscrowd`` must be the integer 0 or 1: a JSON ``true`` is rejected like every other boolean standing for
  a number here (see :mod:`mnc_bench.data.predicates`). It is required: pycocotools' COCOeval reads it from
  every ground truth without a default.
* A ground-truth box must lie within its image (1 px of rounding allowed); results may overhang.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from pycocotools import mask as mask_utils

from mnc_bench.data.predicates import is_finite_number, is_int
from mnc_bench.data.segmentation import SegmentationError, compressed_counts_valid, to_rle
from mnc_bench.errors import UserError

TOP_LEVEL = ("images", "annotations", "categories")
IMAGE_KEYS = ("id", "height", "width")
ANNOTATION_KEYS = ("id", "image_id", "category_id", "bbox", "area", "iscrowd")
CATEGORY_KEYS = ("id", "name")
# What training reads beyond what evaluation needs.
DATASET_IMAGE_KEYS = ("file_name",)
DATASET_ANNOTATION_KEYS = ("segmentation",)
# Boxes may poke out of the image by rounding; more than this is a real error.
BBOX_TOLERANCE_PX = 1.0
# Polygon areas (shoelace) and rasterised areas differ near edges: only flag gross disagreement.
AREA_RELATIVE_TOLERANCE = 0.25
AREA_ABSOLUTE_TOLERANCE_PX = 10.0
_PLURAL = {"image": "images", "annotation": "annotations", "category": "categories"}


def read_json(path: str | os.PathLike[str]) -> Any:
    """Parse a JSON file; a missing, unreadable or invalid file is a one-line UserError naming it."""
    name = str(path)
    try:
        with Path(path).open(encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise UserError(f"{name}: no such file") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{name}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise UserError(f"{name}: cannot read: {exc.strerror or exc}") from None


class TooManyProblems(Exception):
    """Raised by :class:`CollectProblems` when its limit is reached: stop checking."""


class Problems(ABC):
    """Where the rules report. A subclass decides whether to go on after a problem and how records are
    named."""

    @abstractmethod
    def add(self, where: str, message: str) -> None: ...

    @abstractmethod
    def missing(self, where: str, keys: Sequence[str]) -> None: ...

    @abstractmethod
    def position(self, kind: str, index: int, record: Any) -> str:
        """Name of a record whose id is not checked yet."""

    @abstractmethod
    def name(self, kind: str, record_id: Any, index: int | None = None) -> str:
        """Name of a record with a valid id (``index``: also say where it is in its list)."""


class RaiseOnFirst(Problems):
    """The first problem is a UserError ``<source>: <record>: <message>`` (records named by position until
    their id is known)."""

    def __init__(self, source: str) -> None:
        self.source = source

    def add(self, where: str, message: str) -> NoReturn:
        raise UserError(f"{self.source}: {where}: {message}")

    def missing(self, where: str, keys: Sequence[str]) -> NoReturn:
        self.add(where, f"missing {keys[0]!r}")

    def position(self, kind: str, index: int, record: Any) -> str:
        return f"{_PLURAL.get(kind, kind)}[{index}]"

    def name(self, kind: str, record_id: Any, index: int | None = None) -> str:
        if index is None:
            return f"{kind} id {record_id}"
        return f"{_PLURAL[kind]}[{index}] (id {record_id})"


@dataclass
class CollectProblems(Problems):
    """Every problem as one line ``<record>: <message>``, records named by id (what a user searches the file
    for); :class:`TooManyProblems` once ``limit`` lines are collected."""

    limit: int = 200
    lines: list[str] = field(default_factory=list)
    truncated: bool = False

    def add(self, where: str, message: str) -> None:
        self.lines.append(f"{where}: {message}")
        if len(self.lines) >= self.limit:
            self.truncated = True
            raise TooManyProblems

    def missing(self, where: str, keys: Sequence[str]) -> None:
        self.add(where, "missing key(s) " + ", ".join(map(repr, keys)))

    def position(self, kind: str, index: int, record: Any) -> str:
        if isinstance(record, dict) and "id" in record:
            return f"{kind} id={record['id']!r}"
        return f"{kind}[{index}]"

    def name(self, kind: str, record_id: Any, index: int | None = None) -> str:
        return f"{kind} id={record_id!r}"


@dataclass
class Instances:
    """What the checks of a COCO instances file found usable."""

    image_sizes: dict[int, tuple[int, int]]  # image id -> (height, width)
    file_names: dict[int, str]  # image id -> file name (datasets only)
    category_names: dict[int, str]  # category id -> name, in file order
    annotations: list[dict[str, Any]]  # those whose every field passed, in file order (all, in raise mode)
    num_annotations: int  # annotations with a valid id


def check_instances(data: Any, source: str, out: Problems, *, dataset: bool) -> Instances:
    """Check a parsed COCO instances file, without decoding masks (see :func:`ground_truth_masks`).

    ``dataset=True`` also requires what training reads (``file_name``, ``segmentation``). A top level that is
    not an object is a UserError in either mode: nothing else can be checked.
    """
    if not isinstance(data, dict):
        raise UserError(f"{source}: top level must be a JSON object with 'images', 'annotations', "
                        "'categories'")
    found = Instances({}, {}, {}, [], 0)
    if not _top_level_lists(data, out):
        return found
    images = _check_images(data["images"], out, found, dataset=dataset)
    category_ids = _check_categories(data["categories"], out, found)
    _check_annotations(data["annotations"], out, found, images, category_ids, dataset=dataset)
    return found


def _top_level_lists(data: dict[str, Any], out: Problems) -> bool:
    """Whether 'images', 'annotations' and 'categories' are lists (each one that is not is reported)."""
    lists_ok = True
    for key in TOP_LEVEL:
        if not isinstance(data.get(key), list):
            out.add("top level", f"{key!r} must be a list")
            lists_ok = False
    return lists_ok


@dataclass
class _ImageIds:
    """Ids of every image record, valid or not (an annotation of a broken image is not also "unknown"), and
    of those reported already, whose annotations cannot be checked."""

    all: set[int] = field(default_factory=set)
    unusable: set[int] = field(default_factory=set)


def _check_images(images: list[Any], out: Problems, found: Instances, *, dataset: bool) -> _ImageIds:
    """Each image record: a unique id, positive sizes (then in ``found.image_sizes``), a file name for a
    dataset (then in ``found.file_names``)."""
    ids = _ImageIds()
    image_keys = IMAGE_KEYS + (DATASET_IMAGE_KEYS if dataset else ())
    for i, image in enumerate(images):
        image_id = record_id(out, "image", i, image, image_keys, ids.all)
        if image_id is None:
            if isinstance(image, dict) and is_int(image.get("id")) and image["id"] not in ids.all:
                ids.all.add(image["id"])
                ids.unusable.add(image["id"])
            continue
        ids.all.add(image_id)
        where = out.name("image", image_id, i)
        sizes_ok = True
        for key in ("height", "width"):
            if not is_int(image[key]) or image[key] <= 0:
                out.add(where, f"{key!r} must be a positive integer, got {image[key]!r}")
                sizes_ok = False
        if dataset and not (isinstance(image["file_name"], str) and image["file_name"]):
            out.add(where, f"'file_name' must be a non-empty string, got {image['file_name']!r}")
        elif dataset:
            found.file_names[image_id] = image["file_name"]
        if sizes_ok:
            found.image_sizes[image_id] = (image["height"], image["width"])
        else:
            ids.unusable.add(image_id)
    return ids


def _check_categories(categories: list[Any], out: Problems, found: Instances) -> set[int]:
    """Each category record: a unique id and a unique name (then in ``found.category_names``). Returns the ids
    of every category record, valid or not, as for images."""
    category_ids: set[int] = set()
    names: set[str] = set()
    for i, category in enumerate(categories):
        category_id = record_id(out, "category", i, category, CATEGORY_KEYS, category_ids)
        if category_id is None:
            if isinstance(category, dict) and is_int(category.get("id")):
                category_ids.add(category["id"])
            continue
        category_ids.add(category_id)
        # Per-class result keys are built from names, so two equal names would overwrite each other.
        name = category["name"]
        if not isinstance(name, str) or not name or name in names:
            out.add(out.name("category", category_id, i), f"'name' must be a unique string, got {name!r}")
            continue
        names.add(name)
        found.category_names[category_id] = name
    return category_ids


def _check_annotations(annotations: list[Any], out: Problems, found: Instances, images: _ImageIds,
                       category_ids: set[int], *, dataset: bool) -> None:
    """Each annotation: a unique non-zero id, a known image and category, valid fields (then in
    ``found.annotations``)."""
    annotation_keys = ANNOTATION_KEYS + (DATASET_ANNOTATION_KEYS if dataset else ())
    seen: set[int] = set()
    for i, ann in enumerate(annotations):
        # pycocotools keeps matched ground-truth ids in an array where 0 means "unmatched".
        ann_id = record_id(out, "annotation", i, ann, annotation_keys, seen, nonzero=True)
        if ann_id is None:
            continue
        seen.add(ann_id)
        where = out.name("annotation", ann_id)
        image_id, category_id = ann["image_id"], ann["category_id"]
        if not is_int(image_id) or image_id not in images.all:
            out.add(where, f"'image_id' {image_id!r} is not in 'images' (unknown image_id)")
            continue
        if not is_int(category_id) or category_id not in category_ids:
            out.add(where, f"'category_id' {category_id!r} is not in 'categories' (unknown category_id)")
            continue
        if image_id in images.unusable:
            continue
        if _annotation_fields_ok(ann, image_id, found.image_sizes[image_id], where, out):
            found.annotations.append(ann)
    found.num_annotations = len(seen)


def record_id(
    out: Problems, kind: str, index: int, record: Any, keys: tuple[str, ...], taken: set[int], *,
    nonzero: bool = False,
) -> int | None:
    """The record's id if it is an object with every key and a valid unused id; else report and None."""
    where = out.position(kind, index, record)
    if not isinstance(record, dict):
        out.add(where, f"expected an object, got {type(record).__name__}")
        return None
    missing = [key for key in keys if key not in record]
    if missing:
        out.missing(where, missing)
        return None
    value = record["id"]
    rule = f"'id' must be a unique {'non-zero ' if nonzero else ''}integer"
    if not is_int(value) or (nonzero and value == 0):
        out.add(where, f"{rule}, got {value!r}")
        return None
    if value in taken:
        out.add(where, f"{rule}; {value} is a duplicate id")
        return None
    return value


def _annotation_fields_ok(ann: dict, image_id: int, size: tuple[int, int], where: str, out: Problems) -> bool:
    height, width = size
    ok = True
    bbox = ann["bbox"]
    problem = bbox_problem(bbox, allow_empty=False)
    if problem is None:
        x, y, w, h = bbox
        tol = BBOX_TOLERANCE_PX
        if x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
            problem = f"'bbox' {list(bbox)} lies outside image id {image_id} ({width}x{height})"
    if problem is not None:
        out.add(where, problem)
        ok = False
    if not is_int(ann["iscrowd"]) or ann["iscrowd"] not in (0, 1):
        out.add(where, f"'iscrowd' must be 0 or 1, got {ann['iscrowd']!r}")
        ok = False
    if not is_finite_number(ann["area"]) or ann["area"] <= 0:
        out.add(where, f"'area' must be a positive finite number, got {ann['area']!r}")
        ok = False
    return ok


def bbox_problem(bbox: Any, *, allow_empty: bool) -> str | None:
    """Why ``bbox`` is not a valid ``[x, y, w, h]`` (None if it is). ``allow_empty``: w = 0 or h = 0 is fine
    (results), else both must be positive (ground truth)."""
    if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(is_finite_number(v) for v in bbox)):
        return f"'bbox' must be 4 finite numbers [x, y, w, h], got {bbox!r}"
    if allow_empty and (bbox[2] < 0 or bbox[3] < 0):
        return f"'bbox' has a negative width or height: {list(bbox)!r}"
    if not allow_empty and (bbox[2] <= 0 or bbox[3] <= 0):
        return f"'bbox' {list(bbox)} has a non-positive width or height"
    return None


def segmentation_rles(
    segmentations: Sequence[Any], sizes: Sequence[tuple[int, int]], wheres: Sequence[str], out: Problems
) -> list[dict[str, Any] | None]:
    """Each segmentation (polygons, RLE) as compressed RLE for its image size, or None after reporting why
    not.

    The runs of compressed RLE strings are checked in one vectorised pass (pycocotools' C code trusts them).
    """
    rles: list[dict[str, Any] | None] = []
    for segmentation, (height, width), where in zip(segmentations, sizes, wheres):
        try:
            rles.append(to_rle(segmentation, height, width))
        except SegmentationError as exc:
            out.add(where, f"'segmentation': {exc}")
            rles.append(None)
    converted = [k for k, rle in enumerate(rles) if rle is not None]
    if converted:
        pixels = np.array([rles[k]["size"][0] * rles[k]["size"][1] for k in converted], dtype=np.int64)
        valid = compressed_counts_valid([rles[k]["counts"] for k in converted], pixels)
        for k in np.asarray(converted)[~valid].tolist():
            out.add(wheres[k], "'segmentation': RLE 'counts' is corrupt (its runs do not cover the image "
                               "exactly)")
            rles[k] = None
    return rles


def ground_truth_masks(
    annotations: Sequence[dict[str, Any]], image_sizes: dict[int, tuple[int, int]], out: Problems
) -> list[dict[str, Any] | None]:
    """Compressed RLE of each checked annotation's mask, which must be valid, non-empty and agree with the
    annotation's ``area``; None where a problem was reported."""
    wheres = [out.name("annotation", ann["id"]) for ann in annotations]
    for ann, where in zip(annotations, wheres):
        if "segmentation" not in ann:
            out.missing(where, ["segmentation"])
    present = [k for k, ann in enumerate(annotations) if "segmentation" in ann]
    converted = segmentation_rles(
        [annotations[k]["segmentation"] for k in present],
        [image_sizes[annotations[k]["image_id"]] for k in present],
        [wheres[k] for k in present],
        out,
    )
    rles: list[dict[str, Any] | None] = [None] * len(annotations)
    for k, rle in zip(present, converted):
        rles[k] = rle
    for k, rle in enumerate(rles):
        if rle is None:
            continue
        # One RLE at a time: pycocotools 2.0.11's `area` of a list of 256 or more overflows under numpy 2.
        mask_area = float(mask_utils.area(rle))
        stated = annotations[k]["area"]
        if mask_area == 0:
            out.add(wheres[k], "'segmentation' is empty (0 pixels)")
            rles[k] = None
            continue
        difference = abs(mask_area - stated)
        if difference > AREA_ABSOLUTE_TOLERANCE_PX and difference > AREA_RELATIVE_TOLERANCE * mask_area:
            out.add(wheres[k], f"'area' {stated} is inconsistent with its mask ({mask_area:.0f} pixels)")
    return rles


@dataclass
class ResultColumns:
    """Checked result records as columns, in input order."""

    image_ids: np.ndarray  # (N,) int64
    category_ids: np.ndarray  # (N,) int64; 0 for proposals
    scores: np.ndarray  # (N,) float64
    bboxes: np.ndarray  # (N, 4) float64, [x, y, w, h]
    rles: list[dict[str, Any]] | None  # compressed RLE per record; None: no masks


def check_results(
    records: Sequence[Any],
    image_sizes: dict[int, tuple[int, int]],
    category_ids: Container[int],
    source: str,
    *,
    proposals: bool = False,
) -> ResultColumns:
    """Check COCO result records (``image_id``, ``category_id``, ``score``, ``bbox`` and/or ``segmentation``)
    against the ground truth's images and categories; the first problem is a UserError.

    ``proposals=True``: records without ``category_id``; ``segmentation`` ignored. A record without ``bbox``
    gets its mask's box. Either every record has a ``segmentation`` or none does.
    """
    out = RaiseOnFirst(source)
    n = len(records)
    image_ids = np.zeros(n, dtype=np.int64)
    labels = np.zeros(n, dtype=np.int64)
    scores = np.zeros(n, dtype=np.float64)
    bboxes = np.zeros((n, 4), dtype=np.float64)
    has_box = np.ones(n, dtype=bool)
    with_masks = not proposals and n > 0 and isinstance(records[0], dict) and "segmentation" in records[0]
    required = ("score",) if proposals else ("category_id", "score")
    required += ("segmentation",) if with_masks else ()
    wheres = []
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            out.add(f"record {i}", f"expected an object, got {type(record).__name__}")
        if "image_id" not in record:
            out.missing(f"record {i}", ["image_id"])
        image_id = record["image_id"]
        if not is_int(image_id) or image_id not in image_sizes:
            out.add(f"record {i}", f"'image_id' {image_id!r} is not a ground-truth image")
        where = f"record {i} (image_id {image_id})"
        wheres.append(where)
        missing = [key for key in required if key not in record]
        if missing:
            out.missing(where, missing)
        if not proposals:
            category_id = record["category_id"]
            if not is_int(category_id) or category_id not in category_ids:
                out.add(where, f"'category_id' {category_id!r} is not a ground-truth category")
            labels[i] = category_id
        if not is_finite_number(record["score"]):
            out.add(where, f"'score' must be a finite number, got {record['score']!r}")
        image_ids[i] = image_id
        scores[i] = record["score"]
        if "bbox" in record:
            problem = bbox_problem(record["bbox"], allow_empty=True)
            if problem is not None:
                out.add(where, problem)
            bboxes[i] = record["bbox"]
        elif with_masks:
            has_box[i] = False
        else:
            out.missing(where, ["bbox"])
        if not with_masks and not proposals and "segmentation" in record:
            out.add(where, "has 'segmentation' but record 0 has none (all records or none must)")

    rles = None
    if with_masks:
        sizes = [image_sizes[image_id] for image_id in image_ids.tolist()]
        rles = segmentation_rles([r["segmentation"] for r in records], sizes, wheres, out)
        if not has_box.all():
            missing_box = np.flatnonzero(~has_box)
            bboxes[missing_box] = mask_utils.toBbox([rles[k] for k in missing_box])
    return ResultColumns(image_ids=image_ids, category_ids=labels, scores=scores, bboxes=bboxes, rles=rles)
