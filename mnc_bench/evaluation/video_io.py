"""Video ground truth and tracked predictions, validated: the one reader of each for every video metric.

Ground truth is a COCO-video file (:mod:`mnc_bench.data.video_format`). Predictions are COCO result records,
one per detected instance and frame, plus a ``track_id``::

    {"image_id": 12, "category_id": 3, "score": 0.91, "segmentation": RLE, "bbox": [x, y, w, h],
     "track_id": 7}

``image_id`` names a frame of the ground truth; ``track_id`` (an integer) names the predicted track the
instance belongs to, unique over the file: a track stays in one video and has at most one instance per frame.
The per-frame category may change along a track (a video metric votes, see :mod:`mnc_bench.evaluation.video`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from mnc_bench.data.coco_format import RaiseOnFirst, read_json
from mnc_bench.data.predicates import is_int
from mnc_bench.data.video_format import check_coco_video, require_layout
from mnc_bench.errors import UserError
from mnc_bench.evaluation.ground_truth import GroundTruth
from mnc_bench.evaluation.results_io import Predictions, load_predictions


@dataclass(frozen=True)
class Track:
    """A ground-truth track: one object of one video, with its mask in the frames it is visible in."""

    track_id: int
    video_id: int
    category_id: int
    iscrowd: bool
    rles: tuple[dict[str, Any] | None, ...]  # per frame of the video; None where the object is not annotated


@dataclass(frozen=True, eq=False)
class VideoGroundTruth:
    """A validated COCO-video ground truth: the per-frame COCO ground truth and the clips."""

    frames_gt: GroundTruth
    frames: dict[int, list[int]]  # video id -> image ids in frame order
    image_frames: dict[int, tuple[int, int]]  # image id -> (video id, frame index)

    @property
    def source(self) -> str:
        return self.frames_gt.source

    @cached_property
    def tracks(self) -> list[Track]:
        """Every ground-truth track, in order of instance id."""
        per_track: dict[int, dict[str, Any]] = {}
        for ann, rle in zip(self.frames_gt.annotations, self.frames_gt.rles):
            video_id, frame = self.image_frames[ann["image_id"]]
            track = per_track.setdefault(
                ann["instance_id"],
                dict(
                    video_id=video_id,
                    category_id=ann["category_id"],
                    iscrowd=bool(ann["iscrowd"]),
                    rles=[None] * len(self.frames[video_id]),
                ),
            )
            track["rles"][frame] = rle
        return [
            Track(
                track_id=k,
                video_id=v["video_id"],
                category_id=v["category_id"],
                iscrowd=v["iscrowd"],
                rles=tuple(v["rles"]),
            )
            for k, v in sorted(per_track.items())
        ]


def load_video_ground_truth(
    source: str | os.PathLike[str] | dict[str, Any] | VideoGroundTruth,
) -> VideoGroundTruth:
    """Read and validate a COCO-video file (path or parsed dict); the first problem is a UserError."""
    if isinstance(source, VideoGroundTruth):
        return source
    data, name = (source, "ground truth") if isinstance(source, dict) else (read_json(source), str(source))
    require_layout(data, name)
    found = check_coco_video(data, name, RaiseOnFirst(name), dataset=False)
    instances = found.instances
    frames_gt = GroundTruth(
        dataset=data,
        source=name,
        image_sizes=instances.image_sizes,
        category_names=instances.category_names,
        annotations=data["annotations"],
    )
    frames_gt.rles  # noqa: B018 - validates every mask now, so a broken one is reported before scoring starts
    return VideoGroundTruth(frames_gt=frames_gt, frames=found.frames, image_frames=found.image_frames)


@dataclass(frozen=True)
class VideoPredictions:
    """Checked tracked predictions: the per-frame predictions and each one's track."""

    frames: Predictions
    track_ids: np.ndarray  # (N,) int64, unique over the file per track

    def __len__(self) -> int:
        return len(self.track_ids)


def load_video_predictions(
    source: str | os.PathLike[str] | Sequence[dict[str, Any]], gt: VideoGroundTruth
) -> VideoPredictions:
    """Validate tracked predictions (a results file or a list of records) against ``gt``: the COCO result
    rules (masks required) plus frames that exist and tracks that keep to one video, once per frame."""
    name = str(source) if isinstance(source, (str, os.PathLike)) else "predictions"
    records = read_json(source) if isinstance(source, (str, os.PathLike)) else source
    if not isinstance(records, list):
        raise UserError(f"{name}: expected a JSON list of result records, got {type(records).__name__}")
    out = RaiseOnFirst(name)
    track_video: dict[int, int] = {}
    seen: set[tuple[int, int]] = set()
    track_ids = np.zeros(len(records), dtype=np.int64)
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            out.add(f"record {i}", f"expected an object, got {type(record).__name__}")
        image_id, track_id = record.get("image_id"), record.get("track_id")
        if not is_int(image_id) or image_id not in gt.image_frames:
            out.add(
                f"record {i}",
                f"'image_id' {image_id!r} is not a frame of the ground truth's videos "
                "(a prediction for a frame that does not exist)",
            )
        where = f"record {i} (image_id {image_id})"
        if "segmentation" not in record:
            out.missing(where, ["segmentation"])
        if not is_int(track_id):
            out.add(where, f"'track_id' must be an integer, got {track_id!r}")
        video_id = gt.image_frames[image_id][0]
        if track_video.setdefault(track_id, video_id) != video_id:
            out.add(
                where,
                f"track_id {track_id} is in video id {video_id} and video id {track_video[track_id]} "
                "(a track stays in one video)",
            )
        if (image_id, track_id) in seen:
            out.add(where, f"track_id {track_id} has two instances in this frame")
        seen.add((image_id, track_id))
        track_ids[i] = track_id
    frames = load_predictions(records, gt.frames_gt, name=name)
    if len(records) and frames.rles is None:
        raise UserError(f"{name}: the records have no 'segmentation' (video metrics score masks)")
    return VideoPredictions(frames=frames, track_ids=track_ids)
