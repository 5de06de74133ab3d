"""``mnc-bench run``: plan a validated suite against its results directory, prepare the run directories and
the data, execute the runs that need it, record how the invocation went.

What happens to each run of the plan:

- ``done``: skipped;
- ``failed``: skipped, or started again from scratch with ``rerun_failed``;
- ``running`` with a live worker (another runner is on it): left alone;
- ``running`` without one (the runner or the machine died): resumed from its last whole checkpoint;
- ``pending`` or new: started.

``only`` (``--only RUN_ID ...``) executes just the named runs of the plan; the others are left as they are
(``skip (not in --only)``), and the plan recorded for ``status`` and ``collect`` stays the whole suite.

A run that would execute (start, resume, rerun) but is ``done`` under another suite of the same results root
(same id: same resolved config and seed) is copied from there instead (``reuse``; see
:mod:`~mnc_bench.suites.reuse`), unless ``reuse=False`` (``--no-reuse``). A copy that lacks metrics this suite
asks for and the source computed only on request is then resumed at its last iteration, which runs just the
test pass that adds them (``reuse, then score``).

The plan goes to ``results/<suite>/suite.json`` for ``status`` and ``collect``, with one record per invocation
(see :mod:`~mnc_bench.suites.record`).
"""

from __future__ import annotations

import json
import shutil
import signal
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mnc_bench.io import atomic_open
from mnc_bench.suites.contract import (
    CONFIG_PY,
    FINISHED_STATES,
    RESULT_DIRS,
    RESULT_FILES,
    RUN_JSON,
    RUN_STATS_JSON,
    STATUS_JSON,
    RunState,
)
from mnc_bench.suites.executors import Executor
from mnc_bench.suites.progress import SuiteProgress
from mnc_bench.suites.record import append_invocation, finished_runs_left_out, write_plan
from mnc_bench.suites.reuse import Source, copy_run, find_done_run, source_name
from mnc_bench.suites.rundir import RunBusy, RunDir, now_iso
from mnc_bench.suites.spec import RunSpec, Suite
from mnc_bench.suites.start_from import check_starting_runs
from mnc_bench.suites.worker import EXIT_BUSY, EXIT_INTERRUPTED

EXECUTING = ("start", "resume", "rerun")
REUSING = ("reuse", "reuse, then score")
# How long a finished worker's forked children may hold its run's lock (see _still_held).
ORPHAN_WAIT_S = 15.0
NOT_CHOSEN = "skip (not in --only)"
ACTIONS = (*EXECUTING, *REUSING, "skip (done)", "skip (failed)", "skip (running elsewhere)", NOT_CHOSEN)


@dataclass
class PlannedRun:
    spec: RunSpec
    run_dir: RunDir
    action: str
    source: Source | None = None  # actions REUSING: the finished run copied

    @property
    def executes(self) -> bool:
        return self.action in EXECUTING


def plan_suite(suite: Suite, suite_dir: str | Path, *, rerun_failed: bool = False,
               reuse: bool = True, only: Collection[str] | None = None) -> list[PlannedRun]:
    """What this invocation does with each run of the suite (see the module docstring)."""
    plan = []
    for spec in suite.runs:
        run_dir = RunDir(Path(suite_dir) / spec.run_id)
        action = _action(run_dir, rerun_failed)
        if only is not None and spec.run_id not in only and action in EXECUTING:
            action = NOT_CHOSEN
        source = None
        if reuse and action in EXECUTING:
            source = find_done_run(Path(suite_dir).parent, spec.run_id, exclude=suite_dir,
                                   metrics=suite.metrics)
        if source is not None:
            action = "reuse, then score" if source.needs_scoring else "reuse"
        plan.append(PlannedRun(spec, run_dir, action, source))
    return plan


def _state(path: Path) -> str | None:
    """The state of the run folder at ``path``; None where there is no run."""
    run_dir = RunDir(path)
    return run_dir.state if run_dir.file(RUN_JSON).is_file() else None


