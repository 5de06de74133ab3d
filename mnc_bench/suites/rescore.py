"""``mnc-bench rescore SUITE --metric boundary tide``: add metric families computed from saved predictions
(Boundary AP, TIDE) to the ``metrics.json`` of every finished run of a suite, without running a model: each
run's ``predictions.json`` is scored against its test annotation file (``run.json``'s ``test_ann_file``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from mnc_bench.errors import UserError, one_line
from mnc_bench.evaluation.evaluate import ON_REQUEST

FAMILIES = tuple(ON_REQUEST.values())


def rescore_suite(suite: str, families: Sequence[str], *, results: str | Path = "results",
                  echo: Callable[[str], None] = print) -> str:
    """Score the finished runs of ``suite`` with ``families`` (of :data:`FAMILIES`) and merge the keys into
    their metrics.json; ``echo`` gets one line per run as it is done, and the lines are returned."""
    from mnc_bench.evaluation import evaluate
    from mnc_bench.suites.commands import suite_results_dir
    from mnc_bench.suites.status import ordered_run_dirs

    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        raise UserError(f"--metric: {'unknown family ' + repr(unknown[0]) if unknown else 'give a family'}; "
                        f"choose from {', '.join(FAMILIES)}")
    suite_dir = suite_results_dir(suite, results)
    if not suite_dir.is_dir():
        raise UserError(f"no results at {suite_dir} (run the suite first: mnc-bench run SUITE)")
    lines = []
    for run_dir, _ in ordered_run_dirs(suite_dir, include_all=False):
        if run_dir.state != "done":
            continue
        run = run_dir.read_run()
        label = f"{run_dir.run_id} {Path(run['config']).stem} seed {run.get('seed')}"
        predictions = run_dir.file("predictions.json")
        try:
            if not predictions.is_file():
                raise UserError(f"{predictions} not found")
            added = evaluate(run["test_ann_file"], predictions, metric=list(families),
                             iou_type=("segm", "bbox"))
        except UserError as exc:
            lines.append(f"{label}: not scored: {one_line(exc)}")
            echo(lines[-1])
            continue
        metrics = run_dir.read_json("metrics.json") or {}
        run_dir.write_json("metrics.json", {**metrics, **added}, nan_as_null=True)
        lines.append(f"{label}: {len(added)} keys added")
        echo(lines[-1])
    return "\n".join(lines) if lines else "no finished run"
