"""Suite files for the tests: Mask R-CNN on the shapes fixture with a schedule of a few iterations."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
import textwrap
from pathlib import Path
from typing import Any

import yaml

MASK_RCNN_SHAPES = "configs/mask_rcnn/mask_rcnn_shapes.py"


def write_suite(path: Path, data_root: Path, cfg_options: Mapping[str, Any], *, seeds: Iterable[int] = (0,),
                extra: Mapping[str, Any] | None = None) -> Path:
    """A suite over ``MASK_RCNN_SHAPES`` reading ``data_root``; ``extra`` adds top-level keys (grid, metrics...)."""
    suite = {"base": MASK_RCNN_SHAPES, "seeds": list(seeds),
             "cfg_options": {"data_root": f"{data_root}/", **cfg_options}, **(extra or {})}
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def tiny_suite(tmp_path: Path, data_root: Path, *, name: str = "tiny", iters: int = 3, seeds=(0, 1, 2),
               extra: str = "", log_interval: int = 1) -> Path:
    """A suite that checkpoints every iteration (for the kill-and-resume tests); ``extra`` is YAML appended."""
    path = write_suite(tmp_path / f"{name}.yaml", data_root, {
        "train_cfg.max_iters": iters,
        "train_dataloader.batch_size": 2,
        "default_hooks.logger.interval": log_interval,
        "default_hooks.checkpoint.interval": 1,
        "default_hooks.checkpoint.max_keep_ckpts": 5,
        "model.test_cfg.rcnn.max_per_img": 10,
    }, seeds=seeds)
    if extra:
        path.write_text(path.read_text() + textwrap.dedent(extra))
    return path
