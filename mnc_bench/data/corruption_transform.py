"""``CorruptImage``: the mmcv pipeline step of a corrupted test pass (registered as a transform in mmdet's
registry by :func:`mnc_bench.registration.register_all`).

Placed right after ``LoadImageFromFile``, it corrupts the image as loaded, before any resize, so a corruption
acts at the image's own resolution as in the benchmark. mmcv loads images as BGR while the corruptions expect
RGB (colour-dependent ones such as frost, fog, brightness, saturation act on the channels), so the image is
turned to RGB and back around the corruption. mmdet's own ``Corrupt`` transform corrupts the BGR array as it
is and draws from the unseeded global generator; numbers from it are not identical to ours.

Corrupted images are kept in memory for the life of the process (up to :data:`CACHE_BYTES`): a pass over
several models of a suite (``mnc-bench robustness``) corrupts each image once, which matters because one
corruption (glass blur, a Python loop over pixels) costs about 2 s per 128 px image. The cache is keyed by the
image file, its id, the corruption, the severity and the seed, and returns copies.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
from mmcv.transforms import BaseTransform

from mnc_bench.evaluation.corruptions import (
    DEFAULT_SEED,
    check_severities,
    corrupt_image,
    resolve_corruptions,
)


class CorruptImage(BaseTransform):
    """Corrupt ``results['img']`` ((H, W, 3) uint8 BGR, or (H, W) grey) with one benchmark corruption at one
    severity, deterministically per (``results['img_id']``, corruption, severity, ``seed``)."""

    def __init__(self, corruption: str, severity: int, seed: int = DEFAULT_SEED) -> None:
        (self.corruption,) = resolve_corruptions([corruption])
        (self.severity,) = check_severities([severity])
        self.seed = int(seed)

    def transform(self, results: dict[str, Any]) -> dict[str, Any]:
        key = (results.get("img_path"), int(results["img_id"]), self.corruption, self.severity, self.seed)
        cached = _CACHE.get(key)
        if cached is None:
            cached = self._corrupt(results["img"], key[1])
            _CACHE.put(key, cached)
        results["img"] = cached.copy()
        return results

    def _corrupt(self, image: np.ndarray, image_id: int) -> np.ndarray:
        grey = image.ndim == 2
        rgb = np.stack([image] * 3, axis=-1) if grey else np.ascontiguousarray(image[..., ::-1])
        out = corrupt_image(rgb.astype(np.uint8), self.corruption, self.severity, image_id=image_id,
                            seed=self.seed)
        return out[..., 0].copy() if grey else np.ascontiguousarray(out[..., ::-1])

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(corruption={self.corruption!r}, severity={self.severity}, "
                f"seed={self.seed})")


CACHE_BYTES = 4 * 2**30  # a full pass of 200 shapes images (75 conditions at 128 px) takes about 0.7 GiB


class _ImageCache:
    """Least-recently-used images up to a byte budget."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._bytes = 0

    def get(self, key: tuple) -> np.ndarray | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key: tuple, image: np.ndarray) -> None:
        if key in self._items or image.nbytes > self.max_bytes:
            return
        self._items[key] = image
        self._bytes += image.nbytes
        while self._bytes > self.max_bytes:
            _, old = self._items.popitem(last=False)
            self._bytes -= old.nbytes

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0


_CACHE = _ImageCache(CACHE_BYTES)
