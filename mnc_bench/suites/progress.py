"""The runner's progress: a live rich table on a terminal (done / failed / running / left, ETA, the running
runs with their iteration), plain lines otherwise (one per start and end of a run)."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from typing import IO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from mnc_bench.suites.contract import RunState
from mnc_bench.suites.rundir import RunDir


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class SuiteProgress:
    """Counts and ETA of one ``mnc-bench run``; ``labels`` maps run id -> readable label."""

    def __init__(self, suite: str, labels: Mapping[str, str], *, done: int, failed: int, queue: Sequence[str],
                 workers: int, kinds: Mapping[str, str] | None = None, stream: IO[str] | None = None) -> None:
        """``queue``: the run ids to execute, in order; ``kinds``: run id -> what sets its cost (model and
        variant), so that the ETA expects a run to take as long as the finished runs of its kind."""
        self.suite = suite
        self.labels = dict(labels)
        self.kinds = dict(kinds or {})
        self.done, self.failed = done, failed
        self.queue = list(queue)
        self.workers = workers
        self.running: dict[str, tuple[RunDir, float]] = {}
        self.durations: dict[str, float] = {}  # finished runs of this invocation
        self._first_seen: dict[str, tuple[float, int]] = {}  # run id -> (time, iteration) when first logged
        self.console = Console(file=stream or sys.stdout, highlight=False)
        self.live = self.console.is_terminal
        self._display: Live | None = None

    @property
    def left(self) -> int:
        return len(self.queue)

    def __enter__(self) -> SuiteProgress:
        if self.live:
            # auto_refresh off: no display thread (workers are forked from this single-threaded process)
            self._display = Live(self._render(), console=self.console, auto_refresh=False, transient=False)
            self._display.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._display is not None:
            self._display.update(self._render(), refresh=True)
            self._display.stop()

    def started(self, run_dir: RunDir) -> None:
        if run_dir.run_id in self.queue:  # a requeued Slurm job starts again: it is no longer queued
            self.queue.remove(run_dir.run_id)
        self.running[run_dir.run_id] = (run_dir, time.time())
        self._line(f"start {run_dir.run_id} ({self.labels.get(run_dir.run_id, '')})")

    def finished(self, run_dir: RunDir, state: str, duration_s: float, reason: str = "") -> None:
        self.running.pop(run_dir.run_id, None)
        self._first_seen.pop(run_dir.run_id, None)
        if state == RunState.DONE:
            self.durations[run_dir.run_id] = duration_s
            self.done += 1
        elif state == RunState.FAILED:
            self.failed += 1
        tail = f": {reason}" if state == RunState.FAILED and reason else ""
        self._line(f"{state} {run_dir.run_id} ({self.labels.get(run_dir.run_id, '')}) in "
                   f"{format_duration(duration_s)}{tail}")

    def tick(self) -> None:
        self._observe_iterations()
        if self._display is not None:
            self._display.update(self._render(), refresh=True)

    def _observe_iterations(self) -> None:
        """Note the time and iteration at which each running run is first seen logging: the baseline of its
        iteration rate."""
        now = time.time()
        for run_id, (run_dir, _) in self.running.items():
            it = run_dir.status().get("iter")
            if isinstance(it, int):
                self._first_seen.setdefault(run_id, (now, it))

    def eta_s(self) -> float | None:
        """When the last run should end: each running run ends at its own iteration rate (or after the mean
        duration of its kind), each queued run takes the mean duration of its kind, and runs go to the first
        free slot in queue order. None until some duration can be estimated."""
        now = time.time()
        ends = []
        for run_id, (run_dir, start) in self.running.items():
            remaining = self._remaining_s(run_id, run_dir, now - start, now)
            if remaining is None:
                return None
            ends.append(remaining)
        slots = sorted(ends) + [0.0] * max(0, self.workers - len(ends))
        for run_id in self.queue:
            duration = self._expected_s(run_id)
            if duration is None:
                return None
            slots.sort()
            slots[0] += duration
        return max(slots, default=0.0)

    def _expected_s(self, run_id: str) -> float | None:
        """Mean duration of the finished runs of ``run_id``'s kind, else of all finished runs."""
        kind = self.kinds.get(run_id)
        same = [d for other, d in self.durations.items()
                if kind is not None and self.kinds.get(other) == kind]
        pool = same or list(self.durations.values())
        return statistics.fmean(pool) if pool else None

    def _remaining_s(self, run_id: str, run_dir: RunDir, elapsed: float, now: float) -> float | None:
        """The iteration rate seen since the run was first logged (a resumed run starts part-way), else its
        kind's mean duration less the time it has run."""
        status = run_dir.status()
        it, total = status.get("iter"), status.get("max_iters")
        seen = self._first_seen.get(run_id)
        if seen is not None and isinstance(it, int) and isinstance(total, int) and total > 0:
            seen_at, seen_iter = seen
            if it > seen_iter and now > seen_at:
                return (total - it) * (now - seen_at) / (it - seen_iter)
        expected = self._expected_s(run_id)
        return None if expected is None else max(0.0, expected - elapsed)

    def summary(self) -> str:
        return (f"{self.suite}: {self.done} done, {self.failed} failed, {len(self.running)} running, "
                f"{self.left} left, ETA {format_duration(self.eta_s())}")

    def _line(self, text: str) -> None:
        message = f"[{self.summary()}] {text}"
        if self._display is not None:
            self._display.console.print(message, markup=False)
            self.tick()
        else:
            self.console.print(message, soft_wrap=True, markup=False)

    def _render(self) -> Group:
        table = Table(box=None, pad_edge=False, show_header=bool(self.running))
        for column in ("run", "what", "elapsed", "iteration"):
            table.add_column(column)
        for run_id, (run_dir, start) in sorted(self.running.items(), key=lambda item: item[1][1]):
            status = run_dir.status()
            iteration = f"{status['iter']}/{status['max_iters']}" if status.get("max_iters") else "starting"
            cells = (run_id, self.labels.get(run_id, ""), format_duration(time.time() - start), iteration)
            table.add_row(*(Text(cell) for cell in cells))  # Text: labels may hold [...] (not rich markup)
        return Group(Text(self.summary(), style="bold"), table)
