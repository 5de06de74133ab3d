"""The demo (``make demo``): the ``demo`` suite end to end, then its table.

Four shapes models x 2 seeds on a short schedule (configs/ablations/demo.yaml); the runner generates and
validates the demo's synthetic dataset before the first run, trains and tests every run in its own process,
and the collected table (also written as parquet + CSV) is printed at the end, and `mnc-bench report` writes
the demo's report.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from mnc_bench.suites.contract import COLLECT_TABLES, RunState

DEMO_SUITE = "demo"


def run_demo(out_dir: str | os.PathLike[str], *, workers: int = 2,
             report_dir: str | os.PathLike[str] | None = None, echo: Callable[[str], None] = print) -> int:
    """Run (or finish) the demo suite into ``out_dir``, print its table and write its report into
    ``report_dir``; 1 if a run failed or a model's mask AP is zero."""
    from mnc_bench.reporting import write_report
    from mnc_bench.suites.collect import collect, format_summary, write_table
    from mnc_bench.suites.commands import format_timing, local_executor
    from mnc_bench.suites.runner import run_suite
    from mnc_bench.suites.spec import load_suite

    started_at = time.time()
    out_dir = Path(out_dir)
    executor = local_executor(workers, None, prestart=True)  # workers load torch/mmdet during the validation
    try:
        suite = load_suite(DEMO_SUITE)
        record = run_suite(suite, out_dir, executor=executor, started_at=started_at, echo=echo)
    finally:
        executor.close()
    table = collect(out_dir)
    paths = write_table(table, out_dir / COLLECT_TABLES[0])
    echo("")
    echo(format_summary(table, suite.metrics))
    echo("")
    echo(f"table: {', '.join(str(p) for p in paths)}")
    if report_dir is not None:
        written = write_report([str(out_dir)], report_dir)
        echo(f"report: {written.markdown}, {written.html}")
    echo(format_timing(record))
    echo("Demo numbers come from a schedule of minutes on a small synthetic set: they show the harness "
         "working, not what the models can do (docs/results.md: suite mnc_vs_successors, the full schedule).")
    failed = table[table["status"] != RunState.DONE]
    zero = sorted(set(table.loc[(table["status"] == RunState.DONE) & ~(table["coco/segm/AP"] > 0), "model"]))
    if not failed.empty:
        echo(f"{len(failed)} run(s) did not finish: mnc-bench status {out_dir}")
    if zero:
        echo(f"mask AP is zero for {', '.join(zero)}")
    return 1 if (not failed.empty or zero) else 0
