"""The contract between what writes a suite's results and what reads them back, defined once.

Writers (:mod:`~mnc_bench.suites.spec`, :mod:`~mnc_bench.suites.runner`, :mod:`~mnc_bench.suites.worker`,
:mod:`~mnc_bench.suites.collect`) and readers (:mod:`~mnc_bench.suites.status`, ``collect``, the report in
:mod:`mnc_bench.reporting`) import these names instead of spelling them again:

- where a suite lives: its name, its file ``configs/ablations/<name>.yaml`` and its results folder
  ``<results>/<name>/`` (a name may hold dots: ``v1.2.yaml`` is suite ``v1.2``, results in ``results/v1.2``);
- the files of a results folder and of a run directory, and what a run is (:class:`RunRecord`, its
  ``run.json``);
- the states of a run;
- the metric keys and the columns of the collected table;
- how runs are launched: executors and distributed launchers.

Standard library only: the CLI imports it before anything heavy.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

# ---- suite name <-> suite file <-> results folder --------------------------------------------------------

SUITE_SUFFIXES = (".yaml", ".yml")
SUITES_DIR = Path("configs") / "ablations"  # relative to the working directory or the checkout
RESULTS_ROOT = "results"  # the default results root
# The largest random seed: numpy's range, which mmengine's set_random_seed hands it to.
MAX_SEED = 2**32 - 1


def model_name(config: str | os.PathLike[str]) -> str:
    """The name a model goes by in plans, tables and records: its config file's name without ``.py``."""
    return Path(config).stem


def suite_name(suite: str | os.PathLike[str]) -> str:
    """The name of a suite given by name or by file: the file name without its ``.yaml``/``.yml`` suffix, a
    name as it is. Only those suffixes are removed: ``v1.2`` is suite ``v1.2``, not ``v1``."""
    name = Path(suite).name
    for suffix in SUITE_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def is_suite_file(suite: str | os.PathLike[str]) -> bool:
    """True when ``suite`` names a file (``.yaml``/``.yml``) rather than a suite name."""
    return suite_name(suite) != Path(suite).name


def suite_file_candidates(name: str, roots: tuple[Path, ...]) -> list[Path]:
    """Where suite ``name`` may be defined: ``<root>/configs/ablations/<name>.yaml`` (or .yml) per root."""
    return [root / SUITES_DIR / f"{name}{suffix}" for root in roots for suffix in SUITE_SUFFIXES]


def suite_results_dir(suite: str | os.PathLike[str], results: str | os.PathLike[str] = RESULTS_ROOT) -> Path:
    """``<results>/<suite name>`` for a suite name or suite file."""
    return Path(results) / suite_name(suite)


# ---- files of a results folder and of a run directory ----------------------------------------------------

SUITE_RECORD = "suite.json"  # results/<suite>/suite.json: the plan (run ids, axes, metrics) and invocations
COLLECT_TABLES = ("collect.parquet", "collect.csv")  # results/<suite>/: collect's table, parquet first
TABLE_FORMATS = (".parquet", ".csv")

RUN_JSON = "run.json"  # what the run is (its RunRecord)
CONFIG_PY = "config.py"  # the resolved config
STATUS_JSON = "status.json"  # the run's state and its history
LOG_TXT = "log.txt"  # the worker's output, appended across attempts
METRICS_JSON = "metrics.json"  # flat metric keys of the test split
PREDICTIONS_JSON = "predictions.json"  # COCO results list of the test split
SCALARS_JSON = "scalars.json"  # training scalars, JSON lines
RUN_STATS_JSON = "run_stats.json"  # times, memory, params, git commit, ...
LOCK_FILE = ".lock"  # held by the live worker
WORK_DIR = "work"  # mmengine's work dir (checkpoints)
EVAL_DIR = "eval"  # the test pass's work dir
# What a finished or failed attempt leaves, removed by a rerun from scratch (the log is kept).
RESULT_FILES = (METRICS_JSON, PREDICTIONS_JSON, SCALARS_JSON, RUN_STATS_JSON)
RESULT_DIRS = (WORK_DIR, EVAL_DIR)


