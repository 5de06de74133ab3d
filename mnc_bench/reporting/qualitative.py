"""Qualitative grid: the same validation images in rows, ground truth in the first column, then one column per
model with its predicted masks overlaid (from each run's saved ``predictions.json``), coloured by category.

Which models: the ones named (``--qualitative-models``), else the baseline, then the best model of each
family, then the others. Models past what one figure holds at its print width go on into further figures
(``qualitative_2`` ...), each with the ground truth again, so no model is dropped.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from PIL import Image
from pycocotools import mask as mask_utils

from mnc_bench.data.coco_format import read_json
from mnc_bench.data.segmentation import SegmentationError, to_rle
from mnc_bench.errors import UserError
from mnc_bench.evaluation import GroundTruth, load_ground_truth, load_predictions
from mnc_bench.reporting.compare import numbers
from mnc_bench.reporting.metrics import column
from mnc_bench.reporting.names import DisplayNames
from mnc_bench.reporting.style import FONT_PT, Canvas, FigureResult, Skipped, style
from mnc_bench.reporting.table import run_folder
from mnc_bench.suites.contract import PREDICTIONS_JSON

NAME = "qualitative"
MAX_IMAGES = 3
MODELS_PER_FIGURE = {"column": 3, "text": 6}  # besides the ground truth: cells ~0.8 in and ~1 in wide
SCORE_THR = 0.5  # what the Mask R-CNN paper's example figures show
MAX_INSTANCES = 10
ALPHA = 0.5
LINE_IN = FONT_PT * 1.25 / 72  # one line of text


@dataclass(frozen=True)
class ModelChoice:
    models: list[str]  # in grid order
    how: str  # for the caption


def _model_scores(done: pd.DataFrame, metric: str) -> dict[str, float]:
    """Mean of ``metric`` per model over the runs of its plain variant (all its runs when it has none)."""
    scores = {}
    for model, runs in done.groupby("model", sort=True):
        plain = runs[runs["variant"] == ""]
        values = numbers((plain if len(plain) else runs)[metric]) if metric in runs else pd.Series([math.nan])
        scores[str(model)] = float(values.mean()) if values.notna().any() else -math.inf
    return scores


def choose_models(done: pd.DataFrame, metric: str, baselines: list[str], names: DisplayNames,
                  chosen: list[str] | None = None) -> ModelChoice:
    """``chosen`` as given (UserError for a model without a finished run); else the baselines, then the best
    model of each family by ``metric`` (best family first), then the other models by ``metric``."""
    models = sorted(set(done["model"].astype(str)))
    if chosen:
        unknown = [m for m in chosen if m not in models]
        if unknown:
            raise UserError(f"--qualitative-models {unknown[0]}: no finished run of this model "
                            f"(models: {', '.join(models[:10])})")
        return ModelChoice(list(dict.fromkeys(chosen)), "as chosen (--qualitative-models)")
    scores = _model_scores(done, metric)
    by_score = sorted(models, key=lambda m: (-scores[m], m))
    leading = [b for b in dict.fromkeys(baselines) if b in models]
    order = list(leading)
    families: set[str] = set()
    for model in by_score:  # the first of a family in score order is its best
        if names.family(model) not in families:
            families.add(names.family(model))
            order += [] if model in order else [model]
    order += [m for m in by_score if m not in order]
    label = column(metric).label
    first = "the baselines" if len(leading) > 1 else "the baseline"
    rest = f"the best model of each family by {label}"
    how = (f"{first} first, then {rest}, then the others by {label}" if leading
           else f"{rest} first, then the others by {label}")
    return ModelChoice(order, how)


def representative_runs(done: pd.DataFrame, models: list[str]) -> tuple[list[pd.Series], list[str]]:
    """One run per model of ``models``, in that order: of its plain variant when it has one, the lowest seed
    with a predictions file and a test annotation file; and the models without such a run."""
    chosen, missing = [], []
    for model in models:
        runs = done[done["model"] == model]
        runs = runs.assign(_varied=runs["variant"] != "").sort_values(["_varied", "suite", "variant", "seed"])
        run = next((r for _, r in runs.iterrows()
                    if (run_folder(r) / PREDICTIONS_JSON).is_file() and r.get("test_ann_file", "")), None)
        if run is None:
            missing.append(model)
        else:
            chosen.append(run)
    return chosen, missing


def _pick_images(gt: GroundTruth) -> list[int]:
    """The images with the most objects (ties: lowest id), so the rows show crowded scenes."""
    counts: dict[int, int] = {img["id"]: 0 for img in gt.dataset["images"]}
    for ann in gt.annotations:
        if not ann.get("iscrowd", 0):
            counts[ann["image_id"]] += 1
    return sorted(counts, key=lambda i: (-counts[i], i))[:MAX_IMAGES]


@dataclass(frozen=True)
class _Cell:
    rles: list[dict]
    category_ids: list[int]


def _ground_truth_cell(gt: GroundTruth, image_id: int) -> _Cell:
    anns = [a for a in gt.annotations if a["image_id"] == image_id and not a.get("iscrowd", 0)]
    height, width = gt.image_sizes[image_id]
    try:
        rles = [to_rle(a["segmentation"], height, width) for a in anns]
    except (KeyError, SegmentationError) as exc:
        raise UserError(f"{gt.source}: image {image_id}: an annotation has no usable segmentation "
                        f"({exc})") from None
    return _Cell(rles, [a["category_id"] for a in anns])


def _prediction_cells(path: Path, gt: GroundTruth, image_ids: list[int]) -> list[_Cell]:
    """The predictions of ``image_ids`` only (a COCO-size results file is validated just for them)."""
    records = read_json(path)
    if isinstance(records, list):
        records = [r for r in records if isinstance(r, dict) and r.get("image_id") in image_ids]
    pred = load_predictions(records, gt)
    rles = pred.require_masks("the qualitative figure")
    cells = []
    for image_id in image_ids:
        keep = np.flatnonzero((pred.image_ids == image_id) & (pred.scores >= SCORE_THR))
        keep = keep[np.argsort(-pred.scores[keep], kind="stable")][:MAX_INSTANCES]
        cells.append(_Cell([rles[k] for k in keep], pred.category_ids[keep].tolist()))
    return cells


def _overlay(image: np.ndarray, masks: list[np.ndarray], colors: list[tuple[float, float, float]]
             ) -> np.ndarray:
    """[H, W, 3] uint8 image, [H, W] masks -> [H, W, 3] float image in [0, 1] with the masks tinted."""
    out = image.astype(np.float64) / 255.0
    for mask, color in zip(masks, colors):
        m = mask.astype(bool)
        out[m] = out[m] * (1 - ALPHA) + np.asarray(color) * ALPHA
    return out


def _draw(ax, image: np.ndarray, cell: _Cell, palette: dict) -> None:
    masks = [mask_utils.decode(r) for r in cell.rles]
    ax.imshow(_overlay(image, masks, [palette[c] for c in cell.category_ids]))
    ax.set_axis_off()


def _palette(gt: GroundTruth, cells: list[_Cell]) -> dict[int, tuple[float, float, float]]:
    """One colour per category the figures show, in the file's category order."""
    shown = {c for cell in cells for c in cell.category_ids}
    categories = [c for c in gt.category_ids if c in shown]
    colors = sns.color_palette("tab10" if len(categories) <= 10 else "husl", len(categories))
    return dict(zip(categories, colors))


