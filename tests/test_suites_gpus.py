"""Suites on GPU machines, checked on the CPU: the local executor gives each worker its own GPU (torch's
device_count patched), and Slurm gets CPUs and memory sized for full-size runs (submitit's sbatch text)."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
import torch

from mnc_bench.errors import UserError
from mnc_bench.suites import executors
from mnc_bench.suites.executors import LocalExecutor, submitit_executor, visible_gpus
from mnc_bench.suites.rundir import RunDir
from mnc_bench.suites.spec import SlurmSettings


class FakeWorker:
    """A worker process that runs for ``polls`` polls; records the GPU it was given."""

    pids = itertools.count(1000)
    running: list[FakeWorker] = []  # started, not yet finished
    overlaps: list[list[str]] = []  # the GPUs of the workers running, at each start of a run

    def __init__(self, command, *, env, stdin, **kwargs):
        self.gpu = env.get("CUDA_VISIBLE_DEVICES")
        self.pid = next(self.pids)
        self.returncode = None
        self.idle = "--threads" == command[3]  # no run directory given: started ahead, waits on stdin
        self.polls = 0 if self.idle else 3
        self.stdin = self
        if not self.idle:
            self._start()

    def _start(self) -> None:
        FakeWorker.running.append(self)
        FakeWorker.overlaps.append(sorted(str(worker.gpu) for worker in FakeWorker.running))

    def write(self, data: bytes) -> None:  # handed a run directory
        self.polls = 3
        self._start()

    def close(self) -> None:
        pass

    def poll(self):
        if self.polls == 0:
            return None if self.idle else self.returncode
        self.polls -= 1
        if self.polls == 0:
            self.returncode = 0
            FakeWorker.running.remove(self)
        return self.returncode

    def kill(self) -> None:
        self.returncode = -9

    def wait(self, timeout=None) -> int:
        return self.returncode


class Events:
    def __init__(self) -> None:
        self.done: list[str] = []

    def started(self, run_dir: RunDir) -> None:
        pass

    def finished(self, run_dir: RunDir, exit_code, duration_s: float) -> None:
        self.done.append(run_dir.run_id)

    def tick(self) -> None:
        pass


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(executors, "_nvidia_driver_loaded", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def _execute(tmp_path: Path, monkeypatch, workers: int) -> list[list[str]]:
    """Six runs through the local executor with fake workers; the GPUs busy at each start of a run."""
    monkeypatch.setattr(executors.subprocess, "Popen", FakeWorker)
    monkeypatch.setattr(executors, "POLL_S", 0.0)
    FakeWorker.running.clear()
    FakeWorker.overlaps.clear()
    runs = [RunDir(tmp_path / f"{index:012d}") for index in range(6)]
    for run in runs:
        run.path.mkdir()
    executor = LocalExecutor(workers=workers, threads=1)
    assert executor.gpus == ["0", "1"]
    executor.prestart()  # as `mnc-bench run` does: idle workers started ahead, each already bound to a GPU
    events = Events()
    executor.execute(runs, events, tmp_path)
    assert sorted(events.done) == sorted(run.run_id for run in runs)
    return FakeWorker.overlaps


def test_each_local_worker_sees_its_own_gpu(two_gpus, tmp_path, monkeypatch):
    busy = _execute(tmp_path, monkeypatch, workers=2)
    assert ["0", "1"] in busy  # both GPUs at work at once
    assert all(len(set(gpus)) == len(gpus) for gpus in busy)  # never two runs on one GPU


def test_more_workers_than_gpus_share_them_evenly(two_gpus, tmp_path, monkeypatch):
    busy = _execute(tmp_path, monkeypatch, workers=3)
    assert ["0", "0", "1"] in busy or ["0", "1", "1"] in busy
    assert all(abs(gpus.count("0") - gpus.count("1")) <= 1 for gpus in busy)


def test_visible_gpus_follow_cuda_visible_devices(two_gpus, monkeypatch):
    assert visible_gpus() == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aaaa,GPU-bbbb")
    assert visible_gpus() == ["GPU-aaaa", "GPU-bbbb"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == []
    monkeypatch.setattr(executors, "_nvidia_driver_loaded", lambda: False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert visible_gpus() == []


def test_the_driver_is_found_on_linux_and_under_wsl2(tmp_path, monkeypatch):
    linux, wsl2 = tmp_path / "version", tmp_path / "dxg"  # /proc/driver/nvidia/version; WSL2's /dev/dxg
    monkeypatch.setattr(executors, "_NVIDIA_DRIVER_MARKERS", (str(linux), str(wsl2)))
    assert not executors._nvidia_driver_loaded()
    wsl2.touch()
    assert executors._nvidia_driver_loaded()


def test_without_gpus_workers_get_no_device_setting(tmp_path, monkeypatch):
    monkeypatch.setattr(executors, "_nvidia_driver_loaded", lambda: False)
    monkeypatch.setattr(executors.subprocess, "Popen", FakeWorker)
    executor = LocalExecutor(workers=2, threads=1)
    executor.prestart()
    assert executor.gpus == [] and all(process.gpu is None for process in executor._idle)
    executor.close()


def _sbatch(tmp_path: Path, monkeypatch, slurm: dict) -> str:
    """The sbatch script submitit would submit for a run with these suite settings (a fake srun on PATH)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    pytest.importorskip("submitit")
    executor = submitit_executor("slurm", tmp_path / "submitit", slurm=SlurmSettings(**slurm))
    return executor._executor._make_submission_file_text("command", "uid")


