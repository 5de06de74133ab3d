"""``results/<suite>/suite.json``: the suite's latest plan (run ids in order, axes, metrics), which
``status`` and ``collect`` read, and one record per ``mnc-bench run`` invocation (wall time, the runs' own
time, time to the first training iteration), which the runner appends. Runners of one suite may run at once
(``--only`` queues, several machines on one filesystem): each change reads, edits and writes the file under
an exclusive ``flock`` of ``suite.json.lock``, so none is lost."""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnc_bench.errors import UserError
from mnc_bench.io import write_json
from mnc_bench.suites.contract import FINISHED_STATES, SUITE_RECORD
from mnc_bench.suites.rundir import RunDir

if TYPE_CHECKING:
    from mnc_bench.suites.spec import Suite


def read_suite_record(suite_dir: str | Path) -> dict[str, Any]:
    """The suite's record; empty when the suite has none yet."""
    path = Path(suite_dir) / SUITE_RECORD
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc.msg})") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a suite record (a JSON object)")
    for key in ("run_ids", "axes", "metrics"):  # metrics is null for a suite that names none
        value = data.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise UserError(f"{path}: {key}: expected a list of strings")
    if not isinstance(data.get("invocations", []), list):
        raise UserError(f"{path}: invocations: expected a list")
    return data


def finished_runs_left_out(suite: Suite, suite_dir: str | Path) -> list[str]:
    """The finished runs of the recorded plan that ``suite``'s plan leaves out (``--seeds 2`` alone, an axis
    value removed): once this plan is recorded, ``collect --update`` drops them from the table."""
    planned = {spec.run_id for spec in suite.runs}
    recorded = read_suite_record(suite_dir).get("run_ids") or []
    return [run_id for run_id in recorded
            if run_id not in planned and RunDir(Path(suite_dir) / run_id).state in FINISHED_STATES]


def write_plan(suite: Suite, suite_dir: str | Path) -> None:
    """Record the suite's plan, keeping the earlier invocations."""
    _update(suite_dir, lambda record: record.update(
        name=suite.name, suite_file=str(suite.path), axes=suite.axes, metrics=suite.metrics,
        run_ids=[spec.run_id for spec in suite.runs]))


def append_invocation(suite_dir: str | Path, invocation: dict[str, Any]) -> None:
    _update(suite_dir, lambda record: record.setdefault("invocations", []).append(invocation))


def _update(suite_dir: str | Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Apply ``change`` to the suite's record and save it, with no other runner in between."""
    with _locked(Path(suite_dir)):
        record = read_suite_record(suite_dir)
        change(record)
        write_json(Path(suite_dir) / SUITE_RECORD, record, indent=1)


@contextlib.contextmanager
def _locked(suite_dir: Path) -> Iterator[None]:
    """An exclusive lock on the suite's record while the block runs. Writes are atomic already; the lock
    keeps two runners' read-edit-write from interleaving, where the later write would drop the earlier one's
    edit."""
    suite_dir.mkdir(parents=True, exist_ok=True)
    with open(suite_dir / (SUITE_RECORD + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
