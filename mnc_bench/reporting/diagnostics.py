"""Why models differ: a table and a figure for each of Boundary AP, TIDE's error breakdown and robustness to
corruptions, drawn from the collected table where its columns are measured (``coco/boundary/*``, ``tide/*``,
``robustness/*``; see :mod:`mnc_bench.evaluation`). Tables are blocks for :mod:`mnc_bench.reporting.sections`'
page; figures are :class:`FigureResult` or :class:`Skipped` like those of
:mod:`mnc_bench.reporting.figures`."""

from __future__ import annotations

import textwrap
from collections.abc import Callable

import numpy as np
import pandas as pd
import seaborn as sns

from mnc_bench.evaluation.errors import ERROR_TYPES, SUMMARY_TYPES
from mnc_bench.reporting.compare import GROUP_COLUMNS, group_order, group_summaries, numbers
from mnc_bench.reporting.metrics import Column, mean_std
from mnc_bench.reporting.names import DisplayNames
from mnc_bench.reporting.render import Block, Heading, Table, Text
from mnc_bench.reporting.style import PALETTE, Canvas, FigureResult, Skipped, style

BOUNDARY_PAIRS = (("coco/segm/AP", "coco/boundary/AP"), ("coco/segm/AP50", "coco/boundary/AP50"),
                  ("coco/segm/AP75", "coco/boundary/AP75"))
ERROR_LABELS = {"cls": "Cls", "loc": "Loc", "both": "Both", "dupe": "Dupe", "bkg": "Bkg", "miss": "Miss",
                "FP": "FalsePos", "FN": "FalseNeg"}
KIND_LABELS = {"segm": "mask", "bbox": "box"}
KIND_PLURALS = {"segm": "masks", "bbox": "boxes"}
SEVERITY_LEVELS = (1, 2, 3, 4, 5)
LABEL_WIDTH = 24  # characters per line of a model label beside a bar


def _points(key: str, label: str, higher_is_better: bool = True) -> Column:
    return Column(key, label, label, higher_is_better=higher_is_better)


def _measured(done: pd.DataFrame, key: str) -> bool:
    return key in done and numbers(done[key]).notna().any()


def _groups(done: pd.DataFrame, keys: list[str], names: DisplayNames) -> list[tuple[str, dict]]:
    """(row label, summaries) per (suite, model, variant) having any of ``keys``, in the report's order."""
    present = [k for k in keys if k in done]
    summaries = group_summaries(done, present)
    multi_suite = done["suite"].nunique() > 1
    rows = []
    for (suite, model, variant), cells in summaries.items():
        if any(cells[k].n for k in present):
            rows.append(((f"{suite}: " if multi_suite else "") + names.label(model, variant), cells))
    return rows


def _table(done: pd.DataFrame, columns: list[Column], names: DisplayNames) -> Table:
    rows = [[label, *(mean_std(cells[c.key], c) if c.key in cells else "—" for c in columns)]
            for label, cells in _groups(done, [c.key for c in columns], names)]
    return Table(["model", *(c.label for c in columns)], rows)


def _long(done: pd.DataFrame, keys: dict[str, str], names: DisplayNames) -> pd.DataFrame:
    """One row per (run, key): group label, the ``keys`` label, value in points; runs without the key
    dropped."""
    multi_suite = done["suite"].nunique() > 1
    frames = []
    for key, label in keys.items():
        if key not in done:
            continue
        part = done[GROUP_COLUMNS].copy()
        part["value"] = numbers(done[key]) * 100
        part["what"] = label
        frames.append(part)
    if not frames:
        return pd.DataFrame(columns=[*GROUP_COLUMNS, "group", "what", "value", "key"])
    data = pd.concat(frames, ignore_index=True)
    data = data[np.isfinite(data["value"])]
    keys = list(zip(data["suite"], data["model"], data["variant"]))
    data["group"] = [(f"{s}: " if multi_suite else "") + names.label(m, v) for s, m, v in keys]
    data["key"] = keys
    return data