def _action(run_dir: RunDir, rerun_failed: bool) -> str:
    """What the run's own directory calls for."""
    state = _state(run_dir.path) or "new"
    if state == RunState.DONE:
        return "skip (done)"
    if state == RunState.FAILED:
        return "rerun" if rerun_failed else "skip (failed)"
    if state == RunState.RUNNING:
        return "skip (running elsewhere)" if run_dir.is_live() else "resume"
    return "start"


def format_plan(suite: Suite, plan: list[PlannedRun]) -> list[str]:
    """The plan as text lines: one per run, then the counts."""
    width = max((len(p.spec.label) for p in plan), default=0)
    lines = [f"suite {suite.name} ({suite.path}): {len(plan)} runs"]
    lines += [f"  {p.spec.run_id}  {p.spec.label:<{width}}  {p.action}"
              + (f" from {source_name(p.source.run_dir)}" if p.source else "") for p in plan]
    counts = {action: sum(p.action == action for p in plan) for action in ACTIONS}
    lines.append("  " + ", ".join(f"{n} {action}" for action, n in counts.items() if n))
    return lines


def run_suite(suite: Suite, suite_dir: str | Path, *, executor: Executor, rerun_failed: bool = False,
              reuse: bool = True, only: Collection[str] | None = None, dry_run: bool = False,
              started_at: float | None = None, echo: Callable[[str], None] = print,
              progress_stream: IO[str] | None = None) -> dict[str, Any]:
    """Plan, print the plan, and (unless ``dry_run``) copy the reusable runs and execute those that need it.
    Returns the invocation record, which is appended to suite.json unless ``dry_run``."""
    started_at = started_at or time.time()
    suite_dir = Path(suite_dir)
    plan = plan_suite(suite, suite_dir, rerun_failed=rerun_failed, reuse=reuse, only=only)
    for line in format_plan(suite, plan):
        echo(line)
    left_out = finished_runs_left_out(suite, suite_dir)
    if left_out:
        echo(f"warning: this plan leaves out {len(left_out)} finished run(s) of the recorded one (e.g. "
             f"{left_out[0]}); `collect --update` will drop them from the table. To keep them, give the "
             "recorded plan's seeds too (--seeds 0 1 2 --only RUN_ID)")
    record: dict[str, Any] = dict(started_at=started_at, validated_at=time.time(), executor=executor.name,
                                  workers=executor.workers)
    if dry_run:
        return record
    record["reused"] = sum(_reuse(p, rerun_failed, echo) for p in plan if p.action in REUSING)
    todo = [p for p in plan if p.executes]
    check_starting_runs([p.spec for p in todo], lambda run_id: _state(suite_dir / run_id))
    prepare_runs(todo, suite, suite_dir)
    events = RunEvents(_progress(suite, plan, todo, executor.workers, progress_stream))
    if todo:
        with events.progress:
            executor.execute([p.run_dir for p in todo], events, suite_dir)
    record.update(events.record(time.time(), started_at, executor.workers),
                  **_first_iteration(todo, started_at))
    append_invocation(suite_dir, record)
    echo(events.progress.summary().rsplit(", ETA", 1)[0])
    return record


def prepare_runs(todo: list[PlannedRun], suite: Suite, suite_dir: str | Path) -> None:
    """Before any worker starts: the datasets, the directory of each run to execute, and the suite's plan."""
    _prepare_data(todo)
    for planned in todo:
        prepare_run_dir(planned)
    write_plan(suite, suite_dir)


def _progress(suite: Suite, plan: list[PlannedRun], todo: list[PlannedRun], workers: int,
              stream: IO[str] | None) -> SuiteProgress:
    """The progress display, counting the runs this invocation leaves as they are."""
    left_alone = [p.run_dir.state for p in plan if not p.executes]
    return SuiteProgress(suite.name, {p.spec.run_id: p.spec.label for p in plan},
                         done=left_alone.count(RunState.DONE), failed=left_alone.count(RunState.FAILED),
                         queue=[p.spec.run_id for p in todo], workers=workers,
                         kinds={p.spec.run_id: f"{p.spec.model} {p.spec.variant}" for p in plan},
                         stream=stream)


