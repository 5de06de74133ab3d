"""The runner's time figures: the overhead without the slots a long last run leaves idle, and the ETA."""

from __future__ import annotations

import io

import pytest

from mnc_bench.suites import progress as progress_module
from mnc_bench.suites.commands import format_timing
from mnc_bench.suites.progress import SuiteProgress
from mnc_bench.suites.rundir import RunDir
from mnc_bench.suites.runner import idle_after


def test_idle_after_the_last_launch_counts_the_free_slots_only():
    # 2 slots; runs (0, 10), (1, 4), (4, 30); the last launch at 4: slot A free over [10, 30], slot B busy to
    # 30
    assert idle_after(4.0, 30.0, [(0.0, 10.0), (1.0, 4.0), (4.0, 30.0)], workers=2) == pytest.approx(20.0)
    assert idle_after(4.0, 30.0, [(4.0, 30.0), (4.0, 30.0)], workers=2) == pytest.approx(0.0)
    assert idle_after(4.0, 30.0, [], workers=1) == pytest.approx(26.0)


def test_the_overhead_leaves_out_the_idle_tail_and_says_how_much_it_was():
    # 2 workers, 100 s wall, 160 s of runs, of which the tail left 30 slot-seconds idle: 10 s are the runner's
    record = dict(wall_s=100.0, runs_time_s=160.0, runs=3, workers=2, tail_idle_s=30.0)
    line = format_timing(record)
    assert "runner overhead 5.0% of the wall time" in line
    assert "not counting 30.0 slot-seconds idle after the last run started" in line
    # without the record of the tail (older suite.json), all idle time counts, as before
    assert "runner overhead 20.0%" in format_timing({**record, "tail_idle_s": None})
    # the tail can never make the overhead negative
    assert "runner overhead 0.0%" in format_timing({**record, "tail_idle_s": 90.0})
    assert "overhead" not in format_timing(dict(wall_s=5.0, runs_time_s=0.0, runs=0, workers=1))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_eta_follows_each_runs_iteration_rate_and_each_kinds_duration(tmp_path, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress_module.time, "time", clock)
    ids = ["fast0", "fast1", "slow0", "slow1"]
    kinds = {"fast0": "mnc_3stage", "fast1": "mnc_3stage", "slow0": "mnc_5stage", "slow1": "mnc_5stage"}
    progress = SuiteProgress("s", {i: i for i in ids}, done=0, failed=0, queue=ids, workers=2, kinds=kinds,
                             stream=io.StringIO())
    runs = {i: RunDir(tmp_path / i) for i in ids}
    for run_dir in runs.values():
        run_dir.path.mkdir()
    assert progress.eta_s() is None  # nothing known yet

    for i in ("fast0", "fast1"):
        progress.started(runs[i])
    clock.now += 100.0
    progress.finished(runs["fast0"], "done", 100.0)  # a 3-stage run takes 100 s
    progress.started(runs["slow0"])
    # fast1 should end now (its kind's mean less its 100 s); slow0, of a kind not seen finished, after the
    # mean of all finished runs (100 s); slow1 takes fast1's slot and as long
    assert progress.eta_s() == pytest.approx(100.0)

    # slow0 resumed at iteration 400 and logs 100 more in 50 s, so 250 s to go; slow1 (its kind's duration
    # unknown until one finishes) still counts 100 s, after fast1 ends
    runs["slow0"].write_json("status.json", {"state": "running", "iter": 400, "max_iters": 1000})
    progress.tick()
    clock.now += 50.0
    runs["slow0"].write_json("status.json", {"state": "running", "iter": 500, "max_iters": 1000})
    runs["fast1"].write_json("status.json", {"state": "running", "iter": 500, "max_iters": 1000})
    assert progress.eta_s() == pytest.approx(250.0)

    progress.tick()  # fast1 first seen at iteration 500
    clock.now += 450.0
    progress.finished(runs["fast1"], "done", 600.0)
    progress.finished(runs["slow0"], "done", 500.0)
    progress.started(runs["slow1"])  # now its kind's mean: 500 s
    assert progress.eta_s() == pytest.approx(500.0)
    assert progress.left == 0 and "1 running, 0 left, ETA 8m20s" in progress.summary()


def test_every_running_run_is_observed_even_when_another_has_no_estimate_yet(tmp_path, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress_module.time, "time", clock)
    progress = SuiteProgress("s", {"a": "a", "b": "b"}, done=0, failed=0, queue=["a", "b"], workers=2,
                             kinds={"a": "k", "b": "k"}, stream=io.StringIO())
    a, b = RunDir(tmp_path / "a"), RunDir(tmp_path / "b")
    for run_dir in (a, b):
        run_dir.path.mkdir()
        progress.started(run_dir)
    b.write_json("status.json", {"state": "running", "iter": 100, "max_iters": 1000})
    progress.tick()  # a has logged nothing and nothing has finished: no ETA yet, but b's baseline is noted
    clock.now += 10.0
    b.write_json("status.json", {"state": "running", "iter": 200, "max_iters": 1000})
    progress.finished(a, "done", 10.0)
    assert progress.eta_s() == pytest.approx(80.0)  # b: 800 iterations at 10 per second
