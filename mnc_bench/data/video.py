"""The shapes world in motion: procedural clips for video instance segmentation, deterministic from a seed.

Each clip holds the objects of a shapes image (:mod:`mnc_bench.data.synthetic`'s drawing code: the same
kinds, sizes, colours and textured background) moving smoothly: constant velocity with a gentle acceleration,
steady rotation and a steady change of scale, each object on its own timeline centred on a random frame, so
that objects cross one another (occlusion: later objects paint over earlier ones), leave the frame and enter
it. The camera may shake: a random walk of whole-pixel steps that moves the background and every object
together. Each frame has fresh sensor noise and object texture noise.

Ground truth is per track and frame: the *visible* mask after occlusion; a frame where fewer than
``min_visible_pixels`` pixels of an object remain has no mask for it (its track has a gap there, or starts
or ends later or earlier, as in YouTube-VIS).

Layout written by :func:`write_video_dataset` (YouTube-VIS's, with PNG frames)::

    OUT/{train,val}/JPEGImages/<video>/<frame>.png
    OUT/annotations/ytvis_{train,val}.json       official YouTube-VIS layout (a record per track)
    OUT/annotations/instances_{train,val}.json   its COCO-video conversion: what the configs read (mmdet's
                                                 YouTubeVISDataset for video models, CocoDataset for image
                                                 models)
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from mnc_bench.data.synthetic import (
    CATEGORIES,
    DATASET_SPLITS,
    Shape,
    ShapesConfig,
    background,
    build_atomically,
    chunk_ranges,
    coco_categories,
    encode_mask,
    paint,
    pick_colour,
    rasterise,
    render_chunks,
    sample_shape,
    visible_masks,
    write_annotations,
)
from mnc_bench.data.video_format import summarize_coco_video, youtube_vis_to_coco_video
from mnc_bench.errors import UserError

if TYPE_CHECKING:
    from mnc_bench.preflight import DatasetWriter

# Version of the clips a seed produces; bump when frames or annotations change.
VIDEO_GENERATOR_VERSION = 1
# Offsets the clips' random streams from the images' (both start from [seed, split, index]).
_VIDEO_STREAM = 1
FRAMES_DIR = "JPEGImages"
DEFAULT_TRAIN_VIDEOS, DEFAULT_VAL_VIDEOS = 60, 20


@dataclass(frozen=True)
class VideoConfig:
    """How clips move. Speeds are per frame: pixels, radians, log-scale; shake is the step std in pixels."""

    shapes: ShapesConfig = field(default_factory=lambda: ShapesConfig(max_objects=5))
    min_frames: int = 8
    max_frames: int = 12
    max_speed: float = 5.0
    max_acceleration: float = 0.3
    max_spin: float = 0.12
    max_zoom: float = 0.04
    # Objects that cross an edge of the frame during the clip (enter or leave).
    crossing_fraction: float = 0.5
    camera_shake: float = 1.0
    sensor_noise: float = 4.0

    def __post_init__(self) -> None:
        if not 1 <= self.min_frames <= self.max_frames:
            raise UserError(f"frames: need 1 <= min <= max, got {self.min_frames}-{self.max_frames}")
        if not 0 <= self.crossing_fraction <= 1:
            raise UserError(f"crossing_fraction: must be in [0, 1], got {self.crossing_fraction}")
        for name in ("max_speed", "max_acceleration", "max_spin", "max_zoom", "camera_shake", "sensor_noise"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise UserError(
                    f"{name.replace('_', '-')}: must be a finite number >= 0, got {getattr(self, name)}"
                )

    @property
    def shake_margin(self) -> int:
        """Background pixels kept around the frame for the camera to wander into (four step stds)."""
        return int(math.ceil(4 * self.camera_shake))


@dataclass(frozen=True)
class Motion:
    """An object's pose at frame t: its shape moved by velocity and acceleration, turned and scaled, about
    its own reference frame ``t0`` (the pose ``shape`` describes)."""

    shape: Shape
    t0: float
    velocity: tuple[float, float]
    acceleration: tuple[float, float]
    spin: float
    zoom: float

    def at(self, t: int, camera: tuple[int, int]) -> Shape:
        dt = t - self.t0
        return replace(
            self.shape,
            cx=self.shape.cx + self.velocity[0] * dt + 0.5 * self.acceleration[0] * dt**2 - camera[0],
            cy=self.shape.cy + self.velocity[1] * dt + 0.5 * self.acceleration[1] * dt**2 - camera[1],
            radius=self.shape.radius * math.exp(self.zoom * dt),
            theta=self.shape.theta + self.spin * dt,
        )


@dataclass
class RenderedClip:
    frames: list[np.ndarray]  # [H, W, 3] uint8 each
    masks: list[
        list[np.ndarray | None]
    ]  # per object (painting order), per frame: visible [H, W] bool or None
    category_ids: list[int]  # per object, 1-based into CATEGORIES


def _motion(rng: np.random.Generator, shape: Shape, length: int, config: VideoConfig) -> Motion:
    """A random smooth motion. A crossing object sits with its centre on a random edge of the frame at its
    reference frame (inside the clip) and moves out through it, or in (half of them): entering and leaving
    the frame are part of the task, not left to chance."""
    crossing = rng.uniform() < config.crossing_fraction
    direction = rng.uniform(0, 2 * np.pi)
    speed = rng.uniform(0.2, 1.0) * config.max_speed
    t0 = float(rng.uniform(0, length - 1))
    if crossing:
        size = config.shapes.image_size
        side = int(rng.integers(4))  # left, right, top, bottom
        if side < 2:
            shape = replace(shape, cx=float(side * size))
        else:
            shape = replace(shape, cy=float((side - 2) * size))
        outward = (np.pi, 0.0, -np.pi / 2, np.pi / 2)[side]
        entering = rng.uniform() < 0.5
        direction = outward + rng.uniform(-np.pi / 4, np.pi / 4) + (np.pi if entering else 0.0)
        speed = rng.uniform(0.5, 1.0) * config.max_speed
        t0 = float(rng.uniform(1, max(1, length - 2)))
    turn = rng.uniform(0, 2 * np.pi)
    acceleration = rng.uniform(0, config.max_acceleration)
    return Motion(
        shape=shape,
        t0=t0,
        velocity=(speed * math.cos(direction), speed * math.sin(direction)),
        acceleration=(acceleration * math.cos(turn), acceleration * math.sin(turn)),
        spin=float(rng.uniform(-config.max_spin, config.max_spin)),
        zoom=float(rng.uniform(-config.max_zoom, config.max_zoom)),
    )


def _camera_path(rng: np.random.Generator, length: int, config: VideoConfig) -> list[tuple[int, int]]:
    """Whole-pixel camera offsets per frame: a random walk from (0, 0) kept within the shake margin."""
    margin = config.shake_margin
    position = np.zeros(2)
    path = []
    for t in range(length):
        if t:
            position = np.clip(position + rng.normal(0, config.camera_shake, size=2), -margin, margin)
        path.append((int(round(position[0])), int(round(position[1]))))
    return path


def render_clip(rng: np.random.Generator, config: VideoConfig) -> RenderedClip:
    """Draw one clip: a background larger than the frame by the shake margin, objects with their motions."""
    shapes = config.shapes
    size, margin = shapes.image_size, config.shake_margin
    length = int(rng.integers(config.min_frames, config.max_frames + 1))
    scenery = background(rng, replace(shapes, image_size=size + 2 * margin))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    num_objects = int(rng.integers(shapes.min_objects, shapes.max_objects + 1))
    motions, colours, category_ids = [], [], []
    for _ in range(num_objects):
        category = int(rng.integers(len(CATEGORIES)))
        motion = _motion(rng, sample_shape(CATEGORIES[category], rng, shapes), length, config)
        # The colour is chosen against the background under the object at its reference frame.
        reference = rasterise(motion.shape, yy + margin, xx + margin)
        mask = np.zeros(scenery.shape[:2], dtype=bool)
        mask[margin : margin + size, margin : margin + size] = reference
        motions.append(motion)
        colours.append(pick_colour(rng, scenery, mask))
        category_ids.append(category + 1)
    camera = _camera_path(rng, length, config)

    frames: list[np.ndarray] = []
    masks: list[list[np.ndarray | None]] = [[] for _ in motions]
    for t, (dx, dy) in enumerate(camera):
        image = scenery[margin + dy : margin + dy + size, margin + dx : margin + dx + size].copy()
        image += rng.normal(0, config.sensor_noise, size=image.shape)
        full = []
        for motion, colour in zip(motions, colours):
            mask = rasterise(motion.at(t, (dx, dy)), yy, xx)
            image = paint(rng, image, mask, colour, yy)
            full.append(mask)
        for track, visible in zip(masks, visible_masks(full, shapes.min_visible_pixels)):
            track.append(visible)
        frames.append(np.clip(image, 0, 255).astype(np.uint8))
    return RenderedClip(frames=frames, masks=masks, category_ids=category_ids)


def _clip_rng(seed: int, split: str, index: int) -> np.random.Generator:
    # One independent stream per clip: any subset of clips can be (re)generated alone, in any order.
    return np.random.default_rng([seed, DATASET_SPLITS.index(split), index, _VIDEO_STREAM])


def _track_records(clip: RenderedClip, video_id: int) -> list[dict[str, Any]]:
    """Official YouTube-VIS annotation records (without ids) of the clip's objects that are ever visible."""
    records = []
    for per_frame, category_id in zip(clip.masks, clip.category_ids):
        if all(mask is None for mask in per_frame):
            continue
        segmentations, bboxes, areas = [], [], []
        for mask in per_frame:
            if mask is None:
                segmentations.append(None)
                bboxes.append(None)
                areas.append(None)
                continue
            segmentation, bbox, area = encode_mask(mask)
            segmentations.append(segmentation)
            bboxes.append(bbox)
            areas.append(area)
        records.append(
            {
                "video_id": video_id,
                "category_id": category_id,
                "iscrowd": 0,
                "segmentations": segmentations,
                "bboxes": bboxes,
                "areas": areas,
            }
        )
    return records


