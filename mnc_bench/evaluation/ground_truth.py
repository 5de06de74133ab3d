"""Load and validate a COCO instances file (the ground truth every metric is scored against).

The rules are :mod:`mnc_bench.data.coco_format`'s, the same ``mnc-bench data check`` applies, stopping at the
first problem.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, cast

import numpy as np

from mnc_bench.data.coco_format import RaiseOnFirst, check_instances, ground_truth_masks, read_json


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
        return np.array([a["iscrowd"] == 1 for a in self.annotations], dtype=bool)

    @cached_property
    def rles(self) -> list[dict[str, Any]]:
        """Compressed RLE of every annotation (file order); UserError if one is missing or malformed."""
        # No None in the list: RaiseOnFirst stops at the first problem.
        return cast(list, ground_truth_masks(self.annotations, self.image_sizes, RaiseOnFirst(self.source)))


GroundTruthSource = str | os.PathLike[str] | dict[str, Any] | GroundTruth


def load_ground_truth(source: GroundTruthSource) -> GroundTruth:
    """Read and validate a COCO instances file (path) or an already parsed dict (masks: see ``rles``)."""
    if isinstance(source, GroundTruth):
        return source
    if isinstance(source, dict):
        dataset, name = source, "ground truth"
    else:
        dataset, name = read_json(source), str(source)
    found = check_instances(dataset, name, RaiseOnFirst(name), dataset=False)
    return GroundTruth(
        dataset=dataset,
        source=name,
        image_sizes=found.image_sizes,
        category_names=found.category_names,
        annotations=dataset["annotations"],
    )
