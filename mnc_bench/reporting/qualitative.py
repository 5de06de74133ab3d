"""Qualitative grid: the same validation images in rows, ground truth in the first column, then one column per
model with its predicted masks and labels overlaid (from each run's saved ``predictions.json``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from PIL import Image
from pycocotools import mask as mask_utils

from mnc_bench.errors import UserError
from mnc_bench.evaluation import GroundTruth, load_ground_truth, load_predictions
from mnc_bench.reporting.compare import group_label
from mnc_bench.reporting.style import WIDTH_IN, FigureResult, Skipped, save, style
from mnc_bench.reporting.table import run_folder

NAME = "qualitative"
MAX_IMAGES = 3
MAX_MODELS = 4
SCORE_THR = 0.5  # what the Mask R-CNN paper's example figures show
MAX_INSTANCES = 10
ALPHA = 0.5


def representative_runs(done: pd.DataFrame) -> list[pd.Series]:
    """One run per model (at most MAX_MODELS, by name): of its plain variant when it has one, the lowest seed
    with a predictions file."""
    chosen = []
    for model, runs in done.groupby("model", sort=True):
        runs = runs.assign(_varied=runs["variant"] != "").sort_values(["_varied", "suite", "variant", "seed"])
        for _, run in runs.iterrows():
            if (run_folder(run) / "predictions.json").is_file() and run.get("test_ann_file", ""):
                chosen.append(run)
                break
    return chosen[:MAX_MODELS]


def _pick_images(gt: GroundTruth) -> list[int]:
    """The images with the most objects (ties: lowest id), so the rows show crowded scenes."""
    counts: dict[int, int] = {img["id"]: 0 for img in gt.dataset["images"]}
    for ann in gt.annotations:
        if not ann.get("iscrowd", 0):
            counts[ann["image_id"]] += 1
    return sorted(counts, key=lambda i: (-counts[i], i))[:MAX_IMAGES]


def _overlay(image: np.ndarray, masks: list[np.ndarray], colors: list[tuple[float, float, float]]
             ) -> np.ndarray:
    """[H, W, 3] uint8 image, [H, W] masks -> [H, W, 3] float image in [0, 1] with the masks tinted."""
    out = image.astype(np.float64) / 255.0
    for mask, color in zip(masks, colors):
        m = mask.astype(bool)
        out[m] = out[m] * (1 - ALPHA) + np.asarray(color) * ALPHA
    return out


def _draw(ax, image: np.ndarray, rles: list[dict], category_ids: list[int], labels: list[str],
          palette: dict) -> None:
    masks = [mask_utils.decode(r) for r in rles]
    colors = [palette[c] for c in category_ids]
    ax.imshow(_overlay(image, masks, colors))
    for mask, label, color in zip(masks, labels, colors):
        ys, xs = np.nonzero(mask)
        if len(xs):  # label at the mask's centre of mass, where it is least likely to cover a neighbour's
            ax.text(xs.mean(), ys.mean(), label, fontsize=3.2, color="white", va="center", ha="center",
                    clip_on=True, bbox={"facecolor": color, "alpha": 0.75, "pad": 0.25, "linewidth": 0})
    ax.set_axis_off()


def qualitative_figure(done: pd.DataFrame, out_dir: Path) -> FigureResult | Skipped:
    runs = representative_runs(done)
    if not runs:
        return Skipped(NAME, "no finished run has predictions.json and a test_ann_file")
    ann_file = runs[0]["test_ann_file"]
    runs = [r for r in runs if r["test_ann_file"] == ann_file]
    img_dir = Path(runs[0].get("test_img_dir", "") or ".")
    try:
        gt = load_ground_truth(ann_file)
        predictions = [load_predictions(run_folder(r) / "predictions.json", gt) for r in runs]
    except UserError as exc:
        return Skipped(NAME, str(exc))
    images = {img["id"]: img for img in gt.dataset["images"]}
    image_ids = _pick_images(gt)
    palette = dict(zip(gt.category_ids, sns.color_palette("tab10", len(gt.category_ids))))
    names = [group_label(r["model"], r["variant"]) for r in runs]
    # A dataset suffix every column shares ('_shapes') only costs width: the caption names it once.
    tails = {n.split(" [")[0].rsplit("_", 1)[-1] for n in names}
    suffix = f"_{tails.pop()}" if len(tails) == 1 and all("_" in n.split(" [")[0] for n in names) else ""
    columns = ["ground truth"] + [n.replace(suffix, "", 1) for n in names]
    with style():
        cell, title = WIDTH_IN / len(columns), 0.22  # square cells; inches above the grid for column titles
        height = cell * len(image_ids) + title
        fig = Figure(figsize=(WIDTH_IN, height))
        grid = fig.subplots(len(image_ids), len(columns), squeeze=False)
        fig.subplots_adjust(left=0.005, right=0.995, bottom=0.005, top=1 - title / height, wspace=0.03,
                            hspace=0.03)
        for row, image_id in enumerate(image_ids):
            path = img_dir / images[image_id]["file_name"]
            try:
                image = np.asarray(Image.open(path).convert("RGB"))
            except OSError as exc:
                return Skipped(NAME, f"cannot read image {path}: {exc}")
            anns = [(i, a) for i, a in enumerate(gt.annotations)
                    if a["image_id"] == image_id and not a.get("iscrowd", 0)]
            _draw(grid[row, 0], image, [gt.rles[i] for i, _ in anns], [a["category_id"] for _, a in anns],
                  [gt.category_names[a["category_id"]] for _, a in anns], palette)
            for col, pred in enumerate(predictions, start=1):
                keep = np.flatnonzero((pred.image_ids == image_id) & (pred.scores >= SCORE_THR))
                keep = keep[np.argsort(-pred.scores[keep], kind="stable")][:MAX_INSTANCES]
                rles = pred.require_masks("the qualitative figure")
                _draw(grid[row, col], image, [rles[k] for k in keep], pred.category_ids[keep].tolist(),
                      [f"{gt.category_names[int(pred.category_ids[k])]} {pred.scores[k]:.2f}" for k in keep],
                      palette)
        for col, title in enumerate(columns):
            grid[0, col].set_title(title.replace(" [", "\n["), fontsize=4.5, pad=2)
        caption = (f"Qualitative results on {len(image_ids)} validation images (those with the most "
                   f"objects): ground truth, then each model's predictions with score ≥ {SCORE_THR} (one run "
                   "per model, its lowest seed)"
                   + (f"; model names without their common suffix {suffix}." if suffix else "."))
        return save(fig, out_dir, NAME, caption)