def _wrapped(data: pd.DataFrame) -> pd.DataFrame:
    """Long group labels (suite: model [variant]) wrapped: bars beside them keep the figure's width."""
    return data.assign(group=data["group"].map(lambda label: textwrap.fill(label, LABEL_WIDTH)))


def _rows_height(labels: list[str], bars: int) -> float:
    """Inches for one row of ``bars`` horizontal bars per label, each row as tall as the longest label."""
    lines = max((label.count("\n") + 1 for label in labels), default=1)
    return len(labels) * max(0.06 * bars + 0.05, 0.1 * lines)


def _group_order(data: pd.DataFrame) -> list[str]:
    """The group labels of ``data`` in the report's row order."""
    labels = dict(zip(data["key"], data["group"]))
    return [labels[key] for key in sorted(labels, key=group_order)]


# ------------------------------------------------------------------------------------------------------------
# Boundary AP
# ------------------------------------------------------------------------------------------------------------

def boundary_section(done: pd.DataFrame, names: DisplayNames) -> list[Block]:
    if not _measured(done, "coco/boundary/AP"):
        return []
    columns = []
    for mask_key, boundary_key in BOUNDARY_PAIRS:
        name = mask_key.rsplit("/", 1)[1]
        columns += [_points(mask_key, f"mask {name}"), _points(boundary_key, f"boundary {name}")]
    return [Heading("Boundary AP"), _table(done, columns, names),
            Text("Boundary AP (Cheng et al., CVPR 2021): COCO mask AP whose matching IoU is the smaller of "
                 "mask IoU and boundary IoU, the IoU of the two masks' pixels within 2 % of the image "
                 "diagonal of their contours (4 px at 128 px). It weighs a mask's outline as much as its "
                 "interior: a model whose boundary AP falls further below its mask AP draws coarser "
                 "outlines. Mean ± std over seeds, points.")]


def boundary_figure(done: pd.DataFrame, canvas: Canvas) -> FigureResult | Skipped:
    name = "boundary_ap"
    keys = {"coco/segm/AP": "mask AP", "coco/boundary/AP": "boundary AP",
            "coco/segm/AP75": "mask AP75", "coco/boundary/AP75": "boundary AP75"}
    data = _long(done, keys, canvas.names)
    if not _measured(done, "coco/boundary/AP") or data.empty:
        return Skipped(name, "no finished run with coco/boundary/AP (score it: mnc-bench rescore SUITE "
                             "--metric boundary)")
    data = _wrapped(data)
    order = _group_order(data)
    with style():
        fig = canvas.figure(0.6 + _rows_height(order, 4) + canvas.legend_height(list(keys.values())))
        ax = fig.subplots()
        sns.barplot(data=data, y="group", x="value", hue="what", order=order, hue_order=list(keys.values()),
                    palette=PALETTE, errorbar=("sd", 1), err_kws={"linewidth": 0.8}, capsize=0.1, ax=ax)
        ax.set(xlabel="points (bars: ± std over seeds)", ylabel="")
        handles, labels = ax.get_legend_handles_labels()
        ax.get_legend().remove()
        fig.legend(handles, labels, loc="outside lower center", ncols=canvas.legend_columns(labels),
                   frameon=False)
        caption = ("Mask AP and Boundary AP, at all IoU thresholds and at 0.75: mean over seeds; the gap "
                   "between a model's mask and boundary bars is what its outlines cost.")
        return canvas.save(fig, name, caption)


# ------------------------------------------------------------------------------------------------------------
# TIDE
# ------------------------------------------------------------------------------------------------------------

def _tide_keys(kind: str) -> list[str]:
    return [f"tide/{kind}/dAP_{e}" for e in ERROR_TYPES + SUMMARY_TYPES]