@dataclass(frozen=True)
class _Grid:
    """What every part of the grid shares: the images, their ground truth, the colours, the caption's start.
    """

    images: list[np.ndarray]
    truth: list[_Cell]
    palette: dict[int, tuple[float, float, float]]
    category_names: dict[int, str]
    caption: str


def _title(text: str, cell_in: float) -> str:
    """A column title wrapped to its cell width at the figure font (DejaVu Sans ~0.6 em a character)."""
    return "\n".join(textwrap.wrap(text, max(6, int(cell_in * 72 / (0.6 * FONT_PT))), break_long_words=True))


def _draw_part(grid: _Grid, titles: list[str], predicted: list[list[_Cell]], canvas: Canvas, name: str,
               caption: str) -> FigureResult:
    """One figure of the grid: square cells sized for a full part at this width, so every part (and a grid of
    fewer models) has cells of one size, centred."""
    width = canvas.width.inches
    cell = width / (1 + MODELS_PER_FIGURE[canvas.width.name])
    shown = 1 + len(predicted)
    texts = [_title(t, cell) for t in ["ground truth", *titles]]
    top = LINE_IN * max(t.count("\n") + 1 for t in texts) + 0.04
    handles = [Patch(facecolor=color, alpha=ALPHA, label=grid.category_names[c])
               for c, color in grid.palette.items()]
    legend_columns = canvas.legend_columns([h.get_label() for h in handles])
    bottom = LINE_IN * math.ceil(len(handles) / legend_columns) + 0.08
    height = cell * len(grid.images) + top + bottom
    side = (width - cell * shown) / 2 / width
    fig = Figure(figsize=(width, height))
    axes = fig.subplots(len(grid.images), shown, squeeze=False)
    fig.subplots_adjust(left=side + 0.005, right=1 - side - 0.005, bottom=bottom / height,
                        top=1 - top / height, wspace=0.03, hspace=0.03)
    for row, image in enumerate(grid.images):
        for col, cells in enumerate([grid.truth, *predicted]):
            _draw(axes[row, col], image, cells[row], grid.palette)
    for col, text in enumerate(texts):
        axes[0, col].set_title(text, pad=2)
    fig.legend(handles=handles, loc="lower center", ncols=legend_columns, frameon=False,
               bbox_to_anchor=(0.5, 0.0), handlelength=1.0, columnspacing=1.0, borderaxespad=0.2)
    return canvas.save(fig, name, caption)


