"""One run's directory, ``results/<suite>/<run-id>/``: file names, status transitions and the liveness lock.

Files (each written atomically)::

    run.json          what the run is (a RunRecord: suite, run_id, config, cfg_options, axes, seed, variant,
                      test files, metrics)
    config.py         the resolved config
    status.json       {state: pending|running|done|failed, started, ended, exit_reason, log_tail, ...;
                      reused_from: <suite>/<run-id> for a copy of another suite's finished run}
    log.txt           the worker's output (appended across attempts)
    work/             mmengine's work dir (checkpoints, its own logs)
    metrics.json      flat metrics of the test split at test batch 1 (NaN as null)
    predictions.json  COCO results list of the test split
    scalars.json      training scalars, JSON lines as mmengine's LocalVisBackend writes them
    run_stats.json    train/eval time, s/iter, peak memory, params, git commit, batch size, lr, timings

A worker holds an exclusive ``flock`` on ``.lock`` while it runs; the kernel drops it when the process dies
(SIGKILL included), so a ``running`` status without the lock held is an interrupted run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mnc_bench.errors import UserError
from mnc_bench.io import write_json
from mnc_bench.suites.contract import (
    LOCK_FILE,
    LOG_TXT,
    RUN_JSON,
    RUN_STATES,
    STATUS_JSON,
    WORK_DIR,
    RunRecord,
    RunState,
)

LOG_TAIL_LINES = 20
LOCK_TRIES = 10


class RunBusy(Exception):
    """Another live process holds the run."""


def now_iso() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


class RunDir:
    """Paths and state of one run directory."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def run_id(self) -> str:
        return self.path.name

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def work_dir(self) -> Path:
        return self.path / WORK_DIR

    def read_json(self, name: str) -> Any:
        """Parsed ``name`` or None when it is missing; a corrupt file (not written by us) also reads as
        None."""
        try:
            return json.loads(self.file(name).read_text(encoding="utf-8"))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError, json.JSONDecodeError,
                UnicodeDecodeError):
            return None

    def write_json(self, name: str, data: Any, *, nan_as_null: bool = False) -> None:
        """Write ``name`` atomically; ``nan_as_null`` for numbers where NaN means 'undefined' (metrics), so
        the file is strict JSON. Elsewhere a NaN stays NaN (a suite may set a loss weight to .nan on
        purpose)."""
        write_json(self.file(name), data, indent=1, nan_as_null=nan_as_null)

    def record(self) -> RunRecord | None:
        """What the run is (run.json); None when the file is missing or not a run record."""
        return RunRecord.from_json(self.read_json(RUN_JSON), self.path)

    def read_run(self) -> RunRecord:
        """What the run is (run.json); a UserError naming the file when it is missing or not a run record."""
        run = self.record()
        if run is None:
            raise UserError(f"{self.file(RUN_JSON)}: missing or not a run record")
        return run

    def status(self) -> dict[str, Any]:
        """status.json; a run without a readable one is pending (the runner starts it again)."""
        status = self.read_json(STATUS_JSON)
        return status if _is_status(status) else {"state": RunState.PENDING}

    def read_status(self) -> dict[str, Any]:
        """status.json, as :meth:`status` reads it; a UserError naming the file when it is there but is not a
        run status (not written by mnc-bench: a reader that reports on the run must not guess)."""
        status = self.read_json(STATUS_JSON)
        if _is_status(status):
            return status
        if self.file(STATUS_JSON).exists():
            raise UserError(f"{self.file(STATUS_JSON)}: not a run status (a JSON object whose state is one "
                            f"of {', '.join(RUN_STATES)})")
        return {"state": RunState.PENDING}

    @property
    def state(self) -> str:
        return self.status()["state"]

    def update_status(self, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into status.json (atomically) and return the new status."""
        status = {**self.status(), **fields}
        self.write_json(STATUS_JSON, status)
        return status

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            with open(self.file(LOG_TXT), "rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - 16384))
                text = handle.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def is_live(self) -> bool:
        """True if a process holds the run's lock (it is being worked on right now)."""
        try:
            fd = os.open(self.file(LOCK_FILE), os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return True
            raise
        finally:
            os.close(fd)  # closing drops our probe lock
        return False

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the run's exclusive lock for the block; RunBusy if another process holds it."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.file(LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            # A few tries: another runner's is_live() probe holds a shared lock for a moment.
            for attempt in range(LOCK_TRIES):
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if attempt == LOCK_TRIES - 1:
                        raise RunBusy(f"run {self.run_id} is held by another process") from exc
                    time.sleep(0.2)
            yield
        finally:
            os.close(fd)


def _is_status(data: Any) -> bool:
    return isinstance(data, dict) and data.get("state") in RUN_STATES


def list_run_dirs(suite_dir: str | os.PathLike[str]) -> list[RunDir]:
    """Run directories (those with a run.json) under a suite's results directory, by name; hidden folders
    (a copy being staged, see :mod:`~mnc_bench.suites.reuse`) are not runs."""
    root = Path(suite_dir)
    if not root.is_dir():
        return []
    return [RunDir(p) for p in sorted(root.iterdir())
            if not p.name.startswith(".") and (p / RUN_JSON).is_file()]