def _tide_kinds(done: pd.DataFrame) -> list[str]:
    """The kinds (segm, bbox) whose TIDE columns are measured: those the table and the figure show."""
    return [k for k in KIND_LABELS if _measured(done, f"tide/{k}/dAP_loc")]


def tide_section(done: pd.DataFrame, names: DisplayNames) -> list[Block]:
    kinds = _tide_kinds(done)
    if not kinds:
        return []
    blocks: list[Block] = [Heading("Error breakdown (TIDE)")]
    for kind in kinds:
        columns = [_points(f"tide/{kind}/base_AP50", "AP50")]
        columns += [_points(key, ERROR_LABELS[key.rsplit("_", 1)[1]], higher_is_better=False)
                    for key in _tide_keys(kind)]
        blocks += [Text(f"{KIND_PLURALS[kind].capitalize()}:"), _table(done, columns, names)]
    blocks.append(Text("TIDE (Bolya et al., ECCV 2020), by the authors' tidecv package: how many points of "
                       "AP50 each kind of error costs, i.e. the AP50 gained when an oracle fixes only that "
                       "kind: Cls wrong class, Loc right class but 0.1 ≤ IoU < 0.5, Both wrong class and "
                       "poorly placed, Dupe a second detection of a found object, Bkg a detection of nothing "
                       "(IoU ≤ 0.1), Miss an object nothing detected. FalsePos and FalseNeg: the AP50 gained "
                       "by ranking every false positive last, and by removing every missed object. Mean ± "
                       "std over seeds, points; lower is better."))
    return blocks


def tide_figure(done: pd.DataFrame, canvas: Canvas) -> FigureResult | Skipped:
    name = "tide_errors"
    kinds = _tide_kinds(done)
    if not kinds:
        return Skipped(name, "no finished run with tide/* columns (score them: mnc-bench rescore SUITE "
                             "--metric tide)")
    panels = {kind: _wrapped(_long(done, {f"tide/{kind}/dAP_{e}": ERROR_LABELS[e] for e in ERROR_TYPES},
                                   canvas.names))
              for kind in kinds}
    groups = _group_order(pd.concat(panels.values(), ignore_index=True))
    types = [ERROR_LABELS[e] for e in ERROR_TYPES]
    panel_height = 0.45 + _rows_height(groups, len(types))
    with style():
        fig = canvas.figure(panel_height * len(kinds) + canvas.legend_height(types))
        grid = fig.subplots(len(kinds), 1, squeeze=False, sharex=True)
        for ax, (kind, data) in zip(grid[:, 0], panels.items()):
            sns.barplot(data=data, y="group", x="value", hue="what", order=groups, hue_order=types,
                        palette=PALETTE, errorbar=("sd", 1), err_kws={"linewidth": 0.6}, capsize=0.1, ax=ax)
            ax.set(ylabel="", xlabel="", title=f"{KIND_PLURALS[kind]}")
            ax.get_legend().remove()
        grid[-1, 0].set_xlabel("dAP50 (points; bars: ± std over seeds)")
        handles, labels = grid[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=canvas.legend_columns(types),
                   frameon=False)
        caption = ("TIDE error breakdown: the AP50 points each error type costs, one group of bars per model"
                   + (" (masks top, boxes bottom)" if len(kinds) == 2 else f" ({KIND_PLURALS[kinds[0]]})")
                   + ", mean over seeds.")
        return canvas.save(fig, name, caption)


# ------------------------------------------------------------------------------------------------------------
# Robustness
# ------------------------------------------------------------------------------------------------------------

