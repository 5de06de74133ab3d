r"""Booktabs tables ready to paste, each made to fit a declared print width (:mod:`venue`): one column of a
two-column paper (3.25 in, ``table``) or its text width (6.875 in, ``table*``).

Layouts: the COCO table of the Mask R-CNN / PANet papers (AP, AP50, AP75 at column width, plus APs, APm, APl
at text width), the VOC table of the MNC paper (mAP^r@0.5, mAP^r@0.7, time), and one table per ablation axis
with the rows of each setting under a heading row. A mean and its spread share a cell, the spread in small
type (``59.1\,{\scriptsize$\pm$0.9}``); the tables need ``\usepackage{booktabs}`` only.

pandas' ``Styler.to_latex`` sets neither a font size, nor the column spacing, nor a heading row spanning the
columns, so the tabular is written here. The tests compile every table with pdflatex and measure it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from mnc_bench.reporting.claims import ClaimResult
from mnc_bench.reporting.compare import DEFAULT_VALUE, Ablation, GroupKey, best_groups, short_label
from mnc_bench.reporting.metrics import (
    COCO_LAYOUT,
    VIDEO_ACCURACY,
    VIDEO_CONSISTENCY,
    VOC_LAYOUT,
    Column,
    column,
    escape_tex,
    number,
    signed,
    spread,
    verdict_text,
)
from mnc_bench.reporting.names import DisplayNames
from mnc_bench.reporting.stats import Interval, Summary
from mnc_bench.reporting.venue import COLUMN, POINTS_PER_INCH, TEXT, Width

PM = r"$\pm$"
MISSING = "--"
_MINUS = re.compile(r"(?<![\w.])-(?=\d)")
COCO_COLUMN_LAYOUT = COCO_LAYOUT[:3]  # AP, AP50, AP75: the Mask R-CNN paper's column-width tables
# Video tables: every column at text width; at column width, three that fit beside the method: video AP,
# AP50, AP75 (the MaskTrack R-CNN paper's first columns), and sMOTSA, identity switches and the IoU change.
VIDEO_ACCURACY_COLUMN_LAYOUT = ("vis/AP", "vis/AP50", "vis/AP75")
VIDEO_CONSISTENCY_COLUMN_LAYOUT = ("vis/mots/sMOTSA", "vis/mots/IDSW", "vis/stability/iou_change")


@dataclass(frozen=True)
class Typesetting:
    """How a table of one width is set, at the 10 pt body size of CVPR/ICCV and of a default article."""

    size: str  # LaTeX size command
    size_pt: float
    tabcolsep_pt: float
    label_in: float  # width of the label column past which labels wrap onto further lines


TYPESETTING = {COLUMN.name: Typesetting(r"\footnotesize", 8.0, 3.0, 1.25),
               TEXT.name: Typesetting(r"\small", 9.0, 4.0, 2.0)}
# Average width of a label character in em, generous (Computer Modern letters ~0.5 em, capitals ~0.7 em; Times
# is narrower): a label estimated wider than the label column wraps.
CHAR_EM = 0.6


@dataclass(frozen=True)
class Heading:
    """A row spanning the table: the setting the rows below it share."""

    text: str


@dataclass(frozen=True)
class Tabular:
    header: list[str]  # LaTeX, the label column's first
    rows: list[list[str] | Heading]  # label cell as plain text (LaTeX with ``tex_labels``), the others LaTeX
    aligns: str  # of the columns after the label column
    tex_labels: bool = False


def _tex_text(text: str) -> str:
    """Escaped text with minus signs typeset as such ('-3.55' would print a hyphen)."""
    return _MINUS.sub("$-$", escape_tex(text))


def _estimated_pt(text: str, size_pt: float) -> float:
    return len(text) * CHAR_EM * size_pt


def _visible(tex: str) -> str:
    """The characters LaTeX prints of a short LaTeX label (commands, braces and math marks dropped)."""
    return re.sub(r"\\[A-Za-z]+|[{}$^_]", "", tex)


def _wrapping(text: str) -> str:
    """Text set ragged right, breaking after '_' and '=' too (axis keys and values have no spaces)."""
    tex = _tex_text(text).replace(r"\_", r"\_\allowbreak{}").replace("=", r"=\allowbreak{}")
    return rf"\raggedright {tex}"


def _heading_row(text: str, columns: int, width: Width, ts: Typesetting) -> str:
    """A row spanning the table; one too long for the width wraps (ended by \\tabularnewline: \\raggedright
    redefines \\\\ in the cell that ends the row)."""
    if _estimated_pt(text, ts.size_pt) <= width.points:
        return rf"\multicolumn{{{columns}}}{{@{{}}l@{{}}}}{{\emph{{{_tex_text(text)}}}}} \\"
    spec = rf"@{{}}p{{{width.inches}in}}@{{}}"
    return rf"\multicolumn{{{columns}}}{{{spec}}}{{\itshape{_wrapping(text)}}} \tabularnewline"


def render(table: Tabular, width: Width, *, caption: str, label: str) -> str:
    """The table in a ``table`` (column) or ``table*`` (text width) float, caption above."""
    ts = TYPESETTING[width.name]
    labels = [_visible(row[0]) if table.tex_labels else row[0]
              for row in table.rows if not isinstance(row, Heading)]
    wrap = max((_estimated_pt(t, ts.size_pt) for t in labels), default=0.0) > ts.label_in * POINTS_PER_INCH
    spec = "@{}" + (f"p{{{ts.label_in}in}}" if wrap else "l") + table.aligns + "@{}"
    columns = 1 + len(table.aligns)
    body = []
    for row in table.rows:
        if isinstance(row, Heading):
            body.append(_heading_row(row.text, columns, width, ts))
        else:
            cell = row[0] if table.tex_labels else _tex_text(row[0])
            if wrap:
                cell = r"\raggedright " + cell if table.tex_labels else _wrapping(row[0])
            body.append(" & ".join([cell, *row[1:]]) + r" \\")
    return "\n".join([
        rf"\begin{{{width.float_env}}}[t]",
        r"\centering",
        rf"\caption{{{caption.strip()}}}",
        rf"\label{{{label}}}",
        rf"{ts.size}\setlength{{\tabcolsep}}{{{ts.tabcolsep_pt:g}pt}}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(table.header) + r" \\",
        r"\midrule",
        *body,
        r"\bottomrule",
        r"\end{tabular}",
        rf"\end{{{width.float_env}}}",
    ]) + "\n"


def value_cell(summary: Summary | None, col: Column, *, bold: bool = False, runs: int = 0) -> str:
    """Mean and std in one cell, the std in small type; the mean alone with one seed (no spread to show), '--'
    unmeasured; a mean over fewer than the row's ``runs`` seeds carries its own n."""
    if summary is None or summary.n == 0:
        return MISSING
    mean = number(summary.mean, col)
    mean = rf"\textbf{{{mean}}}" if bold else mean
    mean += f"$^{{n={summary.n}}}$" if summary.n < runs else ""
    if math.isnan(summary.std):
        return mean
    return rf"{mean}\,{{\scriptsize{PM}{spread(summary.std, col)}}}"


