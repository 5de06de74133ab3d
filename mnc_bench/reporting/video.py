"""The video part of a report, drawn only when finished runs carry video metrics (``vis/...``): a table of
video AP beside per-frame mask AP, a table of the temporal-consistency measures, the per-frame mask IoU of a
few ground-truth tracks over time per model, and a strip of frames with each model's tracks (one colour per
track, so a changed colour is an identity switch and a blinking mask is flicker).

The figures read each model's ``predictions.json`` (tracked records) and the test ground truth, and compute
the per-frame IoU with :func:`mnc_bench.evaluation.video.track_fits`, the function behind
``vis/stability/iou_change``. Tables are blocks for the report's page, figures :class:`FigureResult` or
:class:`Skipped` like those of :mod:`mnc_bench.reporting.figures`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator
from PIL import Image as PILImage
from pycocotools import mask as mask_utils

from mnc_bench.errors import UserError
from mnc_bench.reporting.compare import GroupKey, group_summaries
from mnc_bench.reporting.metrics import VIDEO_ACCURACY, VIDEO_CONSISTENCY, mean_std
from mnc_bench.reporting.names import DisplayNames
from mnc_bench.reporting.qualitative import representative_runs
from mnc_bench.reporting.render import Block, Heading, Table, Text
from mnc_bench.reporting.stats import Summary
from mnc_bench.reporting.style import PALETTE, Canvas, FigureResult, Skipped, style
from mnc_bench.reporting.table import run_folder

IOU_FIGURE = "video_iou_over_time"
STRIP_FIGURE = "video_strip"
MAX_TRACKS = 3
MAX_MODELS = 4
MAX_FRAMES = 8
ALPHA = 0.55
NOTES = {
    "Accuracy": (
        "Video AP is YouTube-VIS's (a track matched by its spatio-temporal mask IoU over the whole clip); "
        "per-frame mask AP scores the same masks frame by frame as COCO does. Mean ± std over seeds, points."
    ),
    "Temporal consistency": (
        "Instances scoring >= 0.5. MOTS measures and HOTA by TrackEval on mask IoU (IDSW: identity switches, "
        "a count over the test clips; lower is better); IoU change: the mean frame-to-frame change of a "
        "ground-truth track's mask IoU with its matched predicted track, in points (lower is steadier). "
        "Mean ± std over seeds."
    ),
}


def _video_runs_of(done: pd.DataFrame) -> pd.DataFrame:
    key = VIDEO_ACCURACY[0].key
    return done[pd.to_numeric(done[key], errors="coerce").notna()] if key in done else done.iloc[0:0]


def video_summaries(done: pd.DataFrame) -> dict[GroupKey, dict[str, Summary]]:
    """Mean and spread over seeds of every video metric measured, per (suite, model, variant), from the runs
    that carry video metrics ({} when none does)."""
    video = _video_runs_of(done)
    keys = [c.key for c in VIDEO_ACCURACY + VIDEO_CONSISTENCY
            if c.key in video and video[c.key].notna().any()]
    return group_summaries(video, keys) if not video.empty else {}


def sections(done: pd.DataFrame, names: DisplayNames) -> list[Block]:
    """The video tables (nothing when no finished run has video metrics)."""
    summaries = video_summaries(done)
    if not summaries:
        return []
    video = _video_runs_of(done)
    blocks: list[Block] = [Heading("Video instance segmentation")]
    for title, columns in (("Accuracy", VIDEO_ACCURACY), ("Temporal consistency", VIDEO_CONSISTENCY)):
        present = [c for c in columns if any(c.key in cells for cells in summaries.values())]
        if not present:
            continue
        rows = []
        for (suite, model, variant), cells in summaries.items():
            group = (video["suite"] == suite) & (video["model"] == model) & (video["variant"] == variant)
            runs = video[group]
            rows.append(
                [names.label(model, variant), str(len(runs)), *(mean_std(cells[c.key], c) for c in present)]
            )
        blocks += [
            Heading(title, 3),
            Table(["model", "n", *(c.label for c in present)], rows),
            Text(NOTES[title]),
        ]
    return blocks


def figures(done: pd.DataFrame) -> list[tuple[str, Callable[[Canvas], list[FigureResult | Skipped]]]]:
    """(name, draw on a canvas) for the report's figure list; each draws nothing without video runs."""
    return [
        (IOU_FIGURE, lambda canvas: _drawn(done, canvas, _iou_figure)),
        (STRIP_FIGURE, lambda canvas: _drawn(done, canvas, _strip_figure)),
    ]


@dataclass(frozen=True)
class _Run:
    label: str
    tracks: list  # PredictedTrack
    fits: dict  # ground-truth track id -> TrackFit


@dataclass(frozen=True)
class _Found:
    gt: object  # VideoGroundTruth
    frames_dir: Path
    runs: list[_Run]


def _drawn(done: pd.DataFrame, canvas: Canvas, draw) -> list[FigureResult | Skipped]:
    name = IOU_FIGURE if draw is _iou_figure else STRIP_FIGURE
    video = _video_runs_of(done)
    if video.empty:
        return []
    try:
        found = _load(video, canvas.names)
    except UserError as exc:
        return [Skipped(name, str(exc))]
    if found is None:
        return [Skipped(name, "no finished video run has predictions.json and a test_ann_file")]
    try:
        return [draw(found, canvas)]
    except OSError as exc:
        return [Skipped(name, f"cannot read a test frame in {found.frames_dir}: {exc}")]


