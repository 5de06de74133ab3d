"""Benchmarks that print figures (``mnc-bench bench``, ``make bench``); never timed assertions in tests.

Speed is reported as ratios measured side by side in one run, so a noisy machine shifts every row alike.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mnc_bench.errors import UserError

SECTIONS = ("data", "eval", "models")
# The small CPU configs compared on shapes; the first is the reference row of the ratios.
DEFAULT_MODEL_CONFIGS = (
    "configs/mask_rcnn/mask_rcnn_shapes.py",
    "configs/panet/panet_shapes.py",
    "configs/mnc/mnc_3stage_shapes.py",
    "configs/mnc/mnc_5stage_shapes.py",
)


def bench_data(print_fn: Callable[[str], None] = print) -> dict[str, float]:
    """Seconds to generate the default shapes dataset (1000 train + 200 val images)."""
    from mnc_bench.data.synthetic import write_shapes_dataset

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        write_shapes_dataset(Path(tmp) / "shapes", num_train=1000, num_val=200)
        seconds = time.perf_counter() - start
    print_fn(f"shapes dataset, 1000 + 200 images: {seconds:.1f} s")
    return {"shapes_generate_seconds": seconds}


def bench_models(
    configs: Sequence[str] = DEFAULT_MODEL_CONFIGS,
    *,
    iters: int = 30,
    warmup: int = 5,
    data_root: str | None = None,
    print_fn: Callable[[str], None] = print,
) -> dict[str, dict[str, float]]:
    """Train each config for ``warmup + iters`` iterations (no validation, no checkpoints) and report the mean
    seconds per training iteration after warm-up, as read from mmengine's iteration timer."""
    if iters < 1 or warmup < 0:
        raise UserError(f"--iters must be >= 1 and warm-up >= 0, got {iters}, {warmup}")
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for config in configs:
            options = [
                f"train_cfg.max_iters={warmup + iters}",
                # No validation: the loop would otherwise validate after the last iteration.
                "val_cfg=None", "val_dataloader=None", "val_evaluator=None",
                "param_scheduler=[]",
                "default_hooks.checkpoint=None",
                # One un-smoothed `time` record per iteration in scalars.json.
                "default_hooks.logger.interval=1", "log_processor.window_size=1",
            ]
            if data_root is not None:
                options.append(f"data_root={data_root}")
            work_dir = Path(tmp) / Path(config).stem
            # One process per model: mmengine's visualizer and registries are process-wide singletons.
            command = [sys.executable, "-m", "mnc_bench.cli", "train", config, "--work-dir", str(work_dir),
                       "--cfg-options", *options]
            completed = subprocess.run(command, capture_output=True, text=True)
            if completed.returncode != 0:
                last = (completed.stderr.strip().splitlines() or ["(no output)"])[-1]
                raise UserError(f"bench: training {config} failed: {last}")
            times = _iteration_seconds(work_dir)[warmup:]
            figures[Path(config).stem] = {"train_s_per_iter": statistics.fmean(times),
                                          "train_s_per_iter_stdev": statistics.pstdev(times)}
    reference = next(iter(figures.values()))["train_s_per_iter"]
    width = max(map(len, figures))
    print_fn(f"{'config':<{width}}  s/iter   ±      ratio to {next(iter(figures))}")
    for name, row in figures.items():
        row["ratio"] = row["train_s_per_iter"] / reference
        print_fn(f"{name:<{width}}  {row['train_s_per_iter']:.3f}  {row['train_s_per_iter_stdev']:.3f}  "
                 f"{row['ratio']:.2f}x")
    return figures


def _iteration_seconds(work_dir: Path) -> list[float]:
    """Per-iteration wall time that mmengine's IterTimerHook logged to ``<run>/vis_data/scalars.json``."""
    logs = sorted(work_dir.glob("*/vis_data/scalars.json"))
    if not logs:
        raise RuntimeError(f"no scalars.json under {work_dir}: was the LocalVisBackend removed from the config?")
    records = [json.loads(line) for line in logs[-1].read_text().splitlines() if line.strip()]
    return [float(r["time"]) for r in records if "time" in r and "loss" in r]


def run_bench(sections: Sequence[str] = SECTIONS, *, iters: int = 30, print_fn: Callable[[str], None] = print
              ) -> dict[str, Any]:
    """Run the chosen benchmark sections in order and return every figure by section."""
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise UserError(f"unknown bench section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    figures: dict[str, Any] = {}
    for section in sections:
        print_fn(f"== {section} ==")
        if section == "data":
            figures["data"] = bench_data(print_fn)
        elif section == "eval":
            from mnc_bench.evaluation.bench import run_benchmark

            figures["eval"] = run_benchmark(print_fn=print_fn)
        else:
            figures["models"] = bench_models(iters=iters, print_fn=print_fn)
    return figures