def interval_cell(interval: Interval, fmt: Callable[[float], str]) -> str:
    """An estimate with its interval in small type; 'no interval' with one seed on a side."""
    if math.isnan(interval.estimate):
        return MISSING
    if not interval.has_interval:
        return _tex_text(fmt(interval.estimate)) + r"\,{\scriptsize(no interval)}"
    return (_tex_text(fmt(interval.estimate))
            + rf"\,{{\scriptsize[{_tex_text(fmt(interval.low))}, {_tex_text(fmt(interval.high))}]}}")


def _seeds_note(counts: list[int]) -> str:
    distinct = sorted(set(counts))
    if len(distinct) == 1:
        return f"{distinct[0]} seed{'s' if distinct[0] != 1 else ''} per row"
    return "$n$: seeds per row"


def paper_table(
    summaries: dict[GroupKey, dict[str, Summary]],
    keys: tuple[str, ...],
    names: DisplayNames,
    width: Width,
    *,
    caption: str,
    label: str,
    time_key: str | None = None,
) -> str:
    """One row per group (``summaries`` order): the model's display name (a model with variants: its name as a
    heading row, then a row per variant), an n column where rows differ in seeds, mean and spread per metric
    in ``keys``, then the time column when ``time_key`` is given."""
    cols = [column(k) for k in keys]
    best = {c.key: best_groups(summaries, c) for c in cols}
    runs = {g: max((cells[k].n for k in keys if k in cells), default=0) for g, cells in summaries.items()}
    with_n = len(set(runs.values())) > 1
    header = ["method"] + (["$n$"] if with_n else []) + [c.tex for c in cols]
    header += [column(time_key).tex] if time_key else []
    varied = {model for _, model, variant in summaries if variant}
    rows: list[list[str] | Heading] = []
    previous = None
    for group, cells in summaries.items():  # sorted by model: a model's variants follow one another
        _, model, variant = group
        if model in varied and model != previous:
            rows.append(Heading(names(model)))
        previous = model
        row_label = names(model)
        if model in varied:
            row_label = short_label("", variant, with_model=False) or DEFAULT_VALUE
        row = [row_label] + ([str(runs[group])] if with_n else [])
        row += [value_cell(cells.get(c.key), c, bold=group in best[c.key], runs=runs[group]) for c in cols]
        if time_key:
            time = cells.get(time_key)
            row.append(number(time.mean, column(time_key)) if time and time.n else MISSING)
        rows.append(row)
    aligns = ("r" if with_n else "") + "r" * len(cols) + ("r" if time_key else "")
    caption += f" {_seeds_note(list(runs.values()))}."
    return render(Tabular(header, rows, aligns), width, caption=caption, label=label)