@dataclass(frozen=True)
class RunRecord:
    """What a run is, its ``run.json``: written by the runner when it prepares (or copies) the run; read by
    the worker (what to train and score), ``collect``, ``status``, ``rescore``, ``robustness``, the report's
    provenance and the bench's trained-weights search."""

    suite: str
    run_id: str
    config: str  # the model config's path as the suite names it
    cfg_options: dict[str, Any]  # the suite's options and this run's axis values
    axes: dict[str, Any]  # the axis values alone
    seed: int
    variant: str  # the axis values as text ('' for a run without axes)
    test_ann_file: str
    test_img_dir: str
    metrics: list[str] | None = None  # metric keys beyond the config's evaluator (the suite's ``metrics:``)

    @property
    def model(self) -> str:
        return model_name(self.config)

    @property
    def label(self) -> str:
        """'model, variant, seed=N', as plans and ``status`` print a run."""
        return ", ".join(part for part in (self.model, self.variant, f"seed={self.seed}") if part)

    def to_json(self) -> dict[str, Any]:
        """run.json's content: the record's fields alone (a subclass's extra fields stay out)."""
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(RunRecord)}

    @classmethod
    def from_json(cls, data: object, folder: Path) -> RunRecord | None:
        """The record in ``data`` (a run.json read from run directory ``folder``: its name is the run id, its
        parent's the suite's where the file lacks them); None when ``data`` is not a run record."""
        if not isinstance(data, dict) or not isinstance(data.get("cfg_options"), dict):
            return None
        if not isinstance(data.get("config"), str) or not isinstance(data.get("metrics") or [], list):
            return None
        try:
            return cls(suite=str(data.get("suite") or folder.parent.name),
                       run_id=str(data.get("run_id") or folder.name), config=str(data["config"]),
                       cfg_options=dict(data["cfg_options"]), axes=dict(data.get("axes") or {}),
                       seed=int(data["seed"]), variant=str(data.get("variant") or ""),
                       test_ann_file=str(data.get("test_ann_file") or ""),
                       test_img_dir=str(data.get("test_img_dir") or ""),
                       metrics=list(data["metrics"]) if data.get("metrics") else None)
        except (KeyError, TypeError, ValueError):
            return None


# ---- run states -------------------------------------------------------------------------------------------


class RunState(StrEnum):
    """``status.json``'s ``state`` and collect's ``status`` column (plain strings in the files). Listed in
    the order summaries count them."""

    DONE = "done"
    FAILED = "failed"
    RUNNING = "running"
    PENDING = "pending"


RUN_STATES = tuple(state.value for state in RunState)
FINISHED_STATES = (RunState.DONE, RunState.FAILED)  # a worker's verdict: nothing runs the run again by itself


# ---- metric keys -------------------------------------------------------------------------------------------

COCO_IOU_TYPES = ("segm", "bbox")
# The first twelve entries of pycocotools' COCOeval.stats, in order.
COCO_METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
VOC_PROTOCOLS = ("sds", "mnc")
VOC_METRIC_NAMES = ("mAP@0.5", "mAP@0.7", "mAP_vol")
PROPOSAL_METRIC_NAMES = ("AR@10", "AR@100", "AR@300", "AR@1000", "ARs@1000", "ARm@1000", "ARl@1000")
PROPOSAL_PREFIX = "proposals/"  # measured only when a suite asks for them (a second pass over the test split)
BOUNDARY_METRIC_NAMES = COCO_METRIC_NAMES[:6]  # Boundary AP: COCO's AP columns with boundary IoU
METRIC_PREFIXES = ("coco/", "voc_", PROPOSAL_PREFIX, "tide/", "robustness/", "vis/")
# Every metric key a run can record: COCO (boundary IoU too), VOC region AP (also per class), proposal recall,
# TIDE's error breakdown, robustness to corruptions, the video metrics (mnc_bench.evaluation.video).
METRIC_PATTERN = re.compile(r"^(coco/(segm|bbox|boundary)/\w+|voc_(sds|mnc)/[\w@.]+(/.+)?|proposals/\w+@\d+"
                            r"|tide/(segm|bbox)/\w+|robustness/(segm|bbox)/[\w@]+(/\w+)?|vis/(\w+/)?\w+)$")
