"""The local executor's idle workers: started ahead of their runs (imports done while the suite is validated),
handed a run directory on stdin, stopped when no run is left for them."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("mmcv.ops")

from mnc_bench.suites.executors import LocalExecutor  # noqa: E402
from mnc_bench.suites.rundir import RunDir  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def done_run(finish_run):
    """``done_run(path)``: a finished run; a worker given it returns at once (no training)."""

    def make(path: Path) -> RunDir:
        run_dir = RunDir(path)
        run_dir.write_json("run.json", {"run_id": run_dir.run_id, "config": "missing.py", "cfg_options": {},
                                        "seed": 0})
        finish_run(run_dir)
        return run_dir

    return make


class Events:
    def __init__(self) -> None:
        self.finished_codes: list[int | None] = []

    def started(self, run_dir: RunDir) -> None:
        pass

    def finished(self, run_dir: RunDir, exit_code: int | None, duration_s: float, failure: str = "") -> None:
        self.finished_codes.append(exit_code)

    def tick(self) -> None:
        pass


def worker_pid(run_dir: RunDir) -> int:
    return int(re.search(r"is done already \(.*, pid (\d+)\)", run_dir.file("log.txt").read_text()).group(1))


@pytest.mark.slow  # ~8 s of real worker processes importing torch/mmdet; CI runs it
def test_prestarted_workers_take_the_runs_and_the_spare_is_stopped(tmp_path, monkeypatch, done_run):
    monkeypatch.chdir(REPO)
    runs = [done_run(tmp_path / "suite" / name) for name in ("0123456789ab", "ba9876543210")]
    executor = LocalExecutor(workers=2, threads=1)
    executor.prestart()
    prestarted = list(executor._idle)
    assert len(prestarted) == 2 and all(p.poll() is None for p in prestarted)
    events = Events()
    executor.execute(runs[:1], events, tmp_path / "suite")
    assert events.finished_codes == [0]
    assert worker_pid(runs[0]) == prestarted[0].pid  # the run went to a worker started before it
    assert prestarted[1].poll() is not None and not executor._idle  # no run left for the spare: stopped

    executor.execute(runs[1:], events, tmp_path / "suite")  # nothing prestarted: a worker started for the run
    assert events.finished_codes == [0, 0] and worker_pid(runs[1]) not in {p.pid for p in prestarted}


@pytest.mark.slow
def test_an_idle_worker_loads_its_libraries_before_its_run_and_exits_without_one_when_stdin_closes(tmp_path):
    """Idle: the libraries (up to mmcv's ops) are loaded while the worker waits for a run directory on stdin.
    Closed without one: the worker exits 0, silent, writing nothing where it runs."""
    where = tmp_path / "cwd"
    where.mkdir()
    env = dict(os.environ,
               PYTHONWARNINGS="ignore",  # a library's deprecation warning is not the worker's output
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    worker = subprocess.Popen([sys.executable, "-m", "mnc_bench.suites.worker", "--threads", "1"], cwd=where,
                              env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    maps = Path(f"/proc/{worker.pid}/maps")
    deadline = time.monotonic() + 300
    # mmcv's compiled ops: loaded with the models, last of what every run needs (torch itself comes sooner)
    while "mmcv/_ext" not in maps.read_text() and worker.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "mmcv/_ext" in maps.read_text() and worker.poll() is None  # loaded, waiting for its run
    out, err = worker.communicate(input="", timeout=300)
    assert (worker.returncode, out, err) == (0, "", "")
    assert list(where.iterdir()) == []


@pytest.mark.slow  # ~8 s of real worker processes importing torch/mmdet; CI runs it
def test_while_runs_remain_a_worker_is_started_ahead_for_the_next_one(tmp_path, monkeypatch, done_run):
    monkeypatch.chdir(REPO)
    runs = [done_run(tmp_path / "suite" / name) for name in ("0123456789ab", "ba9876543210", "aaaaaaaaaaaa")]
    executor = LocalExecutor(workers=1, threads=1)
    started: list[tuple[list[str], int]] = []
    popen = executor._popen

    def recording_popen(args, **kwargs):
        process = popen(args, **kwargs)
        started.append((args, process.pid))
        return process

    monkeypatch.setattr(executor, "_popen", recording_popen)
    executor.execute(runs, Events(), tmp_path / "suite")
    # the first run's worker starts with it; each later run finds one that was started idle while runs
    # remained
    assert [args for args, _ in started] == [[str(runs[0].path)], [], []]
    assert [worker_pid(run) for run in runs] == [pid for _, pid in started]


class FinishedJob:
    """A submitit job that has ended: its tasks' results (a list: one per task; one value: one task), or the
    exception submitit raises for it. Only ``results()``, as in submitit, works for a job of several tasks."""

    job_id = "4242"

    def __init__(self, outcome) -> None:
        self.outcome = outcome

    def done(self) -> bool:
        return True

    def results(self):
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return list(self.outcome) if isinstance(self.outcome, list) else [self.outcome]

    def result(self):
        if isinstance(self.outcome, list) and len(self.outcome) > 1:
            raise AssertionError("You should use `results()` if your job has subtasks.")
        return self.results()[0]


class Cluster:
    """A submitit executor whose jobs end as given, one outcome per submitted run."""

    def __init__(self, outcomes) -> None:
        self.outcomes = list(outcomes)

    def map_array(self, function, run_dirs):
        return [FinishedJob(self.outcomes.pop(0)) for _ in run_dirs]


FAILED_JOB = """Job (task=0) failed during processing with trace:
----------------------
Traceback (most recent call last):
  File "submitit/core/submission.py", line 55, in process_job
    result = delayed.result()
ImportError: libcudart.so.12: cannot open shared object file
----------------------
You can check full logs with 'job.stderr(0)' and 'job.stdout(0)'or at paths:
  - /slurm/4242_0_log.err"""


def test_a_failed_submitit_job_is_recorded_with_its_reason(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    from submitit.core.utils import FailedJobError, UncompletedJobError

    from mnc_bench.suites import executors
    from mnc_bench.suites.progress import SuiteProgress
    from mnc_bench.suites.runner import RunEvents

    monkeypatch.setattr(executors, "POLL_S", 0.0)
    runs = [RunDir(tmp_path / "suite" / run_id)
            for run_id in ("0123456789ab", "ba9876543210", "aaaaaaaaaaaa")]
    for run_dir in runs:
        run_dir.write_json("status.json", {"state": "pending"})
    outcomes = [FailedJobError(FAILED_JOB),
                UncompletedJobError("Job 4242 (task: 0) with path /slurm/4242_0_result.pkl\n"
                                    "has not produced any output (state: NODE_FAIL)\nNo output/error stream"),
                0]
    runs[2].write_json("status.json", {"state": "done"})  # the worker recorded its verdict
    progress = SuiteProgress("suite", {}, done=0, failed=0, queue=[r.run_id for r in runs], workers=3,
                             stream=io.StringIO())
    executor = executors.SubmititExecutor(Cluster(outcomes), max_parallel=3)
    executor.execute(runs, RunEvents(progress), tmp_path / "suite")
    failed, lost, done = (run_dir.status() for run_dir in runs)
    assert failed["state"] == "failed" and failed["exit_reason"] == (
        "submitit job 4242: ImportError: libcudart.so.12: cannot open shared object file")
    assert lost["state"] == "failed" and lost["exit_reason"] == (
        "submitit job 4242: Job 4242 (task: 0) with path /slurm/4242_0_result.pkl has not produced any "
        "output (state: NODE_FAIL)")
    assert done["state"] == "done" and progress.done == 1 and progress.failed == 2


def test_a_job_of_several_tasks_exits_with_the_first_failing_task_s_code():
    pytest.importorskip("submitit")
    from mnc_bench.suites.executors import job_outcome

    assert job_outcome(FinishedJob([0, 0])) == (0, "")  # one task per GPU, all finished
    assert job_outcome(FinishedJob([0, 3, 1])) == (3, "")
    assert job_outcome(FinishedJob(2)) == (2, "")


def test_a_bug_while_reading_a_submitit_job_is_not_taken_for_a_failed_run(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    from mnc_bench.suites import executors

    monkeypatch.setattr(executors, "POLL_S", 0.0)
    run_dir = RunDir(tmp_path / "suite" / "0123456789ab")
    executor = executors.SubmititExecutor(Cluster([TypeError("int() argument must be a string")]),
                                          max_parallel=1)
    with pytest.raises(TypeError, match="int\\(\\) argument"):
        executor.execute([run_dir], Events(), tmp_path / "suite")
