"""Where a report's numbers come from: suite files, commands, code commits, package versions, machine.

Nothing here reads a clock: the same inputs on the same checkout and machine give the same text.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mnc_bench.env import checkout_commit
from mnc_bench.reporting.paths import PathDisplay, shell_join
from mnc_bench.reporting.table import Inputs, run_folder
from mnc_bench.suites.contract import suite_file_candidates
from mnc_bench.suites.rundir import RunDir

PACKAGES = ("mnc-bench", "torch", "torchvision", "mmcv", "mmdet", "mmengine", "numpy", "scipy", "pandas",
            "matplotlib", "seaborn", "pycocotools")


@dataclass
class Provenance:
    files: list[tuple[str, str]] = field(default_factory=list)  # (path, sha256 prefix) of every input file
    commands: list[str] = field(default_factory=list)
    run_commands: list[tuple[str, str]] = field(default_factory=list)  # (run id, equivalent command)
    commits: list[tuple[str, str]] = field(default_factory=list)  # (what, commit)
    packages: list[tuple[str, str]] = field(default_factory=list)
    machine: list[tuple[str, str]] = field(default_factory=list)
    dirty_runs: list[str] = field(default_factory=list)  # run ids trained from code with uncommitted changes


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    except OSError:
        return "unreadable"


def _suite_file(suite: str) -> Path | None:
    for candidate in suite_file_candidates(suite, (Path(),)):
        if candidate.is_file():
            return candidate
    return None


def _option(key: str, value: Any) -> str:
    # Mappings as JSON: the runner merges them into the config; a command line's --cfg-options cannot.
    return f"{key}={json.dumps(value, sort_keys=True) if isinstance(value, dict) else value}"


def _train_command(run: pd.Series, display: PathDisplay) -> str:
    """The single-run command equivalent to a suite run, from its run.json (config, overrides, seed)."""
    record = RunDir(run_folder(run)).record()  # None where the run folder is gone: the table's config alone
    config, options = (record.config, record.cfg_options) if record else (run.get("config", ""), {})
    parts = ["mnc-bench", "train", display.recorded(str(config)), "--seed", str(run["seed"])]
    if options:
        parts += ["--cfg-options", *(_option(k, v) for k, v in sorted(options.items()))]
    return shell_join(parts)


def _machine(bench_machine: dict[str, Any]) -> list[tuple[str, str]]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = "none visible (no nvidia-smi)"
    if shutil.which("nvidia-smi"):
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
        gpu = "; ".join(out.stdout.strip().splitlines()) or "none listed by nvidia-smi"
    cores = str(len(os.sched_getaffinity(0)))
    rows = [("report machine: CPU", cpu), ("report machine: cores available", cores),
            ("report machine: OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "unset")),
            ("report machine: GPU", gpu), ("report machine: platform", platform.platform())]
    rows += [(f"bench machine: {k}", str(v)) for k, v in sorted(bench_machine.items())]
    return rows


def _weights_argument(row: pd.Series, display: PathDisplay) -> str:
    """``MODEL=SUITE/RUN_ID`` where the results file names the run that trained the weights, else
    ``MODEL=<checkpoint path>``."""
    run = row.get("weights_run")
    weights = run if isinstance(run, str) and run else display.recorded(str(row["checkpoint"]))
    return f"{row['model']}={weights}"


def bench_command(bench: pd.DataFrame, source: Path, display: PathDisplay) -> list[str]:
    """The ``bench models`` command as far as its results file records it: configs and trained weights."""
    command = ["mnc-bench", "bench", "models"]
    if "config" in bench:
        command += ["--configs", *(display.recorded(c) for c in bench["config"].astype(str))]
    if {"weights", "checkpoint"} <= set(bench.columns):
        trained = bench[bench["weights"] == "checkpoint"]
        if len(trained):
            command += ["--checkpoint", *(_weights_argument(row, display) for _, row in trained.iterrows())]
            if "weights_run" in trained and trained["weights_run"].notna().any():
                command += ["--results", display.path(display.results[0])]
    return command + ["--json", display.path(source)]


def dirty_runs(runs: pd.DataFrame) -> list[str]:
    """Run ids whose ``git_commit`` says the code had uncommitted changes (``<commit>+dirty``)."""
    if "git_commit" not in runs:
        return []
    return sorted(runs.loc[runs["git_commit"].astype(str).str.endswith("+dirty"), "run_id"].astype(str))


def collect_provenance(inputs: Inputs, command: list[str], display: PathDisplay) -> Provenance:
    """``command``: the report's own command line, its paths already as ``display`` prints them."""
    prov = Provenance()
    for suite in sorted(set(inputs.runs["suite"])):
        path = _suite_file(suite)
        if path is not None:
            prov.files.append((display.path(path), _digest(path)))
            prov.commands.append(shell_join(["mnc-bench", "run", display.path(path)]))
        prov.commands.append(shell_join(["mnc-bench", "collect", suite]))
    for source in inputs.sources:
        prov.files.append((display.path(source), _digest(source)))
    if inputs.bench_source is not None:
        prov.files.append((display.path(inputs.bench_source), _digest(inputs.bench_source)))
        prov.commands.append(shell_join(bench_command(inputs.bench, inputs.bench_source, display)))
    prov.commands.append(shell_join(command))
    for _, run in inputs.runs.iterrows():
        prov.run_commands.append((str(run["run_id"]), _train_command(run, display)))
    if "git_commit" in inputs.runs:
        for commit in sorted(c for c in set(inputs.runs["git_commit"]) if c):
            prov.commits.append(("runs", commit))
    prov.dirty_runs = dirty_runs(inputs.runs)
    head, dirty = checkout_commit()
    prov.commits.append(("report code", (head or "unknown (not a git checkout)")
                         + (" (with uncommitted changes)" if dirty else "")))
    for name in PACKAGES:
        try:
            prov.packages.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            prov.packages.append((name, "not installed"))
    prov.machine = _machine(inputs.machine)
    return prov
