"""The embedded "shapes" dataset: procedural instance segmentation in COCO format, deterministic from a seed.

Each image has 1-6 objects (circle, triangle, rectangle, ring) with random colours, sizes spanning COCO's
small/medium/large buckets, rotations and partial occlusion, on a textured noisy background. Annotations hold
the *visible* mask after occlusion; objects hidden (almost) entirely are dropped.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from mnc_bench.errors import UserError
from mnc_bench.io import atomic_open, fsync_dir, make_staging_dir

Job = TypeVar("Job")
Item = TypeVar("Item")

CATEGORIES = ("circle", "triangle", "rectangle", "ring")
# The dataset's splits; the index of a split seeds its images' random streams.
DATASET_SPLITS = ("train", "val")
# Version of the generator's output; bump when the images or annotations a seed produces change.
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class ShapesConfig:
    """How the procedural images are drawn. Sizes are fractions of the image side."""

    image_size: int = 128
    seed: int = 0
    min_objects: int = 1
    max_objects: int = 6
    min_object_frac: float = 0.12
    max_object_frac: float = 1.0
    # Objects with fewer visible pixels than this after occlusion are dropped (not annotated).
    min_visible_pixels: int = 12
    background_noise: float = 18.0

    def __post_init__(self) -> None:
        if self.image_size < 32:
            raise UserError(f"image_size must be >= 32, got {self.image_size}")
        if not 1 <= self.min_objects <= self.max_objects:
            raise UserError(f"need 1 <= min_objects <= max_objects, got {self.min_objects}, "
                            f"{self.max_objects}")
        if not 0 < self.min_object_frac < self.max_object_frac <= 1.5:
            raise UserError("need 0 < min_object_frac < max_object_frac <= 1.5")


@dataclass
class RenderedImage:
    pixels: np.ndarray  # [H, W, 3] uint8
    masks: list[np.ndarray]  # visible masks, [H, W] bool each
    category_ids: list[int]  # 1-based, into CATEGORIES


@dataclass(frozen=True)
class Shape:
    """One object's geometry in image pixels: kind, centre, radius (half its extent), rotation, and the
    kind's own proportions (relative, so a scaled shape keeps them)."""

    kind: str
    cx: float
    cy: float
    radius: float
    theta: float
    aspect: float = 1.0  # rectangle: half-height / half-width
    inner: float = 0.0  # ring: inner radius / radius
    corner_angles: tuple[float, ...] = ()  # triangle: its corners' angles in the shape's own frame


def sample_shape(kind: str, rng: np.random.Generator, config: ShapesConfig) -> Shape:
    """A shape of ``kind`` at a random position, scale and rotation (generator version 1's draws)."""
    size = config.image_size
    # Log-uniform extent so small, medium and large objects all occur.
    extent = size * np.exp(rng.uniform(np.log(config.min_object_frac), np.log(config.max_object_frac)))
    radius = extent / 2
    # Centres may lie near the border: objects cut by the image edge are part of the task.
    cx, cy = rng.uniform(-0.1 * size + radius * 0.5, 1.1 * size - radius * 0.5, size=2)
    theta = rng.uniform(0, 2 * np.pi)
    shape = Shape(kind=kind, cx=float(cx), cy=float(cy), radius=float(radius), theta=float(theta))
    if kind == "circle":
        return shape
    if kind == "ring":
        return replace(shape, inner=float(rng.uniform(0.45, 0.7)))
    if kind == "rectangle":
        return replace(shape, aspect=float(np.exp(rng.uniform(np.log(0.45), np.log(1.0)))))
    if kind == "triangle":
        angles = np.array([0.0, 2 * np.pi / 3, 4 * np.pi / 3]) + rng.uniform(-0.35, 0.35, size=3)
        return replace(shape, corner_angles=tuple(float(a) for a in angles))
    raise ValueError(f"unknown shape kind {kind!r}")


def rasterise(shape: Shape, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """The pixels whose centres (yy, xx: [H, W] coordinates) lie inside ``shape``. Returns [H, W] bool."""
    radius = shape.radius
    cos, sin = np.cos(shape.theta), np.sin(shape.theta)
    u = (xx - shape.cx) * cos + (yy - shape.cy) * sin  # coordinates in the shape's rotated frame
    v = -(xx - shape.cx) * sin + (yy - shape.cy) * cos
    if shape.kind == "circle":
        return u**2 + v**2 <= radius**2
    if shape.kind == "ring":
        d2 = u**2 + v**2
        return (d2 <= radius**2) & (d2 >= (radius * shape.inner) ** 2)
    if shape.kind == "rectangle":
        return (np.abs(u) <= radius) & (np.abs(v) <= radius * shape.aspect)
    if shape.kind == "triangle":
        angles = np.asarray(shape.corner_angles)
        corners = np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)
        inside = np.ones_like(u, dtype=bool)
        for i in range(3):
            (x0, y0), (x1, y1) = corners[i], corners[(i + 1) % 3]
            # Counter-clockwise corners: the interior is left of every edge.
            inside &= (x1 - x0) * (v - y0) - (y1 - y0) * (u - x0) >= 0
        return inside
    raise ValueError(f"unknown shape kind {shape.kind!r}")


