"""The library behind ``mnc-bench run | status | collect`` (the CLI only parses arguments and calls these)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnc_bench.errors import UserError
from mnc_bench.io import check_writable_output
from mnc_bench.suites.contract import (
    COLLECT_TABLES,
    EXECUTORS,
    RESULTS_ROOT,
    SUITE_RECORD,
    RunState,
    suite_name,
    suite_results_dir,
)
from mnc_bench.suites.smoke import SmokeSettings

if TYPE_CHECKING:
    import pandas as pd

    from mnc_bench.suites.executors import Executor, LocalExecutor
    from mnc_bench.suites.spec import RunSpec, SlurmSettings, Suite


def results_dir_of(suite: str, results: str | Path = RESULTS_ROOT) -> Path:
    """The results folder a ``status`` or ``collect`` argument stands for: a suite's results folder as is,
    else ``<results>/<suite name>`` for a suite name or file."""
    if (Path(suite) / SUITE_RECORD).is_file():
        return Path(suite)
    return suite_results_dir(suite, results)


def existing_results_dir(suite: str, results: str | Path = RESULTS_ROOT) -> Path:
    """:func:`results_dir_of`, which must exist (a UserError saying so otherwise)."""
    suite_dir = results_dir_of(suite, results)
    if not suite_dir.is_dir():
        raise UserError(f"no results at {suite_dir} (run the suite first: mnc-bench run {suite})")
    return suite_dir


def run_command(suite: str, *, results: str | Path = RESULTS_ROOT, workers: int = 1,
                executor: str = "local", dry_run: bool = False, rerun_failed: bool = False,
                reuse: bool = True, seeds: Sequence[int] | None = None,
                cfg_options: Mapping[str, Any] | None = None, slurm: Mapping[str, Any] | None = None,
                track: str | None = None, started_at: float | None = None, amp: bool = False,
                smoke: SmokeSettings | None = None, only: Sequence[str] | None = None,
                echo: Callable[[str], None] = print) -> int:
    """Validate and run a suite; returns the exit code (1 if a run failed in this invocation). ``reuse``: copy
    runs finished under another suite of ``results`` instead of training them (see
    :mod:`mnc_bench.suites.reuse`). ``track``: ``mlflow`` or ``mlflow=URI`` (see
    :mod:`mnc_bench.suites.tracking`). ``amp``: every run in mixed precision (part of the run ids). ``smoke``:
    a rehearsal of every run (see :mod:`mnc_bench.suites.smoke`); returns 1 unless every run's verdict is
    ok. ``only``: execute just these run ids of the plan."""
    from mnc_bench.suites.runner import run_suite
    from mnc_bench.suites.spec import load_suite

    started_at = started_at or time.time()
    _check_run_options(suite, executor=executor, workers=workers, results=results, dry_run=dry_run, amp=amp,
                       smoke=smoke is not None, track=track, only=only)
    if amp:
        from mnc_bench.amp import amp_options

        cfg_options = {**amp_options(), **(cfg_options or {})}
    uri = _tracking_uri(track, results)
    local = local_executor(workers, uri, prestart=not dry_run) if executor == "local" else None
    try:
        suite_spec = load_suite(suite, seeds=seeds, extra_options=cfg_options, slurm_overrides=slurm,
                                distributed=executor == "slurm")
        if local is not None and smoke is None:  # a rehearsal on one device checks everything but the batch
            _require_one_gpu_per_run(suite_spec)
        if only is not None:
            _require_run_ids(suite_spec, only)
        notes: dict[str, str] = {}
        if smoke is not None:
            from mnc_bench.suites.smoke import clear_smoke_results, smoke_root, smoke_suite

            suite_spec, notes = smoke_suite(suite_spec, smoke)
            results, reuse = smoke_root(results), False  # fresh verdicts, apart from the real runs
            if not dry_run:
                clear_smoke_results(suite_results_dir(suite_spec.name, results))
        suite_dir = suite_results_dir(suite_spec.name, results)
        runner = local or _slurm_executor(suite_spec.slurm, suite_dir, len(suite_spec.runs), uri)
        before = _failed_ids(suite_dir)
        record = run_suite(suite_spec, suite_dir, executor=runner, rerun_failed=rerun_failed, reuse=reuse,
                           only=None if only is None else frozenset(only), dry_run=dry_run,
                           started_at=started_at, echo=echo)
    finally:
        if local is not None:
            local.close()
    if dry_run:
        return 0
    echo(format_timing(record))
    if smoke is not None:
        return _smoke_outcome(suite_spec, suite_dir, notes, echo)
    return _run_outcome(suite_spec.name, _failed_ids(suite_dir) - before, echo)


def _check_run_options(suite: str, *, executor: str, workers: int, results: str | Path, dry_run: bool,
                       amp: bool, smoke: bool, track: str | None, only: Sequence[str] | None) -> None:
    """The options of ``run`` that can be judged before the suite is read, each a one-line UserError."""
    if executor not in EXECUTORS:
        raise UserError(f"--executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if workers < 1:
        raise UserError(f"--workers must be a positive integer, got {workers}")
    if not dry_run:
        check_writable_output(results, "--results", directory=True)
    _require_gpu_ready(executor, f"suite {suite_name(suite)}", amp=amp)
    if smoke and track:
        raise UserError("--smoke rehearses the runs; it does not track them (drop --track)")
    if smoke and only is not None:
        raise UserError("--smoke rehearses every run of the suite (drop --only)")


def _require_run_ids(suite: Suite, only: Sequence[str]) -> None:
    """Each id of ``--only`` names a run of the suite's plan (the ids depend on --seeds and --cfg-options)."""
    planned = {spec.run_id for spec in suite.runs}
    for run_id in only:
        if run_id not in planned:
            raise UserError(f"--only {run_id}: not a run of suite {suite.name} with these seeds and options "
                            f"(its run ids: mnc-bench run {suite.name} --dry-run)")


