"""Random COCO-format ground truth and imperfect predictions for the evaluator tests: three classes, every
COCO size bucket, crowd regions, duplicates, wrong classes and false positives."""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

H, W = 120, 160


def encode(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode()}


# Ellipse radii giving COCO small (< 32^2 px), medium and large (> 96^2 px) areas.
SIZES = ((2, 9), (20, 28), (56, 59))


def random_blob(rng: np.random.Generator, radii: tuple[int, int]) -> np.ndarray:
    ry, rx = rng.uniform(*radii, size=2)
    cy, cx = rng.uniform(ry, H - ry), rng.uniform(rx, W - rx)
    yy, xx = np.mgrid[:H, :W]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


def random_dataset(seed: int, num_images: int = 12) -> tuple[dict, list[dict]]:
    """Ground truth with three classes and a few crowd regions, and imperfect scored predictions:
    shifted copies of the ground truth, duplicates, wrong classes and random false positives."""
    rng = np.random.default_rng(seed)
    images = [{"id": 10 + i, "height": H, "width": W, "file_name": f"{i}.png"} for i in range(num_images)]
    categories = [{"id": c, "name": name} for c, name in ((1, "circle"), (2, "square"), (7, "star"))]
    annotations, results = [], []
    for image in images:
        for _ in range(rng.integers(1, 5)):
            mask = random_blob(rng, SIZES[rng.integers(3)])
            rle = encode(mask)
            category_id = int(rng.choice([1, 2, 7]))
            annotations.append({
                "id": len(annotations) + 1, "image_id": image["id"], "category_id": category_id,
                "segmentation": rle, "area": float(mask.sum()), "bbox": mask_utils.toBbox(rle).tolist(),
                "iscrowd": int(rng.random() < 0.1),
            })
            for _ in range(rng.integers(0, 3)):
                shifted = np.roll(mask, tuple(rng.integers(-2, 3, size=2)), axis=(0, 1))
                label = category_id if rng.random() < 0.8 else int(rng.choice([1, 2, 7]))
                results.append({"image_id": image["id"], "category_id": label,
                                "segmentation": encode(shifted), "score": float(rng.random())})
        for _ in range(rng.integers(0, 3)):
            results.append({"image_id": image["id"], "category_id": int(rng.choice([1, 2, 7])),
                            "segmentation": encode(random_blob(rng, SIZES[rng.integers(2)])),
                            "score": float(rng.random())})
        # A diagonal line: a small mask (< 32^2 px) in a medium box, so sizing by box vs mask matters.
        line = np.zeros((H, W), dtype=bool)
        start = rng.integers(0, 40)
        line[np.arange(start, start + 60), np.arange(start, start + 60)] = True
        results.append({"image_id": image["id"], "category_id": int(rng.choice([1, 2, 7])),
                        "segmentation": encode(line), "score": float(rng.random())})
    for record in results:
        box = mask_utils.toBbox(record["segmentation"]) + rng.uniform(-2, 2, size=4)
        record["bbox"] = box.clip(0).tolist()
    return {"images": images, "annotations": annotations, "categories": categories}, results