@dataclass(frozen=True)
class WidthLayout:
    """A paper table's columns at text width, the subset that fits one column, and what the caption says
    the column-width table leaves out."""

    text: tuple[str, ...]
    column: tuple[str, ...]
    left_out: str

    def keys(self, width: Width) -> tuple[str, ...]:
        return self.text if width == TEXT else self.column

    def note(self, width: Width) -> str:
        return "" if width == TEXT else f" {self.left_out}: in the text-width table."


COCO_TABLE = WidthLayout(COCO_LAYOUT, COCO_COLUMN_LAYOUT, "AP$_S$, AP$_M$, AP$_L$")
VIDEO_ACCURACY_TABLE = WidthLayout(tuple(c.key for c in VIDEO_ACCURACY), VIDEO_ACCURACY_COLUMN_LAYOUT,
                                   "AR$^{vid}_{10}$ and per-frame mask AP")
VIDEO_CONSISTENCY_TABLE = WidthLayout(tuple(c.key for c in VIDEO_CONSISTENCY),
                                      VIDEO_CONSISTENCY_COLUMN_LAYOUT, "MOTSA, HOTA, AssA and IDF1")


def coco_table(summaries: dict[GroupKey, dict[str, Summary]], suite: str, names: DisplayNames,
               width: Width) -> str:
    return paper_table(summaries, COCO_TABLE.keys(width), names, width, label=f"tab:{suite}-coco",
                       caption=f"Mask AP on {escape_tex(suite)} (COCO protocol, points): mean {PM} std over "
                       f"seeds; best in bold.{COCO_TABLE.note(width)}")


def voc_table(summaries: dict[GroupKey, dict[str, Summary]], suite: str, protocol: str, time_note: str,
              names: DisplayNames, width: Width) -> str:
    caption = (f"Region mAP$^r$ on {escape_tex(suite)} ({protocol.upper()} protocol, points): mean {PM} std "
               "over seeds; best in bold; time: inference ms/img of the plain model config (bench results, "
               f"batch 1). {time_note}")
    return paper_table(summaries, VOC_LAYOUT[protocol], names, width, time_key="infer_ms_median",
                       caption=caption, label=f"tab:{suite}-voc-{protocol}")


def video_accuracy_table(summaries: dict[GroupKey, dict[str, Summary]], suite: str, names: DisplayNames,
                         width: Width) -> str:
    caption = (f"Video instance segmentation on {escape_tex(suite)}, points: video AP (YouTube-VIS, "
               "spatio-temporal mask IoU of whole tracks) and per-frame mask AP (COCO); mean "
               f"{PM} std over seeds; best in bold.{VIDEO_ACCURACY_TABLE.note(width)}")
    return paper_table(summaries, VIDEO_ACCURACY_TABLE.keys(width), names, width, label=f"tab:{suite}-video",
                       caption=caption)


