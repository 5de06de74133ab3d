"""Profiles of one call for ``mnc-bench bench models --profile DIR``: where the time goes, per op and per
Python function, written as text tables (one file per model, size and phase)."""

from __future__ import annotations

import cProfile
import io
import pstats
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mnc_bench.io import atomic_open

ROWS = 30


def profile_call(function: Callable[[], Any], path: Path, title: str) -> None:
    """Run `function` twice, under torch.profiler (self time per op; input shapes tell the call sites apart)
    and under cProfile (cumulative time per Python function: the Python-side overhead); write both tables."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities, record_shapes=True) as profiler:
        function()
    ops = profiler.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total", row_limit=ROWS, max_name_column_width=40, max_shapes_column_width=70)
    python = cProfile.Profile()
    python.runcall(function)
    stream = io.StringIO()
    pstats.Stats(python, stream=stream).strip_dirs().sort_stats("cumulative").print_stats(ROWS)
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(f"# {title}\n\n## torch.profiler: ops by self CPU time\n\n{ops}\n\n"
                     f"## cProfile: Python functions by cumulative time\n\n{stream.getvalue()}")


def profile_inference(directory: Path, size: int, variants: Sequence[Any], image: np.ndarray) -> None:
    """One inference per bench variant (a model at a score threshold)."""
    for variant in variants:
        threshold = f"{variant.score_thr:g}"
        path = directory / f"{variant.stem}_{size}px_infer_thr{threshold}.txt"
        profile_call(partial(variant.predictor, image), path,
                     f"{variant.stem}: inference of one {size} px image at score threshold {threshold}")


def profile_training(directory: Path, size: int, trainers: Sequence[Any]) -> None:
    """One training iteration per bench trainer."""
    for trainer in trainers:
        profile_call(lambda trainer=trainer: trainer.run(trainer.batch(0)),
                     directory / f"{trainer.stem}_{size}px_train.txt",
                     f"{trainer.stem}: one training iteration, batch {trainer.batch_size}, {size} px")
