"""Validation of COCO run-length encodings; pycocotools decodes malformed strings without complaint."""

from __future__ import annotations


def compressed_run_lengths(counts: str) -> list[int]:
    """Decode COCO's compressed RLE string (pycocotools' rleFrString) into run lengths.

    Each run is a little-endian sequence of 5-bit groups offset by 48, bit 0x20 meaning "more groups follow";
    from the third run on, runs are stored as differences to the run two before.
    """
    runs: list[int] = []
    position = 0
    while position < len(counts):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(counts):
                raise ValueError("truncated run length")
            code = ord(counts[position]) - 48
            if not 0 <= code < 64:
                raise ValueError(f"invalid character {counts[position]!r} at position {position}")
            value |= (code & 0x1F) << (5 * shift)
            more = bool(code & 0x20)
            position += 1
            shift += 1
            if not more and code & 0x10:
                value |= -1 << (5 * shift)
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def check_rle_counts(counts: str | list[int], height: int, width: int) -> None:
    """Raise ValueError unless the RLE's runs are non-negative and cover exactly height*width pixels."""
    runs = compressed_run_lengths(counts) if isinstance(counts, str) else list(counts)
    if any(not isinstance(run, int) or run < 0 for run in runs):
        raise ValueError("negative or non-integer run length")
    if sum(runs) != height * width:
        raise ValueError(f"run lengths cover {sum(runs)} pixels, expected {height}x{width}={height * width}")
