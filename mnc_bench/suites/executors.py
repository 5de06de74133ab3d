"""Where runs execute: a local pool of worker subprocesses, or submitit (a Slurm job array; submitit's local
executor drives the same path in tests). Both are an :class:`Executor`: they start each run as
``mnc_bench.suites.worker`` and report to the runner through :class:`Events`; neither schedules anything
beyond "at most N at a time" and "a run that starts from another waits for it" (:class:`PendingRuns`).
"""

from __future__ import annotations

import collections
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mnc_bench.errors import UserError
from mnc_bench.suites.contract import LOG_TXT
from mnc_bench.suites.rundir import RunDir
from mnc_bench.suites.start_from import PendingRuns

if TYPE_CHECKING:
    from mnc_bench.suites.spec import SlurmSettings

POLL_S = 0.5
_PR_SET_PDEATHSIG = 1


class Events(Protocol):
    """What an executor reports to the runner while it executes."""

    def started(self, run_dir: RunDir) -> None:
        """A worker has the run."""

    def finished(self, run_dir: RunDir, exit_code: int | None, duration_s: float, failure: str = "") -> None:
        """The run's worker is gone: its exit code (None when unknown) and, when the executor knows why it
        failed beyond the exit code, one line saying so."""

    def tick(self) -> None:
        """Called every poll, for a live display."""


