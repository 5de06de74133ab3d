"""Qualitative grid: the same validation images in rows, ground truth in the first column, then one column per
model with its predicted masks and labels overlaid (from each run's saved ``predictions.json``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from PIL import Image
from pycocotools import mask as mask_utils

from mnc_bench.data.coco_format import read_json
from mnc_bench.data.segmentation import SegmentationError, to_rle
from mnc_bench.errors import UserError
from mnc_bench.evaluation import GroundTruth, load_ground_truth, load_predictions
from mnc_bench.reporting.compare import group_label
from mnc_bench.reporting.style import WIDTH_IN, FigureResult, Skipped, save, style
from mnc_bench.reporting.table import run_folder
from mnc_bench.suites.contract import PREDICTIONS_JSON

NAME = "qualitative"
MAX_IMAGES = 3
MAX_MODELS = 4
SCORE_THR = 0.5  # what the Mask R-CNN paper's example figures show
MAX_INSTANCES = 10
ALPHA = 0.5


def representative_runs(done: pd.DataFrame) -> list[pd.Series]:
    """One run per model (by name): of its plain variant when it has one, the lowest seed with a predictions
    file and a test annotation file."""
    chosen = []
    for model, runs in done.groupby("model", sort=True):
        runs = runs.assign(_varied=runs["variant"] != "").sort_values(["_varied", "suite", "variant", "seed"])
        for _, run in runs.iterrows():
            if (run_folder(run) / PREDICTIONS_JSON).is_file() and run.get("test_ann_file", ""):
                chosen.append(run)
                break
    return chosen


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
    labels: list[str]


def _ground_truth_cell(gt: GroundTruth, image_id: int) -> _Cell:
    anns = [a for a in gt.annotations if a["image_id"] == image_id and not a.get("iscrowd", 0)]
    height, width = gt.image_sizes[image_id]
    try:
        rles = [to_rle(a["segmentation"], height, width) for a in anns]
    except (KeyError, SegmentationError) as exc:
        raise UserError(f"{gt.source}: image {image_id}: an annotation has no usable segmentation ({exc})") from None
    return _Cell(rles, [a["category_id"] for a in anns], [gt.category_names[a["category_id"]] for a in anns])


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
        labels = [f"{gt.category_names[int(pred.category_ids[k])]} {pred.scores[k]:.2f}" for k in keep]
        cells.append(_Cell([rles[k] for k in keep], pred.category_ids[keep].tolist(), labels))
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
    colors = [palette[c] for c in cell.category_ids]
    ax.imshow(_overlay(image, masks, colors))
    height, width = image.shape[:2]
    for mask, label, color in zip(masks, cell.labels, colors):
        ys, xs = np.nonzero(mask)
        if not len(xs):
            continue
        # At the mask's centre of mass (least likely to cover a neighbour's label), aligned away from the
        # nearer image border so the text stays inside its own cell.
        x, y = xs.mean(), ys.mean()
        ha = "left" if x < width / 3 else "right" if x > 2 * width / 3 else "center"
        va = "top" if y < height / 4 else "bottom" if y > 3 * height / 4 else "center"
        ax.text(x, y, label, fontsize=3.2, color="white", ha=ha, va=va, clip_on=True,
                bbox={"facecolor": color, "alpha": 0.75, "pad": 0.25, "linewidth": 0})
    ax.set_axis_off()


def _column_titles(runs: list[pd.Series]) -> tuple[list[str], str]:
    """Model labels without a suffix they all share ('_shapes'), which only costs width; and that suffix."""
    names = [group_label(r["model"], r["variant"]) for r in runs]
    models = [n.split(" [")[0] for n in names]
    tails = {m.rsplit("_", 1)[-1] for m in models}
    suffix = f"_{tails.pop()}" if len(tails) == 1 and all("_" in m for m in models) else ""
    return [n.replace(suffix, "", 1) for n in names], suffix


def qualitative_figure(done: pd.DataFrame, out_dir: Path) -> FigureResult | Skipped:
    candidates = representative_runs(done)
    if not candidates:
        return Skipped(NAME, "no finished run has predictions.json and a test_ann_file")
    ann_file = candidates[0]["test_ann_file"]
    same_data = [r for r in candidates if r["test_ann_file"] == ann_file]
    runs = same_data[:MAX_MODELS]
    img_dir = Path(runs[0].get("test_img_dir", "") or ".")
    try:
        gt = load_ground_truth(ann_file)
        image_ids = _pick_images(gt)
        truth = [_ground_truth_cell(gt, i) for i in image_ids]
        predicted = [_prediction_cells(run_folder(r) / PREDICTIONS_JSON, gt, image_ids) for r in runs]
        files = {img["id"]: img.get("file_name", "") for img in gt.dataset["images"]}
        images = [np.asarray(Image.open(img_dir / files[i]).convert("RGB")) for i in image_ids]
    except UserError as exc:
        return Skipped(NAME, str(exc))
    except OSError as exc:
        return Skipped(NAME, f"cannot read a validation image in {img_dir}: {exc}")
    titles, suffix = _column_titles(runs)
    columns, palette = ["ground truth", *titles], _palette(gt)
    with style():
        cell, top = WIDTH_IN / len(columns), 0.22  # square cells; inches above the grid for column titles
        height = cell * len(image_ids) + top
        fig = Figure(figsize=(WIDTH_IN, height))
        grid = fig.subplots(len(image_ids), len(columns), squeeze=False)
        fig.subplots_adjust(left=0.005, right=0.995, bottom=0.005, top=1 - top / height, wspace=0.03,
                            hspace=0.03)
        for row, image in enumerate(images):
            for col, cells in enumerate([truth, *predicted]):
                _draw(grid[row, col], image, cells[row], palette)
        for col, title in enumerate(columns):
            grid[0, col].set_title(title.replace(" [", "\n["), fontsize=4.5, pad=2)
        caption = (f"Qualitative results on {len(image_ids)} validation images (those with the most "
                   f"objects): ground truth, then each model's predictions with score ≥ {SCORE_THR} (one run "
                   "per model, its lowest seed)"
                   + (f"; model names without their common suffix {suffix}" if suffix else "")
                   + (f"; the first {MAX_MODELS} models by name." if len(same_data) > MAX_MODELS else "."))
        return save(fig, out_dir, NAME, caption)


def _palette(gt: GroundTruth) -> dict[int, tuple[float, float, float]]:
    """One colour per category, in the file's category order."""
    return dict(zip(gt.category_ids, sns.color_palette("tab10", len(gt.category_ids))))