def background(rng: np.random.Generator, config: ShapesConfig) -> np.ndarray:
    """A textured background: colour gradient + low-frequency blobs + stripes + pixel noise. [H, W, 3]
    float."""
    size = config.image_size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = rng.uniform(40, 215, size=3)
    gradient = rng.uniform(-50, 50, size=(2, 3))
    image = base + xx[..., None] * gradient[0] + yy[..., None] * gradient[1]
    coarse = rng.normal(0, 25, size=(6, 6, 3))
    blobs = np.asarray(
        Image.fromarray(np.clip(coarse + 128, 0, 255).astype(np.uint8)).resize((size, size), Image.BILINEAR),
        dtype=np.float32,
    )
    image += blobs - 128
    freq, phase, angle = rng.uniform(6, 20), rng.uniform(0, 2 * np.pi), rng.uniform(0, np.pi)
    stripes = np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)
    image += rng.uniform(0, 14) * stripes[..., None]
    image += rng.normal(0, config.background_noise, size=image.shape)
    return image


def pick_colour(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A random object colour [3], replaced by a dark or light one when too close to the background under
    ``mask``: an object indistinguishable from its surroundings would make the task label noise."""
    colour = rng.uniform(0, 255, size=3)
    local = image[mask].mean(axis=0) if mask.any() else image.mean(axis=(0, 1))
    if np.abs(colour - local).sum() < 120:
        colour = np.where(local > 127, rng.uniform(0, 60, size=3), rng.uniform(195, 255, size=3))
    return colour


def paint(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, colour: np.ndarray,
          yy: np.ndarray) -> np.ndarray:
    """``image`` [H, W, 3] float with ``mask`` filled by ``colour`` under a fresh noise texture and a
    vertical shading ramp (``yy``: [H, W] row coordinates)."""
    size = image.shape[0]
    texture = rng.normal(0, 10, size=(size, image.shape[1], 1))
    texture = texture + rng.uniform(-20, 20) * (yy / size)[..., None]
    return np.where(mask[..., None], colour + texture, image)


def visible_masks(full_masks: list[np.ndarray], min_visible_pixels: int) -> list[np.ndarray | None]:
    """Per object in painting order, what later objects leave visible of its mask; None where fewer than
    ``min_visible_pixels`` pixels remain (the object is not annotated there)."""
    visible: list[np.ndarray | None] = []
    covered = np.zeros_like(full_masks[0]) if full_masks else None
    for mask in reversed(full_masks):
        left = mask & ~covered
        covered |= mask
        visible.append(left if left.sum() >= min_visible_pixels else None)
    return visible[::-1]


def render_image(rng: np.random.Generator, config: ShapesConfig) -> RenderedImage:
    """Draw one image; later objects occlude earlier ones."""
    size = config.image_size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    image = background(rng, config)
    num_objects = int(rng.integers(config.min_objects, config.max_objects + 1))
    full_masks: list[np.ndarray] = []
    category_ids: list[int] = []
    for _ in range(num_objects):
        category = int(rng.integers(len(CATEGORIES)))
        mask = rasterise(sample_shape(CATEGORIES[category], rng, config), yy, xx)
        image = paint(rng, image, mask, pick_colour(rng, image, mask), yy)
        full_masks.append(mask)
        category_ids.append(category + 1)
    # Annotation order is painting order (bottom to top), like the drawing.
    visible = visible_masks(full_masks, config.min_visible_pixels)
    kept = [(mask, category_id) for mask, category_id in zip(visible, category_ids) if mask is not None]
    pixels = np.clip(image, 0, 255).astype(np.uint8)
    return RenderedImage(pixels=pixels, masks=[m for m, _ in kept], category_ids=[c for _, c in kept])


def _image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    # One independent stream per image: any subset of images can be (re)generated alone, in any order.
    return np.random.default_rng([seed, DATASET_SPLITS.index(split), index])


def encode_mask(mask: np.ndarray) -> tuple[dict[str, Any], list[float], int]:
    """A visible mask [H, W] bool as COCO annotation fields: its RLE segmentation (counts as text), bbox
    [x, y, w, h] and area in pixels."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    segmentation = {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}
    return segmentation, [float(v) for v in mask_utils.toBbox(rle)], int(mask.sum())


def _annotation_records(image: RenderedImage, image_id: int) -> list[dict]:
    """COCO annotation records without ids (ids are assigned globally once all images are rendered)."""
    records = []
    for mask, category_id in zip(image.masks, image.category_ids):
        segmentation, bbox, area = encode_mask(mask)
        records.append(
            {
                "image_id": image_id,
                "category_id": category_id,
                "segmentation": segmentation,
                "area": area,
                "bbox": bbox,
                "iscrowd": 0,
            }
        )
    return records


def _render_chunk(args: tuple[ShapesConfig, str, int, int, str]) -> list[tuple[int, list[dict]]]:
    """Render images [start, stop) of a split, write their PNGs, return their annotation records per image."""
    config, split, start, stop, image_dir = args
    out = []
    for index in range(start, stop):
        image = render_image(_image_rng(config.seed, split, index), config)
        Image.fromarray(image.pixels).save(os.path.join(image_dir, f"{index:06d}.png"), optimize=False)
        out.append((index, _annotation_records(image, image_id=index + 1)))
    return out


def chunk_ranges(n: int, workers: int) -> Iterator[tuple[int, int]]:
    """[start, stop) ranges covering range(n) in at most four chunks per worker, of equal size but the last
    (several per worker, so that one that finishes early takes another)."""
    step = max(1, -(-n // (workers * 4)))
    for start in range(0, n, step):
        yield start, min(n, start + step)


def render_chunks(render_chunk: Callable[[Job], list[Item]], jobs: list[Job], workers: int) -> list[Item]:
    """The items ``render_chunk`` returns for every job, in job order: in a pool of ``workers`` processes when
    there is more than one worker and more than one job (``render_chunk`` is then pickled: a module-level
    function)."""
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            return [item for chunk in pool.map(render_chunk, jobs) for item in chunk]
    return [item for job in jobs for item in render_chunk(job)]


def build_split(root: Path, split: str, num_images: int, config: ShapesConfig, workers: int) -> dict:
    """Render one split's PNGs into ``root/split`` and return its COCO dict."""
    image_dir = root / split
    image_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(config, split, start, stop, str(image_dir)) for start, stop in chunk_ranges(num_images, workers)]
    results = render_chunks(_render_chunk, jobs, workers)

    images, annotations = [], []
    for index, records in sorted(results, key=lambda item: item[0]):
        size = config.image_size
        images.append({"id": index + 1, "file_name": f"{index:06d}.png", "width": size, "height": size})
        for record in records:
            annotations.append({"id": len(annotations) + 1, **record})
    return {
        "info": {
            "description": "mnc-bench procedural shapes dataset",
            "generator_version": GENERATOR_VERSION,
            "config": asdict(config),
            "split": split,
        },
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": coco_categories(),
    }


def coco_categories() -> list[dict[str, Any]]:
    """The COCO ``categories`` records of the shapes: ids 1.. in :data:`CATEGORIES` order."""
    return [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CATEGORIES)]


def summarize(coco: dict) -> str:
    names = {c["id"]: c["name"] for c in coco["categories"]}
    counts = Counter(names[a["category_id"]] for a in coco["annotations"])
    per_class = ", ".join(f"{name} {counts.get(name, 0)}" for name in names.values())
    return f"{len(coco['images'])} images, {len(coco['annotations'])} annotations ({per_class})"


def write_annotations(path: str | os.PathLike[str], data: dict[str, Any]) -> None:
    """Write a generated annotation file atomically, as compact JSON (no spaces: programs read it, not
    people)."""
    with atomic_open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, separators=(",", ":"))


