"""The runner end to end on tiny runs (Mask R-CNN on the 16/8-image shapes fixture, a few iterations): SIGKILL
at several points then rerun, failures recorded while the suite goes on, identical metrics for identical
runs."""

from __future__ import annotations

import json
import os
import signal

import pytest

pytest.importorskip("mmcv.ops")

from mnc_bench.suites.collect import collect  # noqa: E402
from mnc_bench.suites.executors import threads_per_run  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("repo_cwd")]


def test_sigkill_at_several_points_then_rerun_finishes_every_run_exactly_once(tiny_suite, suite_cli, tmp_path,
                                                                              shapes_dataset):
    cli, results = suite_cli, tmp_path / "results"
    suite = tiny_suite(iters=4)

    # 1. while the first run writes its results (metrics.json written, status not yet done)
    runner = cli.start(suite, results, pause="results")
    cli.wait_for(lambda: (results / "tiny" / "suite.json").is_file(), what="the plan")
    runs = cli.run_dirs(results)
    cli.wait_for(lambda: runs[0].file(".paused-results").is_file(), what="the results pause")
    cli.kill(runner, runs)
    assert runs[0].state == "running" and json.loads(runs[0].file("metrics.json").read_text())

    # 2. between runs: the first one resumes from its last checkpoint and finishes, then the runner stops
    runner = cli.start(suite, results, pause="between")
    cli.wait_for(lambda: (results / "tiny" / ".paused-between").is_file(), what="the between-runs pause")
    cli.kill(runner, runs)
    assert [r.state for r in runs] == ["done", "pending", "pending"]
    (results / "tiny" / ".paused-between").unlink()

    # 3. during the second run's training
    runner = cli.start(suite, results)
    cli.wait_for(lambda: (runs[1].work_dir / "iter_2.pth").is_file(), what="the second run's checkpoint")
    cli.kill(runner, runs)
    assert [r.state for r in runs] == ["done", "running", "pending"]
    # The newest checkpoint truncated after mmengine pointed `last_checkpoint` at it (a kill during the save):
    # the resume steps back to the previous whole one, with one warning in the run's log.
    newest = max(runs[1].work_dir.glob("iter_*.pth"), key=lambda p: int(p.stem.split("_")[1]))
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    (runs[1].work_dir / "last_checkpoint").write_text(str(newest))
    previous = runs[1].work_dir / f"iter_{int(newest.stem.split('_')[1]) - 1}.pth"

    out = cli.finish(suite, results)
    log = runs[1].file("log.txt").read_text()
    assert log.count("skipping checkpoint") == 1 and f"skipping checkpoint {newest}: truncated" in log
    assert f"Load checkpoint from {previous}" in log
    assert "1 start, 1 resume, 1 skip (done)" in out
    assert [r.state for r in runs] == ["done", "done", "done"]
    val_ids = {image["id"] for image in json.loads(
        (shapes_dataset / "annotations" / "instances_val.json").read_text())["images"]}
    for run_dir in runs:
        metrics = json.loads(run_dir.file("metrics.json").read_text())  # whole, strict JSON
        assert {"coco/segm/AP", "coco/bbox/AP", "voc_sds/mAP@0.5", "voc_mnc/mAP@0.5"} <= set(metrics)
        assert run_dir.file("log.txt").read_text().count("=== done") == 1
        steps = [json.loads(line)["step"] for line in run_dir.file("scalars.json").read_text().splitlines()]
        assert steps == [1, 2, 3, 4]  # one series across the attempts, no step twice
        predictions = json.loads(run_dir.file("predictions.json").read_text())
        # the test split's predictions: up to 10 per image (the suite's max_per_img), masks as COCO RLE
        assert {record["image_id"] for record in predictions} == val_ids
        assert all(len(predictions) <= 10 * len(val_ids) and isinstance(record["segmentation"]["counts"], str)
                   for record in predictions)
    assert ("resuming" in runs[0].file("log.txt").read_text()
            and "resuming" in runs[1].file("log.txt").read_text())
    assert (runs[0].status()["attempt"] == 2 and runs[1].status()["attempt"] == 2
            and runs[2].status()["attempt"] == 1)
    table = collect(results / "tiny")
    assert len(table) == 3 and table["run_id"].is_unique and (table["status"] == "done").all()
    assert ((table["max_iters"] == 4).all() and (table["batch_size"] == 2).all()
            and (table["params"] > 0).all())
    assert table["s_per_iter"].notna().all() and table["train_time_s"].notna().all()
    # all skipped
    assert "done" in cli.finish(suite, results) and [r.status()["attempt"] for r in runs] == [2, 2, 1]


