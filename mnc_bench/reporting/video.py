"""The video part of a report, drawn only when finished runs carry video metrics (``vis/...``): a table of
video AP beside per-frame mask AP, a table of the temporal-consistency measures, the per-frame mask IoU of a
few ground-truth tracks over time per model, and a strip of frames with each model's tracks (one colour per
track, so a changed colour is an identity switch and a blinking mask is flicker).

The figures read each model's ``predictions.json`` (tracked records) and the test ground truth, and compute
the per-frame IoU with :func:`mnc_bench.evaluation.video.track_fits`, the function behind
``vis/stability/iou_change``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image as PILImage
from pycocotools import mask as mask_utils

from mnc_bench.errors import UserError
from mnc_bench.reporting.analysis import Analysis
from mnc_bench.reporting.compare import group_label, group_summaries
from mnc_bench.reporting.metrics import VIDEO_ACCURACY, VIDEO_CONSISTENCY, mean_std
from mnc_bench.reporting.qualitative import representative_runs
from mnc_bench.reporting.render import Block, Heading, Table, Text
from mnc_bench.reporting.style import (
    WIDTH_IN,
    FigureResult,
    Skipped,
    legend_columns,
    legend_height,
    new_figure,
    save,
    style,
)
from mnc_bench.reporting.table import run_folder

IOU_FIGURE = "video_iou_over_time"
STRIP_FIGURE = "video_strip"
MAX_TRACKS = 3
MAX_MODELS = 4
MAX_FRAMES = 8
ALPHA = 0.55


def has_video(done: pd.DataFrame) -> bool:
    return any(c in done and done[c].notna().any() for c in (col.key for col in VIDEO_ACCURACY))


def video_sections(a: Analysis) -> list[Block]:
    """The video tables (nothing when no finished run has video metrics)."""
    done = a.done
    if done.empty or not has_video(done):
        return []
    blocks: list[Block] = [Heading("Video instance segmentation")]
    for title, columns, note in (
        (
            "Accuracy",
            VIDEO_ACCURACY,
            "Video AP is YouTube-VIS's (a track matched by its spatio-temporal mask IoU "
            "over the whole clip); per-frame mask AP scores the same masks frame by frame as COCO does.",
        ),
        (
            "Temporal consistency",
            VIDEO_CONSISTENCY,
            "Instances scoring >= 0.5. MOTS measures and HOTA by TrackEval on mask IoU (IDSW: identity "
            "switches, a count over the test clips; lower is better); IoU change: the mean frame-to-frame "
            "change of a ground-truth track's mask IoU with its matched predicted track, in points (lower is "
            "steadier).",
        ),
    ):
        present = [c for c in columns if c.key in done and done[c.key].notna().any()]
        if not present:
            continue
        summaries = group_summaries(done, [c.key for c in present])
        rows = [
            [
                group_label(model, variant),
                str(len(done[(done["model"] == model) & (done["variant"] == variant)])),
            ]
            + [mean_std(cells[c.key], c) for c in present]
            for (_, model, variant), cells in summaries.items()
        ]
        blocks += [Heading(title, 3), Table(["model", "n", *(c.label for c in present)], rows), Text(note)]
    return blocks


@dataclass(frozen=True)
class _Run:
    label: str
    tracks: list  # PredictedTrack
    fits: dict  # gt track id -> TrackFit


def _video_runs(done: pd.DataFrame):
    """(ground truth, frames dir, representative runs with predictions) of the video runs, or None."""
    from mnc_bench.evaluation.video import predicted_tracks, track_fits
    from mnc_bench.evaluation.video_io import load_video_ground_truth, load_video_predictions

    video_done = (
        done[done[VIDEO_ACCURACY[0].key].notna()] if VIDEO_ACCURACY[0].key in done else done.iloc[0:0]
    )
    candidates = representative_runs(video_done)
    if not candidates:
        return None
    ann_file = candidates[0]["test_ann_file"]
    chosen = [r for r in candidates if r["test_ann_file"] == ann_file][:MAX_MODELS]
    gt = load_video_ground_truth(ann_file)
    runs = []
    for run in chosen:
        tracks = predicted_tracks(gt, load_video_predictions(run_folder(run) / "predictions.json", gt))
        runs.append(
            _Run(
                group_label(run["model"], run["variant"]),
                tracks,
                {fit.gt_track: fit for fit in track_fits(gt, tracks)},
            )
        )
    return gt, Path(chosen[0].get("test_img_dir", "") or "."), runs


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


def video_figures(done: pd.DataFrame, out_dir: Path) -> list[FigureResult | Skipped]:
    """The IoU-over-time figure and the frame strip; [] when no finished run has video metrics."""
    if done.empty or not has_video(done):
        return []
    try:
        found = _video_runs(done)
    except UserError as exc:
        return [Skipped(IOU_FIGURE, str(exc)), Skipped(STRIP_FIGURE, str(exc))]
    if found is None:
        reason = "no finished video run has predictions.json and a test_ann_file"
        return [Skipped(IOU_FIGURE, reason), Skipped(STRIP_FIGURE, reason)]
    gt, frames_dir, runs = found
    tracks = _chosen_tracks(gt)
    results: list[FigureResult | Skipped] = [_iou_figure(tracks, runs, out_dir)]
    try:
        results.append(_strip_figure(gt, tracks[0], frames_dir, runs, out_dir))
    except OSError as exc:
        results.append(Skipped(STRIP_FIGURE, f"cannot read a test frame in {frames_dir}: {exc}"))
    return results


def _iou_figure(tracks: list, runs: list[_Run], out_dir: Path) -> FigureResult:
    labels = [run.label for run in runs]
    palette = sns.color_palette("colorblind", len(runs))
    with style():
        height = 1.05 * len(tracks) + legend_height(labels) + 0.35
        fig = new_figure(height)
        axes = fig.subplots(len(tracks), 1, squeeze=False, sharey=True)[:, 0]
        for ax, track in zip(axes, tracks):
            present = [t for t, r in enumerate(track.rles) if r is not None]
            for run, colour in zip(runs, palette):
                fit = run.fits.get(track.track_id)
                ious = np.asarray(fit.ious if fit is not None else [np.nan] * len(track.rles), dtype=float)
                ax.plot(np.arange(len(ious)), ious, marker="o", color=colour, label=run.label)
            ax.set_xlim(-0.5, len(track.rles) - 0.5)
            ax.set_ylim(0, 1.02)
            ax.set_ylabel("mask IoU")
            ax.set_title(
                f"video {track.video_id}, track {track.track_id} (in frames {present[0]}-{present[-1]})",
                fontsize=6,
            )
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes[-1].set_xlabel("frame")
        handles = axes[-1].get_lines()
        fig.legend(handles, labels, loc="outside lower center", ncols=legend_columns(labels),
                   frameon=False)
        caption = (
            f"Per-frame mask IoU of {len(tracks)} ground-truth tracks (those in the most frames, one per "
            "clip) with each model's matched predicted track (the one of highest spatio-temporal IoU, at "
            "least 0.5, among instances scoring >= 0.5): 0 where the matched track has no mask, no point "
            "where the object is not annotated or no track matched. One run per model, its lowest seed. "
            "Steadier lines are what vis/stability/iou_change measures."
        )
        return save(fig, out_dir, IOU_FIGURE, caption)


def _overlay(image: np.ndarray, masks: list[np.ndarray], colours: list) -> np.ndarray:
    out = image.astype(np.float64) / 255.0
    for mask, colour in zip(masks, colours):
        out[mask] = out[mask] * (1 - ALPHA) + np.asarray(colour) * ALPHA
    return out


def _strip_figure(gt, track, frames_dir: Path, runs: list[_Run], out_dir: Path) -> FigureResult:
    video = track.video_id
    images = gt.frames[video][:MAX_FRAMES]
    files = {img["id"]: img["file_name"] for img in gt.frames_gt.dataset["images"]}
    pixels = [np.asarray(PILImage.open(frames_dir / files[i]).convert("RGB")) for i in images]
    truth = [t for t in gt.tracks if t.video_id == video]
    rows = [("ground truth", [(t.track_id, t.rles) for t in truth])]
    for run in runs:
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
        cell = WIDTH_IN / len(images)
        top = 0.18
        fig = Figure(figsize=(WIDTH_IN, cell * len(rows) + top))
        grid = fig.subplots(len(rows), len(images), squeeze=False)
        fig.subplots_adjust(
            left=0.005,
            right=0.995,
            bottom=0.005,
            top=1 - top / (cell * len(rows) + top),
            wspace=0.03,
            hspace=0.25,
        )
        for row, (label, row_tracks) in enumerate(rows):
            colours = {track_id: palette[k % len(palette)] for k, (track_id, _) in enumerate(row_tracks)}
            for col, image in enumerate(pixels):
                masks, tints = [], []
                for track_id, rles in row_tracks:
                    if rles[col] is not None:
                        masks.append(mask_utils.decode(rles[col]).astype(bool))
                        tints.append(colours[track_id])
                ax = grid[row, col]
                ax.imshow(_overlay(image, masks, tints))
                ax.set_axis_off()
            grid[row, 0].set_title(label, fontsize=4.5, loc="left", pad=1.5)
        caption = (
            f"The first {len(images)} frames of test clip {video} (left to right): ground truth, then each "
            "model's tracked instances scoring >= 0.5, one colour per track within a row: a colour that "
            "changes along an object is an identity switch, a mask that comes and goes is flicker."
        )
        return save(fig, out_dir, STRIP_FIGURE, caption)
