"""Runs that start from another run of their suite (a suite file's ``start_from``)::

    start_from:
      - config: configs/video/masktrack_rcnn_shapes_video.py  # the runs of this config ...
        from: configs/video/mask_rcnn_linked_shapes_video.py  # ... start from this config's run with the
                                                              # same seed and the same other axis values
        module: model.detector                                # the module its final checkpoint initialises
        prefix: detector.                                     # the checkpoint keys taken (prefix dropped)

The starting run's final checkpoint initialises the module through mmengine's ``Pretrained`` init (the
module's ``init_cfg``), before the first iteration, the way mmdet's video recipes start a tracker's detector
from a trained detector. The run's options name the starting run by id (``run:<id>``), so that id is part of
the run's own id: retraining the starting run trains the runs that start from it again. The worker waits for
the starting run (a folder of the same suite's results) to finish and loads its final checkpoint; a starting
run that failed fails the run with its reason. Executors hold such a run back (:class:`PendingRuns`) while its
starting run executes in the same invocation, so the wait never occupies a worker, a GPU or a Slurm job.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnc_bench.errors import UserError
from mnc_bench.suites.contract import RunRecord, RunState
from mnc_bench.suites.rundir import RunDir

RUN_REFERENCE = "run:"  # a checkpoint named by the id of a run of the same suite
WAIT_POLL_S = 30.0


@dataclass(frozen=True)
class StartFrom:
    """One entry of ``start_from``: the runs of ``config`` start from the runs of ``source``."""

    config: str
    source: str
    module: str
    prefix: str | None = None


def parse_start_from(value: Any, configs: Sequence[str], where: str) -> list[StartFrom]:
    """The ``start_from`` entries of a suite file, each checked against the suite's model ``configs``."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise UserError(f"{where}: start_from: expected a list of entries (config, from, module, prefix)")
    entries = []
    for index, entry in enumerate(value):
        at = f"{where}: start_from[{index}]"
        if not isinstance(entry, dict):
            raise UserError(f"{at}: expected a mapping with config, from, module and optionally prefix")
        unknown = [key for key in entry if key not in ("config", "from", "module", "prefix")]
        if unknown:
            raise UserError(f"{at}: unknown key {unknown[0]!r} (expected config, from, module, prefix)")
        for key in ("config", "from", "module"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise UserError(f"{at}.{key}: required, a string")
        for key in ("config", "from"):
            if entry[key] not in configs:
                raise UserError(f"{at}.{key}: {entry[key]} is not a model config of the suite")
        if entry["config"] == entry["from"]:
            raise UserError(f"{at}: a config cannot start from its own runs")
        prefix = entry.get("prefix")
        if prefix is not None and not isinstance(prefix, str):
            raise UserError(f"{at}.prefix: expected a string, got {prefix!r}")
        entries.append(StartFrom(entry["config"], entry["from"], entry["module"], prefix))
    starting = {entry.source for entry in entries}
    for entry in entries:
        if entry.config in starting:
            raise UserError(f"{where}: start_from: {entry.config} both starts from and is started from "
                            "(one level only)")
    if len({entry.config for entry in entries}) < len(entries):
        raise UserError(f"{where}: start_from: a config starts from two others")
    return entries


def init_option(entry: StartFrom, run_id: str) -> dict[str, Any]:
    """The option that makes ``entry.module`` start from the run ``run_id`` (merged into the module's
    config)."""
    init_cfg: dict[str, Any] = {"type": "Pretrained", "checkpoint": RUN_REFERENCE + run_id}
    if entry.prefix:
        init_cfg["prefix"] = entry.prefix
    return {entry.module: {"init_cfg": init_cfg}}


def starting_run(options: Mapping[str, Any]) -> str | None:
    """The id of the run that a run with these options starts from, or None."""
    for value in options.values():
        checkpoint = _reference(value)
        if checkpoint is not None:
            return checkpoint[len(RUN_REFERENCE):]
    return None


def _reference(value: Any) -> str | None:
    """The ``run:<id>`` checkpoint of an option value made by :func:`init_option`, or None."""
    init_cfg = value.get("init_cfg") if isinstance(value, dict) else None
    checkpoint = init_cfg.get("checkpoint") if isinstance(init_cfg, dict) else None
    if isinstance(checkpoint, str) and checkpoint.startswith(RUN_REFERENCE):
        return checkpoint
    return None


def with_run_id(options: Mapping[str, Any], ids: Mapping[str, str]) -> dict[str, Any]:
    """``options`` with the starting run renamed by ``ids`` (old id -> new id), e.g. to a rehearsal's run."""
    renamed = {}
    for key, value in options.items():
        checkpoint = _reference(value)
        if checkpoint is not None and checkpoint[len(RUN_REFERENCE):] in ids:
            new = RUN_REFERENCE + ids[checkpoint[len(RUN_REFERENCE):]]
            value = {**value, "init_cfg": {**value["init_cfg"], "checkpoint": new}}
        renamed[key] = value
    return renamed


def with_checkpoint(options: Mapping[str, Any], suite_dir: Path,
                    sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """``options`` with the starting run's reference replaced by its final checkpoint, once that run is done
    (waiting for it); a RuntimeError when it failed or left no checkpoint."""
    from mnc_bench.checkpoints import latest_good_checkpoint

    source = starting_run(options)
    if source is None:
        return dict(options)
    run_dir = RunDir(suite_dir / source)
    announced = False
    while run_dir.state != RunState.DONE:
        if run_dir.state == RunState.FAILED:
            reason = run_dir.status().get("exit_reason") or "no reason recorded"
            raise RuntimeError(f"the run it starts from, {source}, failed: {reason}")
        if not announced:
            print(f"=== waiting for run {source} (this run starts from its final checkpoint)", flush=True)
            announced = True
        sleep(WAIT_POLL_S)
    checkpoint = latest_good_checkpoint(run_dir.work_dir)
    if checkpoint is None:
        raise RuntimeError(f"the run it starts from, {source}, is done but kept no checkpoint in "
                           f"{run_dir.work_dir}")
    print(f"=== starting from run {source}: {checkpoint}", flush=True)
    return {key: {**value, "init_cfg": {**value["init_cfg"], "checkpoint": str(checkpoint)}}
            if _reference(value) is not None else value for key, value in options.items()}


def check_starting_runs(todo: Sequence[RunRecord], state_of: Callable[[str], str | None]) -> None:
    """Each run about to execute that starts from another finds it done, executing in this invocation or
    running elsewhere; else it would wait forever (e.g. ``--only`` without the starting run)."""
    executing = {run.run_id for run in todo}
    for run in todo:
        source = starting_run(run.cfg_options)
        if source is None or source in executing:
            continue
        if state_of(source) not in (RunState.DONE, RunState.RUNNING):
            raise UserError(f"run {run.run_id} ({run.label}) starts from run {source}, which is neither done "
                            "nor run by this invocation (add it to --only)")


class PendingRuns:
    """The runs an executor has yet to start, in plan order. A run whose starting run is among the runs of
    this invocation and has not finished is held back: started now, it would only wait, holding a worker (a
    GPU, a Slurm job) that another run could use. Starting runs start from nothing (one level only), so while
    runs are pending, one is ready or a starting run is executing; :meth:`take` raises when neither holds
    (an executor that lost track of a run), rather than wait for ever."""

    def __init__(self, run_dirs: Sequence[RunDir]) -> None:
        self._pending = list(run_dirs)
        self._unfinished = {run_dir.run_id for run_dir in run_dirs}
        self._source = {run_dir.run_id: _source_of(run_dir) for run_dir in run_dirs}

    def __bool__(self) -> bool:
        return bool(self._pending)

    def __len__(self) -> int:
        return len(self._pending)

    def take(self, count: int, executing: int) -> list[RunDir]:
        """Up to ``count`` runs that may start now, removed from the pending ones, in plan order.
        ``executing``: how many runs the executor has started and not yet seen end."""
        ready = [run_dir for run_dir in self._pending if self._ready(run_dir)]
        if self._pending and not ready and not executing:
            raise RuntimeError(f"runs {', '.join(r.run_id for r in self._pending)} wait for runs that no "
                               "worker executes")
        ready = ready[:max(0, count)]
        self._pending = [run_dir for run_dir in self._pending if run_dir not in ready]
        return ready

    def finished(self, run_dir: RunDir) -> None:
        """``run_dir``'s worker is gone (done or failed): the runs starting from it may start."""
        self._unfinished.discard(run_dir.run_id)

    def _ready(self, run_dir: RunDir) -> bool:
        return self._source[run_dir.run_id] not in self._unfinished


def _source_of(run_dir: RunDir) -> str | None:
    """The id of the run that ``run_dir``'s run starts from (its run.json), or None."""
    record = run_dir.record()
    return starting_run(record.cfg_options) if record is not None else None