def build_atomically(out_dir: str | os.PathLike[str], build: Callable[[Path], list[str]], *,
                     overwrite: bool = False) -> str:
    """Run ``build(staging)`` in a temporary sibling of ``out_dir``, then rename it into place, so an
    interrupted run never leaves a half-written dataset. ``build`` returns summary lines; returns them after
    "wrote OUT". Without ``overwrite``, a folder another process renamed into place meanwhile is kept and this
    copy dropped: processes reading that one never see it replaced."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(f"output directory {out} exists and is not empty (choose another --out or remove it)")
    staging = make_staging_dir(out)
    try:
        lines = build(staging)
        if overwrite and out.exists():
            shutil.rmtree(out)
        try:
            os.rename(staging, out)  # replaces an empty folder, refuses a non-empty one
        except OSError:
            if not (out.is_dir() and any(out.iterdir())):
                raise
            shutil.rmtree(staging)
            return f"kept {out}, written meanwhile by another process"
        fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return f"wrote {out}\n" + "\n".join(lines)


def write_shapes_dataset(
    out_dir: str | os.PathLike[str],
    *,
    num_train: int = 1000,
    num_val: int = 200,
    config: ShapesConfig | None = None,
    workers: int | None = None,
    overwrite: bool = False,
) -> str:
    """Write the dataset to ``out_dir`` ({train,val}/*.png, annotations/instances_{split}.json), atomically
    (:func:`build_atomically`). Returns a one-line summary per split.
    """
    config = config or ShapesConfig()
    workers = workers or min(2, os.cpu_count() or 1)

    def build(staging: Path) -> list[str]:
        lines = []
        for split, count in (("train", num_train), ("val", num_val)):
            coco = build_split(staging, split, count, config, workers)
            write_annotations(staging / "annotations" / f"instances_{split}.json", coco)
            lines.append(f"{split}: {summarize(coco)}")
        return lines

    return build_atomically(out_dir, build, overwrite=overwrite)
