"""The report's video part: tables and figures from a results tree of video runs (built without training), and
nothing of it for a suite without video metrics."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mnc_bench.evaluation.video import evaluate_video
from mnc_bench.reporting import write_report
from mnc_bench.suites.contract import LEADING_COLUMNS, STANDARD_METRICS, TRAILING_COLUMNS

MODELS = {
    "steady_shapes_video": "configs/video/video_mnc_shapes_video.py",
    "flicker_shapes_video": "configs/video/mnc_5stage_linked_shapes_video.py",
}


def _predictions(gt: dict, model: str, seed: int) -> list[dict]:
    """Ground-truth tracks as predictions; 'flicker' drops every third frame of a track and renames each track
    halfway (an identity switch)."""
    rng = np.random.default_rng(seed)
    frames = {img["id"]: img["frame_id"] for img in gt["images"]}
    out = []
    for ann in gt["annotations"]:
        frame, track = frames[ann["image_id"]], ann["instance_id"]
        if model == "flicker_shapes_video":
            if frame % 3 == 2:
                continue
            track = track * 100 + (frame >= 3)
        out.append(
            {
                "image_id": ann["image_id"],
                "category_id": ann["category_id"],
                "segmentation": ann["segmentation"],
                "score": float(np.clip(0.8 + rng.normal(0, 0.05), 0.5, 1)),
                "track_id": track,
            }
        )
    return out


@pytest.fixture(scope="module")
def video_report(video_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("video_report")
    ann = video_dataset / "annotations/instances_val.json"
    gt = json.loads(ann.read_text())
    suite_dir = root / "results" / "video_consistency"
    rows = []
    for model, config in MODELS.items():
        for seed in (0, 1):
            run_id = f"{model[:6]}-{seed}"
            run_dir = suite_dir / run_id
            run_dir.mkdir(parents=True)
            records = _predictions(gt, model, seed)
            (run_dir / "predictions.json").write_text(json.dumps(records))
            metrics = evaluate_video(ann, records)
            (run_dir / "metrics.json").write_text(
                json.dumps({k: None if np.isnan(v) else v for k, v in metrics.items()})
            )
            row = dict.fromkeys([*LEADING_COLUMNS, "axis.config", *STANDARD_METRICS, *TRAILING_COLUMNS],
                                np.nan)
            row.update(
                suite="video_consistency",
                run_id=run_id,
                status="done",
                failure_reason="",
                config=config,
                model=model,
                seed=seed,
                variant="",
                **{"axis.config": config},
                **metrics,
                batch_size=8,
                max_iters=1000,
                run_dir=str(run_dir),
                test_ann_file=str(ann),
                test_img_dir=str(video_dataset / "val/JPEGImages"),
                git_commit="0" * 40,
                reused_from="",
            )
            rows.append(row)
    table = pd.DataFrame(rows)
    table.to_csv(suite_dir / "collect.csv", index=False)
    out = root / "report"
    written = write_report(
        ["video_consistency"], out, metric="vis/AP", results_dir=root / "results", bench=None
    )
    return out, written, table


def test_video_tables_hold_the_mean_over_seeds(video_report):
    out, _, table = video_report
    text = (out / "report.md").read_text()
    assert "## Video instance segmentation" in text and "### Temporal consistency" in text
    for model in MODELS:
        runs = table[table["model"] == model]
        line = next(line for line in text.splitlines() if line.startswith(f"| {model} | 2 |"))
        assert f"{100 * runs['vis/AP'].mean():.1f}" in line
    flicker = next(
        line
        for line in text.splitlines()
        if line.startswith("| flicker_shapes_video | 2 |") and "ID switches" not in line
    )
    steady = table[table["model"] == "steady_shapes_video"]
    assert steady["vis/mots/IDSW"].eq(0).all() and steady["vis/stability/iou_change"].eq(0).all()
    assert table.loc[table["model"] == "flicker_shapes_video", "vis/mots/IDSW"].gt(0).all()
    assert flicker


def test_video_latex_tables_hold_the_same_means_and_fit(video_report, tmp_path):
    from latex_fit import find_pdflatex, typeset

    out, _, table = video_report
    accuracy = (out / "tables" / "main_video.tex").read_text()
    consistency = (out / "tables" / "video_consistency.tex").read_text()
    for model in MODELS:
        runs = table[table["model"] == model]
        name = model.replace("_", r"\_\allowbreak{}")  # as LaTeX prints it
        accuracy_row = next(line for line in accuracy.splitlines() if name in line)
        assert f"{100 * runs['vis/AP'].mean():.1f}" in accuracy_row
        consistency_row = next(line for line in consistency.splitlines() if name in line)
        assert f"{runs['vis/mots/IDSW'].mean():.1f}" in consistency_row
    if find_pdflatex() is not None:  # typeset at the column width they are written for by default
        measured = typeset({"accuracy": accuracy, "consistency": consistency}, "two-column", tmp_path)
        assert all(result.errors == [] and result.overfull == [] for result in measured.values()), measured


def test_video_figures_are_drawn_from_the_predictions(video_report):
    out, written, _ = video_report
    names = {path.name for path in written.files}
    assert {
        "video_iou_over_time.png",
        "video_iou_over_time.pdf",
        "video_strip.png",
        "video_strip.pdf",
    } <= names
    for name in ("video_iou_over_time.png", "video_strip.png"):
        pixels = np.asarray(Image.open(out / "figures" / name).convert("L"))
        assert pixels.std() > 5  # not blank
    assert not [s for s in written.skipped if s.name.startswith("video")]


def test_a_report_without_video_runs_has_no_video_part(tmp_path, shapes_dataset, build_results):
    from mnc_bench.reporting.video import figures as video_figures

    table = build_results(tmp_path, shapes_dataset)
    written = write_report(
        ["mnc_vs_successors"],
        tmp_path / "report",
        results_dir=tmp_path / "results",
        bench=None,
        figures=False,
    )
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Video instance segmentation" not in text and "video" not in " ".join(
        s.name for s in written.skipped
    )
    for _, draw in video_figures(table[table["status"] == "done"]):
        assert draw(None) == []  # no canvas needed: nothing is drawn
