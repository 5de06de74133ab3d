"""The two video layouts, their conversion and the rules every reader applies.

**YouTube-VIS** (the official layout of YouTube-VIS 2019/2021 and OVIS), one file per split, a record per
track::

    videos:      [{id, width, height, length, file_names: [frame file, ...]}]
    annotations: [{id, video_id, category_id, iscrowd, segmentations: [RLE | null] * length,
                   bboxes: [[x, y, w, h] | null] * length, areas: [number | null] * length}]
    categories:  [{id, name}]

**COCO-video** (what mmdet's ``tools/dataset_converters/youtubevis2coco.py`` makes of it and mmdet 3.3's
``YouTubeVISDataset`` reads), a record per frame and per mask: COCO instances plus ``videos`` [{id, name,
width, height}], images with ``video_id`` and ``frame_id`` (0-based position in the clip) and annotations with
``video_id`` and ``instance_id`` (> 0, one per track over the whole file; mmdet reads 0 as "no id"). A
COCO-video file is also a plain per-frame COCO file, so image models train and test on it unchanged.

:func:`youtube_vis_to_coco_video` is that conversion (ids numbered as mmdet's converter does), so a real
YouTube-VIS or OVIS training file becomes what the configs read. The checks report to a
:class:`~mnc_bench.data.coco_format.Problems` sink like the COCO rules: every problem for ``data check``,
the first as a one-line error for the evaluators.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from pycocotools import mask as mask_utils

from mnc_bench.data.coco_format import (
    AREA_ABSOLUTE_TOLERANCE_PX,
    AREA_RELATIVE_TOLERANCE,
    Instances,
    Problems,
    bbox_problem,
    check_instances,
    record_id,
)
from mnc_bench.data.predicates import is_finite_number, is_int
from mnc_bench.data.segmentation import SegmentationError, to_rle
from mnc_bench.errors import UserError

TRACK_LISTS = ("segmentations", "bboxes", "areas")


def is_youtube_vis(data: Any) -> bool:
    """True for the official layout (videos with frame lists, a record per track)."""
    return isinstance(data, dict) and isinstance(data.get("videos"), list) and "images" not in data


def is_coco_video(data: Any) -> bool:
    """True for a COCO file with ``videos`` (mmdet's COCO-video layout)."""
    return isinstance(data, dict) and isinstance(data.get("videos"), list) and "images" in data


# ------------------------------------------------------------------------------------------------------------
# YouTube-VIS layout
# ------------------------------------------------------------------------------------------------------------


@dataclass
class YouTubeVISTracks:
    """What the checks of an official YouTube-VIS file found usable."""

    video_lengths: dict[int, int] = field(default_factory=dict)  # video id -> frames
    video_sizes: dict[int, tuple[int, int]] = field(default_factory=dict)  # video id -> (height, width)
    category_names: dict[int, str] = field(default_factory=dict)
    tracks: list[dict[str, Any]] = field(default_factory=list)  # annotations whose every field passed
    num_masks: int = 0


def check_youtube_vis(data: Any, out: Problems) -> YouTubeVISTracks:
    """Check a parsed official YouTube-VIS file: videos and their frame lists, tracks against their video
    (one entry per frame in every per-frame list), masks at the video's size and agreeing with their areas."""
    found = YouTubeVISTracks()
    for key in ("videos", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            out.add("top level", f"{key!r} must be a list")
            return found
    video_ids: set[int] = set()
    for i, video in enumerate(data["videos"]):
        video_id = record_id(out, "video", i, video, ("id", "width", "height", "file_names"), video_ids,
                             nonzero=True)
        if video_id is None:
            continue
        video_ids.add(video_id)
        where = out.name("video", video_id)
        sizes = [video[key] for key in ("height", "width")]
        if not all(is_int(v) and v > 0 for v in sizes):
            out.add(where, f"'height' and 'width' must be positive integers, got {sizes}")
            continue
        names = video["file_names"]
        if not (isinstance(names, list) and names and all(isinstance(n, str) and n for n in names)):
            out.add(where, "'file_names' must be a non-empty list of frame file names")
            continue
        if "length" in video and video["length"] != len(names):
            out.add(where, f"'length' {video['length']!r} disagrees with its {len(names)} 'file_names'")
            continue
        found.video_lengths[video_id] = len(names)
        found.video_sizes[video_id] = (sizes[0], sizes[1])
    found.category_names = _categories(data["categories"], out)

    track_ids: set[int] = set()
    for i, track in enumerate(data["annotations"]):
        keys = ("id", "video_id", "category_id", "iscrowd", "segmentations")
        track_id = record_id(out, "annotation", i, track, keys, track_ids, nonzero=True)
        if track_id is None:
            continue
        track_ids.add(track_id)
        where = out.name("annotation", track_id)
        video_id = track["video_id"]
        if not is_int(video_id) or video_id not in video_ids:
            out.add(where, f"'video_id' {video_id!r} is not in 'videos' (a track of a missing video)")
            continue
        if track["category_id"] not in found.category_names:
            out.add(where, f"'category_id' {track['category_id']!r} is not in 'categories'")
            continue
        if not is_int(track["iscrowd"]) or track["iscrowd"] not in (0, 1):
            out.add(where, f"'iscrowd' must be 0 or 1, got {track['iscrowd']!r}")
            continue
        if video_id not in found.video_lengths:
            continue  # its video was reported already
        masks = _track_masks(track, where, found.video_lengths[video_id], found.video_sizes[video_id], out)
        if masks is not None:
            found.tracks.append(track)
            found.num_masks += masks
    return found


def _track_masks(track: dict, where: str, length: int, size: tuple[int, int], out: Problems) -> int | None:
    """Number of frames the track has a mask in, or None after reporting why the track is unusable."""
    for key in TRACK_LISTS:
        if key not in track:
            if key == "segmentations":
                out.missing(where, [key])
                return None
            continue
        values = track[key]
        if not isinstance(values, list) or len(values) != length:
            count = f"{len(values)} entries" if isinstance(values, list) else f"a {type(values).__name__}"
            out.add(where, f"'{key}' has {count} but video id {track['video_id']} has {length} frames")
            return None
    frames = 0
    for frame, segmentation in enumerate(track["segmentations"]):
        at = f"{where}: frame {frame}"
        others = {key: track[key][frame] for key in ("bboxes", "areas") if key in track}
        if segmentation is None:
            present = [key for key, value in others.items() if value is not None]
            if present:
                out.add(at, f"has a '{present[0][:-1]}' but no segmentation")
                return None
            continue
        try:
            rle = to_rle(segmentation, *size)
        except SegmentationError as exc:
            out.add(at, f"'segmentations': {exc}")
            return None
        area = float(mask_utils.area(rle))
        if area == 0:
            out.add(at, "'segmentations': empty mask (0 pixels); use null for a frame without the object")
            return None
        stated = others.get("areas")
        if stated is not None:
            if not is_finite_number(stated) or stated <= 0:
                out.add(at, f"'areas' must be a positive number, got {stated!r}")
                return None
            difference = abs(area - stated)
            if difference > AREA_ABSOLUTE_TOLERANCE_PX and difference > AREA_RELATIVE_TOLERANCE * area:
                out.add(at, f"'areas' {stated} is inconsistent with its mask ({area:.0f} pixels)")
                return None
        box = others.get("bboxes")
        if box is not None and bbox_problem(box, allow_empty=False) is not None:
            out.add(at, bbox_problem(box, allow_empty=False))
            return None
        frames += 1
    if frames == 0:
        out.add(where, "the track has no mask in any frame")
        return None
    return frames


def youtube_vis_to_coco_video(data: dict[str, Any]) -> dict[str, Any]:
    """The COCO-video file of a checked official YouTube-VIS dict, numbered as mmdet's converter numbers it:
    image ids from 1 in video then frame order, annotation ids from 1 in the order of the frames, instance ids
    from 1 in the order tracks are met. Video names are the folder of each video's first frame."""
    per_video: dict[int, list[dict]] = defaultdict(list)
    for track in data["annotations"]:
        per_video[track["video_id"]].append(track)
    videos, images, annotations = [], [], []
    instance_ids: dict[int, int] = {}
    for video in data["videos"]:
        name = video.get("name") or video["file_names"][0].split("/")[0]
        videos.append({"id": video["id"], "name": name, "width": video["width"], "height": video["height"]})
        for frame_id, file_name in enumerate(video["file_names"]):
            image_id = len(images) + 1
            images.append(
                {
                    "id": image_id,
                    "file_name": file_name,
                    "height": video["height"],
                    "width": video["width"],
                    "frame_id": frame_id,
                    "video_id": video["id"],
                }
            )
            for track in per_video[video["id"]]:
                segmentation = track["segmentations"][frame_id]
                if segmentation is None:
                    continue
                instance_id = instance_ids.setdefault(track["id"], len(instance_ids) + 1)
                rle = to_rle(segmentation, video["height"], video["width"])
                area = track["areas"][frame_id] if "areas" in track else float(mask_utils.area(rle))
                box = track["bboxes"][frame_id] if "bboxes" in track else mask_utils.toBbox(rle).tolist()
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "video_id": video["id"],
                        "image_id": image_id,
                        "category_id": track["category_id"],
                        "instance_id": instance_id,
                        "bbox": box,
                        "segmentation": segmentation,
                        "area": area,
                        "iscrowd": track["iscrowd"],
                    }
                )
    return {
        "info": data.get("info", {}),
        "licenses": data.get("licenses", []),
        "videos": videos,
        "images": images,
        "annotations": annotations,
        "categories": data["categories"],
    }