def test_failures_are_recorded_and_the_suite_goes_on(tiny_suite, suite_cli, tmp_path):
    cli, results = suite_cli, tmp_path / "results"
    suite = tiny_suite(iters=3, seeds=(0,), extra="""
        grid:
          model.roi_head.bbox_head.loss_cls.loss_weight: [.nan, 1.0, 2.0]
    """)
    runner = cli.start(suite, results)
    cli.wait_for(lambda: (results / "tiny" / "suite.json").is_file(), what="the plan")
    nan_run, killed, healthy = cli.run_dirs(results)
    # the kernel's OOM killer, as the runner sees it: the worker dies of SIGKILL in the middle of training
    cli.wait_for(lambda: (killed.work_dir / "iter_1.pth").is_file(), what="the second run's training")
    os.kill(killed.status()["pid"], signal.SIGKILL)
    out, _ = runner.communicate(timeout=600)
    assert runner.returncode == 1, out
    assert nan_run.state == "failed"
    reason = nan_run.status()["exit_reason"]
    assert reason.startswith("non-finite loss: loss is nan at iteration 1") and "loss_cls" in reason
    assert "NonFiniteLoss" in nan_run.status()["log_tail"]
    assert killed.state == "failed" and killed.status()["exit_reason"].startswith("worker killed by SIGKILL")
    assert healthy.state == "done"
    assert "2 run(s) failed" in out
    # --rerun-failed starts them again from scratch; the NaN one fails again, the killed one finishes
    process = cli.start(suite, results, "--rerun-failed")
    out, _ = process.communicate(timeout=600)
    assert "2 rerun" in out and killed.state == "done" and nan_run.state == "failed"
    table = collect(results / "tiny")
    assert table["status"].tolist() == ["failed", "done", "done"]


def test_same_config_and_seed_give_identical_metrics(tiny_suite, suite_cli, tmp_path):
    suite = tiny_suite(iters=2, seeds=(3,))
    printed = suite_cli.finish(suite, tmp_path / "a")
    suite_cli.finish(suite, tmp_path / "b")
    (a,), (b,) = suite_cli.run_dirs(tmp_path / "a"), suite_cli.run_dirs(tmp_path / "b")
    # the timing line splits the time to the first iteration: validation, the run's runner build, the rest
    (invocation,) = json.loads((tmp_path / "a" / "tiny" / "suite.json").read_text())["invocations"]
    stats = json.loads(a.file("run_stats.json").read_text())
    assert stats["threads"] == threads_per_run(1)  # the torch threads the worker trained with
    assert invocation["first_iter_at"] == stats["first_iter_at"]
    assert invocation["first_iter_started_at"] == stats["first_iter_started_at"]
    assert invocation["first_run_build_s"] == pytest.approx(
        stats["runner_built_at"] - stats["worker_started_at"])
    assert (invocation["started_at"] < invocation["validated_at"] < stats["worker_started_at"]
            < stats["runner_built_at"] < stats["first_iter_started_at"] < stats["first_iter_at"])
    began = invocation["first_iter_started_at"] - invocation["started_at"]
    assert (f"first training iteration began {began:.1f} s after start (suite validated after "
            f"{invocation['validated_at'] - invocation['started_at']:.1f} s; its runner (model, data, hooks) "
            f"built in {invocation['first_run_build_s']:.1f} s; "
            f"{began - invocation['first_run_build_s']:.1f} s beyond that) "
            f"and ended {invocation['first_iter_at'] - invocation['started_at']:.1f} s "
            "after start") in printed
    assert a.run_id == b.run_id
    assert json.loads(a.file("metrics.json").read_text()) == json.loads(b.file("metrics.json").read_text())
    assert a.file("predictions.json").read_text() == b.file("predictions.json").read_text()


