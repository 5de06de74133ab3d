"""``mnc-bench status``: every run of a suite's results directory with state, duration and failure reason; a
``reused from`` column names the suite a run was copied from (shown when a run was)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from mnc_bench.errors import UserError
from mnc_bench.suites.contract import RUN_JSON, RUN_STATES, RunState, model_name
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


def status_rows(suite_dir: str | Path) -> list[dict[str, Any]]:
    rows = []
    for run_dir, in_plan in ordered_run_dirs(suite_dir):
        run = run_dir.read_json(RUN_JSON) or {}
        status = run_dir.status()
        state = status["state"]
        if state == RunState.RUNNING and not run_dir.is_live():
            state = "running (interrupted: resumes at the next `mnc-bench run`)"
        elif state == RunState.RUNNING and status.get("max_iters"):
            state = f"running (iteration {status.get('iter', 0)}/{status['max_iters']})"
        rows.append(dict(
            run_id=run_dir.run_id,
            what=", ".join(part for part in (model_name(str(run.get("config", ""))), run.get("variant", ""),
                                             f"seed={run.get('seed')}") if part),
            state=state + ("" if in_plan else " [not in the suite file any more]"),
            duration=format_duration(_duration(status)),
            reused_from=status.get("reused_from") or "",
            reason=status.get("exit_reason") if status["state"] == RunState.FAILED else "",
        ))
    return rows


def format_status(suite_dir: str | Path) -> str:
    rows = status_rows(suite_dir)
    if not rows:
        return f"no runs in {suite_dir}"
    columns = ["run_id", "what", "state", "duration",
               *(["reused_from"] if any(r["reused_from"] for r in rows) else [])]
    headers = {c: c.replace("_", " ") for c in columns}
    widths = {c: max(len(headers[c]), *(len(str(row[c] or "")) for row in rows)) for c in columns}
    lines = ["  ".join(f"{headers[c]:<{widths[c]}}" for c in columns) + "  reason"]
    for row in rows:
        lines.append("  ".join(f"{str(row[c] or ''):<{widths[c]}}" for c in columns)
                     + f"  {row['reason'] or ''}")
    states = [row["state"].split(" ")[0] for row in rows]
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