def video_consistency_table(summaries: dict[GroupKey, dict[str, Summary]], suite: str, names: DisplayNames,
                            width: Width) -> str:
    caption = (f"Temporal consistency on {escape_tex(suite)}, instances scoring at least 0.5: MOTS, HOTA "
               "and IDF1 in points, identity switches (IDSW) a count over the test clips, "
               r"$\Delta$IoU the mean frame-to-frame change of a ground-truth track's mask IoU with its "
               f"predicted track in points (lower is steadier); mean {PM} std over seeds; best in "
               f"bold.{VIDEO_CONSISTENCY_TABLE.note(width)}")
    return paper_table(summaries, VIDEO_CONSISTENCY_TABLE.keys(width), names, width,
                       label=f"tab:{suite}-consistency", caption=caption)


def ablation_table(ablation: Ablation, metric: str, names: DisplayNames, width: Width) -> str:
    """Axis value, n where rows differ, metric mean and spread, difference to the first value [95 % CI]; at
    text width also its verdict and P(improvement) [95 % CI]. Rows of one setting (the other axes, and the
    model or suite where several) under a heading row."""
    col = column(metric)
    wide = width == TEXT
    with_n = len({r.row.summary.n for r in ablation.rows}) > 1
    rows: list[list[str] | Heading] = []
    setting = None
    for r in ablation.rows:
        context = r.context(names(r.model) if r.model else "")
        if context and context != setting:
            rows.append(Heading(context))
        setting = context
        comp = r.row.comparison
        diff = "reference" if comp is None else interval_cell(comp.difference, lambda v: signed(v, col))
        row = [r.value] + ([str(r.row.summary.n)] if with_n else [])
        row += [value_cell(r.row.summary, col), diff]
        if wide:
            verdict = "" if comp is None else verdict_text(comp.difference, 0.0, col)
            prob = "" if comp is None else interval_cell(comp.improvement, lambda v: f"{v:.2f}")
            row += [verdict, prob]
        rows.append(row)
    header = [escape_tex(ablation.name.split(".")[-1])] + (["$n$"] if with_n else [])
    header += [col.tex, r"$\Delta$ [95\% CI]"] + (["", r"$P(\mathrm{impr.})$ [95\% CI]"] if wide else [])
    aligns = ("r" if with_n else "") + "rr" + ("lr" if wide else "")
    caption = (f"Ablation of {escape_tex(ablation.name)}: {escape_tex(col.label)} (points), mean {PM} std "
               "over seeds; $\\Delta$: difference to the first value with a stratified percentile-bootstrap "
               "95\\% interval"
               + ("; $P(\\mathrm{impr.})$: probability that a seed beats a seed of the first value"
                  if wide else "")
               + f"; {_seeds_note([r.row.summary.n for r in ablation.rows])}.")
    return render(Tabular(header, rows, aligns), width, caption=caption,
                  label=f"tab:ablation-{ablation.name.replace('.', '-')}")


def _claim_measured(result: ClaimResult) -> str:
    """The effect behind a verdict in one cell: Δ with its interval, or the factor test's p with the range of
    the cells' means, in small type."""
    col = column(result.metric)
    if result.difference is not None:
        return interval_cell(result.difference, lambda v: signed(v, col))
    if result.cell_range is not None:
        low, high = (number(v, col) for v in result.cell_range)
        p = f"$p$ = {result.p_value:.3f}" if result.p_value is not None else ""
        return rf"{p}\,{{\scriptsize(means {low}--{high})}}"
    return MISSING


def claims_table(results: list[ClaimResult], width: Width) -> str:
    """Each claim as a heading row, then one row per metric: the measured effect and the verdict."""
    rows: list[list[str] | Heading] = []
    previous = None
    for result in results:  # a claim's metrics follow one another
        if result.claim is not previous:
            rows.append(Heading(result.claim.claim))
        previous = result.claim
        rows.append([column(result.metric).tex, _claim_measured(result), escape_tex(result.verdict)])
    caption = (r"Claims tested on these runs (points): $\Delta$ with a stratified percentile-bootstrap 95\% "
               "interval over seeds, or a permutation F-test over a factor's cells ($p$, with the range of "
               "the cells' means); supported / contradicted when the interval excludes 0 and Student's "
               "$t$-test agrees (a factor: when its test does), at $p < 0.05$; else inconclusive.")
    return render(Tabular(["metric", "measured", "verdict"], rows, "rl", tex_labels=True), width,
                  caption=caption, label="tab:claims")