def _render_chunk(args: tuple[VideoConfig, str, int, int, str]) -> list[tuple[int, int, list[dict]]]:
    """Render clips [start, stop) of a split, write their frames; return (index, length, track records)."""
    config, split, start, stop, frame_dir = args
    out = []
    for index in range(start, stop):
        clip = render_clip(_clip_rng(config.shapes.seed, split, index), config)
        folder = Path(frame_dir) / f"{index:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        for t, pixels in enumerate(clip.frames):
            Image.fromarray(pixels).save(folder / f"{t:05d}.png", optimize=False)
        out.append((index, len(clip.frames), _track_records(clip, video_id=index + 1)))
    return out


def build_video_split(root: Path, split: str, num_videos: int, config: VideoConfig, workers: int) -> dict:
    """Render one split's clips into ``root/split/JPEGImages`` and return its official YouTube-VIS dict."""
    frame_dir = root / split / FRAMES_DIR
    frame_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(config, split, start, stop, str(frame_dir)) for start, stop in chunk_ranges(num_videos, workers)]
    results = render_chunks(_render_chunk, jobs, workers)
    size = config.shapes.image_size
    videos, tracks = [], []
    for index, length, records in sorted(results, key=lambda item: item[0]):
        names = [f"{index:05d}/{t:05d}.png" for t in range(length)]
        videos.append({"id": index + 1, "width": size, "height": size, "length": length, "file_names": names})
        tracks += [{"id": len(tracks) + k + 1, **record} for k, record in enumerate(records)]
    return {
        "info": {
            "description": "mnc-bench procedural shapes videos",
            "generator_version": VIDEO_GENERATOR_VERSION,
            "config": asdict(config),
            "split": split,
        },
        "licenses": [],
        "videos": videos,
        "annotations": tracks,
        "categories": coco_categories(),
    }


