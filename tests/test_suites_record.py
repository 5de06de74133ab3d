"""``suite.json``: runners of one suite that run at once (``--only`` queues, machines on one filesystem) each
record their invocation, none lost."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from mnc_bench.suites.record import append_invocation, read_suite_record

PROCESSES, APPENDS = 4, 30


def _append_many(suite_dir: str, writer: int) -> None:
    for index in range(APPENDS):
        append_invocation(suite_dir, {"writer": writer, "index": index, "padding": "x" * 2000})


def test_runners_appending_at_once_lose_no_invocation(tmp_path: Path):
    suite_dir = tmp_path / "suite"
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_append_many, args=(str(suite_dir), w)) for w in range(PROCESSES)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    assert all(process.exitcode == 0 for process in processes)
    recorded = {(i["writer"], i["index"]) for i in read_suite_record(suite_dir)["invocations"]}
    assert recorded == {(w, i) for w in range(PROCESSES) for i in range(APPENDS)}