def robustness_section(done: pd.DataFrame, names: DisplayNames) -> list[Block]:
    if not _measured(done, "robustness/segm/mPC"):
        return []
    columns = []
    for kind in KIND_LABELS:
        columns += [_points(f"robustness/{kind}/AP_clean", f"{KIND_LABELS[kind]} P (clean)"),
                    _points(f"robustness/{kind}/mPC", f"{KIND_LABELS[kind]} mPC"),
                    _points(f"robustness/{kind}/rPC", f"{KIND_LABELS[kind]} rPC (%)")]
    corruptions = [c for c in done.columns if c.startswith("robustness/segm/AP/") and _measured(done, c)]
    blocks: list[Block] = [Heading("Robustness to corruptions"), _table(done, columns, names)]
    if corruptions:
        per = [_points(c, c.rsplit("/", 1)[1].replace("_", " ")) for c in corruptions]
        blocks += [Text("Mask AP per corruption (mean over its severities):"), _table(done, per, names)]
    blocks.append(Text("Michaelis et al. 2019: the test images under the 15 corruptions of the "
                       "imagecorruptions package (noise, blur, weather, digital), applied at test time only. "
                       "P: AP on the same images clean; mPC: mean AP over the corruptions and severities of "
                       "the pass; rPC = mPC / P. Each run's robustness.json states its severities, image "
                       "count and seed. Mean ± std over seeds, points (rPC in %)."))
    return blocks


def robustness_figure(done: pd.DataFrame, canvas: Canvas) -> FigureResult | Skipped:
    name = "robustness"
    if not _measured(done, "robustness/segm/mPC"):
        return Skipped(name, "no finished run with robustness/* columns (score them: mnc-bench robustness "
                             "SUITE)")
    keys = {"robustness/segm/AP_clean": 0, **{f"robustness/segm/AP@s{s}": s for s in SEVERITY_LEVELS}}
    curve = _wrapped(_long(done, {k: str(v) for k, v in keys.items()}, canvas.names))
    curve["severity"] = curve["what"].astype(int)
    ratio = _wrapped(_long(done, {"robustness/segm/rPC": "rPC"}, canvas.names))
    groups = _group_order(pd.concat([curve, ratio], ignore_index=True))
    with style():
        lines = max((label.count("\n") + 1 for label in groups), default=1)
        fig = canvas.figure(1.9 + lines * canvas.legend_height(groups))
        left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.6, 1]})
        sns.lineplot(data=curve, x="severity", y="value", hue="group", hue_order=groups, palette=PALETTE,
                     marker="o", markersize=3.5, errorbar=("sd", 1), err_style="bars",
                     err_kws={"capsize": 1.5}, ax=left, legend=False)
        left.set(xlabel="severity (0: clean)", ylabel="mask AP (points)",
                 xticks=sorted(curve["severity"].unique()))
        sns.barplot(data=ratio, x="group", y="value", hue="group", order=groups, hue_order=groups,
                    palette=PALETTE, errorbar=("sd", 1), err_kws={"linewidth": 0.8}, capsize=0.1, ax=right,
                    legend=False)
        right.set(xlabel="", ylabel="mask rPC (%)", xticks=[])
        colors = sns.color_palette(PALETTE, len(groups))
        handles = [right.bar(0, 0, color=c, label=g, width=0) for c, g in zip(colors, groups)]
        fig.legend(handles, groups, loc="outside lower center", ncols=canvas.legend_columns(groups),
                   frameon=False)
        caption = ("Robustness to corruptions: mask AP vs severity (mean over the corruptions of each "
                   "severity; 0 is clean) and mask rPC = mPC / clean AP, per model, mean over seeds (bars: ± "
                   "std).")
        return canvas.save(fig, name, caption)


def sections(done: pd.DataFrame, names: DisplayNames) -> list[Block]:
    """The three tables (each only where its columns are measured)."""
    return [*boundary_section(done, names), *tide_section(done, names), *robustness_section(done, names)]


def figures(done: pd.DataFrame) -> list[tuple[str, Callable[[Canvas], FigureResult | Skipped]]]:
    """(name, draw on a canvas) for the report's figure list."""
    return [("boundary_ap", lambda canvas: boundary_figure(done, canvas)),
            ("tide_errors", lambda canvas: tide_figure(done, canvas)),
            ("robustness", lambda canvas: robustness_figure(done, canvas))]
