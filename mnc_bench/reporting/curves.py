"""Training curves from each run's ``scalars.json`` (JSON lines as mmengine's LocalVisBackend writes them):
total loss of every group of a suite, and per-stage losses of each model; mean over seeds with a ±1 std
band."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.ticker import LogFormatter

from mnc_bench.reporting.compare import short_label
from mnc_bench.reporting.names import DisplayNames
from mnc_bench.reporting.style import PALETTE, Canvas, FigureResult, Skipped, style
from mnc_bench.reporting.table import run_folder
from mnc_bench.suites.contract import SCALARS_JSON

MAX_STAGE_FIGURES = 6


def read_scalars(path: Path) -> pd.DataFrame | None:
    """Training-step records (those with a ``loss``) as a frame with an ``iter`` column; None when the file is
    missing, unreadable or holds no training step (validation records carry no loss and are left out)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "loss" in record and ("iter" in record or "step" in record):
            records.append({"iter": record.get("iter", record.get("step")),
                            **{k: v for k, v in record.items() if k == "loss" or k.startswith("loss_")}})
    if not records:
        return None
    frame = pd.DataFrame(records).apply(pd.to_numeric, errors="coerce")
    return frame.dropna(subset=["iter", "loss"])


def load_curves(done: pd.DataFrame, names: DisplayNames) -> tuple[pd.DataFrame, list[str]]:
    """Every finished run's curves with its suite, model and legend label (the model's display name); and the
    run ids that have none."""
    frames, missing = [], []
    for suite, runs in done.groupby("suite", sort=True):
        with_model = runs["model"].nunique() > 1
        for _, run in runs.iterrows():
            curve = read_scalars(run_folder(run) / SCALARS_JSON)
            if curve is None:
                missing.append(run["run_id"])
                continue
            curve["label"] = (names.label(run["model"], run["variant"]) if with_model
                              else short_label(run["model"], run["variant"], with_model=False))
            curve["suite"], curve["model"], curve["variant"] = suite, run["model"], run["variant"]
            curve["run_id"] = run["run_id"]
            frames.append(curve)
    curves = pd.concat(frames, ignore_index=True, sort=False) if frames else pd.DataFrame()
    return curves, sorted(missing)


def loss_scale(loss: pd.Series) -> str:
    """'log' when every loss is positive: a model whose total loss sums many terms (Mask2Former's 10 decoder
    layers: ~40-100) would otherwise flatten every other curve (~1) on a shared linear axis."""
    return "log" if len(loss) and (loss > 0).all() else "linear"


class _PlainLogFormatter(LogFormatter):
    """Labels the ticks matplotlib's log formatter would label, as plain numbers (0.6, 2, 40) rather than
    powers of ten (6 x 10^-1), which read badly on an axis spanning under two decades."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        return f"{x:g}" if super().__call__(x, pos) else ""


def set_loss_scale(ax: Axes, loss: pd.Series) -> str:
    """Applies :func:`loss_scale` to ``ax``'s y axis (plain-number tick labels on a log axis); returns it."""
    scale = loss_scale(loss)
    ax.set_yscale(scale)
    if scale == "log":
        ax.yaxis.set_major_formatter(_PlainLogFormatter(labelOnlyBase=False))
        ax.yaxis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    return scale


def _total_loss(curves: pd.DataFrame, suite: str, name: str, canvas: Canvas, note: str) -> FigureResult:
    labels = sorted(curves["label"].unique())
    fig = canvas.figure(2.1 + canvas.legend_height(labels))
    ax = fig.subplots()
    sns.lineplot(data=curves, x="iter", y="loss", hue="label", hue_order=labels, palette=PALETTE,
                 errorbar="sd", ax=ax)
    ax.set(xlabel="iteration", ylabel="total loss")
    scale = set_loss_scale(ax, curves["loss"])
    canvas.legend_below(ax, labels)
    axis = (" Log scale: models whose losses differ in size show their relative fall alike." if scale == "log"
            else "")
    caption = f"Total training loss vs iteration, suite {suite}: mean over seeds, band ±1 std.{axis}{note}"
    return canvas.save(fig, name, caption)


def _stage_losses(runs: pd.DataFrame, title: str, name: str, canvas: Canvas) -> FigureResult | Skipped:
    stages = [c for c in sorted(runs.columns) if c.startswith("loss_") and runs[c].notna().any()]
    if not stages:
        return Skipped(name, f"{title}: no per-stage losses logged")
    long = runs.melt(id_vars=["iter", "run_id"], value_vars=stages, var_name="term", value_name="value")
    long = long.dropna()
    long["term"] = long["term"].str.removeprefix("loss_")
    terms = [s.removeprefix("loss_") for s in stages]
    fig = canvas.figure(2.1 + canvas.legend_height(terms))
    ax = fig.subplots()
    sns.lineplot(data=long, x="iter", y="value", hue="term", hue_order=terms,
                 palette=PALETTE, errorbar="sd", ax=ax)
    ax.set(xlabel="iteration", ylabel="loss")
    ax.set_title(title)
    canvas.legend_below(ax, terms)
    return canvas.save(fig, name, f"Per-stage training losses of {title}: mean over seeds, band ±1 std.")


def curve_figures(done: pd.DataFrame, canvas: Canvas) -> list[FigureResult | Skipped]:
    """Total loss per suite; per-stage losses of each model (its plain variant when it has one), at most
    MAX_STAGE_FIGURES models."""
    curves, missing = load_curves(done, canvas.names)
    note = (f" {len(missing)} finished run(s) have no scalars.json: {', '.join(missing[:5])}"
            f"{' ...' if len(missing) > 5 else ''}.") if missing else ""
    if curves.empty:
        return [Skipped("training_loss", "no finished run has training scalars (scalars.json)." + note)]
    suites = sorted(curves["suite"].unique())
    results: list[FigureResult | Skipped] = []
    with style():
        for suite in suites:
            name = "training_loss" if len(suites) == 1 else f"training_loss_{suite}"
            results.append(_total_loss(curves[curves["suite"] == suite], suite, name, canvas, note))
        models = sorted(curves["model"].unique())
        for model in models[:MAX_STAGE_FIGURES]:
            runs = curves[curves["model"] == model]
            plain = runs[runs["variant"] == ""]
            suite, variant = (plain if len(plain) else runs).iloc[0][["suite", "variant"]]
            runs = runs[(runs["suite"] == suite) & (runs["variant"] == variant)]
            title = f"{suite}: {canvas.names.label(model, variant)}"
            results.append(_stage_losses(runs, title, f"training_stages_{model}", canvas))
    if len(models) > MAX_STAGE_FIGURES:
        results.append(Skipped("training_stages", f"per-stage curves drawn for the first {MAX_STAGE_FIGURES} "
                                                  f"of {len(models)} models"))
    return results