def _load(video: pd.DataFrame, names: DisplayNames) -> _Found | None:
    """The ground truth, frames folder and one run per model (up to MAX_MODELS) scored on one test set."""
    from mnc_bench.evaluation.video import predicted_tracks, track_fits
    from mnc_bench.evaluation.video_io import load_video_ground_truth, load_video_predictions

    chosen, _ = representative_runs(video, sorted(video["model"].unique()))
    if not chosen:
        return None
    ann_file = chosen[0]["test_ann_file"]
    chosen = [r for r in chosen if r["test_ann_file"] == ann_file][:MAX_MODELS]
    gt = load_video_ground_truth(ann_file)
    runs = []
    for run in chosen:
        tracks = predicted_tracks(gt, load_video_predictions(run_folder(run) / "predictions.json", gt))
        runs.append(
            _Run(
                names.label(run["model"], run["variant"]),
                tracks,
                {fit.gt_track: fit for fit in track_fits(gt, tracks)},
            )
        )
    return _Found(gt, Path(chosen[0].get("test_img_dir", "") or "."), runs)


def _chosen_tracks(gt) -> list:
    """The ground-truth tracks present in the most frames (ties: lowest id), at most one per video."""
    ranked = sorted(
        (t for t in gt.tracks if not t.iscrowd),
        key=lambda t: (-sum(r is not None for r in t.rles), t.track_id),
    )
    chosen, videos = [], set()
    for track in ranked:
        if track.video_id not in videos:
            chosen.append(track)
            videos.add(track.video_id)
        if len(chosen) == MAX_TRACKS:
            break
    return chosen


def _iou_figure(found: _Found, canvas: Canvas) -> FigureResult:
    tracks = _chosen_tracks(found.gt)
    labels = [run.label for run in found.runs]
    palette = sns.color_palette(PALETTE, len(found.runs))
    with style():
        fig = canvas.figure(1.05 * len(tracks) + canvas.legend_height(labels) + 0.35)
        axes = fig.subplots(len(tracks), 1, squeeze=False, sharey=True)[:, 0]
        for ax, track in zip(axes, tracks):
            present = [t for t, r in enumerate(track.rles) if r is not None]
            for run, colour in zip(found.runs, palette):
                fit = run.fits.get(track.track_id)
                ious = np.asarray(fit.ious if fit is not None else [np.nan] * len(track.rles), dtype=float)
                ax.plot(np.arange(len(ious)), ious, marker="o", color=colour, label=run.label)
            ax.set_xlim(-0.5, len(track.rles) - 0.5)
            ax.set_ylim(0, 1.02)
            ax.set_ylabel("mask IoU")
            ax.set_title(f"clip {track.video_id}, track {track.track_id} (frames {present[0]}-{present[-1]})")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes[-1].set_xlabel("frame")
        fig.legend(
            axes[-1].get_lines(),
            labels,
            loc="outside lower center",
            ncols=canvas.legend_columns(labels),
            frameon=False,
        )
        caption = (
            f"Per-frame mask IoU of {len(tracks)} ground-truth tracks (those in the most frames, one "
            "per clip) with each model's matched predicted track (the one of highest spatio-temporal "
            "IoU, at least 0.5, among instances scoring >= 0.5): 0 where the matched track has no mask, "
            "no point where the object is not annotated or no track matched. One run per model, its "
            "lowest seed. Steadier lines are what vis/stability/iou_change measures."
        )
        return canvas.save(fig, IOU_FIGURE, caption)


def _overlay(image: np.ndarray, masks: list[np.ndarray], colours: list) -> np.ndarray:
    out = image.astype(np.float64) / 255.0
    for mask, colour in zip(masks, colours):
        out[mask] = out[mask] * (1 - ALPHA) + np.asarray(colour) * ALPHA
    return out


def _strip_figure(found: _Found, canvas: Canvas) -> FigureResult:
    gt, track = found.gt, _chosen_tracks(found.gt)[0]
    video = track.video_id
    images = gt.frames[video][:MAX_FRAMES]
    files = {img["id"]: img["file_name"] for img in gt.frames_gt.dataset["images"]}
    pixels = [np.asarray(PILImage.open(found.frames_dir / files[i]).convert("RGB")) for i in images]
    rows = [("ground truth", [(t.track_id, t.rles) for t in gt.tracks if t.video_id == video])]
    for run in found.runs:
        confident = [
            (
                t.track_id,
                tuple(r if s is not None and s >= 0.5 else None for r, s in zip(t.rles, t.frame_scores)),
            )
            for t in run.tracks
            if t.video_id == video
        ]
        rows.append((run.label, confident))
    palette = sns.color_palette("tab10", 10)
    with style():
        cell, title = canvas.width.inches / len(images), 0.16
        fig = canvas.figure((cell + title) * len(rows))
        grid = fig.subplots(
            len(rows), len(images), squeeze=False, gridspec_kw={"wspace": 0.03, "hspace": 0.0}
        )
        for row, (label, row_tracks) in enumerate(rows):
            colours = {track_id: palette[k % len(palette)] for k, (track_id, _) in enumerate(row_tracks)}
            for col, image in enumerate(pixels):
                masks = [
                    mask_utils.decode(rles[col]).astype(bool)
                    for _, rles in row_tracks
                    if rles[col] is not None
                ]
                tints = [colours[tid] for tid, rles in row_tracks if rles[col] is not None]
                grid[row, col].imshow(_overlay(image, masks, tints))
                grid[row, col].set_axis_off()
            grid[row, 0].set_title(label, loc="left", pad=1.5)
        caption = (
            f"The first {len(images)} frames of test clip {video} (left to right): ground truth, then "
            "each model's tracked instances scoring >= 0.5, one colour per track within a row: a colour "
            "that changes along an object is an identity switch, a mask that comes and goes is flicker."
        )
        return canvas.save(fig, STRIP_FIGURE, caption)
