"""``mnc-bench run SUITE --smoke``: every run of a suite for a few iterations on a few images, with everything
else as the suite says (models, image sizes, batch sizes, schedules' shapes, evaluators), to find what breaks
before hours of GPU time are spent on it.

A smoke run is the suite's run with these options on top (part of its id, so it can never be taken for the
real run): an iteration-based loop of ``iters`` iterations and a checkpoint at its end; the first
``train_images`` training and ``test_images`` test images of each dataset (mmengine's
``BaseDataset(indices=N)``); and, where the config's ``backbone_checkpoint`` file is missing, a backbone with
random weights (noted in the verdict). The runs live in their own results root (``RESULTS/smoke/<suite>/``,
emptied first), so real runs are never marked done and never reused from there. Each run's verdict is ``ok``
or its one-line failure reason.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnc_bench.errors import UserError
from mnc_bench.suites.contract import RunState
from mnc_bench.suites.rundir import RunDir
from mnc_bench.suites.spec import RunSpec, Suite, run_id
from mnc_bench.suites.start_from import with_run_id

SMOKE_DIR = "smoke"  # under the results root


@dataclass(frozen=True)
class SmokeSettings:
    iters: int = 2
    train_images: int = 4
    test_images: int = 2

    def __post_init__(self) -> None:
        for name in ("iters", "train_images", "test_images"):
            if getattr(self, name) < 1:
                raise UserError(f"--smoke: {name.replace('_', ' ')} must be >= 1, got {getattr(self, name)}")


def smoke_root(results: str | Path) -> Path:
    return Path(results) / SMOKE_DIR


def smoke_suite(suite: Suite, settings: SmokeSettings) -> tuple[Suite, dict[str, str]]:
    """The suite with every run shortened (see the module docstring), and a note per smoke run id where its
    weights differ from the real run's."""
    from mnc_bench.config_loading import load_config

    runs, notes, smoke_ids = [], {}, {}
    for spec in suite.runs:  # a run that starts from another comes after it: it starts from its rehearsal
        options, note = smoke_options(spec.cfg, settings)
        cfg_options = {**with_run_id(spec.cfg_options, smoke_ids), **options}
        cfg = load_config(spec.config, cfg_options)
        smoke_id = smoke_ids[spec.run_id] = run_id(cfg, spec.seed)
        runs.append(dataclasses.replace(spec, run_id=smoke_id, cfg_options=cfg_options, cfg=cfg))
        if note:
            notes[smoke_id] = note
    return dataclasses.replace(suite, runs=runs), notes


def smoke_options(cfg: Any, settings: SmokeSettings) -> tuple[dict[str, Any], str]:
    """The options that shorten the run of ``cfg`` (a resolved config), and a note ('' or about its
    weights)."""
    options: dict[str, Any] = {
        "train_cfg": {"type": "IterBasedTrainLoop", "max_iters": settings.iters,
                      "val_interval": settings.iters, "_delete_": True},
        "default_hooks.checkpoint": {"type": "CheckpointHook", "by_epoch": False, "interval": settings.iters,
                                     "max_keep_ckpts": 1, "_delete_": True},
        "default_hooks.logger.interval": 1,
        "log_processor.by_epoch": False,
    }
    counts = {"train_dataloader": settings.train_images, "test_dataloader": settings.test_images}
    for loader, count in counts.items():
        for key in _leaf_dataset_keys(cfg.get(loader), loader):
            options[f"{key}.indices"] = count
    note = ""
    weights = cfg.get("backbone_checkpoint")
    if isinstance(weights, str) and not Path(weights).expanduser().is_file():
        options["backbone_checkpoint"] = None
        note = f"random backbone weights: no {weights}"
    return options, note


def _leaf_dataset_keys(node: Any, key: str) -> list[str]:
    """Option keys of the dataset dicts that read files under a dataloader (through dataset wrappers)."""
    if not isinstance(node, Mapping):
        return []
    if key.endswith("dataloader"):
        return _leaf_dataset_keys(node.get("dataset"), f"{key}.dataset")
    if "datasets" in node:
        return [leaf for index, inner in enumerate(node["datasets"])
                for leaf in _leaf_dataset_keys(inner, f"{key}.datasets.{index}")]
    if "dataset" in node:
        return _leaf_dataset_keys(node["dataset"], f"{key}.dataset")
    return [key]


def clear_smoke_results(suite_dir: Path) -> None:
    """A smoke rehearsal starts from nothing: an earlier one's runs would be skipped as done."""
    if suite_dir.parent.name != SMOKE_DIR:
        raise ValueError(f"{suite_dir} is not a smoke results folder")
    shutil.rmtree(suite_dir, ignore_errors=True)


def verdicts(suite: Suite, suite_dir: Path, notes: Mapping[str, str]) -> list[tuple[RunSpec, str]]:
    """Each run's verdict: 'ok' (with its note), or its one-line failure reason, or its state if it did not
    end."""
    out = []
    for spec in suite.runs:
        status = RunDir(suite_dir / spec.run_id).status()
        state = status.get("state")
        if state == RunState.DONE:
            verdict = "ok" + (f" ({notes[spec.run_id]})" if spec.run_id in notes else "")
        elif state == RunState.FAILED:
            verdict = f"FAILED: {status.get('exit_reason') or 'no reason recorded'}"
        else:
            verdict = f"not finished ({state or 'not started'})"
        out.append((spec, verdict))
    return out


def format_verdicts(suite: Suite, results: list[tuple[RunSpec, str]]) -> list[str]:
    width = max((len(spec.label) for spec, _ in results), default=0)
    failed = sum(not verdict.startswith("ok") for _, verdict in results)
    lines = [f"smoke {suite.name}: {len(results) - failed} of {len(results)} runs ok"]
    lines += [f"  {spec.run_id}  {spec.label:<{width}}  {verdict}" for spec, verdict in results]
    return lines