class RunEvents:
    """What the executor reports during one invocation (see :class:`~mnc_bench.suites.executors.Events`):
    shown by the progress display, each run's status settled once its worker is gone, and the launch times
    and run spans kept for the invocation record."""

    def __init__(self, progress: SuiteProgress) -> None:
        self.progress = progress
        self.launches: list[float] = []
        self.durations: dict[str, float] = {}  # run id -> seconds its worker ran
        self.spans: dict[str, tuple[float, float]] = {}  # run id -> (start, end), for the idle tail

    def started(self, run_dir: RunDir) -> None:
        self.launches.append(time.time())
        self.progress.started(run_dir)

    def finished(self, run_dir: RunDir, exit_code: int | None, duration_s: float, failure: str = "") -> None:
        ended_at = time.time()
        self.durations[run_dir.run_id] = duration_s
        self.spans[run_dir.run_id] = (ended_at - duration_s, ended_at)
        status = _settle(run_dir, exit_code, failure)
        self.progress.finished(run_dir, status["state"], duration_s, status.get("exit_reason") or "")

    def tick(self) -> None:
        self.progress.tick()

    def record(self, ended_at: float, started_at: float, workers: int) -> dict[str, Any]:
        """The invocation record's fields of the execution: launch times, wall time, the runs' own time and
        the worker slots left idle after the last launch."""
        fields: dict[str, Any] = {}
        if self.launches:
            fields.update(first_launch_at=self.launches[0], last_launch_at=self.launches[-1])
        fields.update(ended_at=ended_at, wall_s=ended_at - started_at, runs=len(self.durations),
                      runs_time_s=sum(self.durations.values()))
        if self.launches:
            spans = list(self.spans.values())
            fields["tail_idle_s"] = idle_after(self.launches[-1], ended_at, spans, workers)
        return fields


def idle_after(since: float, until: float, intervals: list[tuple[float, float]], workers: int) -> float:
    """Worker-slot seconds left idle in [since, until] by runs busy over ``intervals`` (start, end): after the
    last launch nothing is left to start, so idle slots then are the suite's shape (a long last run), not the
    runner's cost."""
    busy = sum(max(0.0, min(end, until) - max(start, since)) for start, end in intervals)
    return max(0.0, workers * (until - since) - busy)


def _reuse(planned: PlannedRun, rerun_failed: bool, echo: Callable[[str], None]) -> bool:
    """Copy the planned run's source into this suite (a copy still to be scored is then resumed); if that
    fails (the source went away, a worker holds the run), the run does what its own directory calls for."""
    source = planned.source
    try:
        copy_run(source.run_dir, planned.run_dir, finished=not source.needs_scoring,
                 write_identity=lambda run_dir: _write_identity(run_dir, planned.spec))
        if source.needs_scoring:
            planned.action = "resume"
        return True
    except (OSError, RunBusy) as exc:
        planned.action = _action(planned.run_dir, rerun_failed)
        echo(f"  {planned.spec.run_id}: not reused from {source_name(source.run_dir)} ({exc}): "
             f"{planned.action}")
        planned.source = None
        return False


def _prepare_data(todo: list[PlannedRun]) -> None:
    """Check (and, for the synthetic shapes, generate) every dataset once, before the workers start: parallel
    workers must not race to write the same dataset."""
    from mnc_bench.preflight import prepare_datasets

    seen = set()
    for planned in todo:
        cfg = planned.spec.cfg
        key = json.dumps(
            [cfg.get("train_dataloader"), cfg.get("test_dataloader"), cfg.get("synthetic_shapes")],
            sort_keys=True, default=repr)
        if key not in seen:
            seen.add(key)
            prepare_datasets(cfg, ["train_dataloader", "test_dataloader"])


