"""``mnc-bench robustness SUITE``: a corrupted test pass (:mod:`mnc_bench.robustness`) of every finished run
of a suite, from its checkpoint and resolved options, without retraining; each writes ``robustness.json`` into
its run folder, which ``collect`` turns into ``robustness/...`` columns. A run whose record has the same
settings is skipped, so an interrupted command resumes; a run that fails is reported and the others go on."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from pathlib import Path

from mnc_bench.errors import UserError, one_line
from mnc_bench.evaluation.robustness import RECORD_FILE, PassSettings, read_record, write_record
from mnc_bench.robustness import PassRequest, ProgressBar, corrupted_pass
from mnc_bench.suites.contract import RESULTS_ROOT, RunRecord
from mnc_bench.suites.rundir import RunDir

WORK_FOLDER = "robustness"  # mmengine's work dir of the pass inside the run folder (its logs)


def suite_robustness(suite: str, request: PassRequest, *, results: str | Path = RESULTS_ROOT,
                     rerun: bool = False, echo: Callable[[str], None] = print) -> str:
    """Score every finished run of ``suite`` (latest plan) under ``request``; returns a per-run summary."""
    from mnc_bench.suites.commands import existing_results_dir
    from mnc_bench.suites.status import finished_runs

    settings = request.settings()
    runs = finished_runs(existing_results_dir(suite, results))
    lines = []
    for k, run_dir in enumerate(runs, 1):
        label = f"[{k}/{len(runs)}] {run_dir.run_id}"
        try:
            run = run_dir.read_run()
        except UserError as exc:
            lines.append(f"{label}: failed: {one_line(exc)}")
            continue
        label = f"{label} {run.model} seed {run.seed}"
        if not rerun and has_record(run_dir, settings):
            lines.append(f"{label}: skipped (robustness.json has these settings)")
            continue
        echo(f"{label}: scoring {len(settings.conditions())} corrupted conditions and the clean images")
        try:
            record = _score(run_dir, run, settings)
        except Exception as exc:  # noqa: BLE001 - one run's failure is reported, the others are scored
            if not isinstance(exc, UserError):
                traceback.print_exc()
            lines.append(f"{label}: failed: {type(exc).__name__}: {one_line(exc)}")
            continue
        summary = record.summary
        lines.append(f"{label}: mask mPC {100 * summary['robustness/segm/mPC']:.1f}, rPC "
                     f"{100 * summary['robustness/segm/rPC']:.1f} % ({record.seconds:.0f} s)")
    return "\n".join(lines)


def has_record(run_dir: RunDir, settings: PassSettings) -> bool:
    """Whether the run's robustness.json was made with ``settings``."""
    try:
        record = read_record(run_dir.file(RECORD_FILE))
    except UserError:
        return False
    return record is not None and record.get("settings") == {
        "corruptions": list(settings.corruptions), "severities": list(settings.severities),
        "images": settings.images, "seed": settings.seed}


def _score(run_dir: RunDir, run: RunRecord, settings: PassSettings):
    from mnc_bench.checkpoints import latest_good_checkpoint

    checkpoint = latest_good_checkpoint(run_dir.work_dir)
    if checkpoint is None:
        raise UserError(f"{run_dir.work_dir}: no whole checkpoint (it may have been deleted)")
    with ProgressBar() as progress:
        record = corrupted_pass(run.config, checkpoint, settings, work_dir=run_dir.path / WORK_FOLDER,
                                cfg_options=dict(run.cfg_options), progress=progress)
    write_record(run_dir.file(RECORD_FILE), record)
    return record