class Executor(Protocol):
    """Executes run directories, at most :attr:`workers` at a time."""

    name: str  # recorded in suite.json's invocations

    @property
    def workers(self) -> int:
        """Runs that execute at once."""

    def execute(self, run_dirs: Sequence[RunDir], events: Events, suite_dir: Path) -> None:
        """Run each of ``run_dirs`` (prepared by the runner) and report through ``events``; return when every
        run's worker is gone."""


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_per_run(workers: int) -> int:
    """The cores divided between the runs that execute at once (at least one thread each)."""
    return max(1, available_cores() // max(1, workers))


# NVIDIA's kernel driver on Linux, and WSL2's GPU device (WSL2 has no /proc/driver/nvidia).
_NVIDIA_DRIVER_MARKERS = ("/proc/driver/nvidia/version", "/dev/dxg")


def _nvidia_driver_loaded() -> bool:
    return any(Path(marker).exists() for marker in _NVIDIA_DRIVER_MARKERS)


def visible_gpus() -> list[str]:
    """The GPUs runs may use on this machine, as ``CUDA_VISIBLE_DEVICES`` names them (indices or UUIDs); []
    without any. torch is imported only where NVIDIA's driver is loaded (it takes seconds, and runs start
    meanwhile)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if (listed is not None and not listed.strip()) or not _nvidia_driver_loaded():
        return []
    import torch

    count = torch.cuda.device_count()
    names = [name.strip() for name in listed.split(",")] if listed else [str(index) for index in range(count)]
    return names[:count]


class LocalExecutor:
    """Up to ``workers`` worker subprocesses at a time on this machine, ``threads`` torch/OpenMP threads each.

    On a machine with GPUs each worker sees one (``CUDA_VISIBLE_DEVICES``), the one with the fewest runs on
    it: with as many workers as GPUs, every run has a GPU to itself (else torch would put every run on the
    first GPU).

    Workers are started from the main thread and die with the runner (Linux ``PR_SET_PDEATHSIG``): a runner
    killed with SIGKILL takes its runs down with it, and the next ``mnc-bench run`` resumes them.

    A worker spends seconds importing torch, mmcv and mmdet before it can build anything, so workers are
    started idle ahead of their runs and handed a run directory on stdin when a slot frees: :meth:`prestart`
    before the suite is validated (the imports overlap the validation), then, while runs remain, one idle
    worker per slot (the imports overlap the runs in progress). A run with no idle worker ready starts a fresh
    one.
    """

    name = "local"

    def __init__(self, workers: int = 1, threads: int | None = None, track: str | None = None,
                 gpus: Sequence[str] | None = None) -> None:
        """``gpus``: the GPUs to spread the workers over (default: :func:`visible_gpus`)."""
        self.workers = max(1, workers)
        self.threads = threads or threads_per_run(self.workers)
        self.track = track
        self.gpus = list(visible_gpus() if gpus is None else gpus)
        self._idle: collections.deque[subprocess.Popen] = collections.deque()
        self._gpu_of: dict[subprocess.Popen, str | None] = {}

    def prestart(self, count: int | None = None) -> None:
        """Have ``count`` idle workers (default: one per slot) loading their libraries, spread over the
        GPUs."""
        while len(self._idle) < (self.workers if count is None else count):
            gpu = self._least_used_gpu([*self._gpu_of])
            self._idle.append(self._popen([], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, gpu=gpu))

    def close(self) -> None:
        """Stop the idle workers (they hold no run)."""
        while self._idle:
            process = self._idle.popleft()
            process.kill()
            process.wait()
            self._gpu_of.pop(process, None)

    def _least_used_gpu(self, processes: Iterable[subprocess.Popen]) -> str | None:
        """The GPU with the fewest of ``processes`` on it (the first such); None without GPUs."""
        if not self.gpus:
            return None
        load = collections.Counter(self._gpu_of.get(process) for process in processes)
        return min(self.gpus, key=lambda gpu: load[gpu])

    def execute(self, run_dirs: Sequence[RunDir], events: Events, suite_dir: Path) -> None:
        pending = PendingRuns(run_dirs)
        active: dict[subprocess.Popen, tuple[RunDir, float]] = {}
        try:
            while pending or active:
                for run_dir in pending.take(self.workers - len(active), executing=len(active)):
                    active[self._spawn(run_dir, self._least_used_gpu(active))] = (run_dir, time.time())
                    events.started(run_dir)
                    self.prestart(min(self.workers, len(pending)))
                time.sleep(POLL_S)
                for process in [p for p in active if p.poll() is not None]:
                    run_dir, start = active.pop(process)
                    self._gpu_of.pop(process, None)
                    pending.finished(run_dir)
                    events.finished(run_dir, process.returncode, time.time() - start)
                events.tick()
        except BaseException:
            # Ctrl-C reached the workers too (same process group): they stop and stay `running`, to resume.
            for process in active:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
            raise
        finally:
            self.close()

    def _spawn(self, run_dir: RunDir, gpu: str | None) -> subprocess.Popen:
        """A worker on ``run_dir`` seeing ``gpu``: an idle one on that GPU if one is alive (it logs into the
        run from then on), else a new one."""
        for process in [p for p in self._idle if self._gpu_of.get(p) == gpu]:
            self._idle.remove(process)
            try:
                if process.poll() is None:
                    process.stdin.write(f"{run_dir.path}\n".encode())
                    process.stdin.close()
                    return process
            except BrokenPipeError:
                pass
            # Died while idle (its imports failed?): a new worker says why, in the run's log.
            process.kill()
            process.wait()
            self._gpu_of.pop(process, None)
        with open(run_dir.file(LOG_TXT), "ab") as log:
            return self._popen([str(run_dir.path)], stdin=subprocess.DEVNULL, stdout=log, gpu=gpu)

    def _popen(self, args: list[str], *, stdin: Any, stdout: Any, gpu: str | None = None) -> subprocess.Popen:
        env = dict(os.environ, OMP_NUM_THREADS=str(self.threads), MKL_NUM_THREADS=str(self.threads))
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        command = [sys.executable, "-m", "mnc_bench.suites.worker", *args, "--threads", str(self.threads)]
        if self.track:
            command += ["--track", self.track]
        process = subprocess.Popen(command, stdin=stdin, stdout=stdout, stderr=subprocess.STDOUT, env=env,
                                   preexec_fn=_die_with_parent)
        self._gpu_of[process] = gpu
        return process


def _die_with_parent() -> None:
    """In the child before exec: the kernel sends it SIGKILL when the runner dies."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: orphans finish their run on their own
        pass


class SuiteJob:
    """What submitit runs per array task: one worker, in the job's process. ``checkpoint`` makes submitit
    requeue a run that times out or is preempted; the requeued worker resumes from the run's checkpoint."""

    def __init__(self, threads: int | None, launcher: str = "none", track: str | None = None) -> None:
        self.threads = threads
        self.launcher = launcher
        self.track = track

    def __call__(self, run_dir: str) -> int:
        from mnc_bench.suites.worker import run

        if self.launcher == "pytorch":
            # One task per GPU: submitit knows each task's rank and the job's hosts, and exports them for
            # torch's env:// rendezvous, which mmengine's pytorch launcher (or, without GPUs, gloo) joins.
            import submitit

            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False,
                                                                  overwrite=True)
        return run(RunDir(run_dir), threads=self.threads, launcher=self.launcher, track=self.track)

    def checkpoint(self, run_dir: str) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(self, run_dir)


class SubmittedJob(Protocol):
    """What is read of a submitit job: whether it ended, its tasks' results, its id and log paths."""

    job_id: str

    def done(self) -> bool: ...

    def results(self) -> list[Any]: ...


