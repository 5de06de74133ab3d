"""The worker's bookkeeping without training: one scalar series across attempts, failure reasons, the run
lock."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mmcv.ops")

from mnc_bench.errors import UserError  # noqa: E402
from mnc_bench.suites.hooks import NonFiniteLoss  # noqa: E402
from mnc_bench.suites.rundir import RunBusy, RunDir  # noqa: E402
from mnc_bench.suites.worker import failure_reason, median_iter_time, merge_scalars  # noqa: E402


def _attempt(work: Path, stamp: str, steps: range, *, cut_last: bool = False) -> None:
    path = work / stamp / "vis_data" / "scalars.json"
    path.parent.mkdir(parents=True)
    lines = [json.dumps({"loss": 1.0 / step, "time": float(step), "iter": step, "step": step})
             for step in steps]
    text = "\n".join(lines) + "\n"
    path.write_text(text[:-7] if cut_last else text)  # a killed attempt may leave its last line cut


def test_scalars_of_a_resumed_run_form_one_series(tmp_path):
    _attempt(tmp_path, "20240101_100000", range(1, 6), cut_last=True)  # killed after step 5, last saved at 3
    _attempt(tmp_path, "20240101_110000", range(4, 9))  # resumed from the checkpoint of step 3
    rows = merge_scalars(tmp_path)
    assert [row["step"] for row in rows] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert median_iter_time(rows) == 4.5
    assert median_iter_time([]) is None


def test_failure_reasons_are_one_line_and_say_what_happened():
    assert (failure_reason(NonFiniteLoss("loss is nan at iteration 3"))
            == "non-finite loss: loss is nan at iteration 3")
    assert failure_reason(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")).startswith(
        "out of memory:")
    assert failure_reason(RuntimeError("[enforce fail] DefaultCPUAllocator: can't allocate memory: you tried"
                                       )).startswith("out of memory:")
    assert failure_reason(MemoryError()).startswith("out of memory:")
    assert failure_reason(UserError("config x.py not found")) == "config x.py not found"
    assert failure_reason(KeyError("model.foo")) == "KeyError: model.foo"
    assert "\n" not in failure_reason(ValueError("two\nlines"))


HOLDER = """
import sys
from mnc_bench.suites.rundir import RunDir
with RunDir(sys.argv[1]).hold():
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_a_held_run_is_live_and_cannot_be_taken(tmp_path):
    run_dir = RunDir(tmp_path / "run")
    assert not run_dir.is_live()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir.path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        assert run_dir.is_live()
        with pytest.raises(RunBusy):
            with run_dir.hold():
                pass
    finally:
        holder.kill()  # SIGKILL: the kernel drops the lock with the process
        holder.wait(30)
    assert not run_dir.is_live()
    with run_dir.hold():
        assert run_dir.file(".lock").exists()
