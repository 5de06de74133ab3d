"""Booktabs tables ready to paste (pandas ``Styler.to_latex(hrules=True)``): the COCO layout of the Mask
R-CNN / PANet tables (AP, AP50, AP75, APs, APm, APl), the VOC layout of the MNC paper (mAP^r@0.5,
mAP^r@0.7, time), and one table per ablation axis. Every value column is followed by its ± column (std over
seeds)."""

from __future__ import annotations

import math
import re

import pandas as pd

from mnc_bench.reporting.claims import ClaimResult, measured_text
from mnc_bench.reporting.compare import Ablation, GroupKey, best_groups, group_label
from mnc_bench.reporting.metrics import (COCO_LAYOUT, VOC_LAYOUT, Column, column, difference_text, escape_tex,
                                         number, probability_text, spread, verdict_text)
from mnc_bench.reporting.stats import Summary

PM = r"$\pm$"
MISSING = "--"
_MINUS = re.compile(r"(?<![\w.])-(?=\d)")


def _render(frame: pd.DataFrame, caption: str, label: str, column_format: str) -> str:
    styler = frame.style.hide(axis="index")
    return styler.to_latex(hrules=True, caption=caption.strip(), label=label, column_format=column_format,
                           position="t", position_float="centering")


def _tex_number(text: str) -> str:
    """Escaped text with minus signs typeset as such ('-3.55' would print a hyphen)."""
    return _MINUS.sub("$-$", escape_tex(text))


def _value_cells(summary: Summary | None, col: Column, bold: bool, runs: int) -> tuple[str, str]:
    """(mean, ±std); the ± cell is empty with one seed (no spread to show) and '--' when unmeasured; a mean
    over fewer than the row's ``runs`` seeds carries its own n."""
    if summary is None or summary.n == 0:
        return MISSING, ""
    mean = number(summary.mean, col)
    mean = rf"\textbf{{{mean}}}" if bold else mean
    mean += f"$^{{n={summary.n}}}$" if summary.n < runs else ""
    return mean, "" if math.isnan(summary.std) else f"{PM}{spread(summary.std, col)}"


def paper_table(
    summaries: dict[GroupKey, dict[str, Summary]],
    keys: tuple[str, ...],
    *,
    caption: str,
    label: str,
    time_key: str | None = None,
) -> str:
    """One row per group (``summaries`` order); columns: method, n, then value and ± per metric in ``keys``,
    then the time column when ``time_key`` is given (the MNC paper's VOC layout)."""
    cols = [column(k) for k in keys]
    best = {c.key: best_groups(summaries, c) for c in cols}
    header = ["method", "$n$"]
    for c in cols:
        header += [c.tex, PM]
    if time_key:
        header.append(column(time_key).tex)
    rows = []
    for group, cells in summaries.items():
        n = max((cells[k].n for k in keys if k in cells), default=0)
        row = [escape_tex(group_label(group[1], group[2])), str(n)]
        for c in cols:
            row += _value_cells(cells.get(c.key), c, group in best[c.key], n)
        if time_key:
            time = cells.get(time_key)
            row.append(number(time.mean, column(time_key)) if time and time.n else MISSING)
        rows.append(row)
    column_format = "lr" + "rl" * len(cols) + ("r" if time_key else "")
    return _render(pd.DataFrame(rows, columns=header), caption, label, column_format)


def coco_table(summaries: dict[GroupKey, dict[str, Summary]], suite: str) -> str:
    return paper_table(summaries, COCO_LAYOUT, label=f"tab:{suite}-coco",
                       caption=f"Mask AP on {escape_tex(suite)} (COCO protocol, points): mean {PM} std over "
                       "seeds; $n$ seeds; best in bold.")


def voc_table(summaries: dict[GroupKey, dict[str, Summary]], suite: str, protocol: str,
              time_note: str) -> str:
    caption = (f"Region mAP$^r$ on {escape_tex(suite)} ({protocol.upper()} protocol, points): mean {PM} std "
               "over seeds; $n$ seeds; best in bold; time: inference ms/img of the plain model config (bench "
               f"results, batch 1). {time_note}")
    return paper_table(summaries, VOC_LAYOUT[protocol], time_key="infer_ms_median", caption=caption,
                       label=f"tab:{suite}-voc-{protocol}")


def ablation_table(ablation: Ablation, metric: str) -> str:
    """Context, axis value, n, metric mean and ±, difference to the first value [95 % CI], P(improvement)."""
    col = column(metric)
    rows = []
    for r in ablation.rows:
        mean, pm = _value_cells(r.row.summary, col, bold=False, runs=r.row.summary.n)
        comp = r.row.comparison
        diff = "reference" if comp is None else _tex_number(difference_text(comp.difference, col))
        prob = "" if comp is None else _tex_number(probability_text(comp.improvement))
        verdict = "" if comp is None else verdict_text(comp.difference, 0.0, col)
        rows.append([escape_tex(r.context), _tex_number(r.value), str(r.row.summary.n), mean, pm, diff,
                     verdict, prob])
    header = ["setting", escape_tex(ablation.name.split(".")[-1]), "$n$", col.tex, PM,
              r"$\Delta$ [95\% CI]", "verdict", r"$P(\mathrm{improvement})$ [95\% CI]"]
    frame = pd.DataFrame(rows, columns=header)
    return _render(frame, caption=f"Ablation of {escape_tex(ablation.name)}: {escape_tex(col.label)} "
                   r"(points), difference to the first value with a stratified percentile-bootstrap 95\% "
                   "interval, "
                   "probability of improvement over seeds.",
                   label=f"tab:ablation-{ablation.name.replace('.', '-')}", column_format="llrrlllr")


def claims_table(results: list[ClaimResult]) -> str:
    """One row per claim and metric: the claim, the metric, the measured effect and the verdict."""
    rows = [[escape_tex(r.claim.claim), column(r.metric).tex, _tex_number(measured_text(r)),
             escape_tex(r.verdict)] for r in results]
    frame = pd.DataFrame(rows, columns=["claim", "metric", "measured", "verdict"])
    return _render(frame, caption=r"Claims tested on these runs (points): $\Delta$ with a stratified "
                   r"percentile-bootstrap 95\% interval over seeds, or a permutation F-test over a factor's "
                   "cells; supported / contradicted when the interval excludes 0 (p $<$ 0.05), else "
                   "inconclusive.", label="tab:claims", column_format=r"p{0.34\linewidth}lp{0.26\linewidth}l")