def test_slurm_runs_get_cpus_and_memory_sized_for_full_size_runs(tmp_path, monkeypatch):
    text = _sbatch(tmp_path, monkeypatch, {"gpus_per_run": 8, "partition": "gpu"})
    for line in ("--ntasks-per-node=8", "--gpus-per-node=8", "--cpus-per-task=4", "--mem=256GB",
                 "--partition=gpu"):
        assert f"#SBATCH {line}\n" in text
    text = _sbatch(tmp_path, monkeypatch, {"gpus_per_run": 1})
    assert "#SBATCH --cpus-per-task=4\n" in text and "#SBATCH --mem=32GB\n" in text


def test_suite_and_command_line_set_the_whole_runs_cpus_and_memory(tmp_path, monkeypatch):
    text = _sbatch(tmp_path, monkeypatch, {"gpus_per_run": 2, "cpus_per_run": 20, "mem_gb": 100})
    assert "#SBATCH --cpus-per-task=10\n" in text and "#SBATCH --mem=100GB\n" in text
    four_gpus = SlurmSettings(gpus_per_run=4, cpus_per_run=8)
    assert (four_gpus.cpus_per_task, four_gpus.memory_gb) == (2, 128)
    with pytest.raises(UserError, match=r"^slurm.cpus_per_run: 2 CPUs cannot serve the run's 4 tasks"):
        _ = SlurmSettings(gpus_per_run=4, cpus_per_run=2).cpus_per_task


def test_the_command_line_overrides_the_suites_slurm_settings(tiny_suite, tmp_path, monkeypatch):
    from mnc_bench.cli import main
    from mnc_bench.suites import commands

    suite = tiny_suite(seeds=(0,), extra="slurm: {partition: gpu, cpus_per_run: 4, timeout_min: 60}\n")
    captured = []

    def stop(slurm, *args):
        captured.append(slurm)
        raise UserError("stop before submitting")

    monkeypatch.setattr(commands, "_slurm_executor", stop)
    monkeypatch.setattr("mnc_bench.gpu.require_mmcv_cuda_build", lambda what: None)  # a CPU-only mmcv here
    assert main(["run", str(suite), "--executor", "slurm", "--cpus-per-run", "12", "--mem-gb", "64",
                 "--results", str(tmp_path / "results")]) == 2
    assert captured == [SlurmSettings(partition="gpu", cpus_per_run=12, mem_gb=64, timeout_min=60)]


@pytest.mark.parametrize(("settings", "error"), [
    ({"gpus_per_run": 0}, "slurm.gpus_per_run: wrong type: expected a positive integer, got 0"),
    ({"partition": 3}, "slurm.partition: wrong type: expected a string, got 3"),
    ({"gpu": 1}, "slurm.gpu: unknown setting (expected partition, gpus_per_run"),
    ({"gpus_per_run": 4, "cpus_per_run": 2}, "slurm.cpus_per_run: 2 CPUs cannot serve the run's 4 tasks"),
])
def test_bad_slurm_settings_are_one_line_from_the_suite_and_the_command_line(settings, error):
    with pytest.raises(UserError) as suite_error:
        SlurmSettings.from_mapping(settings, "suite s")
    assert str(suite_error.value).startswith(f"suite s: {error}")
    with pytest.raises(UserError) as override_error:
        SlurmSettings().overridden(settings)
    assert str(override_error.value).startswith(error)


def test_a_killed_worker_whose_data_loader_workers_linger_is_recorded_as_killed(tmp_path):
    """A full-size run's worker forks data-loader workers, which inherit the run's lock; when the OOM killer
    kills the worker they hold it for a few seconds more. The run is still recorded as killed, not left
    'running' without a reason."""
    import signal
    import subprocess
    import sys

    from mnc_bench.suites.runner import _settle

    run_dir = RunDir(tmp_path / "0123456789ab")
    run_dir.path.mkdir()
    run_dir.write_json("status.json", {"state": "running"})
    worker = subprocess.Popen([sys.executable, "-c", f"""
import os, signal, time
from mnc_bench.suites.rundir import RunDir
with RunDir({str(run_dir.path)!r}).hold():
    if os.fork() == 0:  # a data-loader worker: notices its parent is gone a little later
        time.sleep(2)
        os._exit(0)
    os.kill(os.getpid(), signal.SIGKILL)
"""])
    assert worker.wait(timeout=120) == -signal.SIGKILL
    assert run_dir.is_live()  # the child still holds the lock
    status = _settle(run_dir, worker.returncode)
    assert status["state"] == "failed"
    assert status["exit_reason"].startswith("worker killed by SIGKILL (out of memory?")