def test_proposal_recall_is_collected_from_the_proposals_stage_2_sees(tiny_suite, suite_cli, tmp_path):
    cli, results = suite_cli, tmp_path / "results"
    suite = tiny_suite(iters=2, seeds=(0,), extra="""
        metrics: [proposals/AR@10, proposals/AR@100]
        grid:
          model.proposal_control: [{mode: oracle, oracle_iou: 0.92}, {max_proposals: 10}]
    """)
    suite.write_text(suite.read_text().replace("mask_rcnn/mask_rcnn_shapes.py", "mnc/mnc_3stage_shapes.py"))
    cli.finish(suite, results)
    oracle, capped = (json.loads(r.file("metrics.json").read_text()) for r in cli.run_dirs(results))
    # every ground truth gets boxes at IoU 0.92 first (round robin): found at IoU .5, .55, ..., .9, not at .95
    assert oracle["proposals/AR@10"] == pytest.approx(0.9, abs=1e-6)
    assert oracle["proposals/AR@100"] == pytest.approx(0.9, abs=1e-6)
    assert capped["proposals/AR@100"] == capped["proposals/AR@10"] and "coco/segm/AP" in capped
    table = collect(results / "tiny")
    assert table["proposals/AR@100"].tolist() == pytest.approx([0.9, capped["proposals/AR@100"]])

    baseline = tiny_suite(name="rpn", iters=2, seeds=(0,), extra="metrics: [proposals/AR@100]\n")
    cli.finish(baseline, results)
    (run_dir,) = cli.run_dirs(results, "rpn")
    recall = json.loads(run_dir.file("metrics.json").read_text())["proposals/AR@100"]
    # Mask R-CNN's RPN proposals, with their objectness: the recall of this process's own pass over them
    from mnc_bench.config_loading import load_config
    from mnc_bench.suites.proposals import proposal_recall

    spec = json.loads(run_dir.file("run.json").read_text())
    checkpoint = json.loads(run_dir.file("run_stats.json").read_text())["checkpoint"]
    alone = proposal_recall(load_config(spec["config"], spec["cfg_options"]), checkpoint,
                            spec["test_ann_file"])
    assert recall == pytest.approx(alone["proposals/AR@100"], abs=1e-9) and recall > 0


def test_boundary_ap_and_tide_named_by_a_suite_are_scored_from_the_run_predictions(
        tiny_suite, suite_cli, shapes_dataset, tmp_path):
    from mnc_bench.evaluation import evaluate

    results = tmp_path / "results"
    suite = tiny_suite(iters=1, seeds=(0,),
                       extra="metrics: [coco/segm/AP, coco/boundary/AP, tide/bbox/dAP_loc]\n")
    suite_cli.finish(suite, results)
    (run_dir,) = suite_cli.run_dirs(results)
    metrics = json.loads(run_dir.file("metrics.json").read_text())
    again = evaluate(shapes_dataset / "annotations" / "instances_val.json", run_dir.file("predictions.json"),
                     metric=["boundary", "tide"], iou_type=("segm", "bbox"))
    for key in ("coco/boundary/AP", "coco/boundary/AP75", "tide/segm/dAP_miss", "tide/bbox/dAP_loc"):
        assert metrics[key] == pytest.approx(again[key]), key
    table = collect(results / "tiny")
    assert table.loc[0, "coco/boundary/AP"] == pytest.approx(metrics["coco/boundary/AP"])
