"""Turn COCO segmentations (polygons, uncompressed or compressed RLE) into validated compressed RLE.

pycocotools' C code trusts its input: an RLE whose runs do not add up to height x width makes it read or
write past the mask buffer, and a 4-number "polygon" is silently taken for a box. Everything that reaches
pycocotools or faster-coco-eval therefore passes through here first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from mnc_bench.data.predicates import is_int, is_number

# A polygon vertex may sit this far outside the image (pixel-edge coordinates such as -0.5 or w + 0.5).
POLYGON_SLACK = 1.0
# pycocotools decodes each RLE number in a C int: six 5-bit chunks are the most that cannot overflow.
_MAX_CHARS_PER_NUMBER = 6


class SegmentationError(ValueError):
    """A segmentation is malformed; the message says why (the caller adds which record)."""


def to_rle(segmentation: Any, height: int, width: int) -> dict[str, Any]:
    """Convert one segmentation to compressed RLE (``counts`` as ``bytes``) for an image of this size.

    Compressed RLE strings are only checked for type and size here; check their runs in bulk with
    :func:`compressed_counts_valid`.
    """
    if isinstance(segmentation, dict):
        return _rle_to_compressed(segmentation, height, width)
    if isinstance(segmentation, list):
        return _polygons_to_rle(segmentation, height, width)
    kind = type(segmentation).__name__
    raise SegmentationError(f"expected polygons (a list) or RLE (an object), not {kind}")


def _rle_to_compressed(rle: dict[str, Any], height: int, width: int) -> dict[str, Any]:
    missing = [key for key in ("size", "counts") if key not in rle]
    if missing:
        raise SegmentationError(f"RLE lacks {missing[0]!r}")
    size = rle["size"]
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(is_int(v) for v in size)):
        raise SegmentationError(f"RLE 'size' must be [height, width], got {size!r}")
    if [int(size[0]), int(size[1])] != [height, width]:
        raise SegmentationError(
            f"RLE 'size' {[int(v) for v in size]} disagrees with the image size [{height}, {width}]"
        )
    counts = rle["counts"]
    if isinstance(counts, str):
        return {"size": [height, width], "counts": counts.encode("utf-8")}
    if isinstance(counts, bytes):
        return {"size": [height, width], "counts": counts}
    if isinstance(counts, list):
        runs = np.asarray(counts)
        if runs.ndim != 1 or runs.dtype.kind not in "iu":
            raise SegmentationError("uncompressed RLE 'counts' must be a list of integers")
        if (runs < 0).any() or int(runs.sum()) != height * width:
            raise SegmentationError(
                f"uncompressed RLE 'counts' must be non-negative and add up to {height * width} pixels"
            )
        return mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    kind = type(counts).__name__
    raise SegmentationError(f"RLE 'counts' must be a string or a list of integers, not {kind}")


def _polygons_to_rle(polygons: list[Any], height: int, width: int) -> dict[str, Any]:
    if not polygons:
        raise SegmentationError("empty polygon list")
    checked = []
    for k, polygon in enumerate(polygons):
        if not isinstance(polygon, list) or not all(is_number(v) for v in polygon):
            raise SegmentationError(f"polygon {k} must be a list of numbers")
        coords = np.asarray(polygon, dtype=np.float64)
        if len(coords) < 6 or len(coords) % 2:
            raise SegmentationError(f"polygon {k} needs an even number (>= 6) of coordinates: {len(coords)}")
        if not np.isfinite(coords).all():
            raise SegmentationError(f"polygon {k} has a NaN or infinite coordinate")
        xs, ys = coords[0::2], coords[1::2]
        if (
            xs.min() < -POLYGON_SLACK
            or ys.min() < -POLYGON_SLACK
            or xs.max() > width + POLYGON_SLACK
            or ys.max() > height + POLYGON_SLACK
        ):
            raise SegmentationError(f"polygon {k} lies outside the {width}x{height} image")
        checked.append(coords.tolist())
    return mask_utils.merge(mask_utils.frPyObjects(checked, height, width))


def compressed_counts_valid(counts: Sequence[bytes], num_pixels: np.ndarray) -> np.ndarray:
    """For each COCO-compressed RLE string, whether it decodes to non-negative runs adding up to exactly
    ``num_pixels[i]`` pixels.

    Mirrors pycocotools' ``rleFrString``: each character carries 5 bits (offset by 48), bit 0x20 says the
    number continues, bit 0x10 of a number's last character is its sign, and from the fourth run on each
    run is stored as the difference to the run two places earlier. Vectorised, in chunks of strings to
    bound memory: a Python loop over characters would dominate the evaluation of a large results file.
    """
    num_pixels = np.asarray(num_pixels, dtype=np.int64)
    lengths = np.fromiter(map(len, counts), dtype=np.int64, count=len(counts))
    cumulative = np.cumsum(lengths)
    ok = np.empty(len(counts), dtype=bool)
    start = 0
    while start < len(counts):
        chunk_end = cumulative[start] - lengths[start] + _CHUNK_CHARS
        stop = max(start + 1, int(np.searchsorted(cumulative, chunk_end, side="right")))
        ok[start:stop] = _counts_valid(counts[start:stop], lengths[start:stop], num_pixels[start:stop])
        start = stop
    return ok


_CHUNK_CHARS = 1 << 22  # characters per vectorised pass: ~100 MB of temporaries


def _counts_valid(counts: Sequence[bytes], lengths: np.ndarray, num_pixels: np.ndarray) -> np.ndarray:
    n = len(counts)
    chars = np.frombuffer(b"".join(counts), dtype=np.uint8)
    if len(chars) == 0:
        return num_pixels == 0
    offsets = np.cumsum(lengths) - lengths
    ok = np.ones(n, dtype=bool)

    def reject(char_indices: np.ndarray) -> None:
        ok[np.searchsorted(offsets, char_indices, side="right") - 1] = False

    reject(np.flatnonzero((chars < 48) | (chars >= 112)))
    code = (chars - 48) & 0x3F  # rejected strings still flow through the arithmetic below, harmlessly
    continues = (code & 0x20) != 0
    last_char = np.zeros(len(chars), dtype=bool)
    last_char[(offsets + lengths - 1)[lengths > 0]] = True
    reject(np.flatnonzero(continues & last_char))  # C would read past the string's end
    ends = ~continues | last_char  # numbers never straddle two strings

    is_start = np.empty_like(ends)
    is_start[0] = True
    is_start[1:] = ends[:-1]
    index = np.arange(len(chars), dtype=np.int32)
    position = index - np.maximum.accumulate(np.where(is_start, index, 0))
    reject(np.flatnonzero(position >= _MAX_CHARS_PER_NUMBER))
    position = np.minimum(position, _MAX_CHARS_PER_NUMBER - 1)
    values = np.add.reduceat((code & 0x1F).astype(np.int32) << (5 * position), np.flatnonzero(is_start))
    values = values.astype(np.int64)
    last = np.flatnonzero(ends)
    negative = (code[last] & 0x10) != 0
    values[negative] -= np.left_shift(1, 5 * (position[last][negative].astype(np.int64) + 1))

    numbers_so_far = np.cumsum(ends, dtype=np.int64)
    first_number = np.where(offsets > 0, numbers_so_far[np.maximum(offsets - 1, 0)], 0)
    numbers_per_string = np.diff(np.append(first_number, len(values)))
    string_of_number = np.repeat(np.arange(n), numbers_per_string)
    index_in_string = np.arange(len(values)) - first_number[string_of_number]
    # Undo the delta coding: odd runs and even runs from the third on are running sums within a string.
    odd = (index_in_string & 1) == 1
    runs = values
    for chain in (odd, ~odd & (index_in_string > 0)):
        chained = np.where(chain, values, 0)
        total = np.cumsum(chained)
        before_string = (total - chained)[np.minimum(first_number, len(values) - 1)]
        runs = np.where(chain, total - before_string[string_of_number], runs)
    ok[string_of_number[runs < 0]] = False
    ok &= np.bincount(string_of_number, weights=runs, minlength=n) == num_pixels
    return ok
