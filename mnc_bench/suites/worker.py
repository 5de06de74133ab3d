"""One suite run in its own process: ``python -m mnc_bench.suites.worker RUN_DIR [--threads N]``; without
RUN_DIR the worker loads its libraries first, then reads the run directory from stdin (an idle worker that
``mnc-bench run`` starts ahead of its run).

Reads ``run.json``, trains through :func:`mnc_bench.training.train` (the schedule's validation is skipped: the
run is scored once, on the test split), evaluates the last checkpoint at test batch 1 with
:func:`mnc_bench.training.evaluate_checkpoint`, and writes the results into the run directory (see
:mod:`mnc_bench.suites.rundir`). ``status.json`` goes ``running`` -> ``done`` | ``failed`` (reason and log
tail). A run found ``running`` by a new worker was interrupted: training resumes from its last whole
checkpoint, or restarts when there is none.

Exit codes: 0 done, 1 failed, 75 another process holds the run, 130 interrupted (left ``running``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from mnc_bench.allocator import tune_allocator
from mnc_bench.checkpoints import LAST_CHECKPOINT
from mnc_bench.env import checkout_commit
from mnc_bench.errors import UserError, one_line
from mnc_bench.io import atomic_open
from mnc_bench.suites import tracking
from mnc_bench.suites.contract import (
    EVAL_DIR,
    LAUNCHERS,
    LOG_TXT,
    METRICS_JSON,
    PREDICTIONS_JSON,
    RUN_STATS_JSON,
    SCALARS_JSON,
    RunRecord,
    RunState,
    is_proposal_metric,
    launcher_rank,
)
from mnc_bench.suites.rundir import RunBusy, RunDir, now_iso

EXIT_DONE, EXIT_FAILED, EXIT_BUSY, EXIT_INTERRUPTED = 0, 1, 75, 130


def run(run_dir: RunDir, *, threads: int | None = None, launcher: str = "none",
        track: str | None = None) -> int:
    """Execute one run (main process of a distributed launch: also the bookkeeping); return the exit code.
    ``track``: an MLflow tracking URI (see :mod:`mnc_bench.suites.tracking`)."""
    started = time.time()
    if threads:
        import torch

        torch.set_num_threads(threads)
    if launcher_rank(launcher) != 0:  # other ranks of a multi-GPU run only compute
        if run_dir.state != RunState.DONE:  # else rank 0 returns at once and there is no one to join
            _train_and_evaluate(run_dir, run_dir.read_run(), launcher, main=False, track=track)
        return EXIT_DONE
    try:
        with run_dir.hold():
            return _run_held(run_dir, started, launcher, track)
    except RunBusy as exc:
        print(f"mnc-bench worker: {exc}", file=sys.stderr, flush=True)
        return EXIT_BUSY


def _run_held(run_dir: RunDir, started: float, launcher: str, track: str | None) -> int:
    _redirect_output(run_dir.file(LOG_TXT))
    run_record = run_dir.read_run()
    previous = run_dir.status()
    # finished (or copied from another suite) since this worker was started
    if previous["state"] == RunState.DONE:
        print(f"=== mnc-bench worker: run {run_dir.run_id} is done already ({now_iso()}, pid {os.getpid()})",
              flush=True)
        return EXIT_DONE
    attempt = int(previous.get("attempt", 0)) + 1
    print(f"=== mnc-bench worker: run {run_dir.run_id} attempt {attempt} ({now_iso()}, pid {os.getpid()})",
          flush=True)
    run_dir.update_status(state=RunState.RUNNING, started=previous.get("started") or now_iso(), ended=None,
                          exit_reason=None, log_tail=None, attempt=attempt, pid=os.getpid(),
                          host=os.uname().nodename)
    try:
        stats = _train_and_evaluate(run_dir, run_record, launcher, main=True, track=track)
    except KeyboardInterrupt:
        print("=== interrupted: the run stays `running` and resumes next time", flush=True)
        return EXIT_INTERRUPTED
    except BaseException as exc:  # noqa: BLE001 - every failure of a run is recorded, the suite goes on
        requeue = _requeue_exit(exc)
        if requeue is not None:
            print("=== exiting to be requeued: the run stays `running` and resumes", flush=True)
            raise requeue from None
        traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        reason = failure_reason(exc)
        run_dir.update_status(state=RunState.FAILED, ended=now_iso(), exit_reason=reason,
                              log_tail=run_dir.log_tail())
        if track:
            _tracking_step(lambda: tracking.mark_failed(track, run_record, reason))
        return EXIT_FAILED
    import torch  # loaded by the training already

    usage = resource.getrusage(resource.RUSAGE_SELF)
    # CPU time next to wall time: on a shared machine it tells what the run would take with its cores to
    # itself.
    # The threads torch used (not only an explicit --threads): s/iter means little without them.
    stats.update(worker_time_s=time.time() - started, worker_started_at=started,
                 threads=torch.get_num_threads(), cpu_time_s=usage.ru_utime + usage.ru_stime,
                 device="cuda" if torch.cuda.is_available() and torch.cuda.is_initialized() else "cpu")
    run_dir.write_json(RUN_STATS_JSON, {**(run_dir.read_json(RUN_STATS_JSON) or {}), **stats})
    if track:
        _tracking_step(lambda: tracking.log_results(track, run_record, run_dir.path))
    run_dir.update_status(state=RunState.DONE, ended=now_iso(), exit_reason="finished", log_tail=None)
    print(f"=== done ({now_iso()})", flush=True)
    return EXIT_DONE


def _train_and_evaluate(run_dir: RunDir, run_record: RunRecord, launcher: str, *, main: bool,
                        track: str | None = None) -> dict[str, Any]:
    """Train the run (resuming from its last whole checkpoint) and score the final checkpoint on the test
    split. Rank 0 (``main``) writes metrics.json and scalars.json and returns the run's stats; other ranks of
    a distributed run only compute, and return {}."""
    checkpoint = _train(run_dir, run_record, launcher, main=main, track=track)
    started = time.time()
    metrics = _score(run_dir, run_record, checkpoint, launcher, main=main)
    eval_time = time.time() - started
    if not main:
        return {}
    run_dir.write_json(METRICS_JSON, metrics, nan_as_null=True)
    scalars = merge_scalars(run_dir.work_dir)
    with atomic_open(run_dir.file(SCALARS_JSON), "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in scalars)
    return dict(eval_time_s=eval_time, s_per_iter=median_iter_time(scalars),
                peak_mem_mb=peak_memory_mb(), git_commit=git_commit(), checkpoint=str(checkpoint))


def _train(run_dir: RunDir, run_record: RunRecord, launcher: str, *, main: bool, track: str | None) -> Path:
    """The run's training, from its last whole checkpoint or (rank 0 clearing partial ones) from scratch,
    with the suite's hook and without the schedule's validation; the final checkpoint's path."""
    from mnc_bench.checkpoints import latest_good_checkpoint
    from mnc_bench.config_loading import load_config
    from mnc_bench.suites import hooks  # noqa: F401 - registers SuiteRunHook
    from mnc_bench.suites.start_from import with_checkpoint
    from mnc_bench.training import train

    options = with_checkpoint(run_record.cfg_options, run_dir.path.parent)
    cfg = load_config(run_record.config, options)
    train_options = {
        **options,
        "custom_hooks": [*(cfg.get("custom_hooks") or []),
                         dict(type="SuiteRunHook", run_dir=str(run_dir.path))],
        # Scored once, on the test split, after training: the schedule's validation would only cost time.
        "val_cfg": None, "val_dataloader": None, "val_evaluator": None,
    }
    if track and main:
        train_options["visualizer"] = tracking.tracked_visualizer(cfg.visualizer, track, run_record,
                                                                  run_dir.path)
    checkpoint = latest_good_checkpoint(run_dir.work_dir)  # looked up once: it warns about each one skipped
    if main and checkpoint is None:
        _clear_checkpoints(run_dir.work_dir)
    print(f"=== {'resuming' if checkpoint else 'training'} {run_record.config} seed {run_record.seed}",
          flush=True)
    result = train(run_record.config, work_dir=run_dir.work_dir, cfg_options=train_options,
                   seed=run_record.seed, resume_from=checkpoint, launcher=launcher)
    if result.checkpoint is None:
        raise RuntimeError(f"training saved no checkpoint in {run_dir.work_dir}")
    return Path(result.checkpoint)


