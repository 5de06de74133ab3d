"""Inputs of the models bench: synthetic shapes images, as BGR arrays and as train-pipeline records."""

from __future__ import annotations

from typing import Any

import numpy as np

IMAGE_POOL = 16  # distinct synthetic images per input size


def render_images(size: int, seed: int) -> list[Any]:
    """Synthetic shapes images (RenderedImage: RGB pixels, visible masks, 1-based categories)."""
    from mnc_bench.data.synthetic import ShapesConfig, render_image

    config = ShapesConfig(image_size=size, seed=seed)
    return [render_image(np.random.default_rng([seed, index]), config) for index in range(IMAGE_POOL)]


def bgr(image: Any) -> np.ndarray:
    """A rendered image's pixels as [H, W, 3] uint8 BGR, the channel order of an image file loaded by mmcv."""
    return np.ascontiguousarray(image.pixels[..., ::-1])


def train_record(image: Any, image_id: int) -> dict[str, Any]:
    """A rendered image as the input of a train pipeline that starts with LoadImageFromNDArray."""
    from pycocotools import mask as mask_utils

    instances = []
    for mask, category_id in zip(image.masks, image.category_ids):
        rows, columns = np.nonzero(mask)
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        instances.append({
            "bbox": [float(columns.min()), float(rows.min()),
                     float(columns.max()) + 1, float(rows.max()) + 1],
            "bbox_label": category_id - 1,
            "mask": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
            "ignore_flag": 0,
        })
    return {"img": bgr(image), "img_id": image_id, "instances": instances}
