"""Claims tested by suites: a YAML file of claims -> one verdict per claim and metric, following the
intervals.

A claims file is a list of records, read with a safe loader::

    - claim: End-to-end training beats step-wise training      # the statement tested
      source: MNC paper, Table 1 (VOC 2012 val, 5-stage)          # who makes it
      suite: cascade_depth                                        # the suite whose runs test it
      metrics: [voc_mnc/mAP@0.5, coco/segm/AP]                    # one verdict per metric
      higher: {model.cascade.box_grad: true, model.cascade.num_stages: 5}   # runs that should score higher
      than: {model.cascade.box_grad: false, model.cascade.num_stages: 5}    # ... than these
    - claim: Training requires careful balancing of the losses
      suite: loss_weights
      metrics: [coco/segm/AP]
      varies: [model.loss_weights.mask, model.loss_weights.cls]   # the metric changes across these axes

A selector (``higher``, ``than``) maps axis keys of the suite to values, plus optionally ``model`` (a config
stem); a run matches when every listed value matches (values compare as the report prints them, so ``5`` and
``5.0``, ``true`` and a collected boolean, a mapping and its collected JSON are equal). A metric is a results
key, or ``A - B`` for the per-run difference of two keys (e.g. how much lower boundary AP is than mask AP).

Verdicts, at the report's 95 % level:

- ``higher``/``than``: the difference of means with its stratified percentile-bootstrap interval and Student's
  t-test (the report's method, :mod:`mnc_bench.reporting.stats`); *supported* when the interval lies above 0
  and the test agrees (p < 0.05), *contradicted* when it lies below 0 and the test agrees, else
  *inconclusive* (the row gives the test's p when only the interval excludes 0).
- ``varies``: a permutation test of one-way ANOVA's F over the cells of the listed axes (seeds as replicates,
  every other axis of the suite held at the value the claim gives or, when it gives none, pooled as separate
  cells); *supported* when p < 0.05, else *inconclusive* (no test can show that a factor does not matter).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy.stats import f_oneway, permutation_test

from mnc_bench.errors import UserError
from mnc_bench.reporting.compare import DEFAULT_VALUE, value_text
from mnc_bench.reporting.metrics import column, difference_text, number
from mnc_bench.reporting.stats import CONFIDENCE, SEED, Interval, compare, summarize
from mnc_bench.suites.contract import AXIS_PREFIX

CLAIM_KEYS = ("claim", "source", "suite", "metrics", "higher", "than", "varies", "note")
N_PERMUTATIONS = 10_000
VERDICTS = ("supported", "contradicted", "inconclusive", "not measured")


@dataclass(frozen=True)
class Claim:
    """One claim of a claims file (``higher``/``than`` for a comparison, ``varies`` for a factor test)."""

    claim: str
    source: str
    suite: str
    metrics: tuple[str, ...]
    higher: Mapping[str, Any] = field(default_factory=dict)
    than: Mapping[str, Any] = field(default_factory=dict)
    varies: tuple[str, ...] = ()
    note: str = ""

    @property
    def kind(self) -> str:
        return "varies" if self.varies else "compare"


@dataclass(frozen=True)
class ClaimResult:
    """The verdict on one claim for one metric. A comparison has ``difference`` (higher minus than) and
    ``p_value``, Student's t-test's; a factor test has ``p_value``, its permutation test's, and ``cell_range``
    (min and max of the cells' means)."""

    claim: Claim
    metric: str
    verdict: str
    n: tuple[int, ...]
    difference: Interval | None = None
    p_value: float | None = None
    cell_range: tuple[float, float] | None = None
    reason: str = ""


def load_claims(path: str | os.PathLike[str]) -> list[Claim]:
    """The claims of ``path``; UserError (one line naming the record and field) for a malformed file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"--claims {path}: cannot read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"--claims {path}: not valid YAML{where}") from None
    if not isinstance(data, list) or not data:
        raise UserError(f"--claims {path}: expected a non-empty list of claims")
    return [_claim(record, f"--claims {path}: claim {index + 1}") for index, record in enumerate(data)]


def _claim(record: Any, where: str) -> Claim:
    if not isinstance(record, dict):
        raise UserError(f"{where}: expected a mapping, got {type(record).__name__}")
    unknown = sorted(set(record) - set(CLAIM_KEYS))
    if unknown:
        raise UserError(f"{where}: unknown key {unknown[0]!r} (keys: {', '.join(CLAIM_KEYS)})")
    for key in ("claim", "suite"):
        if not isinstance(record.get(key), str) or not record[key].strip():
            raise UserError(f"{where}: {key}: a non-empty text is required")
    where = f"{where} ({record['claim'][:40]!r})"
    metrics = record.get("metrics")
    if not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) and m for m in metrics):
        raise UserError(f"{where}: metrics: a non-empty list of metric keys is required")
    comparison = "higher" in record or "than" in record
    if comparison == ("varies" in record):
        raise UserError(f"{where}: give either higher and than, or varies")
    if comparison:
        for key in ("higher", "than"):
            if not isinstance(record.get(key), dict) or not record[key]:
                raise UserError(f"{where}: {key}: a non-empty mapping of axis keys to values is required")
        if _selector_texts(record["higher"]) == _selector_texts(record["than"]):
            raise UserError(f"{where}: higher and than select the same runs")
    else:
        varies = record["varies"]
        if not isinstance(varies, list) or not varies or not all(isinstance(v, str) for v in varies):
            raise UserError(f"{where}: varies: a non-empty list of axis keys is required")
    return Claim(claim=record["claim"].strip(), source=str(record.get("source") or "").strip(),
                 suite=record["suite"], metrics=tuple(metrics), higher=dict(record.get("higher") or {}),
                 than=dict(record.get("than") or {}), varies=tuple(record.get("varies") or ()),
                 note=str(record.get("note") or "").strip())


def _selector_texts(selector: Mapping[str, Any]) -> dict[str, str]:
    return {key: claim_value_text(value) for key, value in selector.items()}


def claim_value_text(value: Any) -> str:
    """A selector value as the report prints axis values: null is the config's default, a mapping is read as
    `collect` stores it (sorted JSON)."""
    if value is None:
        return DEFAULT_VALUE
    if isinstance(value, Mapping):
        return value_text(json.dumps(value, sort_keys=True))
    return value_text(value)


def metric_values(runs: pd.DataFrame, metric: str) -> pd.Series:
    """Per-run values of ``metric``: a results column, or ``A - B`` (NaN where either is missing)."""
    parts = [p.strip() for p in metric.split(" - ")]
    if len(parts) > 2 or not all(parts):
        raise UserError(f"claims: metric {metric!r}: a metric key or 'A - B'")
    missing = [p for p in parts if p not in runs.columns]
    if missing:
        raise KeyError(missing[0])
    values = pd.to_numeric(runs[parts[0]], errors="coerce")
    if len(parts) == 2:
        values = values - pd.to_numeric(runs[parts[1]], errors="coerce")
    return values.astype(float)


def select(runs: pd.DataFrame, selector: Mapping[str, Any], where: str) -> pd.DataFrame:
    """The runs whose axes (and ``model``) take the selector's values."""
    mask = pd.Series(True, index=runs.index)
    for key, wanted in selector.items():
        column = "model" if key == "model" else AXIS_PREFIX + key
        if column not in runs.columns:
            raise UserError(f"{where}: {key}: not an axis of suite {runs['suite'].iloc[0]}")
        mask &= runs[column].map(value_text) == claim_value_text(wanted)
    return runs[mask]


def evaluate_claims(claims: Sequence[Claim], done: pd.DataFrame) -> list[ClaimResult]:
    """A verdict per claim and metric from the finished runs ``done`` (any suites); a claim whose suite or
    metric is absent is 'not measured', with the reason."""
    results = []
    for claim in claims:
        runs = done[done["suite"] == claim.suite]
        for metric in claim.metrics:
            if runs.empty:
                results.append(ClaimResult(claim, metric, "not measured", (0,),
                                           reason=f"no finished run of suite {claim.suite}"))
                continue
            try:
                values = metric_values(runs, metric)
            except KeyError as exc:
                results.append(ClaimResult(claim, metric, "not measured", (0,),
                                           reason=f"suite {claim.suite} has no column {exc.args[0]}"))
                continue
            runs = runs.assign(_value=values)
            evaluate = _compare if claim.kind == "compare" else _factor
            results.append(evaluate(claim, metric, runs))
    return results


def _compare(claim: Claim, metric: str, runs: pd.DataFrame) -> ClaimResult:
    where = f"claims: {claim.claim!r}"
    higher = select(runs, claim.higher, where)["_value"].dropna().to_numpy()
    than = select(runs, claim.than, where)["_value"].dropna().to_numpy()
    n = (int(higher.size), int(than.size))
    if 0 in n:
        side = "higher" if higher.size == 0 else "than"
        return ClaimResult(claim, metric, "not measured", n, reason=f"no finished run matches `{side}`")
    difference = compare(higher, than).difference
    if not difference.has_interval:
        return ClaimResult(claim, metric, "inconclusive", n, difference=difference,
                           reason="one seed on a side: no interval")
    verdict = {"higher": "supported", "lower": "contradicted"}.get(difference.verdict(0.0), "inconclusive")
    excludes_zero = difference.low > 0 or difference.high < 0
    reason = "" if difference.test_agrees or not excludes_zero else (
        f"Student's t-test p = {difference.p_value:.3f}")
    return ClaimResult(claim, metric, verdict, n, difference=difference, p_value=difference.p_value,
                       reason=reason)


def _factor(claim: Claim, metric: str, runs: pd.DataFrame) -> ClaimResult:
    columns = []
    for key in claim.varies:
        column = AXIS_PREFIX + key
        if column not in runs.columns:
            raise UserError(f"claims: {claim.claim!r}: varies: {key}: not an axis of suite {claim.suite}")
        columns.append(column)
    held = sorted(c for c in runs.columns if c.startswith(AXIS_PREFIX) and c not in columns
                  and c != AXIS_PREFIX + "config")
    cells = [group["_value"].dropna().to_numpy()
             for _, group in runs.groupby([runs[c].map(value_text) for c in held + columns]
                                          + [runs["model"]])]
    cells = [c for c in cells if c.size]
    n = tuple(int(c.size) for c in cells)
    if len(cells) < 2:
        return ClaimResult(claim, metric, "not measured", n, reason="fewer than two cells with results")
    means = [summarize(c).mean for c in cells]
    cell_range = (float(min(means)), float(max(means)))
    if min(n) < 2:
        return ClaimResult(claim, metric, "inconclusive", n, cell_range=cell_range,
                           reason="a cell with one seed: no test")
    p_value = _anova_permutation_p(cells)
    verdict = "supported" if p_value < 1.0 - CONFIDENCE else "inconclusive"
    return ClaimResult(claim, metric, verdict, n, p_value=p_value, cell_range=cell_range)


def _anova_permutation_p(cells: list[np.ndarray]) -> float:
    """p of one-way ANOVA's F under random reassignment of the values to the cells (seeded, so a report is
    byte-identical); a permutation test needs no normality, which 2-3 seeds per cell cannot check."""
    if np.ptp(np.concatenate(cells)) == 0:
        return 1.0

    def statistic(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        with np.errstate(all="ignore"):
            return f_oneway(*samples, axis=axis).statistic

    result = permutation_test(cells, statistic, permutation_type="independent", vectorized=True,
                              n_resamples=N_PERMUTATIONS, alternative="greater",
                              random_state=np.random.default_rng(SEED))
    return float(result.pvalue) if math.isfinite(result.pvalue) else 1.0


def selector_text(selector: Mapping[str, Any]) -> str:
    """'box_grad=True, num_stages=5': each axis by its last key component, values as the report prints
    them."""
    return ", ".join(f"{key.split('.')[-1]}={claim_value_text(value)}" for key, value in selector.items())


def tested_text(claim: Claim) -> str:
    """What the claim compares: 'A vs B' or 'across mask × cls'."""
    if claim.kind == "varies":
        return "across " + " × ".join(key.split(".")[-1] for key in claim.varies)
    return f"{selector_text(claim.higher)} vs {selector_text(claim.than)}"


def measured_text(result: ClaimResult) -> str:
    """The measured effect behind a verdict: Δ [95 % CI] of a comparison, or the factor test's p and the range
    of the cells' means."""
    col = column(result.metric)
    if result.difference is not None:
        return difference_text(result.difference, col)
    if result.cell_range is not None:
        low, high = (number(v, col) for v in result.cell_range)
        test = f"permutation F-test p = {result.p_value:.3f}; " if result.p_value is not None else ""
        return f"{test}cell means {low} to {high}"
    return "—"