def _require_one_gpu_per_run(suite: Suite) -> None:
    """The local executor gives each run one device: a suite whose runs train on several GPUs would silently
    train with a fraction of their total batch (the configs' batch size is per GPU), so it stops here."""
    gpus = suite.slurm.gpus_per_run
    if gpus > 1:
        raise UserError(f"suite {suite.name}: its runs train on {gpus} GPUs each (slurm.gpus_per_run) and "
                        "--executor local gives a run one device, a fraction of the total batch: run it with "
                        "--executor slurm, or with --gpus-per-run 1 to train each run on one device")


def _tracking_uri(track: str | None, results: str | Path) -> str | None:
    """MLflow's tracking URI for ``--track`` (None without it), once mlflow is known to import."""
    from mnc_bench.suites.tracking import tracking_uri

    uri = tracking_uri(track, results)
    if uri is not None:
        try:
            import mlflow  # noqa: F401
        except ImportError as exc:
            raise UserError("--track mlflow needs mlflow: pip install 'mnc-bench[mlflow]'") from exc
    return uri


def _smoke_outcome(suite: Suite, suite_dir: Path, notes: Mapping[str, str],
                   echo: Callable[[str], None]) -> int:
    """Print each rehearsed run's verdict; 0 when every one is ok."""
    from mnc_bench.suites.smoke import format_verdicts, verdicts

    results_of_runs = verdicts(suite, suite_dir, notes)
    for line in format_verdicts(suite, results_of_runs):
        echo(line)
    return 0 if all(verdict.startswith("ok") for _, verdict in results_of_runs) else 1


def _run_outcome(name: str, newly_failed: set[str], echo: Callable[[str], None]) -> int:
    """Say which runs of this invocation failed; 1 when any did."""
    if newly_failed:
        echo(f"{len(newly_failed)} run(s) failed: see `mnc-bench status {name}`; --rerun-failed runs them "
             "again")
    return 1 if newly_failed else 0


def _require_gpu_ready(executor: str, what: str, *, amp: bool) -> None:
    """Runs on a GPU need mmcv's ops with CUDA kernels, runs with --amp a GPU: stop before any run starts (one
    line) when they lack them."""
    from mnc_bench.gpu import require_mmcv_cuda_build, require_mmcv_ops_for, training_device

    if executor == "slurm":
        require_mmcv_cuda_build(what)
        return
    device = training_device()
    if amp and device == "cpu":
        raise UserError(f"{what}: --amp needs a CUDA GPU and none is visible here (or run with --executor "
                        "slurm)")
    require_mmcv_ops_for(device, what, in_subprocess=True)  # the runner itself never touches the GPUs


def local_executor(workers: int, track: str | None, *, prestart: bool) -> LocalExecutor:
    from mnc_bench.suites.executors import LocalExecutor, available_cores

    executor = LocalExecutor(workers, track=track)
    if prestart:
        # Workers import torch and mmdet (seconds) while this process validates the suite, on the cores it
        # leaves free: more importers than that would delay the validation, hence every run, as much as they
        # save.
        executor.prestart(max(1, min(workers, available_cores() - 1)))
    return executor


def _slurm_executor(slurm: SlurmSettings, suite_dir: Path, num_runs: int, track: str | None) -> Executor:
    from mnc_bench.suites.executors import SubmititExecutor, submitit_executor

    executor = submitit_executor("slurm", suite_dir / ".submitit", slurm=slurm)
    # All runs go out as one job array; Slurm's array parallelism (suite or --array-parallelism) caps them.
    return SubmititExecutor(executor, max_parallel=num_runs, threads=slurm.cpus_per_task,
                            launcher="pytorch" if slurm.gpus_per_run > 1 else "none", track=track)


def _failed_ids(suite_dir: Path) -> set[str]:
    from mnc_bench.suites.rundir import list_run_dirs

    return {run_dir.run_id for run_dir in list_run_dirs(suite_dir) if run_dir.state == RunState.FAILED}


