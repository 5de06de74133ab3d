"""Finished runs reused across suites: a run id is a content hash of (resolved config, seed), so a run that is
``done`` under another suite of the same results root is the same experiment; ``mnc-bench run`` copies it
instead of training it again (``--no-reuse`` refuses).

A source qualifies when its ``status.json`` says ``done``, its ``metrics.json`` is whole and it holds every
``proposals/...``, ``coco/boundary/...`` and ``tide/...`` metric the new suite asks for (the metrics a run
computes on request). A finished source that lacks some of those but kept a whole checkpoint is copied as an
interrupted run at its last iteration: the worker then resumes it, trains no further step and runs the test
pass that computes them (``reuse, then score``). The copy is built
in a hidden staging folder beside the destination and renamed into place, so a kill leaves either no run
directory or a whole one; checkpoints (the bulk of the bytes, never written again) are hard links where the
file system allows, every other file is copied, so deleting or editing the source never changes the copy.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mnc_bench.checkpoints import LAST_CHECKPOINT, latest_good_checkpoint
from mnc_bench.evaluation.evaluate import ON_REQUEST
from mnc_bench.io import atomic_open, fsync_dir, make_staging_dir
from mnc_bench.suites.contract import METRICS_JSON, PROPOSAL_PREFIX, RUN_JSON, STATUS_JSON, RunState
from mnc_bench.suites.rundir import RunDir, now_iso

# Files only hard-linked: written once, whole, and never opened for writing again.
LINKED_SUFFIXES = (".pth",)


def source_name(run_dir: RunDir) -> str:
    """``<suite>/<run-id>``: how status.json's ``reused_from`` names a source."""
    return f"{run_dir.path.parent.name}/{run_dir.run_id}"


@dataclass(frozen=True)
class Source:
    """A finished run to copy, and whether the copy must still be scored (see the module docstring)."""

    run_dir: RunDir
    needs_scoring: bool = False


def find_done_run(results_root: str | os.PathLike[str], run_id: str, *, exclude: str | os.PathLike[str],
                  metrics: Sequence[str] | None = None) -> Source | None:
    """A finished run ``run_id`` under another suite of ``results_root`` (not the suite folder ``exclude``)
    that can stand in for a new one asking for ``metrics``: the first by suite name that holds them all, else
    the first that lacks some but can be scored from its checkpoint; None if there is neither."""
    exclude = Path(exclude).resolve()
    wanted = [key for key in metrics or () if key.startswith((PROPOSAL_PREFIX, *ON_REQUEST))]
    root = Path(results_root)
    if not root.is_dir():
        return None
    scorable = None
    for suite_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if suite_dir.resolve() == exclude or not (suite_dir / run_id / RUN_JSON).is_file():
            continue
        source = RunDir(suite_dir / run_id)
        values = source.read_json(METRICS_JSON)
        if source.state != RunState.DONE or not isinstance(values, dict):
            continue
        if all(key in values for key in wanted):
            return Source(source)
        if scorable is None and latest_good_checkpoint(source.work_dir) is not None:
            scorable = Source(source, needs_scoring=True)
    return scorable


def copy_run(source: RunDir, dest: RunDir, *, write_identity: Callable[[RunDir], None],
             finished: bool = True) -> dict:
    """Make ``dest`` a finished copy of ``source``: its files, then ``write_identity`` (run.json and config.py
    of the destination suite's run) and a status that says where the results came from. Whatever ``dest``
    held before (a pending, interrupted or failed attempt) is replaced in one rename. Returns the new status.
    Not ``finished``: the copy is an interrupted run (``running``, no worker), which the next worker resumes
    from its last checkpoint. Raises RunBusy when a worker holds ``dest``."""
    with dest.hold():  # no worker of another runner takes the run while it is replaced
        _remove_leftovers(dest)
        staging = make_staging_dir(dest.path)
        try:
            shutil.copytree(source.path, staging, dirs_exist_ok=True, copy_function=_link_or_copy,
                            ignore=lambda _, names: [name for name in names if name.startswith(".")])
            copy = RunDir(staging)
            _point_at_own_checkpoint(copy, source, dest)
            write_identity(copy)
            status = {**source.status(), "reused_from": source_name(source), "reused_at": now_iso(),
                      "pid": None}
            if not finished:
                status.update(state=RunState.RUNNING, ended=None, exit_reason=None)
            copy.write_json(STATUS_JSON, status)
            old = make_staging_dir(dest.path)
            os.rename(dest.path, old)  # dest exists (it holds the lock file): moved aside, then replaced
            try:
                os.rename(staging, dest.path)
            except OSError:
                os.rename(old, dest.path)
                raise
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        fsync_dir(dest.path.parent)
        shutil.rmtree(old, ignore_errors=True)
    return status


def _point_at_own_checkpoint(copy: RunDir, source: RunDir, dest: RunDir) -> None:
    """mmengine's ``last_checkpoint`` holds an absolute path: the copy's names the copy's own file, so that a
    resumed copy, and what it records, never read the source's."""
    pointer = copy.work_dir / LAST_CHECKPOINT
    if not pointer.is_file():
        return
    target, source_work = Path(pointer.read_text().strip()).resolve(), source.work_dir.resolve()
    if target.is_relative_to(source_work):
        with atomic_open(pointer, "w", encoding="utf-8") as handle:
            handle.write(str(dest.work_dir.resolve() / target.relative_to(source_work)))


def _link_or_copy(src: str, dst: str) -> str:
    if src.endswith(LINKED_SUFFIXES):
        try:
            os.link(src, dst)
            return dst
        except OSError:  # another file system, or links not allowed: a copy will do
            pass
    shutil.copy2(src, dst)
    with open(dst, "rb") as handle:  # on disk before the rename makes the copy visible
        os.fsync(handle.fileno())
    return dst


def _remove_leftovers(dest: RunDir) -> None:
    """Staging folders of this run that a killed runner left (hidden: never listed as runs)."""
    for path in dest.path.parent.glob(f".{dest.run_id}.*.tmp"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)