# ------------------------------------------------------------------------------------------------------------
# COCO-video layout
# ------------------------------------------------------------------------------------------------------------


@dataclass
class CocoVideo:
    """What the checks of a COCO-video file found: the COCO part and the clips."""

    instances: Instances
    frames: dict[int, list[int]] = field(default_factory=dict)  # video id -> image ids by frame_id
    video_sizes: dict[int, tuple[int, int]] = field(default_factory=dict)
    image_frames: dict[int, tuple[int, int]] = field(default_factory=dict)  # image id -> (video id, frame_id)
    track_categories: dict[int, int] = field(default_factory=dict)  # instance id -> category id
    track_videos: dict[int, int] = field(default_factory=dict)  # instance id -> video id


def check_coco_video(data: Any, source: str, out: Problems, *, dataset: bool) -> CocoVideo:
    """Check a parsed COCO-video file: the COCO rules (:func:`check_instances`) plus the clips: every image in
    a known video at the video's size, frame_ids 0..n-1 once each per video, annotations of their image's
    video with a positive ``instance_id`` that keeps one video and one category and appears once per frame."""
    instances = check_instances(data, source, out, dataset=dataset)
    found = CocoVideo(instances)
    if not isinstance(data.get("videos"), list):
        out.add("top level", "'videos' must be a list (a COCO-video file)")
        return found
    video_ids: set[int] = set()
    for i, video in enumerate(data["videos"]):
        video_id = record_id(out, "video", i, video, ("id", "width", "height"), video_ids, nonzero=True)
        if video_id is None:
            continue
        video_ids.add(video_id)
        sizes = [video[key] for key in ("height", "width")]
        if not all(is_int(v) and v > 0 for v in sizes):
            out.add(
                out.name("video", video_id), f"'height' and 'width' must be positive integers, got {sizes}"
            )
            continue
        found.video_sizes[video_id] = (sizes[0], sizes[1])

    by_video: dict[int, dict[int, int]] = defaultdict(dict)
    for image in data["images"]:
        if not isinstance(image, dict) or image.get("id") not in instances.image_sizes:
            continue  # reported by the COCO rules
        where = out.name("image", image["id"])
        video_id, frame_id = image.get("video_id"), image.get("frame_id")
        if not is_int(video_id) or video_id not in video_ids:
            out.add(where, f"'video_id' {video_id!r} is not in 'videos' (a frame of a missing video)")
            continue
        if not is_int(frame_id) or frame_id < 0:
            out.add(where, f"'frame_id' must be a non-negative integer, got {frame_id!r}")
            continue
        if frame_id in by_video[video_id]:
            out.add(
                where,
                f"frame_id {frame_id} of video id {video_id} is also image id {by_video[video_id][frame_id]}",
            )
            continue
        size = instances.image_sizes[image["id"]]
        if video_id in found.video_sizes and size != found.video_sizes[video_id]:
            (h, w), (vh, vw) = size, found.video_sizes[video_id]
            out.add(
                where,
                f"{w}x{h} disagrees with video id {video_id} ({vw}x{vh}): the frames of a clip "
                "share one size",
            )
            continue
        by_video[video_id][frame_id] = image["id"]
        found.image_frames[image["id"]] = (video_id, frame_id)
    for video_id in found.video_sizes:
        frame_ids = sorted(by_video.get(video_id, {}))
        if frame_ids != list(range(len(frame_ids))):
            missing = next(k for k in range(len(frame_ids) + 1) if k not in by_video.get(video_id, {}))
            out.add(
                out.name("video", video_id),
                f"has {len(frame_ids)} frames but no frame_id {missing}: frame_ids must be 0..length-1",
            )
            continue
        found.frames[video_id] = [by_video[video_id][k] for k in frame_ids]

    seen: set[tuple[int, int]] = set()
    for ann in instances.annotations:
        where = out.name("annotation", ann["id"])
        if ann["image_id"] not in found.image_frames:
            continue
        video_id = found.image_frames[ann["image_id"]][0]
        instance_id = ann.get("instance_id")
        if ann.get("video_id", video_id) != video_id:
            out.add(where, f"'video_id' {ann.get('video_id')!r} differs from its image's video id {video_id}")
        elif not is_int(instance_id) or instance_id <= 0:
            out.add(where, f"'instance_id' must be a positive integer (a track), got {instance_id!r}")
        elif found.track_videos.setdefault(instance_id, video_id) != video_id:
            out.add(
                where,
                f"instance_id {instance_id} is also a track of video id {found.track_videos[instance_id]}",
            )
        elif found.track_categories.setdefault(instance_id, ann["category_id"]) != ann["category_id"]:
            out.add(
                where,
                f"instance_id {instance_id} changes category ({found.track_categories[instance_id]} "
                f"-> {ann['category_id']})",
            )
        elif (ann["image_id"], instance_id) in seen:
            out.add(where, f"instance_id {instance_id} has two annotations in image id {ann['image_id']}")
        else:
            seen.add((ann["image_id"], instance_id))
    return found


