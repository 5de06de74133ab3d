"""``results/<suite>/suite.json``: the suite's latest plan (run ids in order, axes, metrics), which
``status`` and ``collect`` read, and one record per ``mnc-bench run`` invocation (wall time, the runs' own
time, time to the first training iteration), which the runner appends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnc_bench.errors import UserError
from mnc_bench.io import write_json
from mnc_bench.suites.contract import SUITE_RECORD

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
    return data if isinstance(data, dict) else {}


def write_plan(suite: Suite, suite_dir: str | Path) -> None:
    """Record the suite's plan, keeping the earlier invocations."""
    record = read_suite_record(suite_dir)
    record.update(name=suite.name, suite_file=str(suite.path), axes=suite.axes, metrics=suite.metrics,
                  run_ids=[spec.run_id for spec in suite.runs])
    _save(suite_dir, record)


def append_invocation(suite_dir: str | Path, invocation: dict[str, Any]) -> None:
    record = read_suite_record(suite_dir)
    record.setdefault("invocations", []).append(invocation)
    _save(suite_dir, record)


def _save(suite_dir: str | Path, record: dict[str, Any]) -> None:
    write_json(Path(suite_dir) / SUITE_RECORD, record, indent=1)
