"""The local executor's idle workers: started ahead of their runs (imports done while the suite is validated),
handed a run directory on stdin, stopped when no run is left for them."""

from __future__ import annotations

import re
import subprocess
import sys
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


def test_an_idle_worker_whose_stdin_closes_exits_without_a_run(tmp_path):
    worker = subprocess.run([sys.executable, "-m", "mnc_bench.suites.worker", "--threads", "1"], cwd=REPO,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert worker.returncode == 0 and "Traceback" not in worker.stderr


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
    # the first run's worker starts with it; each later run finds one that was started idle while runs remained
    assert [args for args, _ in started] == [[str(runs[0].path)], [], []]
    assert [worker_pid(run) for run in runs] == [pid for _, pid in started]
