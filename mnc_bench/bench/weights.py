"""Which weights `bench models` runs each model with: random, or the checkpoint of a finished suite run.

Speed ratios with random weights mislead about MNC: a random model gives every class of every proposal about
the same score, so it keeps its whole detection budget above any score threshold (100 detections to vote and
paste where a trained shapes model keeps about 12), and the training step's costs follow the proposals and
labels the weights produce. Trained weights are what a comparison should use; this module finds them among the
suites' results.

A run qualifies for a config when it ran that config file unchanged (only options that cannot change its
results, `suites.spec.NEUTRAL_KEYS`), finished, and left a whole checkpoint; among several, seed 0 first, then
the most recently finished. `--checkpoint MODEL=SUITE/RUN_ID` names one run's weights directly. Either way the
results file records the run (`weights_run`), so that it names its weights without a path of the machine.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mnc_bench.checkpoints import latest_good_checkpoint
from mnc_bench.errors import UserError
from mnc_bench.suites.contract import RESULTS_ROOT, WORK_DIR, RunState
from mnc_bench.suites.rundir import RunDir, list_run_dirs
from mnc_bench.suites.spec import is_neutral_option

WEIGHT_CHOICES = ("random", "trained", "ask")


@dataclass(frozen=True)
class Weights:
    """The checkpoint one model runs with and, where it lies in a suite run, that run (`<suite>/<run-id>`
    under the results root)."""

    path: str
    run: str | None = None


@dataclass(frozen=True)
class TrainedCheckpoint:
    """A finished suite run's checkpoint of one model config."""

    model: str  # the config's stem
    path: Path
    run: str  # <suite>/<run-id>
    seed: int
    ended: str  # status.json's end time (ISO 8601)


def _candidate(run_dir: RunDir, configs: dict[str, str]) -> TrainedCheckpoint | None:
    run, status = run_dir.record(), run_dir.status()
    if run is None or status.get("state") != RunState.DONE:
        return None
    model = configs.get(Path(run.config).as_posix())
    if model is None or not all(is_neutral_option(key) for key in run.cfg_options):
        return None
    checkpoint = latest_good_checkpoint(run_dir.work_dir)
    if checkpoint is None:
        return None
    return TrainedCheckpoint(model=model, path=checkpoint, run=f"{run_dir.path.parent.name}/{run_dir.run_id}",
                             seed=run.seed, ended=str(status.get("ended") or ""))


def find_trained_checkpoints(configs: Sequence[str], results_root: str | Path = RESULTS_ROOT
                             ) -> dict[str, TrainedCheckpoint]:
    """For each of `configs` (paths as the suites name them, e.g. configs/mnc/mnc_3stage_shapes.py) that some
    finished run under `results_root`/<suite>/ trained unchanged, its checkpoint, by config stem."""
    wanted = {Path(config).as_posix(): Path(config).stem for config in configs}
    root = Path(results_root)
    found: dict[str, list[TrainedCheckpoint]] = {}
    for suite_dir in sorted(root.iterdir()) if root.is_dir() else []:
        for run_dir in list_run_dirs(suite_dir):
            candidate = _candidate(run_dir, wanted)
            if candidate is not None:
                found.setdefault(candidate.model, []).append(candidate)
    # Seed 0 first, then the latest to finish.
    return {model: max(runs, key=lambda c: (c.seed == 0, c.ended)) for model, runs in found.items()}


def _run_of(checkpoint: Path, results_root: Path) -> str | None:
    """`<suite>/<run-id>` when `checkpoint` lies in a run's work folder under `results_root`."""
    try:
        parts = checkpoint.resolve().relative_to(results_root.resolve()).parts
    except ValueError:
        return None
    return f"{parts[0]}/{parts[1]}" if len(parts) > 3 and parts[2] == WORK_DIR else None


def resolve_weights(model: str, value: str, results_root: str | Path = RESULTS_ROOT) -> Weights:
    """What `--checkpoint MODEL=VALUE` names: a checkpoint file, or `SUITE/RUN_ID`, a finished run under
    `results_root` whose latest whole checkpoint is taken. A value that is neither is passed on as a path, for
    the settings' check to report."""
    root = Path(results_root)
    if Path(value).is_file():
        return Weights(value, _run_of(Path(value), root))
    run_dir = RunDir(root / value)
    if len(Path(value).parts) != 2 or not run_dir.file("run.json").is_file():
        return Weights(value)
    if run_dir.status().get("state") != RunState.DONE:
        raise UserError(f"--checkpoint {model}={value}: run {value} under {root} has not finished")
    checkpoint = latest_good_checkpoint(run_dir.work_dir)
    if checkpoint is None:
        raise UserError(f"--checkpoint {model}={value}: run {value} under {root} has no whole checkpoint")
    return Weights(str(checkpoint), value)


def choose_checkpoints(mode: str, configs: Sequence[str], explicit: dict[str, str], *,
                       results_root: str | Path = RESULTS_ROOT, print_fn: Callable[[str], None] = print,
                       ask: Callable[[str], str] | None = None) -> dict[str, Weights]:
    """The weights `bench models` uses, by config stem: `explicit` ones (--checkpoint, see `resolve_weights`)
    always; with mode "trained" also those found (`find_trained_checkpoints`); with "ask" those found if the
    user says so at a terminal (`ask`, default `input` when stdin is one), else only a line saying how to use
    them."""
    if mode not in WEIGHT_CHOICES:
        raise UserError(f"--weights: one of {', '.join(WEIGHT_CHOICES)}, got {mode!r}")
    given = {model: resolve_weights(model, value, results_root) for model, value in explicit.items()}
    if mode == "random":
        return given
    found = {model: checkpoint for model, checkpoint in
             find_trained_checkpoints(configs, results_root).items() if model not in explicit}
    if not found:
        print_fn(f"-- no finished suite run under {results_root}/ trained these configs unchanged: "
                 "models without --checkpoint run with random weights")
        return given
    for checkpoint in found.values():
        print_fn(f"-- trained weights found: {checkpoint.model}: {checkpoint.path} "
                 f"(run {checkpoint.run}, seed {checkpoint.seed})")
    if mode == "ask":
        if ask is None and not sys.stdin.isatty():
            print_fn("-- not using them (no terminal to ask at): `make bench WEIGHTS=trained` or "
                     "`mnc-bench bench models --weights trained` does")
            return given
        try:
            answer = (ask or input)("Use these trained weights? Random weights mislead about MNC. [Y/n] ")
        except EOFError:  # the terminal closed its input (Ctrl-D): no answer is no
            answer = "n"
        if answer.strip().lower() not in ("", "y", "yes"):
            return given
    return {**{model: Weights(str(checkpoint.path), checkpoint.run) for model, checkpoint in found.items()},
            **given}
