"""``mnc-bench rescore SUITE --metric boundary tide proposals``: add metric families to the ``metrics.json``
of every finished run of a suite, without training. Boundary AP and TIDE score the run's saved
``predictions.json`` against its test annotations (``run.json``'s ``test_ann_file``), with no model; proposal
recall (``proposals/AR@k``) runs stage 1 of the model with the run's final checkpoint over the test images, as
a suite that lists ``proposals/...`` metrics does after training. A run's state and other files are left as
they are; metrics.json is rewritten whole, with the old keys and the new."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from mnc_bench.errors import UserError, one_line
from mnc_bench.evaluation.evaluate import ON_REQUEST
from mnc_bench.suites.contract import METRICS_JSON, PREDICTIONS_JSON, RESULTS_ROOT, RunRecord
from mnc_bench.suites.rundir import RunDir

PROPOSALS = "proposals"  # the family scored from the checkpoint
FAMILIES = (*ON_REQUEST.values(), PROPOSALS)


def rescore_suite(suite: str, families: Sequence[str], *, results: str | Path = RESULTS_ROOT,
                  echo: Callable[[str], None] = print) -> int:
    """Score the finished runs of ``suite`` with ``families`` (of :data:`FAMILIES`) and merge the keys into
    their metrics.json; ``echo`` gets one line per run as it is done. Returns how many could not be scored
    (each one's line says why)."""
    from mnc_bench.suites.commands import existing_results_dir
    from mnc_bench.suites.status import finished_runs

    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        raise UserError(f"--metric: {'unknown family ' + repr(unknown[0]) if unknown else 'give a family'}; "
                        f"choose from {', '.join(FAMILIES)}")
    not_scored = 0
    for run_dir in finished_runs(existing_results_dir(suite, results)):
        label = run_dir.run_id
        try:
            run = run_dir.read_run()
            label = f"{run_dir.run_id} {run.model} seed {run.seed}"
            added = _score(run_dir, run, families)
        except UserError as exc:
            not_scored += 1
            echo(f"{label}: not scored: {one_line(exc)}")
            continue
        metrics = run_dir.read_json(METRICS_JSON) or {}
        run_dir.write_json(METRICS_JSON, {**metrics, **added}, nan_as_null=True)
        echo(f"{label}: {len(added)} keys added")
    return not_scored


def _score(run_dir: RunDir, run: RunRecord, families: Sequence[str]) -> dict[str, float]:
    """The keys of ``families`` for one finished run."""
    annotations = Path(run.test_ann_file)
    if not annotations.is_file():  # a relative path is the checkout's where the run was made
        raise UserError(f"test annotations {annotations} not found (from {Path.cwd()})")
    added: dict[str, float] = {}
    from_predictions = [f for f in families if f != PROPOSALS]
    if from_predictions:
        from mnc_bench.evaluation import evaluate

        predictions = run_dir.file(PREDICTIONS_JSON)
        if not predictions.is_file():
            raise UserError(f"{predictions} not found")
        added.update(evaluate(run.test_ann_file, predictions, metric=from_predictions,
                              iou_type=("segm", "bbox")))
    if PROPOSALS in families:
        from mnc_bench.checkpoints import latest_good_checkpoint
        from mnc_bench.suites.proposals import run_proposal_recall

        checkpoint = latest_good_checkpoint(run_dir.work_dir)
        if checkpoint is None:
            raise UserError(f"{run_dir.work_dir}: no whole checkpoint to take the proposals from")
        added.update(run_proposal_recall(run, checkpoint))
    return added