def write_video_dataset(
    out_dir: str | os.PathLike[str],
    *,
    num_train: int = DEFAULT_TRAIN_VIDEOS,
    num_val: int = DEFAULT_VAL_VIDEOS,
    config: VideoConfig | None = None,
    workers: int | None = None,
    overwrite: bool = False,
) -> str:
    """Write the clips to ``out_dir`` in the layout of the module docstring, atomically (built in a temporary
    sibling and renamed into place). Returns a summary line per split."""
    config = config or VideoConfig()
    workers = workers or min(2, os.cpu_count() or 1)

    def build(staging: Path) -> list[str]:
        lines = []
        for split, count in (("train", num_train), ("val", num_val)):
            official = build_video_split(staging, split, count, config, workers)
            coco_video = youtube_vis_to_coco_video(official)
            write_annotations(staging / "annotations" / f"ytvis_{split}.json", official)
            write_annotations(staging / "annotations" / f"instances_{split}.json", coco_video)
            lines.append(f"{split}: {summarize_coco_video(coco_video)}")
        return lines

    return build_atomically(out_dir, build, overwrite=overwrite)


SYNTHETIC_VIDEO_SETTINGS = (
    "num_train",
    "num_val",
    "image_size",
    "seed",
    "min_frames",
    "max_frames",
    "camera_shake",
)
def video_writer(settings: dict[str, Any]) -> DatasetWriter:
    """The writer of the clips a config's ``synthetic_videos`` describes (keys of
    :data:`SYNTHETIC_VIDEO_SETTINGS`), for :func:`mnc_bench.preflight.ensure_generated`."""
    from mnc_bench.errors import ConfigError

    for key in settings:
        if key not in SYNTHETIC_VIDEO_SETTINGS:
            raise ConfigError(
                f"synthetic_videos.{key}: unknown setting (it takes {', '.join(SYNTHETIC_VIDEO_SETTINGS)})"
            )
    default = VideoConfig()
    config = VideoConfig(
        shapes=replace(
            default.shapes,
            image_size=int(settings.get("image_size", default.shapes.image_size)),
            seed=int(settings.get("seed", default.shapes.seed)),
        ),
        min_frames=int(settings.get("min_frames", default.min_frames)),
        max_frames=int(settings.get("max_frames", default.max_frames)),
        camera_shake=float(settings.get("camera_shake", default.camera_shake)),
    )

    def write(root: Path, overwrite: bool) -> str:
        return write_video_dataset(
            root,
            num_train=int(settings.get("num_train", DEFAULT_TRAIN_VIDEOS)),
            num_val=int(settings.get("num_val", DEFAULT_VAL_VIDEOS)),
            config=config,
            overwrite=overwrite,
        )

    return write
