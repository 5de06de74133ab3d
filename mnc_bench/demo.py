"""The default demo (``make demo``): the embedded synthetic dataset, generated once and validated."""

from __future__ import annotations

import os
from pathlib import Path

from mnc_bench.data.check import check_coco_dataset
from mnc_bench.data.synthetic import SPLITS, ShapesConfig, write_shapes_dataset
from mnc_bench.errors import UserError


def ensure_shapes_dataset(root: str | os.PathLike[str], *, num_train: int = 1000, num_val: int = 200,
                          config: ShapesConfig | None = None) -> bool:
    """Generate the shapes dataset at ``root`` unless a complete one is there. Returns True if it was written."""
    root = Path(root)
    if all((root / "annotations" / f"instances_{split}.json").is_file() for split in SPLITS):
        return False
    write_shapes_dataset(root, num_train=num_train, num_val=num_val, config=config, overwrite=root.exists())
    return True


def run_demo(out_dir: str | os.PathLike[str]) -> list[str]:
    """Generate (once) and validate the shapes dataset under ``out_dir``; return the lines to print."""
    data_root = Path(out_dir) / "data" / "shapes"
    written = ensure_shapes_dataset(data_root)
    lines = [f"{'generated' if written else 'reusing'} synthetic dataset at {data_root}"]
    for split in SPLITS:
        report = check_coco_dataset(data_root / "annotations" / f"instances_{split}.json",
                                    images_dir=data_root / split)
        if not report.ok:
            raise UserError(f"demo dataset failed validation: {report.problems[0]}")
        lines.append(report.summary())
    return lines
