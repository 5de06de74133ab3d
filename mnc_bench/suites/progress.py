"""The runner's progress: a live rich table on a terminal (done / failed / running / left, ETA, the running runs
with their iteration), plain lines otherwise (one per start and end of a run)."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Mapping
from typing import IO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

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

    def __init__(self, suite: str, labels: Mapping[str, str], *, done: int, failed: int, to_run: int, workers: int,
                 stream: IO[str] | None = None) -> None:
        self.suite = suite
        self.labels = dict(labels)
        self.done, self.failed, self.left = done, failed, to_run
        self.workers = workers
        self.running: dict[str, tuple[RunDir, float]] = {}
        self.durations: list[float] = []
        self.console = Console(file=stream or sys.stdout, highlight=False)
        self.live = self.console.is_terminal
        self._display: Live | None = None

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
        self.left -= 1
        self.running[run_dir.run_id] = (run_dir, time.time())
        self._line(f"start {run_dir.run_id} ({self.labels.get(run_dir.run_id, '')})")

    def finished(self, run_dir: RunDir, state: str, duration_s: float, reason: str = "") -> None:
        self.running.pop(run_dir.run_id, None)
        self.durations.append(duration_s)
        if state == "done":
            self.done += 1
        elif state == "failed":
            self.failed += 1
        tail = f": {reason}" if state == "failed" and reason else ""
        self._line(f"{state} {run_dir.run_id} ({self.labels.get(run_dir.run_id, '')}) in "
                   f"{format_duration(duration_s)}{tail}")

    def tick(self) -> None:
        if self._display is not None:
            self._display.update(self._render(), refresh=True)

    def eta_s(self) -> float | None:
        """Mean duration of the runs finished so far x the work left, over the parallel slots."""
        if not self.durations:
            return None
        mean = statistics.fmean(self.durations)
        elapsed = sum(min(mean, time.time() - start) for _, start in self.running.values())
        return max(0.0, (mean * (self.left + len(self.running)) - elapsed) / self.workers)

    def summary(self) -> str:
        return (f"{self.suite}: {self.done} done, {self.failed} failed, {len(self.running)} running, {self.left} left, "
                f"ETA {format_duration(self.eta_s())}")

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
