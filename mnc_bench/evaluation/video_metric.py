"""mmengine metric for video models: collect tracked per-frame predictions and score them with
:func:`mnc_bench.evaluation.video.evaluate_video`, the code path ``mnc-bench evaluate-video`` uses.

Registered in mmdet's METRICS as ``MNCBenchVideoMetric`` by :func:`mnc_bench.registration.register_all`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from mmdet.evaluation.metrics.base_video_metric import BaseVideoMetric
from pycocotools import mask as mask_utils

from mnc_bench.errors import UserError
from mnc_bench.evaluation.metric import label_to_category
from mnc_bench.evaluation.video import DEFAULT_SCORE_THR, evaluate_video
from mnc_bench.evaluation.video_io import load_video_ground_truth
from mnc_bench.io import write_json


class MNCBenchVideoMetric(BaseVideoMetric):
    """Score each frame's ``pred_track_instances`` (``scores`` [N], ``labels`` [N] 0-based, ``masks`` [N, H,
    W] bool at the original frame size, ``instances_id`` [N]: the track of each instance, numbered per video)
    against the COCO-video file ``ann_file``; labels map to categories as in
    :class:`~mnc_bench.evaluation.metric.MNCBenchMetric`. ``results_file``, if given, receives the tracked
    result records (``track_id`` renumbered to be unique over the file), so ``mnc-bench evaluate-video`` can
    re-score them. Takes whole videos or single frames, in any order."""

    default_prefix = ""

    def __init__(
        self,
        ann_file: str | os.PathLike[str],
        score_thr: float = DEFAULT_SCORE_THR,
        results_file: str | os.PathLike[str] | None = None,
        collect_device: str = "cpu",
        prefix: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.ann_file = ann_file
        self.score_thr = score_thr
        self.results_file = results_file

    def process_video(self, data_samples: Sequence[Any]) -> None:
        for sample in data_samples:
            self._add_frame(sample)

    def process_image(self, data_samples: Sequence[Any], ori_video_len: int) -> None:
        for sample in data_samples:
            self._add_frame(sample)

    def _add_frame(self, sample: Any) -> None:
        sample = sample.to_dict() if hasattr(sample, "to_dict") else sample
        pred = sample["pred_track_instances"]
        pred = pred.to_dict() if hasattr(pred, "to_dict") else pred
        masks = np.asfortranarray(_numpy(pred["masks"]).astype(np.uint8).transpose(1, 2, 0))
        self.results.append(
            {
                "image_id": int(sample["img_id"]),
                "video_id": int(sample["video_id"]),
                "labels": _numpy(pred["labels"]).astype(np.int64).reshape(-1),
                "scores": _numpy(pred["scores"]).astype(np.float64).reshape(-1),
                "track_ids": _numpy(pred["instances_id"]).astype(np.int64).reshape(-1),
                # RLE right away: a full-resolution bool mask per instance would not fit in memory.
                "masks": mask_utils.encode(masks) if masks.shape[2] else [],
            }
        )

    def compute_metrics(self, results: list[dict[str, Any]]) -> dict[str, float]:
        gt = load_video_ground_truth(self.ann_file)
        records = tracked_records(
            results, label_to_category(gt.frames_gt, (self.dataset_meta or {}).get("classes"))
        )
        if self.results_file is not None:
            write_json(self.results_file, records)
        return evaluate_video(gt, records, score_thr=self.score_thr)


def file_track_ids(results: list[dict[str, Any]]) -> dict[int, list[int]]:
    """Per image id, its instances' file-wide track ids: a model's per-video track numbers become 1, 2, ... in
    order of first appearance (frames in image-id order).

    A track given two instances in one frame keeps the better scoring one; each other becomes a track of its
    own (mmdet 3.3's MaskTrack R-CNN tracker can do this: see the TODO in ``MaskTrackRCNNTracker.assign_ids``;
    mmdet's YouTubeVISMetric keeps the last instance's mask and averages all their scores into the track's).
    """
    unique: dict[tuple[int, Any], int] = {}
    found = {}
    for entry in sorted(results, key=lambda e: e["image_id"]):
        scores, tracks = entry["scores"].tolist(), list(entry["track_ids"].tolist())
        taken: set[int] = set()
        for k in sorted(range(len(tracks)), key=lambda i: -scores[i]):
            if tracks[k] in taken:
                tracks[k] = ("split", entry["image_id"], k)
            else:
                taken.add(tracks[k])
        found[entry["image_id"]] = [
            unique.setdefault((entry["video_id"], track), len(unique) + 1) for track in tracks
        ]
    return found


def tracked_records(results: list[dict[str, Any]], category_ids: list[int]) -> list[dict[str, Any]]:
    """Per-frame entries of :class:`MNCBenchVideoMetric` -> tracked result records (track ids of
    :func:`file_track_ids`), in image-id order."""
    tracks = file_track_ids(results)
    records = []
    for entry in sorted(results, key=lambda e: e["image_id"]):
        labels = entry["labels"]
        if len(labels) and (labels.min() < 0 or labels.max() >= len(category_ids)):
            raise UserError(
                f"image_id {entry['image_id']}: predicted label {int(labels.max())} but the ground truth "
                f"has {len(category_ids)} categories (labels must be 0-based)"
            )
        for k, (label, score) in enumerate(zip(labels.tolist(), entry["scores"].tolist())):
            rle = entry["masks"][k]
            records.append(
                {
                    "image_id": entry["image_id"],
                    "category_id": category_ids[label],
                    "score": score,
                    "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                    "track_id": tracks[entry["image_id"]][k],
                    "segmentation": {
                        "size": [int(s) for s in rle["size"]],
                        "counts": rle["counts"].decode("ascii"),
                    },
                }
            )
    return records


def _numpy(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
