"""``mnc-bench data check`` for the video layouts (official YouTube-VIS and COCO-video): every problem, one
line each naming the record, by the rules of :mod:`mnc_bench.data.video_format` (and, for COCO-video, the COCO
rules of :mod:`mnc_bench.data.coco_format`, which the per-frame image models read)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnc_bench.data.check import CheckReport, check_coco_dataset, collecting, per_class_counts
from mnc_bench.data.coco_format import CollectProblems, ground_truth_masks, read_json
from mnc_bench.data.video_format import check_coco_video, check_youtube_vis, is_coco_video, is_youtube_vis


@dataclass
class VideoCheckReport(CheckReport):
    layout: str = ""
    num_videos: int = 0
    num_tracks: int = 0

    def summary(self) -> str:
        if not self.ok:
            return super().summary()
        classes = ", ".join(f"{name} {count}" for name, count in self.per_class.items())
        return (
            f"OK {self.path} ({self.layout}): {self.num_videos} videos, {self.num_images} frames, "
            f"{self.num_tracks} tracks ({classes}), {self.num_annotations} masks"
        )


def check_dataset(
    annotations: str | os.PathLike[str],
    *,
    images_dir: str | os.PathLike[str] | None = None,
    max_problems: int = 200,
) -> CheckReport:
    """Check a COCO, COCO-video or official YouTube-VIS file, whichever it is (read once)."""
    data = read_json(annotations)
    if is_youtube_vis(data):
        return _check_youtube_vis(data, str(annotations), images_dir, max_problems)
    if is_coco_video(data):
        return _check_coco_video(data, str(annotations), images_dir, max_problems)
    return check_coco_dataset(annotations, images_dir=images_dir, max_problems=max_problems, data=data)


def _check_youtube_vis(data: Any, source: str, images_dir, max_problems: int) -> VideoCheckReport:
    report = VideoCheckReport(path=source, layout="YouTube-VIS")
    with collecting(report, max_problems) as out:
        found = check_youtube_vis(data, out)
        if images_dir is not None:
            for video in data["videos"]:
                if isinstance(video, dict) and video.get("id") in found.video_lengths:
                    _frames_exist(video["file_names"], images_dir, out, out.name("video", video["id"]))
        report.num_videos = len(found.video_lengths)
        report.num_images = sum(found.video_lengths.values())
        report.num_tracks = len(found.tracks)
        report.num_annotations = found.num_masks
        report.per_class = per_class_counts((track["category_id"] for track in found.tracks),
                                            found.category_names)
    return report


def _check_coco_video(data: Any, source: str, images_dir, max_problems: int) -> VideoCheckReport:
    report = VideoCheckReport(path=source, layout="COCO-video")
    with collecting(report, max_problems) as out:
        found = check_coco_video(data, source, out, dataset=True)
        instances = found.instances
        if images_dir is not None:
            for image_id, file_name in instances.file_names.items():
                _frames_exist([file_name], images_dir, out, out.name("image", image_id))
        ground_truth_masks(instances.annotations, instances.image_sizes, out)
        report.num_videos = len(found.video_sizes)
        report.num_images = len(instances.image_sizes)
        report.num_tracks = len(found.track_categories)
        report.num_annotations = instances.num_annotations
        report.per_class = per_class_counts(found.track_categories.values(), instances.category_names)
    return report


def _frames_exist(file_names: list[str], images_dir, out: CollectProblems, where: str) -> None:
    for name in file_names:
        if not (Path(images_dir) / name).is_file():
            out.add(where, f"frame file {Path(images_dir) / name} not found")
            return
