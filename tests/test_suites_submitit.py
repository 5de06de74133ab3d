"""The submitit path (what `--executor slurm` uses) driven by submitit's local executor: throttled to N runs
at a time in our code, and a preempted job requeued by submitit's checkpointing resumes its run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("mmcv.ops")
submitit = pytest.importorskip("submitit")

from pycocotools.coco import COCO  # noqa: E402

from mnc_bench.suites.executors import SubmititExecutor, SuiteJob, submitit_executor  # noqa: E402
from mnc_bench.suites.runner import plan_suite, prepare_runs, run_suite  # noqa: E402
from mnc_bench.suites.spec import SlurmSettings, load_suite  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("repo_cwd")]


def local_executor(folder: Path):
    executor = submitit.AutoExecutor(folder=str(folder), cluster="local")
    executor.update_parameters(timeout_min=30)
    return executor


def test_submitit_local_executor_runs_the_suite_at_most_n_at_a_time(tiny_suite, tmp_path):
    suite = load_suite(tiny_suite(iters=2, seeds=(0, 1, 2)))
    suite_dir = tmp_path / "results" / "tiny"
    executor = SubmititExecutor(local_executor(tmp_path / "submitit"), max_parallel=2, threads=1)
    run_suite(suite, suite_dir, executor=executor, echo=lambda line: None)
    spans = []
    for run in suite.runs:
        stats = json.loads((suite_dir / run.run_id / "run_stats.json").read_text())
        assert json.loads((suite_dir / run.run_id / "status.json").read_text())["state"] == "done"
        spans.append((stats["worker_started_at"], stats["worker_started_at"] + stats["worker_time_s"]))
    # runs executing when each run began: 2 at once at some moment, never more
    at_once = [sum(s <= start < e for s, e in spans) for start, _ in spans]
    assert max(at_once) == 2
    assert max(s for s, _ in spans) >= sorted(e for _, e in spans)[0]  # the third waited for a free slot


def test_a_timed_out_job_is_requeued_and_resumes_from_its_checkpoint(tiny_suite, tmp_path):
    """submitit's local executor sends the timeout signal (USR2) 30 s before its time limit, as Slurm does;
    the job checkpoints (requeues itself) and the requeued worker resumes the run, until it finishes."""
    suite = load_suite(tiny_suite(iters=40, seeds=(0,)))
    plan = plan_suite(suite, tmp_path / "results" / "tiny")
    prepare_runs(plan, suite, tmp_path / "results" / "tiny")
    run_dir = plan[0].run_dir
    executor = submitit.LocalExecutor(folder=str(tmp_path / "submitit"), max_num_timeout=20)
    executor.update_parameters(timeout_min=1, signal_delay_s=30)  # USR2 30 s into every attempt
    job = executor.submit(SuiteJob(threads=1), str(run_dir.path))
    assert job.result() == 0
    status = run_dir.status()
    assert status["state"] == "done" and status["attempt"] >= 2
    log = run_dir.file("log.txt").read_text()
    assert "exiting to be requeued" in log and "resuming" in log
    steps = [json.loads(line)["step"] for line in run_dir.file("scalars.json").read_text().splitlines()]
    assert steps == list(range(1, 41))


def test_a_run_over_two_tasks_trains_and_scores_as_one(shapes_dataset, tmp_path, write_suite):
    """`gpus_per_run: 2` (what --executor slurm submits as two tasks, one per GPU) on submitit's local
    executor and the CPU: the tasks join one process group through submitit's environment; the run trains at
    world size 2, its test predictions cover every image and its proposal recall is that of the whole test
    split."""
    suite_file = write_suite(tmp_path / "two_tasks.yaml", shapes_dataset, {
        "train_cfg.max_iters": 2, "train_dataloader.batch_size": 2,
        "model.test_cfg.rcnn.score_thr": 0.0, "model.test_cfg.rcnn.max_per_img": 10,
    }, extra={"metrics": ["coco/segm/AP", "proposals/AR@100"]})
    suite = load_suite(suite_file)
    suite_dir = tmp_path / "results" / "two_tasks"
    executor = submitit_executor("local", tmp_path / "submitit",
                                 slurm=SlurmSettings(gpus_per_run=2, timeout_min=30))
    run_suite(suite, suite_dir,
              executor=SubmititExecutor(executor, max_parallel=1, threads=1, launcher="pytorch"),
              echo=lambda line: None)
    run_dir = suite_dir / suite.runs[0].run_id
    assert json.loads((run_dir / "status.json").read_text())["state"] == "done"
    stats = json.loads((run_dir / "run_stats.json").read_text())
    assert stats["world_size"] == 2 and stats["batch_size"] == 4
    val_ann = shapes_dataset / "annotations" / "instances_val.json"
    predictions = json.loads((run_dir / "predictions.json").read_text())
    assert {record["image_id"] for record in predictions} == set(COCO(str(val_ann)).getImgIds())
    # recall from both ranks' shares equals recall of one process over the whole split
    from mnc_bench.config_loading import load_config
    from mnc_bench.suites.proposals import proposal_recall

    spec = json.loads((run_dir / "run.json").read_text())
    alone = proposal_recall(
        load_config(spec["config"], dict(spec["cfg_options"], **{"test_dataloader.batch_size": 1})),
        stats["checkpoint"], str(val_ann))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["proposals/AR@100"] == pytest.approx(alone["proposals/AR@100"], abs=1e-6)


class _NaNLossOnRankOne(SuiteJob):
    """A task whose rank 1 has a NaN loss at its first iteration (rank 0's is finite): mmengine's
    parse_losses, which every rank's train_step calls, is wrapped in the task's own process."""

    def __call__(self, run_dir: str) -> int:
        import os

        from mmengine.model import BaseModel

        parse_losses = BaseModel.parse_losses

        def nan_on_rank_one(model, losses):
            loss, log_vars = parse_losses(model, losses)
            if os.environ.get("RANK") == "1":
                loss = loss * float("nan")
                log_vars["loss"] = loss
            return loss, log_vars

        BaseModel.parse_losses = nan_on_rank_one
        return super().__call__(run_dir)


def test_a_nan_loss_on_one_rank_stops_both_ranks_with_its_reason(shapes_dataset, tmp_path, write_suite):
    """Two tasks joined by gloo (as two GPUs of one run): rank 1 alone sees a NaN loss; both ranks stop at
    that iteration with the same non-finite-loss reason, which the run records, instead of rank 0 waiting for
    rank 1 in the next gradient all-reduce."""
    suite = load_suite(write_suite(tmp_path / "nan.yaml", shapes_dataset, {
        "train_cfg.max_iters": 3, "train_dataloader.batch_size": 2}))
    plan = plan_suite(suite, tmp_path / "results" / "nan")
    prepare_runs(plan, suite, tmp_path / "results" / "nan")
    run_dir = plan[0].run_dir
    executor = submitit_executor("local", tmp_path / "submitit",
                                 slurm=SlurmSettings(gpus_per_run=2, timeout_min=10))
    cloudpickle = pytest.importorskip("cloudpickle")
    # by value: the task processes cannot import this module
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        job = executor.submit(_NaNLossOnRankOne(threads=1, launcher="pytorch"), str(run_dir.path))
        job.wait()
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    reason = "non-finite loss: loss is nan at iteration 1 on rank 1"
    status = run_dir.status()
    assert status["state"] == "failed" and status["exit_reason"] == reason
    rank_one = job.task(1).paths.stderr.read_text()
    assert "NonFiniteLoss: loss is nan at iteration 1 on rank 1" in rank_one