def _score(run_dir: RunDir, run_record: RunRecord, checkpoint: Path, launcher: str, *,
           main: bool) -> dict[str, float]:
    """The test pass of ``checkpoint`` (one image per batch; predictions.json written), then what the suite's
    ``metrics:`` add: proposal recall from a second pass, and families scored from the predictions."""
    from mnc_bench.evaluation.evaluate import evaluate, requested_families
    from mnc_bench.training import SINGLE_IMAGE_TEST, evaluate_checkpoint

    evaluation = evaluate_checkpoint(run_record.config, checkpoint, out=run_dir.file(PREDICTIONS_JSON),
                                     work_dir=run_dir.path / EVAL_DIR,
                                     cfg_options={**run_record.cfg_options, **SINGLE_IMAGE_TEST},
                                     launcher=launcher)
    metrics = dict(evaluation.metrics)
    wanted = run_record.metrics or []
    if any(is_proposal_metric(key) for key in wanted):
        from mnc_bench.suites.proposals import run_proposal_recall

        metrics.update(run_proposal_recall(run_record, checkpoint))
    families = requested_families(wanted)
    if families and main:  # scored from the predictions just written (rank 0 wrote them)
        metrics.update(evaluate(run_record.test_ann_file, run_dir.file(PREDICTIONS_JSON), metric=families,
                                iou_type=("segm", "bbox")))
    return metrics


