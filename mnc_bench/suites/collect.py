"""``mnc-bench collect``: a suite's results as one tidy table (a row per run), parquet and CSV, with pandas.

Columns (the schema ``mnc-bench report`` reads, defined in :mod:`~mnc_bench.suites.contract`): suite,
run_id, status, failure_reason, config, model, seed, variant, ``axis.<key>`` per suite axis, every standard
metric key (NaN when not measured) plus the suite's extra ``metrics`` and the ``robustness/...`` keys of the
runs' ``robustness.json``, batch_size, lr, max_iters, train_time_s, s_per_iter, threads (torch threads of the
run), peak_mem_mb, params, git_commit, cpu_share (the share of its cores a CPU run had), run_dir,
test_ann_file, test_img_dir, reused_from (``<suite>/<run-id>`` the run was copied from, or empty).
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mnc_bench.errors import UserError
from mnc_bench.evaluation.errors import TIDE_METRIC_NAMES
from mnc_bench.evaluation.robustness import PREFIX as ROBUSTNESS_PREFIX
from mnc_bench.evaluation.robustness import RECORD_FILE, read_summary
from mnc_bench.io import atomic_open, check_writable_output
from mnc_bench.suites.contract import (
    AXIS_PREFIX,
    COCO_IOU_TYPES,
    CPU_SHARE,
    FINISHED_STATES,
    FLOAT_COLUMNS,
    INTEGER_COLUMNS,
    LEADING_COLUMNS,
    METRICS_JSON,
    RUN_STATS_COLUMNS,
    RUN_STATS_JSON,
    STANDARD_METRICS,
    TABLE_FORMATS,
    TEXT_COLUMNS,
    TRAILING_COLUMNS,
    RunRecord,
    RunState,
    axis_column,
    table_columns,
)
from mnc_bench.suites.record import read_suite_record
from mnc_bench.suites.rundir import RunDir
from mnc_bench.suites.status import ordered_run_dirs

# The metric columns of every table: the contract's, then TIDE's (named with its error types).
COLLECTED_METRICS = [*STANDARD_METRICS,
                     *(f"tide/{kind}/{name}" for kind in COCO_IOU_TYPES for name in TIDE_METRIC_NAMES)]
# run_stats.json's figures (its git commit is text).
NUMERIC_RUN_STATS = [column for column in RUN_STATS_COLUMNS if column not in TEXT_COLUMNS]
# What the printed summary shows when the suite names no metrics.
SUMMARY_METRICS = ["coco/segm/AP", "coco/segm/AP50", "coco/bbox/AP", "voc_sds/mAP@0.5", "voc_mnc/mAP@0.5"]


def collect(suite_dir: str | Path, *, include_all: bool = False) -> pd.DataFrame:
    """The tidy table of the runs in ``suite_dir`` (the suite's latest plan; ``include_all``: every run
    dir)."""
    suite_dir = Path(suite_dir)
    if not suite_dir.is_dir():
        raise UserError(f"no results at {suite_dir} (run the suite first: mnc-bench run SUITE)")
    record = read_suite_record(suite_dir)
    axes: list[str] = list(record.get("axes") or [])
    metrics = list(dict.fromkeys([*COLLECTED_METRICS, *(record.get("metrics") or [])]))
    rows = []
    for run_dir, _ in ordered_run_dirs(suite_dir, include_all=include_all):
        row = _row(run_dir, metrics)
        for key in row.pop("_axes"):
            if key not in axes:
                axes.append(key)
        rows.append(row)
    found = {key for row in rows for key in row if key.startswith(ROBUSTNESS_PREFIX)}
    robustness = sorted(found - set(metrics), key=robustness_order)
    metrics += robustness
    return _typed(pd.DataFrame(rows, columns=table_columns(axes, metrics)), axes, metrics)


def keep_gone_runs(table: pd.DataFrame, previous: pd.DataFrame,
                   planned: Collection[str] | None = None) -> pd.DataFrame:
    """``table`` plus the finished (done or failed) runs of an earlier collected table ``previous`` whose
    folders are gone, as they were collected: the table stays the record of every finished run after its run
    folders are deleted (a scratch file system purged, a machine given back). Runs found again are collected
    afresh; runs the earlier table saw unfinished are dropped with their folders, and so are runs no longer
    ``planned`` (when given: the suite's latest plan)."""
    gone = previous[~previous["run_id"].isin(table["run_id"]) & previous["status"].isin(FINISHED_STATES)]
    if planned is not None:
        gone = gone[gone["run_id"].isin(planned)]
    return _appended(table, gone)


def reuse_rows(table: pd.DataFrame, plan: Sequence[RunRecord],
               others: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """``table`` plus the runs of the suite's ``plan`` that it lacks but that are done under another suite
    (``others``: suite name -> collected table), with this suite's axes and ``reused_from`` naming the source:
    the runner's reuse by run id (same resolved config and seed), for runs whose folders are gone."""
    missing = {run.run_id: run for run in plan if run.run_id not in set(table["run_id"])}
    rows = []
    for name, other in others.items():
        for _, row in other[other["status"] == RunState.DONE].iterrows():
            run = missing.pop(row["run_id"], None)
            if run is None:
                continue
            reused = {key: value for key, value in row.items() if not key.startswith((AXIS_PREFIX, "_"))}
            reused.update(suite=run.suite, config=run.config, model=run.model, variant=run.variant,
                          reused_from=row["reused_from"] or f"{name}/{run.run_id}")
            reused.update({axis_column(key): value for key, value in run.axes.items()})
            rows.append(reused)
    return _appended(table, pd.DataFrame(rows))


def _appended(table: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """``table`` with ``rows`` below it, in the columns of both (axes, then metrics, in the contract's order)
    and the contract's types."""
    if rows.empty:
        return table
    known = [c for c in dict.fromkeys([*table.columns, *rows.columns]) if not c.startswith("_")]
    axes = [c[len(AXIS_PREFIX):] for c in known if c.startswith(AXIS_PREFIX)]
    fixed = {*LEADING_COLUMNS, *TRAILING_COLUMNS}
    metrics = [c for c in known if c not in fixed and not c.startswith(AXIS_PREFIX)]
    both = pd.concat([table.astype(object), rows.astype(object)], ignore_index=True)
    return _typed(both.reindex(columns=table_columns(axes, metrics)), axes, metrics)


def _typed(table: pd.DataFrame, axes: list[str], metrics: list[str]) -> pd.DataFrame:
    """The table with the contract's column types: axis values as collected, metrics and the float run
    statistics as float64, the integer ones as nullable Int64, text as str."""
    for key in axes:
        table[axis_column(key)] = _axis_column(table[axis_column(key)])
    for column in [*metrics, *FLOAT_COLUMNS]:
        table[column] = pd.to_numeric(table[column], errors="coerce").astype("float64")
    for column in INTEGER_COLUMNS:
        table[column] = pd.to_numeric(table[column], errors="coerce").astype("Int64")
    for column in TEXT_COLUMNS:
        table[column] = table[column].fillna("").astype(str)
    return table


def _row(run_dir: RunDir, metrics: list[str]) -> dict[str, Any]:
    run = run_dir.read_run()
    status = run_dir.read_status()
    done = status["state"] == RunState.DONE
    values = _numbers(run_dir, METRICS_JSON, required=True) if done else {}
    stats = _numbers(run_dir, RUN_STATS_JSON, required=False, keys=NUMERIC_RUN_STATS)
    row: dict[str, Any] = dict(
        suite=run.suite, run_id=run_dir.run_id, status=status["state"],
        failure_reason=(status.get("exit_reason") or "") if status["state"] == RunState.FAILED else "",
        run_dir=str(run_dir.path), reused_from=status.get("reused_from") or "",
        config=run.config, model=run.model, seed=run.seed, variant=run.variant,
        test_ann_file=run.test_ann_file, test_img_dir=run.test_img_dir, _axes=list(run.axes),
    )
    row.update({axis_column(key): value for key, value in run.axes.items()})
    row.update({key: math.nan if values.get(key) is None else values[key] for key in metrics})
    if done:
        row.update(read_summary(run_dir.file(RECORD_FILE)))
    row.update({key: stats.get(key) for key in RUN_STATS_COLUMNS})
    row[CPU_SHARE] = cpu_share(stats)
    return row


def _numbers(run_dir: RunDir, name: str, *, required: bool, keys: Collection[str] | None = None
             ) -> dict[str, Any]:
    """A run's JSON object of figures (``keys``: the ones that must be numbers or null; default all); a
    UserError naming the file and key where it is missing (``required``), unreadable or holds a
    non-number, so that a table never shows a damaged record as NaN."""
    path = run_dir.file(name)
    data = run_dir.read_json(name)
    if data is None and not (required or path.exists()):
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: {'missing' if not path.exists() else 'not a JSON object'} "
                        f"(the run's {'figures' if required else 'statistics'}; run it again or delete its "
                        "folder)")
    for key in data if keys is None else [k for k in keys if k in data]:
        value = data[key]
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise UserError(f"{path}: {key}: expected a number or null, got {value!r}")
    return data


def cpu_share(stats: Mapping[str, Any]) -> float | None:
    """CPU time / (wall time x threads) of a CPU run's worker (``run_stats.json``); None on a GPU, where CPU
    time says nothing of contention, or when a figure is missing. Runs recorded before the device was are
    CPU runs (the GPU path had not run)."""
    try:
        wall, cpu, threads = float(stats["worker_time_s"]), float(stats["cpu_time_s"]), int(stats["threads"])
    except (KeyError, TypeError, ValueError):
        return None
    if stats.get("device", "cpu") != "cpu" or wall <= 0 or threads <= 0:
        return None
    return cpu / (wall * threads)


def robustness_order(key: str) -> tuple:
    """Masks before boxes; clean AP, mPC, rPC, AP per severity, then AP per corruption in benchmark order."""
    from mnc_bench.evaluation.corruptions import CORRUPTIONS

    kind, _, name = key[len(ROBUSTNESS_PREFIX):].partition("/")
    head = ("AP_clean", "mPC", "rPC")
    if name in head:
        rank: tuple = (0, head.index(name))
    elif name.startswith("AP@s"):
        rank = (1, name)
    else:
        corruption = name.removeprefix("AP/")
        known = CORRUPTIONS.index(corruption) if corruption in CORRUPTIONS else len(CORRUPTIONS)
        rank = (2, known, corruption)
    return (kind != "segm", kind, rank)


def _axis_column(values: pd.Series) -> pd.Series:
    """Numbers stay numbers; any other axis (configs, dicts, mixed) becomes text, one type per column."""
    present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return pd.to_numeric(values, errors="coerce")
    if present and all(isinstance(v, bool) for v in present):
        return values.astype("boolean")
    return values.map(lambda v: "" if v is None else v if isinstance(v, str)
                      else json.dumps(v, sort_keys=True, default=repr)).astype(str)


def write_table(table: pd.DataFrame, out: str | Path) -> list[Path]:
    """``out`` (.parquet or .csv) and the other format beside it, each written atomically."""
    out = Path(out)
    if out.suffix not in TABLE_FORMATS:
        raise UserError(f"--out {out}: expected a .parquet or .csv file name")
    paths = [out.with_suffix(suffix) for suffix in TABLE_FORMATS]
    for path in paths:  # both checked before either is written: never a new parquet beside an old CSV
        check_writable_output(path, "--out")
    with atomic_open(paths[0], "wb") as handle:
        table.to_parquet(handle, index=False)
    with atomic_open(paths[1], "w", encoding="utf-8", newline="") as handle:
        table.to_csv(handle, index=False)
    return paths


def format_summary(table: pd.DataFrame, metrics: list[str] | None = None) -> str:
    """Per-run lines (model, variant, seed, status, a few metrics, train time), then the mean over seeds."""
    if table.empty:
        return "no runs"
    shown = [m for m in (metrics or SUMMARY_METRICS) if m in table.columns]
    view = table[["run_id", "model", "variant", "seed", "status", *shown, "train_time_s"]].copy()
    view = view.sort_values(["model", "variant", "seed"], kind="stable")
    text = view.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-")
    done = table[table["status"] == RunState.DONE]
    if done.empty or not shown:
        return text
    grouped = (done.groupby(["model", "variant"], sort=True)[shown[0]].agg(["mean", "std", "count"])
               .reset_index())
    grouped = grouped.rename(columns={"mean": f"{shown[0]} mean", "std": "sd", "count": "seeds"})
    return text + "\n\n" + grouped.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-")