def format_timing(record: Mapping[str, Any]) -> str:
    """Wall time, the runs' own time, the runner's overhead and the time to the first training iteration."""
    wall, runs = record.get("wall_s"), record.get("runs_time_s") or 0.0
    parts = [f"wall {wall:.1f} s", f"runs' own time {runs:.1f} s over {record.get('runs', 0)} run(s)"]
    workers = max(1, int(record.get("workers") or 1))
    if wall and runs:
        # Slots idle after the last launch (nothing left to start) are the suite's shape, not the runner's
        # cost.
        tail = min(record.get("tail_idle_s") or 0.0, max(0.0, workers * wall - runs))
        overhead = max(0.0, workers * wall - runs - tail) / (workers * wall)
        detail = [f"runs' time / {workers} workers"] if workers > 1 else []
        if tail >= 0.05:
            detail.append(f"not counting {tail:.1f} slot-seconds idle after the last run started")
        parts.append(f"runner overhead {overhead:.1%} of the wall time"
                     + (f" ({'; '.join(detail)})" if detail else ""))
    if record.get("first_iter_at"):
        # The first iteration's own compute is the model's, not the runner's: the split is to its start.
        began = (record.get("first_iter_started_at") or record["first_iter_at"]) - record["started_at"]
        first = f"first training iteration began {began:.1f} s after start"
        detail = []
        if record.get("validated_at"):
            detail.append(f"suite validated after {record['validated_at'] - record['started_at']:.1f} s")
        if record.get("first_run_build_s") is not None:
            build = record["first_run_build_s"]
            detail.append(f"its runner (model, data, hooks) built in {build:.1f} s; "
                          f"{began - build:.1f} s beyond that")
        parts.append(first + (f" ({'; '.join(detail)})" if detail else "")
                     + f" and ended {record['first_iter_at'] - record['started_at']:.1f} s after start")
    return "; ".join(parts)


def status_command(suite: str, *, results: str | Path = RESULTS_ROOT) -> str:
    from mnc_bench.suites.status import format_status

    return format_status(existing_results_dir(suite, results))


def _updated(table: pd.DataFrame, suite_dir: Path, out: Path, include_all: bool) -> pd.DataFrame:
    """``collect --update``: the earlier table's finished runs whose folders are gone (of the latest plan,
    unless ``include_all``), then the plan's runs done under the other suites whose tables lie beside
    ``out``'s folder."""
    from mnc_bench.reporting.table import find_table, read_table
    from mnc_bench.suites.collect import keep_gone_runs, reuse_rows
    from mnc_bench.suites.record import read_suite_record

    if out.is_file():
        planned = None if include_all else read_suite_record(suite_dir).get("run_ids") or None
        table = keep_gone_runs(table, read_table(out), planned)
    root = out.parent.parent
    others = {folder.name: read_table(find_table(folder.name, root)) for folder in sorted(root.iterdir())
              if folder.name != suite_dir.name and any((folder / name).is_file() for name in COLLECT_TABLES)}
    if not others:
        return table
    return reuse_rows(table, _planned_runs(suite_dir, others.values()), others)


def _planned_runs(suite_dir: Path, tables: Iterable[pd.DataFrame]) -> list[RunSpec]:
    """The runs of the suite's latest plan (suite.json) at the seeds the ``tables`` hold."""
    from mnc_bench.suites.record import read_suite_record
    from mnc_bench.suites.spec import load_suite

    record = read_suite_record(suite_dir)
    planned = set(record.get("run_ids") or [])
    seeds = sorted({int(seed) for table in tables for seed in table["seed"]})
    if not planned or not seeds:
        return []
    suite = load_suite(record.get("suite_file") or suite_dir.name, seeds=seeds, build_models=False)
    return [spec for spec in suite.runs if spec.run_id in planned]


def collect_command(suite: str, *, results: str | Path = RESULTS_ROOT, out: str | Path | None = None,
                    include_all: bool = False, update: bool = False) -> tuple[list[Path], str]:
    """Write the tidy table (parquet + CSV); return the paths and a printable summary. ``update``: the table
    stays the record of every finished run when run folders are gone: it keeps the finished runs of the table
    already at ``out``, and takes the runs of the suite's plan done under another suite from the tables beside
    it (see :func:`~mnc_bench.suites.collect.keep_gone_runs` and
    :func:`~mnc_bench.suites.collect.reuse_rows`)."""
    from mnc_bench.suites.collect import collect, format_summary, write_table
    from mnc_bench.suites.record import read_suite_record

    suite_dir = results_dir_of(suite, results)
    out = Path(out or suite_dir / COLLECT_TABLES[0])
    table = collect(suite_dir, include_all=include_all)
    if update:
        table = _updated(table, suite_dir, out, include_all)
    if table.empty:
        raise UserError(f"no runs in {suite_dir}")
    paths = write_table(table, out)
    return paths, format_summary(table, read_suite_record(suite_dir).get("metrics"))
