"""From finished runs to numbers: per-group summaries over seeds, comparisons to a baseline, ablations.

A group is the runs of one suite that differ only by seed: (suite, model, variant). Comparisons stay inside a
suite: two suites may differ in schedule or data, so their rows are never set against each other.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from mnc_bench.errors import UserError
from mnc_bench.reporting.metrics import Column, number
from mnc_bench.reporting.stats import Comparison, Summary, compare, summarize
from mnc_bench.suites.contract import AXIS_PREFIX

GroupKey = tuple[str, str, str]  # suite, model, variant
GROUP_COLUMNS = ["suite", "model", "variant"]
BASELINE_PREFERENCE = "mask_rcnn"  # the field's reference model, when no --baseline is given
_NUMBER = re.compile(r"(-?\d+(?:\.\d+)?)")
_VARIANT_PARTS = re.compile(r", (?=[\w.]+=)")  # 'k=v, k=v' where a value may itself hold ', ' (JSON)
DEFAULT_VALUE = "default"  # an axis value of null / empty: the config as it is


def natural_key(text: str) -> tuple:
    """Sort key reading numbers as numbers: 'max_proposals=50' before 'max_proposals=300'."""
    return tuple((0, float(p), "") if _NUMBER.fullmatch(p) else (1, 0.0, p) for p in _NUMBER.split(text) if p)


def group_order(key: GroupKey) -> tuple:
    suite, model, variant = key
    return (suite, natural_key(model), natural_key(variant))


def group_label(model: str, variant: str) -> str:
    return f"{model} [{variant}]" if variant else model


def short_label(model: str, variant: str, *, with_model: bool = True) -> str:
    """The label of a group in tables and figures: axis keys cut to their last component, or as many last
    components as tell them apart ('box_grad=False, num_stages=3'; 'rpn_head.loss_weight=1,
    roi_head.loss_weight=2'), mapping values as 'k=v' ('proposal_control={jitter=0.2}')."""
    pairs = [part.partition("=") for part in filter(None, _VARIANT_PARTS.split(variant))]
    keys = _distinct_suffixes([key for key, _, _ in pairs])
    parts = []
    for short_key, (_, sep, value) in zip(keys, pairs):
        shown = value_text(value) if sep else value
        parts.append(f"{short_key}{sep}{'{' + shown + '}' if value.startswith('{') else shown}")
    short = ", ".join(parts)
    if not with_model:
        return short or model
    return f"{model} [{short}]" if short else model


def _distinct_suffixes(keys: list[str]) -> list[str]:
    """Each dotted key cut to its last component, or to as many last components as make it differ from the
    other keys' cuts."""
    split = [key.split(".") for key in keys]
    depth = [1] * len(keys)
    while True:
        cuts = [".".join(parts[-d:]) for parts, d in zip(split, depth)]
        clashing = [i for i, cut in enumerate(cuts) if cuts.count(cut) > 1 and depth[i] < len(split[i])]
        if not clashing:
            return cuts
        for i in clashing:
            depth[i] += 1


def axis_name(column: str) -> str:
    return column[len(AXIS_PREFIX):] if column.startswith(AXIS_PREFIX) else column


def value_text(value: object) -> str:
    """An axis value as printed: integral floats (read back from CSV) without '.0', NaN as '—', a mapping
    (collected as JSON text, e.g. a proposal_control setting) as 'k=v, k=v', null / empty as 'default'."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value)
    if text in ("", "None", "null"):
        return DEFAULT_VALUE
    if text.startswith("{"):
        try:
            mapping = json.loads(text)
        except ValueError:
            return text
        if isinstance(mapping, dict):
            return ", ".join(f"{k}={value_text(v)}" for k, v in mapping.items()) or DEFAULT_VALUE
    return text


def sort_values(values: Iterable[object]) -> list[object]:
    """Axis values in natural order: the default first, then numbers (and booleans) ascending, then text."""
    def key(v: object) -> tuple:
        if isinstance(v, (bool, int, float)) and not (isinstance(v, float) and math.isnan(v)):
            return (1, (0, float(v), ""))
        text = value_text(v)
        return (0 if text == DEFAULT_VALUE else 2, natural_key(text))
    return sorted(set(values), key=key)


def group_summaries(done: pd.DataFrame, columns: list[str]) -> dict[GroupKey, dict[str, Summary]]:
    """Mean ± std over the seeds of each group, per column (NaN entries, i.e. unmeasured, left out)."""
    out: dict[GroupKey, dict[str, Summary]] = {}
    groups = dict(tuple(done.groupby(GROUP_COLUMNS, sort=True)))
    for key in sorted(groups, key=group_order):
        rows = groups[key]
        out[tuple(key)] = {c: summarize(numbers(rows[c])) for c in columns if c in rows}
    return out


@dataclass(frozen=True)
class Baseline:
    suite: str
    model: str
    variant: str
    note: str  # how it was chosen

    @property
    def key(self) -> GroupKey:
        return (self.suite, self.model, self.variant)


def resolve_baselines(done: pd.DataFrame, name: str | None) -> dict[str, Baseline | None]:
    """The baseline group of each suite: ``name`` is a model or a 'model [variant]' label (axis keys in full
    or cut as the report prints them); without one, the first Mask R-CNN model, else the first group.
    UserError when ``name`` matches no group of any suite."""
    out: dict[str, Baseline | None] = {}
    labels: set[str] = set()
    for suite, rows in done.groupby("suite", sort=True):
        groups = sorted({(m, v) for m, v in zip(rows["model"], rows["variant"])},
                        key=lambda g: (natural_key(g[0]), natural_key(g[1])))
        labels.update(group_label(m, v) for m, v in groups)
        if name is None:
            preferred = [g for g in groups if g[0].startswith(BASELINE_PREFERENCE)] or groups
            note = "first Mask R-CNN model" if preferred is not groups else "first group"
            chosen = preferred[0]
            out[suite] = Baseline(suite, *chosen, note=f"{note}; no --baseline given")
            continue
        exact = [g for g in groups if name in (group_label(*g), short_label(*g))]
        by_model = [g for g in groups if g[0] == name]
        if len(exact) > 1:
            raise UserError(f"--baseline {name}: names {len(exact)} groups of suite {suite} "
                            f"({'; '.join(group_label(*g) for g in exact)}): give one in full")
        if exact:
            out[suite] = Baseline(suite, *exact[0], note="--baseline")
        elif by_model:
            plain = [g for g in by_model if not g[1]]
            chosen = (plain or by_model)[0]
            note = "--baseline" if len(by_model) == 1 or plain else (
                "--baseline names a model with several variants: the first is used; give 'model [variant]'")
            out[suite] = Baseline(suite, *chosen, note=note)
        else:
            out[suite] = None
    if name is not None and done.shape[0] and all(b is None for b in out.values()):
        known = ", ".join(sorted(labels)[:10])
        raise UserError(f"--baseline {name}: no such model in the results (models: {known})")
    return out


@dataclass(frozen=True)
class Row:
    """One group's value of the compared metric and its comparison to a reference group (None: it is the
    reference)."""

    suite: str
    model: str
    variant: str
    summary: Summary
    comparison: Comparison | None


def numbers(values: pd.Series) -> pd.Series:
    """A column as float64 with NaN for anything missing or not a number (collect writes nullable Int64)."""
    return pd.to_numeric(values, errors="coerce").astype("float64")


def _values(rows: pd.DataFrame, metric: str) -> pd.Series:
    return numbers(rows[metric])


def baseline_rows(done: pd.DataFrame, metric: str, baselines: dict[str, Baseline | None]) -> list[Row]:
    """Every group of each suite that has a baseline, baseline first, then the others compared to it."""
    out = []
    for suite, rows in done.groupby("suite", sort=True):
        base = baselines.get(suite)
        if base is None:
            continue
        groups = dict(tuple(rows.groupby(["model", "variant"], sort=True)))
        base_values = _values(groups[(base.model, base.variant)], metric)
        out.append(Row(suite, base.model, base.variant, summarize(base_values), None))
        for model, variant in sorted(groups, key=lambda g: (natural_key(g[0]), natural_key(g[1]))):
            g = groups[(model, variant)]
            if (model, variant) != (base.model, base.variant):
                values = _values(g, metric)
                out.append(Row(suite, model, variant, summarize(values), compare(values, base_values)))
    return out


@dataclass(frozen=True)
class AblationRow:
    """One value of an ablation axis within one setting: the suite (when several have the axis), the model
    (when several) and the other axes' values, held fixed."""

    suite: str  # '' when one suite has the axis
    model: str  # '' when the suite has one model
    others: tuple[tuple[str, str], ...]  # (axis name, value as printed)
    value: str  # as printed
    row: Row

    def context(self, model_name: str = "") -> str:
        """The setting as text, '' when none: suite, model (printed as ``model_name`` when given), then
        ``axis=value`` (axis keys cut as in group labels)."""
        parts = [self.suite] if self.suite else []
        parts += [model_name or self.model] if self.model else []
        keys = _distinct_suffixes([axis for axis, _ in self.others])
        parts += [f"{key}={value}" for key, (_, value) in zip(keys, self.others)]
        return ", ".join(parts)


