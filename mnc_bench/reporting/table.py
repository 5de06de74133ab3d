"""Read the inputs of a report: the tidy tables of ``mnc-bench collect`` and the bench results.

A suite argument is a suite name (``<results>/<suite>/collect.parquet|csv``), a suite file
(``configs/ablations/<suite>.yaml``: its stem names the suite), a suite's results folder, or a collect table.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mnc_bench.errors import UserError
from mnc_bench.suites.contract import (
    AXIS_PREFIX,
    COLLECT_TABLES,
    FLOAT_COLUMNS,
    REQUIRED_COLUMNS,
    RESULTS_ROOT,
    RUN_STATES,
    TABLE_FORMATS,
    TEXT_COLUMNS,
    RunState,
    axis_column,
    is_metric_key,
    is_suite_file,
    suite_name,
)

TABLE_DIR = "_table_dir"  # added on reading: where a run's folder is looked for when run_dir does not exist


@dataclass
class Inputs:
    """The runs of every suite asked for (one row each, sorted), where they came from, and the bench
    results."""

    runs: pd.DataFrame
    sources: list[Path]
    bench: pd.DataFrame | None = None
    bench_source: Path | None = None
    machine: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> pd.DataFrame:
        return self.runs[self.runs["status"] == RunState.DONE]

    @property
    def axes(self) -> list[str]:
        """Axis columns whose value varies among the finished runs of some suite (``axis.config`` excluded:
        the model column says the same)."""
        varying = []
        for col in sorted(c for c in self.runs.columns if c.startswith(AXIS_PREFIX)):
            if col == axis_column("config"):
                continue
            per_suite = self.done.groupby("suite")[col].nunique(dropna=False)
            if (per_suite > 1).any():
                varying.append(col)
        return varying


def find_table(suite: str, results_dir: str | os.PathLike[str]) -> Path:
    """The collect table a suite argument stands for (parquet preferred when pyarrow can read it)."""
    given = Path(suite)
    if given.is_file() and given.suffix in TABLE_FORMATS:
        return given
    if given.suffix in TABLE_FORMATS and not given.exists():
        raise UserError(f"{suite}: no such table")
    if given.is_dir():
        folder = given
    else:
        folder = Path(results_dir) / (suite_name(given) if is_suite_file(given) else suite)
    candidates = [folder / name for name in COLLECT_TABLES]
    existing = [c for c in candidates if c.is_file()]
    if not existing:
        raise UserError(f"{suite}: no collected results ({candidates[0]} or {candidates[1].name}); "
                        f"run `mnc-bench collect {folder.name}` first")
    if existing[0].suffix == ".parquet" and not _has_parquet_engine() and len(existing) > 1:
        return existing[1]
    return existing[0]


def _has_parquet_engine() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def read_table(path: Path) -> pd.DataFrame:
    """One collect table, validated: required columns, known statuses, integer seeds, unique run ids."""
    try:
        if path.suffix == ".parquet":
            if not _has_parquet_engine():
                raise UserError(f"{path}: reading parquet needs pyarrow (pip install pyarrow) or the CSV "
                                "beside it")
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, keep_default_na=True)
    except UserError:
        raise
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: cannot read the results table: {first}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise UserError(f"{path}: not a collect table: missing column(s) {', '.join(missing)}")
    for col in TEXT_COLUMNS:
        if col in frame.columns:
            frame[col] = frame[col].fillna("").astype(str)
    bad = frame.loc[~frame["status"].isin(RUN_STATES), "status"]
    if len(bad):
        raise UserError(f"{path}: run {frame.loc[bad.index[0], 'run_id']}: status {bad.iloc[0]!r} "
                        f"is not one of {', '.join(RUN_STATES)}")
    seeds = pd.to_numeric(frame["seed"], errors="coerce")
    if seeds.isna().any() or (seeds % 1 != 0).any():
        row = frame.loc[(seeds.isna() | (seeds % 1 != 0)).idxmax()]
        raise UserError(f"{path}: run {row['run_id']}: seed {row['seed']!r} is not an integer")
    frame["seed"] = seeds.astype(int)
    empty = frame["model"] == ""
    if empty.any():
        raise UserError(f"{path}: run {frame.loc[empty.idxmax(), 'run_id']}: model is empty")
    for col in [c for c in frame.columns if is_metric_key(c) or c in FLOAT_COLUMNS]:
        frame[col] = _numbers(frame, col, path)
    for col in [c for c in frame.columns if c.startswith(AXIS_PREFIX)]:
        if frame[col].map(lambda v: pd.isna(v) or v == "").all():
            frame = frame.drop(columns=col)  # no run sets it: not an axis of this suite
        elif not (pd.api.types.is_numeric_dtype(frame[col]) or pd.api.types.is_bool_dtype(frame[col])):
            frame[col] = frame[col].fillna("")  # a null value is '' in text (CSV reads it back as NaN)
    frame[TABLE_DIR] = str(path.parent)
    duplicated = frame["run_id"].duplicated()
    if duplicated.any():
        raise UserError(f"{path}: run id {frame.loc[duplicated.idxmax(), 'run_id']} appears twice")
    return frame


def _numbers(frame: pd.DataFrame, column: str, path: Path) -> pd.Series:
    """A figure column as floats (empty as NaN); a UserError naming the run whose value is text or
    infinite, which a table would otherwise show as missing."""
    values = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    text = values.isna() & frame[column].notna() & (frame[column].astype(str) != "")
    bad = text | values.abs().eq(math.inf)
    if bad.any():
        row = frame.loc[bad.idxmax()]
        value = row[column]
        shown = repr(value) if isinstance(value, str) else value
        raise UserError(f"{path}: run {row['run_id']}: {column} {shown} is not a finite number")
    return values


def load_inputs(
    suites: list[str],
    *,
    results_dir: str | os.PathLike[str] = RESULTS_ROOT,
    bench: str | os.PathLike[str] | None = None,
) -> Inputs:
    """Every suite's table concatenated (sorted by suite, model, variant, seed, run id) and the bench results
    when ``bench`` exists (absent bench results only drop the speed columns and figure)."""
    paths = []
    for suite in suites:
        path = find_table(suite, results_dir)
        if path not in paths:
            paths.append(path)
    frames = [read_table(p) for p in paths]
    empty = pd.DataFrame(columns=list(REQUIRED_COLUMNS))
    runs = pd.concat(frames, ignore_index=True, sort=False) if frames else empty
    # A run that several suites share (the runner reuses a finished run by its id: an ablation's default cell)
    # belongs to each suite's groups; the same suite's run twice would count it twice.
    twice = runs.duplicated(["suite", "run_id"])
    if twice.any():
        row = runs.loc[twice.idxmax()]
        raise UserError(f"run id {row['run_id']} of suite {row['suite']} is in two of the tables")
    runs = runs.sort_values(["suite", "model", "variant", "seed", "run_id"], kind="stable")
    runs = runs.reset_index(drop=True)
    inputs = Inputs(runs=runs, sources=paths)
    if bench is not None and Path(bench).is_file():
        inputs.bench, inputs.machine = read_bench(Path(bench))
        inputs.bench_source = Path(bench)
    return inputs


def read_bench(path: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The per-model rows and the machine of ``mnc-bench bench models --json``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: cannot read the bench results: {exc}") from None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, list) or not all(isinstance(m, dict) and "model" in m for m in models):
        raise UserError(f"{path}: 'models' must be a list of records with a 'model' field")
    frame = pd.DataFrame(models)
    if frame["model"].duplicated().any():
        raise UserError(f"{path}: model {frame.loc[frame['model'].duplicated(), 'model'].iloc[0]} appears "
                        "twice")
    machine = data.get("machine") if isinstance(data.get("machine"), dict) else {}
    return frame.sort_values("model").reset_index(drop=True), machine


def bench_weights(bench: pd.DataFrame) -> str:
    """Which weights the bench ran each model with: step and post-processing costs depend on them (random
    weights keep every candidate detection and sample other RoIs than a trained model)."""
    if "weights" not in bench:
        return "weights not recorded"
    trained = sorted(bench.loc[bench["weights"] == "checkpoint", "model"])
    if len(trained) == len(bench):
        return "trained weights (--checkpoint)"
    if not trained:
        return "random weights"
    return f"trained weights for {', '.join(trained)}, random weights for the others"


def run_folder(run: pd.Series) -> Path:
    """A run's results folder: its ``run_dir`` when that exists, else ``<table folder>/<run id>``."""
    given = Path(run.get("run_dir", "") or "")
    if str(given) not in ("", ".") and given.is_dir():
        return given
    return Path(run[TABLE_DIR]) / str(run["run_id"])
