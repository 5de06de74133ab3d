"""``mnc-bench status``: every run of a suite's results directory with state, duration and failure reason; a
``reused from`` column names the suite a run was copied from (shown when a run was)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnc_bench.errors import UserError
from mnc_bench.suites.contract import RUN_JSON, RUN_STATES, RunState
from mnc_bench.suites.progress import format_duration
from mnc_bench.suites.record import read_suite_record
from mnc_bench.suites.rundir import RunDir, list_run_dirs


def ordered_run_dirs(suite_dir: str | Path, *, include_all: bool = True) -> list[tuple[RunDir, bool]]:
    """(run dir, in the suite's latest plan) pairs: the plan's runs in plan order, then (``include_all``) the
    other run directories found, e.g. those of axis values since removed from the suite file."""
    suite_dir = Path(suite_dir)
    planned = read_suite_record(suite_dir).get("run_ids") or []
    found = {run_dir.run_id: run_dir for run_dir in list_run_dirs(suite_dir)}
    pairs = [(found.pop(run_id), True) for run_id in planned if run_id in found]
    if include_all or not planned:
        pairs += [(run_dir, not planned) for run_dir in found.values()]
    return pairs


def finished_runs(suite_dir: str | Path) -> list[RunDir]:
    """The finished runs of the suite's latest plan, in plan order; a UserError when there is none."""
    runs = [run_dir for run_dir, in_plan in ordered_run_dirs(suite_dir, include_all=False)
            if in_plan and run_dir.state == RunState.DONE]
    if not runs:
        raise UserError(f"{suite_dir}: no finished run to score")
    return runs


@dataclass(frozen=True)
class StatusRow:
    """One line of ``mnc-bench status``."""

    run_id: str
    what: str  # model, variant and seed
    state: str  # a RunState
    detail: str  # why a run reads as running ('interrupted: ...', 'iteration i/n') or ''
    in_plan: bool  # in the suite file's latest plan
    duration: str
    reused_from: str
    reason: str  # a failed run's exit reason

    @property
    def state_text(self) -> str:
        return (self.state + (f" ({self.detail})" if self.detail else "")
                + ("" if self.in_plan else " [not in the suite file any more]"))


def status_rows(suite_dir: str | Path) -> list[StatusRow]:
    return [_status_row(run_dir, in_plan) for run_dir, in_plan in ordered_run_dirs(suite_dir)]


def _status_row(run_dir: RunDir, in_plan: bool) -> StatusRow:
    run = run_dir.record()
    status = run_dir.status()
    state = status["state"]
    detail = ""
    if state == RunState.RUNNING and not run_dir.is_live():
        detail = "interrupted: resumes at the next `mnc-bench run`"
    elif state == RunState.RUNNING and status.get("max_iters"):
        detail = f"iteration {status.get('iter', 0)}/{status['max_iters']}"
    what = run.label if run else f"({RUN_JSON} unreadable)"
    return StatusRow(run_id=run_dir.run_id, what=what, state=state, detail=detail, in_plan=in_plan,
                     duration=format_duration(_duration(status)), reused_from=status.get("reused_from") or "",
                     reason=(status.get("exit_reason") or "") if state == RunState.FAILED else "")


def format_status(suite_dir: str | Path) -> str:
    rows = status_rows(suite_dir)
    if not rows:
        return f"no runs in {suite_dir}"
    columns = {"run id": lambda r: r.run_id, "what": lambda r: r.what, "state": lambda r: r.state_text,
               "duration": lambda r: r.duration}
    if any(r.reused_from for r in rows):
        columns["reused from"] = lambda r: r.reused_from
    cells = [[cell(row) for cell in columns.values()] for row in rows]
    widths = [max(len(header), *(len(line[i]) for line in cells)) for i, header in enumerate(columns)]
    lines = ["  ".join(f"{header:<{w}}" for header, w in zip(columns, widths)) + "  reason"]
    lines += ["  ".join(f"{cell:<{w}}" for cell, w in zip(line, widths)) + f"  {row.reason}"
              for line, row in zip(cells, rows)]
    states = [row.state for row in rows]
    lines.append(", ".join(f"{states.count(s)} {s}" for s in RUN_STATES if s in states))
    return "\n".join(lines)


def _duration(status: dict[str, Any]) -> float | None:
    try:
        start = dt.datetime.fromisoformat(status["started"])
    except (KeyError, TypeError, ValueError):
        return None
    try:
        end = dt.datetime.fromisoformat(status["ended"])
    except (KeyError, TypeError, ValueError):
        end = dt.datetime.now().astimezone()
    return (end - start).total_seconds()
