"""The submitit path (what `--executor slurm` uses) driven by submitit's local executor: throttled to N runs at a
time in our code, and a preempted job requeued by submitit's checkpointing resumes its run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("mmcv.ops")
submitit = pytest.importorskip("submitit")

from mnc_bench.suites.executors import SubmititExecutor, SuiteJob  # noqa: E402
from mnc_bench.suites.runner import _prepare_data, _prepare_run_dir, plan_suite, run_suite  # noqa: E402
from mnc_bench.suites.spec import load_suite  # noqa: E402
from test_suites_runner import REPO, tiny_suite  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(REPO)


def local_executor(folder: Path):
    executor = submitit.AutoExecutor(folder=str(folder), cluster="local")
    executor.update_parameters(timeout_min=30)
    return executor


def test_submitit_local_executor_runs_the_suite_at_most_n_at_a_time(shapes_dataset, tmp_path):
    suite = load_suite(tiny_suite(tmp_path, shapes_dataset, iters=2, seeds=(0, 1, 2)))
    suite_dir = tmp_path / "results" / "tiny"
    executor = SubmititExecutor(local_executor(tmp_path / "submitit"), max_parallel=2, threads=1)
    run_suite(suite, suite_dir, executor=executor, echo=lambda line: None)
    spans = []
    for run in suite.runs:
        stats = json.loads((suite_dir / run.run_id / "run_stats.json").read_text())
        assert json.loads((suite_dir / run.run_id / "status.json").read_text())["state"] == "done"
        spans.append((stats["worker_started_at"], stats["worker_started_at"] + stats["worker_time_s"]))
    # at no moment were more than 2 runs executing
    for start, _ in spans:
        assert sum(s <= start < e for s, e in spans) <= 2
    assert max(s for s, _ in spans) >= sorted(e for _, e in spans)[0]  # the third waited for a free slot


def test_a_timed_out_job_is_requeued_and_resumes_from_its_checkpoint(shapes_dataset, tmp_path):
    """submitit's local executor sends the timeout signal (USR2) 30 s before its time limit, as Slurm does; the
    job checkpoints (requeues itself) and the requeued worker resumes the run, until it finishes."""
    suite = load_suite(tiny_suite(tmp_path, shapes_dataset, iters=40, seeds=(0,)))
    plan = plan_suite(suite, tmp_path / "results" / "tiny")
    _prepare_data(plan)
    _prepare_run_dir(plan[0], suite)
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
