"""mmengine metric: collect mmdet-style predictions and score them with :func:`mnc_bench.evaluation.evaluate`,
so ``mnc-bench test``, the runner and ``mnc-bench evaluate`` compute every number through one code path.

Registered in mmdet's METRICS as ``MNCBenchMetric`` by :func:`mnc_bench.registration.register_all`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from mmengine.evaluator import BaseMetric
from pycocotools import mask as mask_utils

from mnc_bench.errors import UserError
from mnc_bench.evaluation.evaluate import evaluate
from mnc_bench.evaluation.ground_truth import GroundTruth, load_ground_truth
from mnc_bench.io import write_json


class MNCBenchMetric(BaseMetric):
    """Score ``pred_instances`` (``bboxes`` [N, 4] xyxy, ``scores`` [N], ``labels`` [N] 0-based,
    optional ``masks`` [N, H, W] bool at the original image size) against the COCO file ``ann_file``.

    Label ``i`` is the ``i``-th category of ``ann_file`` in file order, counting only categories named in
    ``dataset_meta["classes"]`` when that is set (mmdet's CocoDataset/CocoMetric convention). Every image
    and category of ``ann_file`` is scored. ``results_file``, if given, receives the predictions as a COCO
    results list, so ``mnc-bench evaluate`` can re-score them.
    """

    # Keys already name their family ("coco/segm/AP"); "" adds no prefix and silences mmengine's warning.
    default_prefix = ""

    def __init__(
        self,
        ann_file: str | os.PathLike[str],
        metric: str | Sequence[str] = ("coco", "voc_sds", "voc_mnc"),
        iou_type: str | Sequence[str] = ("segm", "bbox"),
        backend: str = "pycocotools",
        results_file: str | os.PathLike[str] | None = None,
        collect_device: str = "cpu",
        prefix: str | None = None,
        collect_dir: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        self.ann_file = ann_file
        self.metric = metric
        self.iou_type = iou_type
        self.backend = backend
        self.results_file = results_file

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        for sample in data_samples:
            sample = _as_dict(sample)
            pred = _as_dict(sample["pred_instances"])
            boxes = _numpy(pred["bboxes"]).astype(np.float64).reshape(-1, 4)
            entry = {
                "image_id": int(sample["img_id"]),
                "labels": _numpy(pred["labels"]).astype(np.int64).reshape(-1),
                "scores": _numpy(pred["scores"]).astype(np.float64).reshape(-1),
                "bboxes": np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1),
            }
            if "masks" in pred:
                # RLE right away: a full-resolution bool mask per detection would not fit in memory.
                masks = np.asfortranarray(_numpy(pred["masks"]).astype(np.uint8).transpose(1, 2, 0))
                entry["masks"] = mask_utils.encode(masks) if masks.shape[2] else []
            self.results.append(entry)

    def compute_metrics(self, results: list[dict[str, Any]]) -> dict[str, float]:
        gt = load_ground_truth(self.ann_file)
        records = to_coco_records(results, label_to_category(gt, (self.dataset_meta or {}).get("classes")))
        if self.results_file is not None:
            write_json(self.results_file, [_json_ready(record) for record in records])
        return evaluate(gt, records, metric=self.metric, iou_type=self.iou_type, backend=self.backend)


def label_to_category(gt: GroundTruth, classes: Sequence[str] | None) -> list[int]:
    """Category id of each 0-based label, following mmdet's CocoDataset."""
    if classes is None:
        return gt.category_ids
    known = set(gt.category_names.values())
    missing = [name for name in classes if name not in known]
    if missing:
        raise UserError(f"{gt.source}: class {missing[0]!r} of the model's dataset is not a category there")
    wanted = set(classes)
    return [cid for cid, name in gt.category_names.items() if name in wanted]


def to_coco_records(results: list[dict[str, Any]], category_ids: list[int]) -> list[dict[str, Any]]:
    """Per-image entries collected by :meth:`MNCBenchMetric.process` -> COCO result records."""
    records = []
    for entry in results:
        labels = entry["labels"]
        if len(labels) and (labels.min() < 0 or labels.max() >= len(category_ids)):
            raise UserError(
                f"image_id {entry['image_id']}: predicted label {int(labels.max())} but the ground truth "
                f"has {len(category_ids)} categories (labels must be 0-based)"
            )
        rows = zip(labels.tolist(), entry["scores"].tolist(), entry["bboxes"].tolist())
        for k, (label, score, box) in enumerate(rows):
            record = {
                "image_id": entry["image_id"],
                "category_id": category_ids[label],
                "score": score,
                "bbox": box,
            }
            if "masks" in entry:
                record["segmentation"] = entry["masks"][k]
            records.append(record)
    return records


def _json_ready(record: dict[str, Any]) -> dict[str, Any]:
    segmentation = record.get("segmentation")
    if segmentation is None or isinstance(segmentation["counts"], str):
        return record
    return {**record, "segmentation": {**segmentation, "counts": segmentation["counts"].decode("ascii")}}


def _as_dict(item: Any) -> dict[str, Any]:
    """mmengine's Evaluator passes dicts; direct callers may pass DetDataSample / InstanceData."""
    return item.to_dict() if hasattr(item, "to_dict") else item


def _numpy(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
