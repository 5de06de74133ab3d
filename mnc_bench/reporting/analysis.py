"""Everything a report prints, computed once from the inputs: group summaries (with the bench's per-model
costs), baselines, comparisons, ablations, missing values."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from mnc_bench.reporting.compare import (
    Ablation,
    Baseline,
    GroupKey,
    Row,
    ablation,
    baseline_rows,
    group_summaries,
    missing_metric_runs,
    numbers,
    resolve_baselines,
)
from mnc_bench.reporting.metrics import ACCURACY, COST, Column, column, resolve_metric
from mnc_bench.reporting.names import DisplayNames, display_names
from mnc_bench.reporting.stats import Summary
from mnc_bench.reporting.table import Inputs
from mnc_bench.suites.contract import is_metric_key

# Cost columns that describe a model, not a run: printed as one number, without a spread over seeds.
PER_MODEL = ("params", "gflops", "infer_ms_median")
BENCH_COLUMNS = ("params", "gflops", "infer_ms_median")


@dataclass
class Analysis:
    inputs: Inputs
    metric: str
    summaries: dict[GroupKey, dict[str, Summary]]  # sorted by (suite, model, variant)
    group_runs: dict[GroupKey, int]  # finished runs per group
    columns: list[Column]  # main-table columns with at least one value
    baselines: dict[str, Baseline | None]
    comparisons: list[Row]
    ablations: list[Ablation]
    missing: dict[str, list[str]]
    names: DisplayNames

    @property
    def done(self) -> pd.DataFrame:
        return self.inputs.done

    @property
    def metric_measured(self) -> bool:
        return any(cells.get(self.metric, Summary(0, 0, 0)).n for cells in self.summaries.values())


def _with_bench(summaries: dict[GroupKey, dict[str, Summary]], bench: pd.DataFrame | None) -> None:
    """Per-model costs from the bench results, joined on ``model``, for plain configs only (the bench measured
    the config as it is; a variant with other axis values may cost more or less); the table's params win."""
    if bench is None:
        return
    costs = bench.set_index("model")[[k for k in BENCH_COLUMNS if k in bench]].apply(numbers)
    for (_suite, model, variant), cells in summaries.items():
        if model not in costs.index or variant:
            continue
        for key, value in costs.loc[model].items():
            if not math.isnan(value) and cells.get(key, Summary(math.nan, math.nan, 0)).n == 0:
                cells[key] = Summary(float(value), math.nan, 1)


def analyse(inputs: Inputs, metric: str, baseline: str | None,
            display_name_overrides: Mapping[str, str] | None = None) -> Analysis:
    """UserError when ``metric``, ``baseline`` or a display-name override names nothing in a non-empty table.
    """
    runs, done = inputs.runs, inputs.done
    if not done.empty:
        metric = resolve_metric(metric, [c for c in runs.columns if is_metric_key(c)])
    keys = [c.key for c in ACCURACY + COST]
    summaries = group_summaries(done, list(dict.fromkeys(keys + [metric])))
    _with_bench(summaries, inputs.bench)
    present = {k for cells in summaries.values() for k, s in cells.items() if s.n > 0}
    columns = [c for c in ACCURACY + COST if c.key in present]
    if metric not in {c.key for c in columns} and metric in present:
        columns.insert(0, column(metric))
    group_runs = {tuple(k): len(g) for k, g in done.groupby(["suite", "model", "variant"], sort=True)}
    baselines = resolve_baselines(done, baseline)
    return Analysis(
        inputs=inputs,
        metric=metric,
        summaries=summaries,
        group_runs=group_runs,
        columns=columns,
        baselines=baselines,
        comparisons=baseline_rows(done, metric, baselines) if metric in done else [],
        ablations=[ablation(done, a, inputs.axes, metric) for a in inputs.axes] if metric in done else [],
        missing=missing_metric_runs(done, [c.key for c in ACCURACY] + [metric]),
        names=display_names(runs["model"].astype(str), display_name_overrides),
    )
