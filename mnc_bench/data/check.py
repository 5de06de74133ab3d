"""Validate a COCO-format instance-segmentation dataset (``mnc-bench data check``).

Every problem is reported with the offending record's id, so a user can fix the file instead of debugging a
crash deep inside pycocotools or a training run. The rules are :mod:`mnc_bench.data.coco_format`'s, the same
the evaluators apply to ground truth; a dataset must also hold what training reads (file names, masks).
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnc_bench.data.coco_format import (
    CollectProblems,
    TooManyProblems,
    check_instances,
    ground_truth_masks,
    read_json,
)
from mnc_bench.errors import UserError


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


def check_coco_dataset(
    annotations: str | os.PathLike[str], *, images_dir: str | os.PathLike[str] | None = None,
    max_problems: int = 200, data: Any = None,
) -> CheckReport:
    """Check a COCO instances json (and, given ``images_dir``, that every image file exists); ``data``: the
    file's parsed content when the caller has read it already."""
    source = str(annotations)
    data = read_json(annotations) if data is None else data
    report = CheckReport(path=source)
    with collecting(report, max_problems) as out:
        found = check_instances(data, source, out, dataset=True)
        if images_dir is not None:
            for image_id, file_name in found.file_names.items():
                if not (Path(images_dir) / file_name).is_file():
                    out.add(out.name("image", image_id), f"file {Path(images_dir) / file_name} not found")
        ground_truth_masks(found.annotations, found.image_sizes, out)
        report.num_images = len(found.image_sizes)
        report.num_annotations = found.num_annotations
        report.per_class = per_class_counts((ann["category_id"] for ann in found.annotations),
                                            found.category_names)
    return report


@contextlib.contextmanager
def collecting(report: CheckReport, max_problems: int) -> Iterator[CollectProblems]:
    """Collect one check's problems into ``report``: the check stops quietly once ``max_problems`` lines are
    collected (the listing is then marked truncated, and the counts it had not set yet stay at 0)."""
    out = CollectProblems(limit=max_problems)
    try:
        yield out
    except TooManyProblems:
        pass
    report.problems, report.truncated = out.lines, out.truncated


def per_class_counts(category_ids: Iterable[int], category_names: dict[int, str]) -> dict[str, int]:
    """Instances per class name (category ids: one per instance), every class of the file listed in file
    order, 0 for a class without instances."""
    counts = Counter(category_ids)
    return {name: counts.get(cat_id, 0) for cat_id, name in category_names.items()}


def require_valid_dataset(annotations: str | os.PathLike[str],
                          images_dir: str | os.PathLike[str] | None) -> None:
    """Raise a UserError naming the first problems if the dataset is not valid (used before building
    models)."""
    from mnc_bench.data.video_check import check_dataset  # COCO's rules, and the clips' for COCO-video

    report = check_dataset(annotations, images_dir=images_dir, max_problems=5)
    if not report.ok:
        shown = "; ".join(report.problems[:3])
        raise UserError(f"{annotations}: {len(report.problems)}+ problem(s), e.g. {shown} "
                        f"(run `mnc-bench data check {annotations}` for the full list)")