@dataclass(frozen=True)
class Ablation:
    axis: str  # column name, axis.<key>
    rows: list[AblationRow]

    @property
    def name(self) -> str:
        return axis_name(self.axis)


def ablation(done: pd.DataFrame, axis: str, axes: list[str], metric: str) -> Ablation:
    """Each value of ``axis`` against its first value (natural order), within every setting of the other
    axes (suite, model and the other axis values held fixed); settings where the axis takes one value are left
    out."""
    rows: list[AblationRow] = []
    suites = done.loc[done[axis].notna(), "suite"].unique()
    for suite, runs in done.groupby("suite", sort=True):
        if suite not in suites:
            continue
        others = [a for a in axes if a != axis and runs[a].notna().any()]
        multi_model = runs["model"].nunique() > 1
        for context_key, ctx in runs.groupby(["model", *others], sort=True, dropna=False):
            model = context_key[0]
            # Within a suite that has the axis, a missing value is a null one: the config as it is.
            texts = ctx[axis].map(lambda v: DEFAULT_VALUE if pd.isna(v) else value_text(v))
            values = list(dict.fromkeys(value_text(v) for v in sort_values(ctx[axis].dropna().tolist())))
            values = ([DEFAULT_VALUE] if (texts == DEFAULT_VALUE).any() else []) + [
                v for v in values if v != DEFAULT_VALUE]
            if len(values) < 2:
                continue
            setting = tuple((axis_name(a), value_text(v)) for a, v in zip(others, context_key[1:]))
            shown_suite, shown_model = suite if len(suites) > 1 else "", model if multi_model else ""
            reference = _values(ctx[texts == values[0]], metric)
            for i, value in enumerate(values):
                group = ctx[texts == value]
                current = _values(group, metric)
                comparison = None if i == 0 else compare(current, reference)
                row = Row(suite, model, group["variant"].iloc[0], summarize(current), comparison)
                rows.append(AblationRow(shown_suite, shown_model, setting, value, row))
    return Ablation(axis, rows)


def missing_metric_runs(done: pd.DataFrame, columns: list[str]) -> dict[str, list[str]]:
    """Run ids of finished runs without a value for each column that other finished runs have."""
    out = {}
    for col in columns:
        values = numbers(done[col]) if col in done else None
        if values is None or values.notna().sum() == 0:
            continue
        missing = done.loc[values.isna(), "run_id"].tolist()
        if missing:
            out[col] = sorted(missing)
    return out


def best_groups(summaries: dict[GroupKey, dict[str, Summary]], col: Column) -> set[GroupKey]:
    """Groups whose mean of ``col`` is the best within their suite at display precision (ties all marked);
    none in a suite where fewer than two distinct values are shown."""
    out: set[GroupKey] = set()
    by_suite: dict[str, dict[GroupKey, float]] = {}
    for key, cells in summaries.items():
        summary = cells.get(col.key)
        if summary is not None and summary.n > 0:
            by_suite.setdefault(key[0], {})[key] = float(number(summary.mean, col))
    for values in by_suite.values():
        if len(set(values.values())) < 2:  # one group, or all tied: nothing stands out
            continue
        target = max(values.values()) if col.higher_is_better else min(values.values())
        out.update(k for k, v in values.items() if v == target)
    return out