def summarize_coco_video(data: dict[str, Any]) -> str:
    """'V videos, F frames, T tracks, M masks (per class)' of a COCO-video dict."""
    names = {c["id"]: c["name"] for c in data["categories"]}
    tracks = {ann["instance_id"]: ann["category_id"] for ann in data["annotations"]}
    counts = Counter(names[c] for c in tracks.values())
    per_class = ", ".join(f"{name} {counts.get(name, 0)}" for name in names.values())
    return (
        f"{len(data['videos'])} videos, {len(data['images'])} frames, {len(tracks)} tracks ({per_class}), "
        f"{len(data['annotations'])} masks"
    )


def _categories(categories: list, out: Problems) -> dict[int, str]:
    names: dict[int, str] = {}
    ids: set[int] = set()
    for i, category in enumerate(categories):
        category_id = record_id(out, "category", i, category, ("id", "name"), ids, nonzero=True)
        if category_id is None:
            continue
        ids.add(category_id)
        if not isinstance(category["name"], str) or category["name"] in names.values():
            out.add(
                out.name("category", category_id), f"'name' must be a unique string, got {category['name']!r}"
            )
            continue
        names[category_id] = category["name"]
    return names


def require_layout(data: Any, source: str) -> None:
    """A UserError unless ``data`` is a COCO-video file."""
    if is_youtube_vis(data):
        raise UserError(
            f"{source}: an official YouTube-VIS file (a record per track); the evaluators and configs "
            "read its COCO-video conversion (mnc-bench data ytvis2coco)"
        )
    if not is_coco_video(data):
        raise UserError(
            f"{source}: not a COCO-video file (a COCO instances file with 'videos', images with "
            "'video_id' and 'frame_id')"
        )


def convert_youtube_vis(source: str | os.PathLike[str], out: str | os.PathLike[str]) -> str:
    """Check an official YouTube-VIS file (e.g. YouTube-VIS 2019/2021 or OVIS train) and write its COCO-video
    conversion to ``out`` atomically; returns a summary line. The first problem is a one-line UserError."""
    from mnc_bench.data.coco_format import RaiseOnFirst, read_json
    from mnc_bench.io import write_json

    data = read_json(source)
    if not is_youtube_vis(data):
        raise UserError(
            f"{source}: not an official YouTube-VIS file (top-level 'videos' with 'file_names', a "
            "record per track in 'annotations')"
        )
    check_youtube_vis(data, RaiseOnFirst(str(source)))
    converted = youtube_vis_to_coco_video(data)
    write_json(out, converted)
    return f"wrote {out}: {summarize_coco_video(converted)}"
