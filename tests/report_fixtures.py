"""A realistic results tree for the report tests, built without training.

Six suites in the layout of ``mnc-bench run`` / ``collect``: ``mnc_vs_successors`` (4 models x 3 seeds, one
failed and one running run, box AP missing from one run), ``cascade_depth`` (depth zipped with weight sharing,
x end-to-end; one group with a single seed), ``loss_weights`` (mask x cls weights), ``proposal_quality`` (a
mapping-valued ``proposal_control`` axis stored as JSON text, as ``collect`` does; AR beside AP),
``stage3_labels`` (a text axis crossed with two models) and ``only_failed``. Each finished run has
``run.json``, ``metrics.json``, ``scalars.json`` and a ``predictions.json`` derived from the real shapes val
set (ground-truth masks with perturbed scores, some dropped, some mislabelled). Metric values are a known
per-group effect plus seed noise; the tests recompute every aggregate from the returned table, independently
of the report code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

SHAPES_MODELS = {  # model -> (config, true mask AP)
    "mask_rcnn_shapes": ("configs/mask_rcnn/mask_rcnn_shapes.py", 0.400),
    "panet_shapes": ("configs/panet/panet_shapes.py", 0.380),
    "mnc_3stage_shapes": ("configs/mnc/mnc_3stage_shapes.py", 0.390),
    "mnc_5stage_shapes": ("configs/mnc/mnc_5stage_shapes.py", 0.500),
}
# The names tables, figures and the qualitative grid print for them (the report's built-in mapping).
DISPLAY_NAMES = {"mask_rcnn_shapes": "Mask R-CNN", "panet_shapes": "PANet",
                 "mnc_3stage_shapes": "MNC 3-stage", "mnc_5stage_shapes": "MNC 5-stage"}
METRIC_OFFSETS = {  # key -> offset from mask AP (so every column differs)
    "coco/segm/AP": 0.0, "coco/segm/AP50": 0.20, "coco/segm/AP75": 0.04, "coco/segm/APs": -0.15,
    "coco/segm/APm": 0.05, "coco/segm/APl": 0.12, "coco/bbox/AP": 0.03, "voc_mnc/mAP@0.5": 0.18,
    "voc_mnc/mAP@0.7": 0.08, "voc_sds/mAP@0.5": 0.17, "voc_sds/mAP@0.7": 0.07, "coco/segm/AR100": 0.10,
    "proposals/AR@100": 0.15,
    # Boundary AP, TIDE's dAP (small, positive) and robustness (mnc-bench rescore / robustness)
    "coco/boundary/AP": -0.12, "coco/boundary/AP50": 0.05, "coco/boundary/AP75": -0.2,
    **{f"tide/{kind}/dAP_{e}": -0.25 + 0.015 * k for kind in ("segm", "bbox")
       for k, e in enumerate(("cls", "loc", "both", "dupe", "bkg", "miss"))},
    "robustness/segm/AP_clean": 0.0, "robustness/segm/mPC": -0.15, "robustness/segm/rPC": 0.2,
    **{f"robustness/segm/AP@s{s}": -0.05 * s for s in (1, 3, 5)},
}
PARAMS = {"mask_rcnn_shapes": 14_200_000, "panet_shapes": 15_100_000, "mnc_3stage_shapes": 13_900_000,
          "mnc_5stage_shapes": 13_900_000}
STAGE_LOSSES = {"mask_rcnn_shapes": ("rpn_cls", "rpn_bbox", "cls", "bbox", "mask"),
                "panet_shapes": ("rpn_cls", "rpn_bbox", "cls", "bbox", "mask"),
                "mnc_3stage_shapes": ("rpn_cls", "rpn_bbox", "mask_s2", "cls_s3", "bbox_s3"),
                "mnc_5stage_shapes": ("rpn_cls", "rpn_bbox", "mask_s2", "cls_s3", "mask_s4", "cls_s5")}


def _metrics(rng: np.random.Generator, ap: float, noise: float = 0.01) -> dict[str, float]:
    base = ap + rng.normal(0.0, noise)
    return {k: float(np.clip(base + off + rng.normal(0, 0.003), 0, 1)) for k, off in METRIC_OFFSETS.items()}


def _scalars(rng: np.random.Generator, model: str, iters: int = 200, every: int = 20) -> str:
    lines = []
    for it in range(every, iters + 1, every):
        parts = {f"loss_{name}": float(0.6 * np.exp(-it / 120) + 0.05 * i + abs(rng.normal(0, 0.02)))
                 for i, name in enumerate(STAGE_LOSSES[model])}
        lines.append(json.dumps({"lr": 5e-4, "data_time": 0.01, "loss": sum(parts.values()), **parts,
                                 "time": 1.2, "iter": it, "memory": 0, "step": it}))
    lines.append(json.dumps({"coco/segm/AP": 0.4, "data_time": 0.01, "time": 0.5, "step": iters}))
    return "\n".join(lines) + "\n"


def _predictions(rng: np.random.Generator, gt: dict, quality: float) -> list[dict]:
    cats = [c["id"] for c in gt["categories"]]
    out = []
    for ann in gt["annotations"]:
        if rng.random() > quality:  # missed object
            continue
        cat = ann["category_id"] if rng.random() < quality else int(rng.choice(cats))
        seg = ann["segmentation"]
        out.append({"image_id": ann["image_id"], "category_id": cat, "bbox": ann["bbox"],
                    "score": float(np.clip(quality + rng.normal(0, 0.15), 0.05, 1.0)), "segmentation": seg})
    return out


def _label(value: object) -> str:
    """An axis value in a variant label, as the runner writes it (mappings as JSON)."""
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(", ", ": "))
    return str(value)


def _row(suite: str, run_id: str, model: str, seed: int, status: str, variant: str, axes: dict, metrics: dict,
         run_dir: Path, shapes: Path, reason: str = "") -> dict:
    config = SHAPES_MODELS[model][0]
    row = {"suite": suite, "run_id": run_id, "status": status, "failure_reason": reason, "config": config,
           "model": model, "seed": seed, "variant": variant, "axis.config": config}
    # As `collect` stores them: a mapping-valued axis as JSON text, null as ''.
    row.update({f"axis.{k}": "" if v is None else json.dumps(v, sort_keys=True) if isinstance(v, dict) else v
                for k, v in axes.items()})
    row.update({k: metrics.get(k, np.nan) for k in METRIC_OFFSETS})
    done = status == "done"
    row.update({"batch_size": 8, "lr": 5e-4, "max_iters": 200, "train_time_s": 240.0 if done else np.nan,
                "s_per_iter": (1.2 + 0.01 * seed) if done else np.nan, "threads": 1, "peak_mem_mb": 900.0,
                "params": PARAMS[model], "git_commit": "0123456789abcdef0123456789abcdef01234567",
                "run_dir": str(run_dir), "test_ann_file": str(shapes / "annotations" / "instances_val.json"),
                "test_img_dir": str(shapes / "val")})
    return row


def build_results(root: Path, shapes: Path) -> pd.DataFrame:
    """Write results/<suite>/{collect.parquet, collect.csv, <run-id>/...} and results/bench/models.json under
    ``root``;
    return every suite's table (the same rows the CSVs hold)."""
    gt = json.loads((shapes / "annotations" / "instances_val.json").read_text())
    rng = np.random.default_rng(1234)
    rows: list[dict] = []

    def run(suite, model, seed, status="done", axes=None, ap_shift=0.0, reason="", drop=()):
        axes = axes or {}
        variant = ", ".join(f"{k}={_label(v)}" for k, v in sorted(axes.items()))
        run_id = f"{suite}-{len(rows):03d}"
        run_dir = root / "results" / suite / run_id
        run_dir.mkdir(parents=True)
        metrics = _metrics(rng, SHAPES_MODELS[model][1] + ap_shift) if status == "done" else {}
        for key in drop:
            metrics.pop(key)
        (run_dir / "run.json").write_text(json.dumps({
            "suite": suite, "run_id": run_id, "config": SHAPES_MODELS[model][0], "cfg_options": axes,
            "axes": axes, "seed": seed, "variant": variant}))
        if status == "done":
            (run_dir / "metrics.json").write_text(json.dumps(metrics))
            (run_dir / "scalars.json").write_text(_scalars(rng, model))
            quality = 0.5 + SHAPES_MODELS[model][1]
            (run_dir / "predictions.json").write_text(json.dumps(_predictions(rng, gt, quality)))
        rows.append(_row(suite, run_id, model, seed, status, variant, axes, metrics, run_dir, shapes, reason))

    for model in SHAPES_MODELS:
        for seed in (0, 1, 2):
            if model == "panet_shapes" and seed == 2:
                run("mnc_vs_successors", model, seed, status="failed", reason="loss is NaN at iteration 420")
            elif model == "mnc_3stage_shapes" and seed == 2:
                run("mnc_vs_successors", model, seed, drop=("coco/bbox/AP",))
            else:
                run("mnc_vs_successors", model, seed)
    run("mnc_vs_successors", "mnc_5stage_shapes", 3, status="running")
    for stages, share in ((3, True), (5, True), (5, False), (7, True)):  # zipped axes, as the shipped suite
        for box_grad in (True, False):
            for seed in (0, 1):
                if (stages, box_grad, seed) == (7, False, 1):
                    continue  # one group with a single seed
                shift = 0.02 * (stages - 3) - 0.02 * box_grad
                run("cascade_depth", "mnc_3stage_shapes", seed, ap_shift=shift,
                    axes={"model.cascade.num_stages": stages, "model.cascade.share_weights": share,
                          "model.cascade.box_grad": box_grad})
    for mask in (1.0, 2.0):
        for cls in (0.5, 1.0):
            for seed in (0, 1):
                run("loss_weights", "mnc_3stage_shapes", seed, ap_shift=0.01 * mask - 0.01 * cls,
                    axes={"model.loss_weights.mask": mask, "model.loss_weights.cls": cls})
    for control, shift in ((None, 0.0), ({"max_proposals": 10}, -0.1), ({"max_proposals": 50}, -0.01),
                           ({"jitter": 0.2}, -0.05), ({"mode": "oracle", "oracle_iou": 0.9}, 0.08)):
        for seed in (0, 1):  # a mapping-valued axis, as the shipped suite: null = MNC's proposals as they are
            run("proposal_quality", "mnc_3stage_shapes", seed, ap_shift=shift,
                axes={"model.proposal_control": control})
    # a text axis crossed with the model, as the shipped suite
    for model in ("mnc_3stage_shapes", "mnc_5stage_shapes"):
        for labels in ("box", "both"):
            for seed in (0, 1):
                run("stage3_labels", model, seed, ap_shift=0.01 * (labels == "both"),
                    axes={"model.cascade.stage3_labels": labels})
    for seed in (0, 1):
        run("only_failed", "mask_rcnn_shapes", seed, status="failed", reason="CUDA out of memory")

    table = pd.DataFrame(rows)
    for suite, frame in table.groupby("suite"):
        # The columns and dtypes `collect` writes: a suite's own axes only, nullable integers, boolean axes.
        frame = frame.dropna(axis=1, how="all") if suite != "mnc_vs_successors" else frame
        frame = frame.astype({c: "Int64" for c in ("seed", "batch_size", "max_iters", "params")})
        flags = [c for c in frame if c.startswith("axis.") and frame[c].map(type).eq(bool).all()]
        frame = frame.astype({c: "boolean" for c in flags})
        frame.to_parquet(root / "results" / suite / "collect.parquet", index=False)
        frame.to_csv(root / "results" / suite / "collect.csv", index=False)
    bench = {"machine": {"cpu": "test cpu", "threads": 2, "torch": "2.x", "gpu": None},
             "settings": {"size": 128, "batch": 1, "repeats": 5},
             "models": [{"model": m, "config": c, "params": PARAMS[m], "gflops": 10.0 + i,
                         "infer_ms_median": 100.0 + 40 * i, "infer_ms_q1": 95.0 + 40 * i,
                         "infer_ms_q3": 110.0 + 40 * i, "weights": "random", "score_thr": 0.0}
                        for i, (m, (c, _)) in enumerate(SHAPES_MODELS.items())]}
    (root / "results" / "bench").mkdir(parents=True)
    (root / "results" / "bench" / "models.json").write_text(json.dumps(bench))
    return table