def prepare_run_dir(planned: PlannedRun) -> None:
    """The run's directory as this invocation needs it: cleared for a rerun, its identity written."""
    run_dir = planned.run_dir
    if planned.action == "rerun":
        for name in RESULT_FILES:
            run_dir.file(name).unlink(missing_ok=True)
        for name in RESULT_DIRS:
            shutil.rmtree(run_dir.path / name, ignore_errors=True)
        run_dir.write_json(STATUS_JSON, {"state": RunState.PENDING})
    if planned.action == "resume":
        return
    run_dir.path.mkdir(parents=True, exist_ok=True)
    _write_identity(run_dir, planned.spec)
    if not run_dir.file(STATUS_JSON).is_file():
        run_dir.write_json(STATUS_JSON, {"state": RunState.PENDING})


def _write_identity(run_dir: RunDir, spec: RunSpec) -> None:
    """run.json (what the run is, in this suite) and config.py (the resolved config, seed included)."""
    from mmengine.config import Config

    run_dir.write_json(RUN_JSON, spec.record().to_json())
    resolved = spec.cfg.to_dict()
    resolved["randomness"] = dict(resolved.get("randomness") or {}, seed=spec.seed)
    with atomic_open(run_dir.file(CONFIG_PY), "w", encoding="utf-8") as handle:
        # format_python_code=False: yapf would take ~0.4 s per run for no gain in content
        handle.write(Config(resolved, format_python_code=False).pretty_text)


def _settle(run_dir: RunDir, exit_code: int | None, failure: str = "") -> dict[str, Any]:
    """The run's status once its worker is gone; a worker that died without a verdict is recorded as failed,
    with ``failure`` (what the executor knows of it) as the reason when given (except when it was interrupted
    or never got the run: those stay as they are)."""
    status = run_dir.status()
    if status["state"] in FINISHED_STATES or exit_code in (EXIT_BUSY, EXIT_INTERRUPTED, -signal.SIGINT):
        return status
    if _still_held(run_dir, exit_code):  # a requeued Slurm job, or another runner took it over
        return status
    return run_dir.update_status(state=RunState.FAILED, ended=now_iso(),
                                 exit_reason=failure or _exit_reason(exit_code), log_tail=run_dir.log_tail())


def _exit_reason(exit_code: int | None) -> str:
    if exit_code is not None and exit_code < 0:
        name = signal.Signals(-exit_code).name
        return f"worker killed by {name}" + (" (out of memory? the kernel's OOM killer sends SIGKILL)"
                                             if -exit_code == signal.SIGKILL else "")
    return f"worker ended (exit code {exit_code}) without recording a result"


def _still_held(run_dir: RunDir, exit_code: int | None) -> bool:
    """Whether another process holds the run. A local worker that exited hands its lock down to the processes
    it forked (data-loader workers, ``num_workers`` > 0) until they notice: torch's workers check their parent
    every 5 s (``MP_STATUS_CHECK_INTERVAL``), so the lock of a worker known to have exited is waited for."""
    deadline = time.monotonic() + (ORPHAN_WAIT_S if exit_code is not None else 0.0)
    while run_dir.is_live():
        if time.monotonic() >= deadline:
            return True
        time.sleep(0.5)
    return False


def _first_iteration(todo: list[PlannedRun], started_at: float) -> dict[str, float | None]:
    """When the first of this invocation's runs began and finished a training iteration, and how long that
    run's worker took to build its runner (config, model, data, hooks) after it got the run. A resumed run's
    stats may be those of an earlier invocation (or of the suite it was copied from): not counted."""
    stats = [s for p in todo
             if isinstance(s := p.run_dir.read_json(RUN_STATS_JSON), dict)
             and (s.get("first_iter_at") or 0) >= started_at]
    if not stats:
        return dict(first_iter_started_at=None, first_iter_at=None, first_run_build_s=None)
    first = min(stats, key=lambda s: s["first_iter_at"])
    got_run, built = first.get("worker_started_at"), first.get("runner_built_at")
    return dict(first_iter_started_at=first.get("first_iter_started_at"),
                first_iter_at=first["first_iter_at"],
                first_run_build_s=built - got_run if got_run and built and built >= got_run else None)