class ArrayExecutor(Protocol):
    """A submitit executor as used here (``AutoExecutor`` or ``LocalExecutor``): one job per argument."""

    def map_array(self, fn: Any, *iterable: Sequence[Any]) -> list[SubmittedJob]: ...


class SubmititExecutor:
    """Runs through a submitit executor: on Slurm all runs go out as one job array (``map_array``; Slurm's
    array parallelism caps them), except runs that start from another run, which go out once it has finished
    (so their jobs never hold a GPU to wait); submitit's local executor has no cap, so runs are handed over at
    most ``max_parallel`` at a time."""

    def __init__(self, executor: ArrayExecutor, *, max_parallel: int, threads: int | None = None,
                 launcher: str = "none", track: str | None = None) -> None:
        self.executor = executor
        self.max_parallel = max(1, max_parallel)
        self.threads = threads
        self.launcher = launcher
        self.track = track
        self.name = f"submitit-{getattr(executor, 'cluster', 'local')}"

    @property
    def workers(self) -> int:
        return self.max_parallel

    def execute(self, run_dirs: Sequence[RunDir], events: Events, suite_dir: Path) -> None:
        pending = PendingRuns(run_dirs)
        active: dict[SubmittedJob, tuple[RunDir, float]] = {}
        job = SuiteJob(self.threads, self.launcher, self.track)
        while pending or active:
            batch = pending.take(self.max_parallel - len(active), executing=len(active))
            if batch:
                jobs = self.executor.map_array(job, [str(run_dir.path) for run_dir in batch])
                for run_dir, submitted in zip(batch, jobs):
                    active[submitted] = (run_dir, time.time())
                    events.started(run_dir)
            time.sleep(POLL_S)
            for submitted in [j for j in active if j.done()]:
                run_dir, start = active.pop(submitted)
                exit_code, failure = job_outcome(submitted)
                pending.finished(run_dir)
                events.finished(run_dir, exit_code, time.time() - start, failure)
            events.tick()


def job_outcome(job: SubmittedJob) -> tuple[int | None, str]:
    """(the worker's exit code, '') of a finished submitit job, whose tasks (one per GPU) exit with the first
    non-zero code among them; (None, why) when the job produced no exit code: killed, lost with its node, or
    an exception outside the worker's own handling. submitit's exceptions are pages of log; ``why`` is their
    gist in one line, with where the job's full log is."""
    from submitit.core.utils import FailedJobError, UncompletedJobError

    try:
        # results(), not result(): the latter refuses a job of several tasks
        codes = [int(code) for code in job.results()]
        return next((code for code in codes if code != 0), 0), ""
    except UncompletedJobError as exc:  # FailedJobError is one too
        if isinstance(exc, FailedJobError):
            gist = _last_trace_line(str(exc)) or "failed"
        else:  # "Job <id> (task: <n>) with path <file>" / "has not produced any output (state: <state>)"
            gist = " ".join(line.strip() for line in str(exc).splitlines()[:2])
        stderr = getattr(getattr(job, "paths", None), "stderr", None)
        return None, f"submitit job {job.job_id}: {gist}" + (f" (log: {stderr})" if stderr else "")


def _last_trace_line(text: str) -> str:
    """The exception line of the traceback that submitit's FailedJobError quotes between dashed rules."""
    parts = text.split("-" * 22)
    trace = parts[1] if len(parts) >= 3 else text
    lines = [line.strip() for line in trace.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def submitit_executor(cluster: str, folder: Path, *, slurm: SlurmSettings) -> ArrayExecutor:
    """A submitit executor for ``cluster`` ('slurm' or 'local') with the suite's Slurm settings."""
    try:
        import submitit
    except ImportError as exc:
        raise UserError("--executor slurm needs submitit: pip install 'mnc-bench[slurm]'") from exc
    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    # One task per GPU (SuiteJob joins them into one process group); the local executor without GPUs runs as
    # many CPU processes, which is how the tests drive the multi-GPU path.
    params: dict[str, Any] = dict(timeout_min=slurm.timeout_min, name=folder.parent.name,
                                  tasks_per_node=slurm.gpus_per_run)
    if cluster == "slurm":
        params.update(gpus_per_node=slurm.gpus_per_run, cpus_per_task=slurm.cpus_per_task,
                      mem_gb=slurm.memory_gb, slurm_array_parallelism=slurm.array_parallelism)
        if slurm.partition is not None:
            params["slurm_partition"] = slurm.partition
    executor.update_parameters(**params)
    return executor