# Metric columns of every collected table (NaN where a run did not measure them), in this order; collect
# adds TIDE's, whose names come with its error types (mnc_bench.evaluation.errors).
STANDARD_METRICS = (
    [f"coco/{kind}/{name}" for kind in COCO_IOU_TYPES for name in COCO_METRIC_NAMES]
    + [f"voc_{protocol}/{name}" for protocol in VOC_PROTOCOLS for name in VOC_METRIC_NAMES]
    + [f"{PROPOSAL_PREFIX}{name}" for name in PROPOSAL_METRIC_NAMES]
    + [f"coco/boundary/{name}" for name in BOUNDARY_METRIC_NAMES]
)


def is_metric_key(key: str) -> bool:
    """True for a metric column of the collected table (as opposed to identity, axis and cost columns)."""
    return key.startswith(METRIC_PREFIXES)


def is_proposal_metric(key: str) -> bool:
    return key.startswith(PROPOSAL_PREFIX)


# ---- columns of the collected table ------------------------------------------------------------------------

AXIS_PREFIX = "axis."  # one column per suite axis: axis.<config key>
LEADING_COLUMNS = ("suite", "run_id", "status", "failure_reason", "config", "model", "seed", "variant")
# From each run's run_stats.json, in this order.
RUN_STATS_COLUMNS = ("batch_size", "lr", "max_iters", "train_time_s", "s_per_iter", "threads", "peak_mem_mb",
                     "params", "git_commit")
# The share of its cores a CPU run had: CPU time / (wall time x threads), from run_stats.json; below 1 when
# other processes competed for the cores, which slows its s/iter. Empty for GPU runs.
CPU_SHARE = "cpu_share"
TRAILING_COLUMNS = (*RUN_STATS_COLUMNS, CPU_SHARE, "run_dir", "test_ann_file", "test_img_dir", "reused_from")
INTEGER_COLUMNS = ("seed", "batch_size", "max_iters", "threads", "params")  # pandas Int64 (nullable)
FLOAT_COLUMNS = ("lr", "train_time_s", "s_per_iter", "peak_mem_mb", CPU_SHARE)  # besides the metric columns
TEXT_COLUMNS = ("suite", "run_id", "status", "failure_reason", "config", "model", "variant", "git_commit",
                "run_dir", "test_ann_file", "test_img_dir", "reused_from")
REQUIRED_COLUMNS = ("suite", "run_id", "status", "model", "seed", "variant")  # what a report needs


def axis_column(key: str) -> str:
    return f"{AXIS_PREFIX}{key}"


def table_columns(axes: list[str], metrics: list[str]) -> list[str]:
    """Every column of a collected table, in order, for these axis keys and metric keys."""
    return [*LEADING_COLUMNS, *(axis_column(key) for key in axes), *metrics, *TRAILING_COLUMNS]


# ---- how runs are launched ---------------------------------------------------------------------------------

EXECUTORS = ("local", "slurm")  # `mnc-bench run --executor`: worker subprocesses here, or a Slurm job array
LAUNCHERS = ("none", "pytorch", "slurm")  # mmengine's distributed launchers (`--launcher`)
# Slurm resources of a run, per GPU (one task per GPU), when the suite and the command line leave them out.
# Sized for the full-size configs: a task holds the rank, its 2 data-loader workers (their num_workers) and a
# core for the pin-memory thread and the test pass's evaluation; its memory holds the rank's model, CUDA
# context and the COCO annotations, the workers' decoded images and masks at 1333 x 800, and rank 0's COCO
# evaluation. An estimate from the configs, not a measurement on a cluster: --cpus-per-run and --mem-gb
# override it.
SLURM_CPUS_PER_GPU = 4
SLURM_MEM_GB_PER_GPU = 32


def launcher_rank(launcher: str) -> int:
    """This process's global rank under ``launcher``, read from the environment the launcher sets up, so that
    it is known before mmengine joins the process group (torchrun sets ``RANK``; under Slurm mmengine derives
    it from ``SLURM_PROCID`` only when it initialises the group)."""
    if launcher == "slurm":
        return int(os.environ.get("SLURM_PROCID", "0"))
    if launcher == "pytorch":
        return int(os.environ.get("RANK", "0"))
    return 0
