"""Dataset generation speed: the default shapes dataset (``mnc-bench bench data``)."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def bench_data(
    num_train: int = 1000, num_val: int = 200, *, print_fn: Callable[[str], None] = print
) -> dict[str, float]:
    """Seconds to generate the shapes dataset (default: 1000 train + 200 val images) in a temporary folder."""
    from mnc_bench.data.synthetic import write_shapes_dataset

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        write_shapes_dataset(Path(tmp) / "shapes", num_train=num_train, num_val=num_val)
        seconds = time.perf_counter() - start
        images = sum(1 for _ in (Path(tmp) / "shapes").glob("*/*.png"))
    print_fn(f"shapes dataset, {num_train} + {num_val} images: {seconds:.1f} s")
    return {"images": images, "shapes_generate_seconds": seconds}
