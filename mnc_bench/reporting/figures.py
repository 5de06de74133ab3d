"""The ablation and speed figures: AP vs cascade depth, loss-weight heatmap, AP vs proposal quality, one
figure per other ablation axis, speed vs accuracy. Each returns a :class:`FigureResult`, or :class:`Skipped`
with the reason when its data is absent."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd
import seaborn as sns

from mnc_bench.reporting.compare import (
    DEFAULT_VALUE,
    GROUP_COLUMNS,
    axis_name,
    numbers,
    sort_values,
    value_text,
)
from mnc_bench.reporting.metrics import RECALL_KEYS, column
from mnc_bench.reporting.names import DisplayNames
from mnc_bench.reporting.style import FONT_PT, PALETTE, Canvas, FigureResult, Skipped, ci95, style
from mnc_bench.suites.contract import PROPOSAL_PREFIX

MAX_PANELS = 4
# An ablation axis is read at three strictnesses: the compared metric, COCO's AP at IoU 0.75 and VOC mAP^r@0.7
# (MNC's protocol), where a change in mask quality shows most.
AXIS_FIGURE_METRICS = ("coco/segm/AP75", "voc_mnc/mAP@0.7")
END_TO_END = {"True": "end-to-end", "False": "step-wise"}  # box_grad, read back as bool or text
# How a figure names each key of a proposal_control setting (models/mnc/proposals.py): a setting reads as a
# paper would print it ('oracle IoU 0.9', not 'mode=oracle, oracle_iou=0.9'), short enough to leave the
# panels their width at one column.
PROPOSAL_WORDS = {"max_proposals": "top {}", "jitter": "jitter {}", "oracle_iou": "IoU {}",
                  "num_random": "{} boxes", "oracle_per_gt": "{} per object",
                  "min_random_size": "min size {}", "apply_at": "at {}"}
PROPOSAL_MODES = {"rpn": "RPN", "oracle": "oracle", "random": "random"}
DEFAULT_PROPOSALS = "RPN (default)"


def _measured(done: pd.DataFrame, metric: str) -> pd.DataFrame:
    data = done.copy()
    data["value"] = numbers(data[metric]) * column(metric).scale
    return data[np.isfinite(data["value"])]


def _first_measured(runs: pd.DataFrame, candidates: Iterable[str], metric: str) -> list[str]:
    """The first of ``candidates`` other than the compared ``metric`` that some run measured: [] or [key]."""
    return [k for k in candidates if k != metric and k in runs and numbers(runs[k]).notna().any()][:1]


def _find(axes: list[str], *needles: str) -> list[str]:
    return [a for a in axes if any(n in axis_name(a) for n in needles)]


def _setting(data: pd.DataFrame, columns: list[str], names: DisplayNames) -> pd.Series:
    """A text label of the values of ``columns`` per row ('' when there are none); model (its display name)
    and suite included when they vary, so rows of different models or suites are never pooled into one point.
    """
    cols = [c for c in ("suite", "model") if data[c].nunique() > 1] + columns
    if not cols:
        return pd.Series("", index=data.index)

    def text(c: str, v: object) -> str:
        if c == "model":
            return names(str(v))
        return value_text(v) if c == "suite" else f"{axis_name(c).split('.')[-1]}={value_text(v)}"

    return data[cols].apply(lambda r: ", ".join(text(c, v) for c, v in zip(cols, r)), axis=1)


def _ordered(values: pd.Series, text: Callable[[object], str] = value_text) -> list[str]:
    return [text(v) for v in sort_values(values.dropna().tolist())]


def proposal_setting_text(value: object) -> str:
    """A proposal_control setting (collected as JSON text) as a figure prints it: 'RPN (default)', 'top 10',
    'jitter 0.2', 'oracle IoU 0.9', 'random 300 boxes'; a key without a word as 'key=value'."""
    try:
        setting = json.loads(str(value)) if str(value).startswith("{") else None
    except ValueError:
        setting = None
    if not isinstance(setting, dict):
        return DEFAULT_PROPOSALS if value_text(value) == DEFAULT_VALUE else value_text(value)
    mode = setting.pop("mode", None)
    head = PROPOSAL_MODES.get(str(mode), value_text(mode)) if mode is not None else ""
    rest = ", ".join(PROPOSAL_WORDS.get(k, k + "={}").format(value_text(v)) for k, v in setting.items())
    return " ".join(filter(None, (head, rest))) or DEFAULT_PROPOSALS


def _varying(data: pd.DataFrame, axes: list[str], exclude: list[str]) -> list[str]:
    return [a for a in axes if a not in exclude and data[a].nunique(dropna=False) > 1]


def _pointplot(ax, data: pd.DataFrame, x: str, order: list[str], hue: str | None, y: str = "value",
               hue_order: list[str] | None = None) -> None:
    sns.pointplot(data=data, x=x, y=y, order=order, hue=hue, hue_order=hue_order,
                  palette=PALETTE if hue else None, errorbar=ci95, dodge=0.3 if hue else False, capsize=0.15,
                  markersize=3.5, linewidth=1.0,
                  err_kws={"linewidth": 0.8}, ax=ax, legend=bool(hue))


def depth_figure(done: pd.DataFrame, axes: list[str], metric: str, canvas: Canvas) -> FigureResult | Skipped:
    """The compared metric vs cascade depth, one panel per setting of the other axes (weight sharing),
    end-to-end vs step-wise training as colour; below, where the runs measured it, the proposal recall of the
    same runs (the end-to-end box gradient reaches the RPN: the recall shows what it does to the
    proposals)."""
    name = "ap_vs_depth"
    depth = _find(axes, "num_stages")
    if not depth:
        return Skipped(name, "no cascade-depth axis (*.num_stages) varies in the results")
    runs = done[done[depth[0]].notna()]
    data = _measured(runs, metric)
    if data.empty:
        return Skipped(name, f"no finished run with {metric} on the depth axis")
    recall = _first_measured(runs, [k for k in RECALL_KEYS if k.startswith(PROPOSAL_PREFIX)], metric)
    blocks = [_depth_points(data, depth[0], axes, canvas)]
    blocks += [_depth_points(_measured(runs, key), depth[0], axes, canvas) for key in recall]
    hue = "training" if "training" in blocks[0] else None
    # one colour per training mode in every panel (seaborn would colour by order of appearance in each)
    hue_order = _ordered(blocks[0]["training"], str) if hue else None
    panels = sorted(blocks[0]["panel"].unique())
    if len(panels) > MAX_PANELS:
        return Skipped(name, f"{len(panels)} settings of the other axes (at most {MAX_PANELS} panels)")
    per_row = len(panels) if canvas.wide else min(len(panels), 2)  # the text width holds every panel in a row
    rows = math.ceil(len(panels) / per_row)
    keys = [metric, *recall]
    with style():
        fig = canvas.figure((2.3 if rows == 1 else 4.4) * (1 if len(keys) == 1 else 0.85 * len(keys)))
        grid = fig.subplots(rows * len(keys), per_row, squeeze=False, sharey="row", sharex=True)
        for k, (key, points) in enumerate(zip(keys, blocks)):
            block = grid[k * rows:(k + 1) * rows].flat
            for ax, panel in zip(block, panels):
                _pointplot(ax, points[points["panel"] == panel], "depth", _ordered(runs[depth[0]]), hue,
                           hue_order=hue_order)
                last = k == len(keys) - 1
                ax.set(xlabel="cascade stages" if last else "", ylabel=column(key).label,
                       title=panel if k == 0 else "")
                if hue and (k, panel) != (0, panels[0]):
                    ax.get_legend().remove()
            for ax in grid[k * rows:(k + 1) * rows].flat[len(panels):]:
                ax.set_visible(False)
        labels = " and ".join(column(key).label for key in keys)
        single = min(points.groupby(["panel", "depth"]).size().min() for points in blocks) < 2
        caption = (f"{labels} vs cascade depth" + (" (proposal recall below)" if recall else "")
                   + ": mean over seeds, 95 % percentile-bootstrap interval"
                   + (" (none where a point has one seed)" if single else "")
                   + ("; end-to-end vs step-wise training as colour" if hue else "")
                   + ("; a 3-stage cascade has one round and nothing to share, so its runs appear in every "
                      "weight-sharing panel." if _find(axes, "share_weights") else "."))
        return canvas.save(fig, name, caption)


def _depth_points(data: pd.DataFrame, depth: str, axes: list[str], canvas: Canvas) -> pd.DataFrame:
    """``data`` (measured runs on the depth axis) with the columns the depth figure plots: depth, training
    (end-to-end or step-wise, where box_grad varies) and panel (the other axes' setting)."""
    data = _single_round_in_every_sharing_panel(data, depth, axes)
    data["depth"] = data[depth].map(value_text)
    grad = [a for a in _find(axes, "box_grad") if data[a].nunique() > 1]
    if grad:
        data["training"] = data[grad[0]].map(lambda v: END_TO_END.get(value_text(v), value_text(v)))
    data["panel"] = _setting(data, _varying(data, axes, [depth, *grad]), canvas.names)
    return data


def _single_round_in_every_sharing_panel(data: pd.DataFrame, depth: str, axes: list[str]) -> pd.DataFrame:
    """A 3-stage cascade (one mask/classification round) is the same model whatever the weight-sharing flag
    says: copy its runs into every sharing setting, so each panel's curve starts at 3 stages."""
    share = [a for a in _find(axes, "share_weights") if data[a].nunique() > 1]
    if not share:
        return data
    single_round = numbers(data[depth]) == 3
    copies = [data[single_round].assign(**{share[0]: value}) for value in data[share[0]].dropna().unique()]
    return pd.concat([data[~single_round], *copies], ignore_index=True)


def loss_weight_figure(
    done: pd.DataFrame, axes: list[str], metric: str, canvas: Canvas
) -> FigureResult | Skipped:
    """One heatmap per metric, one above the other at column width (side by side at text width): the compared
    metric and the first measured high-IoU metric (AXIS_FIGURE_METRICS), where a loss balance that favours
    masks or classes should show."""
    name = "loss_weights"
    weights = _find(axes, "loss_weight")
    if not weights:
        return Skipped(name, "no loss-weight axis (*loss_weight*) varies in the results")
    if len(weights) > 2:
        return Skipped(name, f"{len(weights)} loss-weight axes; the heatmap shows two")
    rows_axis, cols_axis = weights[0], weights[-1] if len(weights) == 2 else None
    runs = done[done[weights].notna().all(axis=1)]
    panels = [(m, _measured(runs, m)) for m in [metric, *_first_measured(runs, AXIS_FIGURE_METRICS, metric)]]
    data = panels[0][1]
    others = _setting(data, _varying(data, axes, weights), canvas.names)
    if data.empty or others.nunique() > 1:
        reason = ("no finished run with the metric" if data.empty
                  else "other axes vary too: one heatmap would pool them")
        return Skipped(name, reason)
    with style():
        shape = (1, len(panels)) if canvas.wide else (len(panels), 1)
        fig = canvas.figure(2.4 if canvas.wide else 2.2 * len(panels))
        for ax, (key, values) in zip(fig.subplots(*shape, squeeze=False).flat, panels):
            mean, annot = _heatmap_cells(values, rows_axis, cols_axis)
            sns.heatmap(mean, annot=annot, fmt="", cmap="viridis", linewidths=0.5,
                        annot_kws={"fontsize": FONT_PT}, cbar_kws={"label": column(key).label}, ax=ax)
            ax.set(ylabel=_weight_label(rows_axis), xlabel=_weight_label(cols_axis) if cols_axis else "")
            ax.invert_yaxis()
        labels = " and ".join(column(key).label for key, _ in panels)
        caption = f"{labels} by loss weights: mean ± std over seeds in each cell."
        return canvas.save(fig, name, caption)


def _heatmap_cells(data: pd.DataFrame, rows_axis: str,
                   cols_axis: str | None) -> tuple[pd.DataFrame, np.ndarray]:
    """Cell means [rows x columns] of ``data['value']`` and their 'mean\n±std' (or '(n=1)') annotations."""
    data = data.assign(row=data[rows_axis].map(value_text),
                       col=data[cols_axis].map(value_text) if cols_axis else "")
    stats = data.groupby(["row", "col"])["value"].agg(["mean", "std", "count"])
    mean = stats["mean"].unstack("col").reindex(index=_ordered(data[rows_axis]),
                                                columns=_ordered(data[cols_axis]) if cols_axis else [""])
    annot = mean.copy().astype(object)
    for (r, c), s in stats.iterrows():
        annot.loc[r, c] = f"{s['mean']:.1f}" + (f"\n±{s['std']:.1f}" if s["count"] > 1 else "\n(n=1)")
    return mean.astype(float), annot.fillna("").to_numpy()


def _weight_label(axis: str) -> str:
    """'model.loss_weights.cls' -> 'cls loss weight' (the term it weighs)."""
    return f"{axis_name(axis).split('.')[-1]} loss weight"


def _numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def proposal_figure(
    done: pd.DataFrame, axes: list[str], metric: str, canvas: Canvas
) -> FigureResult | Skipped:
    """One row of panels per proposal axis, mask AP left and proposal recall right. A numeric axis (proposals
    kept, jitter) is the x axis, points joined; a categorical one (a proposal_control setting) lists its
    settings down the y axis, points not joined (the settings have no order), the default's mean as a dashed
    line when one model and setting are drawn."""
    name = "ap_vs_proposals"
    knobs = [a for a in _find(axes, "proposal") if done[a].nunique() > 1][:3]
    if not knobs:
        return Skipped(name, "no proposal-quality axis (*proposal*) varies in the results")
    recall = next(iter(_first_measured(done, RECALL_KEYS, metric)), None)
    keys = [metric] + ([recall] if recall else [])
    rows = {knob: _proposal_rows(done, knob, axes, canvas.names) for knob in knobs}
    # one colour per setting in every panel (seaborn would colour by order of appearance in each)
    settings = list(dict.fromkeys(s for r in rows.values() for s in r["setting"] if s))
    heights = [1.5 if _numeric(done[k]) else max(1.5, 0.6 + 0.18 * done[k].nunique()) for k in knobs]
    with style():
        fig = canvas.figure(sum(heights) + 0.2)
        grid = fig.subplots(len(knobs), len(keys), squeeze=False, gridspec_kw={"height_ratios": heights})
        dashed = legend = False
        for i, knob in enumerate(knobs):
            hue = "setting" if rows[knob]["setting"].nunique() > 1 else None
            hue_order = settings if hue else None
            for j, key in enumerate(keys):
                ax, data = grid[i, j], _measured(rows[knob], key)
                if data.empty:
                    ax.set_axis_off()
                    ax.text(0.5, 0.5, f"{column(key).label}: not measured", ha="center",
                            transform=ax.transAxes)
                    continue
                numeric = _numeric(done[knob])
                order = _ordered(data[knob], value_text if numeric else proposal_setting_text)
                label = axis_name(knob).split(".")[-1].replace("_", " ")
                if numeric:
                    _pointplot(ax, data, "x", order, hue, hue_order=hue_order)
                    ax.set(xlabel=label, ylabel=column(key).label)
                else:
                    sns.pointplot(data=data, x="value", y="x", order=order, hue=hue, hue_order=hue_order,
                                  palette=PALETTE if hue else None, errorbar=ci95, linestyle="none",
                                  capsize=0.2, markersize=3.5,
                                  err_kws={"linewidth": 0.8}, ax=ax, legend=bool(hue))
                    ax.set(xlabel=column(key).label, ylabel="")
                    ax.set_title(label if j == 0 else "", loc="left")
                    if not hue and order[0] == DEFAULT_PROPOSALS:
                        ax.axvline(data.loc[data["x"] == DEFAULT_PROPOSALS, "value"].mean(), color="0.5",
                                   linestyle="--", linewidth=0.6, zorder=0)
                        dashed = True
                    if j:
                        ax.set_yticklabels([])
                if hue and legend:
                    ax.get_legend().remove()
                legend = legend or bool(hue)
        caption = (f"{column(metric).label}"
                   + (f" (left) and {column(recall).label} (right)" if recall
                      else " (no recall column in the results)")
                   + " vs proposal quality, one row per proposal axis: mean over seeds, 95 % "
                   "percentile-bootstrap interval"
                   + ("; dashed: the default (the RPN's own proposals)." if dashed else "."))
        return canvas.save(fig, name, caption)


def _proposal_rows(done: pd.DataFrame, knob: str, axes: list[str], names: DisplayNames) -> pd.DataFrame:
    """The runs on proposal axis ``knob`` with the columns the proposal figure plots: x (the knob's value as
    text) and setting (the other axes', model included), labelled once for all of the row's metrics so that a
    metric some runs lack does not relabel the others."""
    rows = done[done[knob].notna()].copy()
    rows["x"] = rows[knob].map(value_text if _numeric(done[knob]) else proposal_setting_text)
    rows["setting"] = _setting(rows, _varying(rows, axes, [knob]), names)
    return rows


def _specialised_axes(axes: list[str]) -> list[str]:
    """Axes that the depth, loss-weight and proposal figures draw (box_grad: as the depth figure's colour)."""
    depth = _find(axes, "num_stages")
    return depth + (_find(axes, "box_grad") if depth else []) + _find(axes, "loss_weight", "proposal")


def axis_figures(done: pd.DataFrame, axes: list[str], metric: str, canvas: Canvas
                 ) -> list[FigureResult | Skipped]:
    """One figure per ablation axis that no specialised figure draws (e.g. which labels train stage 3): the
    axis values along x, one panel per metric (the compared one, then AP75 and mAP^r@0.7 where measured), the
    settings of the other varying axes (and the model, where models vary) as colour."""
    drawn: list[FigureResult | Skipped] = []
    for axis in [a for a in axes if a not in _specialised_axes(axes)]:
        name = f"ablation_{axis_name(axis).replace('.', '_')}"
        rows = done[done[axis].notna()]
        keys = [k for k in dict.fromkeys((metric, *AXIS_FIGURE_METRICS))
                if k in rows and numbers(rows[k]).notna().any()]
        if metric not in keys:
            drawn.append(Skipped(name, f"no finished run with {metric} on this axis"))
            continue
        setting = _setting(rows, _varying(rows, axes, [axis]), canvas.names)
        hue = "setting" if setting.nunique() > 1 else None
        labels = sorted(setting.unique()) if hue else []
        label = axis_name(axis).split(".")[-1]
        with style():
            fig = canvas.figure(2.1 + canvas.legend_height(labels))
            grid = fig.subplots(1, len(keys), squeeze=False)
            for ax, key in zip(grid.flat, keys):
                data = _measured(rows, key)
                data["x"], data["setting"] = data[axis].map(value_text), setting
                _pointplot(ax, data, "x", _ordered(rows[axis]), hue, hue_order=labels or None)
                ax.set(xlabel=label, ylabel="", title=column(key).label.replace(" (", "\n("))  # fits a third
                if hue:
                    legend = ax.get_legend()
                    handles, texts = legend.legend_handles, [t.get_text() for t in legend.get_texts()]
                    legend.remove()
            if hue:  # one legend for the panels, under them
                fig.legend(handles, texts, loc="outside lower center", ncols=canvas.legend_columns(labels),
                           frameon=False)
            single = rows.assign(setting=setting).groupby(["setting", axis], dropna=False).size().min() < 2
            caption = (f"{', '.join(column(k).label for k in keys)} by {label}: mean over seeds, 95 % "
                       "percentile-bootstrap interval"
                       + (" (none where a point has one seed)" if single else "")
                       + ("; colour: " + ", ".join(labels) if hue else "") + ".")
            drawn.append(canvas.save(fig, name, caption))
    return drawn


def speed_figure(
    done: pd.DataFrame, bench: pd.DataFrame | None, metric: str, canvas: Canvas
) -> FigureResult | Skipped:
    name = "speed_accuracy"
    if bench is None or "infer_ms_median" not in bench:
        return Skipped(name, "no bench results with infer_ms_median (run `mnc-bench bench models --json`)")
    # Bench speed is per config: a variant (other axis values) may run at another speed, so only plain runs.
    data = _measured(done[done["variant"] == ""], metric)
    multi_suite = data["suite"].nunique() > 1
    points = []
    for (suite, model, _variant), runs in data.groupby(GROUP_COLUMNS, sort=True):
        speed = bench[bench["model"] == model]
        if speed.empty:
            continue
        s = speed.iloc[0]
        q1, q3 = s.get("infer_ms_q1", np.nan), s.get("infer_ms_q3", np.nan)
        shown = canvas.names(model)
        points.append({"label": f"{suite}: {shown}" if multi_suite else shown, "ms": s["infer_ms_median"],
                       "ms_lo": s["infer_ms_median"] - q1, "ms_hi": q3 - s["infer_ms_median"],
                       "value": runs["value"].mean(), "std": runs["value"].std(ddof=1)})
    if not points:
        return Skipped(name, "no finished run of a plain model config (no other axis set) appears in the "
                             "bench results")
    points_df = pd.DataFrame(points)
    colors = dict(zip(points_df["label"], sns.color_palette(PALETTE, len(points_df))))
    with style():
        fig = canvas.figure(2.1 + canvas.legend_height(list(points_df["label"])))
        ax = fig.subplots()
        for p in points_df.itertuples():
            ax.errorbar(p.ms, p.value, xerr=[[p.ms_lo], [p.ms_hi]], yerr=None if np.isnan(p.std) else p.std,
                        fmt="o", color=colors[p.label], label=p.label, capsize=1.5, elinewidth=0.8,
                        markersize=3.5)
        ax.set(xlabel="inference ms/img (median; bars: IQR)", ylabel=f"{column(metric).label} (bars: ± std)")
        canvas.legend_below(ax, list(points_df["label"]))
        caption = (f"Speed vs {column(metric).label}: inference median ms/img with its interquartile range "
                   "(bench results, batch 1) against mean ± std over seeds; runs of plain model configs "
                   "only.")
        return canvas.save(fig, name, caption)