def qualitative_figures(done: pd.DataFrame, canvas: Canvas, choice: ModelChoice
                        ) -> list[FigureResult | Skipped]:
    """The grid of ``choice.models`` in parts of at most :data:`MODELS_PER_FIGURE` models each."""
    runs, missing = representative_runs(done, choice.models)
    if not runs:
        return [Skipped(NAME, "no finished run of the chosen models has predictions.json and a "
                              "test_ann_file")]
    ann_file = runs[0]["test_ann_file"]
    other_data = [r["model"] for r in runs if r["test_ann_file"] != ann_file]
    runs = [r for r in runs if r["test_ann_file"] == ann_file]
    img_dir = Path(runs[0].get("test_img_dir", "") or ".")
    try:
        gt = load_ground_truth(ann_file)
        image_ids = _pick_images(gt)
        truth = [_ground_truth_cell(gt, i) for i in image_ids]
        predicted = [_prediction_cells(run_folder(r) / PREDICTIONS_JSON, gt, image_ids) for r in runs]
        files = {img["id"]: img.get("file_name", "") for img in gt.dataset["images"]}
        images = [np.asarray(Image.open(img_dir / files[i]).convert("RGB")) for i in image_ids]
    except UserError as exc:
        return [Skipped(NAME, str(exc))]
    except OSError as exc:
        return [Skipped(NAME, f"cannot read a validation image in {img_dir}: {exc}")]
    notes = [f"; not shown: {', '.join(map(canvas.names, models))} ({why})"
             for models, why in ((missing, "no saved predictions"), (other_data, "evaluated on other data"))
             if models]
    palette = _palette(gt, [*truth, *(c for cells in predicted for c in cells)])
    grid = _Grid(images, truth, palette, gt.category_names,
                 f"Qualitative results on the {len(image_ids)} validation images with the most objects "
                 "(ties: lowest id): ground truth, then each model's predicted masks with score ≥ "
                 f"{SCORE_THR} (at most {MAX_INSTANCES} per image), one run per model (its lowest seed); "
                 f"colour: category. Models: {choice.how}{''.join(notes)}.")
    per_figure = MODELS_PER_FIGURE[canvas.width.name]
    parts = math.ceil(len(runs) / per_figure)
    results: list[FigureResult | Skipped] = []
    with style():
        for part in range(parts):
            chunk = slice(part * per_figure, (part + 1) * per_figure)
            titles = [canvas.names.label(r["model"], r["variant"]) for r in runs[chunk]]
            name = NAME if part == 0 else f"{NAME}_{part + 1}"
            part_note = f" Part {part + 1} of {parts}: {', '.join(titles)}." if parts > 1 else ""
            caption = grid.caption + part_note
            results.append(_draw_part(grid, titles, predicted[chunk], canvas, name, caption))
    return results