def _requeue_exit(exc: BaseException) -> SystemExit | None:
    """The SystemExit with which submitit requeues a preempted or timed-out job (raised from its signal
    handler, anywhere in the training code), also when library code turned it into another exception on its
    way up (mmengine formats the config in a bare ``try/except`` while saving a checkpoint)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, SystemExit):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _tracking_step(step: Any) -> None:
    """Tracking is a copy of the results: a tracking store that fails is reported, the run's outcome
    stands."""
    try:
        step()
    except Exception as exc:  # noqa: BLE001
        print(f"mnc-bench worker: warning: MLflow tracking failed: {type(exc).__name__}: {one_line(exc)}",
              flush=True)


def failure_reason(exc: BaseException) -> str:
    """One line saying why a run failed."""
    from mnc_bench.suites.hooks import NonFiniteLoss

    if isinstance(exc, NonFiniteLoss):
        return f"non-finite loss: {exc}"
    text = one_line(exc)
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or (
            isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)):
        return f"out of memory: {text}"
    if isinstance(exc, UserError):
        return text
    return f"{type(exc).__name__}: {text}"


def merge_scalars(work_dir: Path) -> list[dict[str, Any]]:
    """Training scalars of every attempt (mmengine writes one timestamped folder per start), as one series:
    a resumed attempt replaces what an earlier one logged from its first step on."""
    rows: list[dict[str, Any]] = []
    for path in sorted(work_dir.glob("*/vis_data/scalars.json")):
        attempt = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                attempt.append(json.loads(line))
            except json.JSONDecodeError:  # the last line of a killed attempt may be cut
                continue
        attempt = [row for row in attempt if isinstance(row, dict) and "step" in row]
        if attempt:
            first = attempt[0]["step"]
            rows = [row for row in rows if row["step"] < first] + attempt
    return rows


def median_iter_time(scalars: list[dict[str, Any]]) -> float | None:
    """Median of the logged training iteration times (s/iter); None when nothing was logged."""
    times = [float(row["time"]) for row in scalars if "time" in row and "loss" in row]
    return statistics.median(times) if times else None


def peak_memory_mb() -> float:
    """Peak memory of this process: CUDA's allocator peak on a GPU, else the peak resident set size."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def git_commit() -> str:
    """The mnc-bench checkout's commit, 12 digits, ``+dirty`` when its code or configs have uncommitted
    changes; '' outside git."""
    head, dirty = checkout_commit()
    return head[:12] + ("+dirty" if dirty else "") if head else ""


def _clear_checkpoints(work_dir: Path) -> None:
    """Restarting from scratch: drop what a killed attempt left (no whole checkpoint among it)."""
    for path in [*work_dir.glob("*.pth"), work_dir / LAST_CHECKPOINT]:
        path.unlink(missing_ok=True)


def _redirect_output(log: Path) -> None:
    """Send this process's stdout and stderr (Python's and native code's) to the run's log, appending."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mnc_bench.suites.worker",
                                     description="Run one suite run (what `mnc-bench run` starts per run).")
    parser.add_argument("run_dir", nargs="?", default=None,
                        help="results/<suite>/<run-id>/ with its run.json (default: read from stdin once the "
                        "libraries are loaded)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--launcher", choices=LAUNCHERS, default="none")
    parser.add_argument("--track", metavar="URI", default=None, help="MLflow tracking URI")
    args = parser.parse_args(argv)
    # the worker process itself, as the runner starts it (as the CLI: mnc_bench/allocator.py)
    if argv is None:
        tune_allocator()
    run_dir = RunDir(args.run_dir) if args.run_dir else _await_run()
    if run_dir is None:
        return EXIT_DONE
    return run(run_dir, threads=args.threads, launcher=args.launcher, track=args.track)


def _await_run() -> RunDir | None:
    """Import what every run needs (seconds of torch, torchvision, mmcv, mmdet and mmengine), then wait for
    the run directory on stdin; None if stdin closes first. Output goes to the run's log from the hand-over
    on."""
    import mmengine.runner  # noqa: F401
    import torchvision.ops  # noqa: F401  (imported by our models on first use; here while the runner validates)

    import mnc_bench.training  # noqa: F401
    from mnc_bench.registration import register_all
    from mnc_bench.suites import hooks  # noqa: F401

    register_all()
    line = sys.stdin.readline().strip()
    if not line:
        return None
    run_dir = RunDir(line)
    _redirect_output(run_dir.file(LOG_TXT))
    return run_dir


if __name__ == "__main__":
    sys.exit(main())
