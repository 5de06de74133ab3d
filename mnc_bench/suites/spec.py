"""Suite files -> validated runs with content-hashed ids.

A suite is a YAML file (read with a safe loader: a suite file never runs code)::

    base: configs/mnc/mnc_3stage_shapes.py   # model config of every run (unless `config` is an axis)
    grid:                                    # cartesian product of the listed axes
      config: [configs/mnc/mnc_3stage_shapes.py, configs/mask_rcnn/mask_rcnn_shapes.py]
      model.cascade.num_stages: [3, 5, 7]
    zip:                                     # lists of one length, taken row by row (crossed with the grid)
      model.loss_weights.mask: [1.0, 2.0]
      model.loss_weights.cls: [1.0, 1.0]
    seeds: [0, 1, 2]
    cfg_options: {train_cfg.max_iters: 200}  # every run, under the axes
    metrics: [coco/segm/AP, proposals/AR@100]  # optional: the metric columns `collect` keeps; proposal
                                             # recall, coco/boundary/* and tide/* are computed only if named
    slurm: {partition: gpu, gpus_per_run: 1, timeout_min: 720, array_parallelism: 8}
    start_from:                              # optional: runs that start from another run's final checkpoint
      - {config: ..., from: ..., module: model.detector, prefix: detector.}   # (see suites.start_from)

An axis key is any config key in ``--cfg-options`` form and must exist in the run's config; a dict value is
merged into the dict at that key (the way to set keys a config leaves to the model's defaults).

A run is (resolved config, seed, GPUs). Its id is a hash of the resolved config (mmengine's, after the
options; settings that cannot change results, such as logging and checkpoint intervals, left out), the seed
and, for a run trained on several GPUs (``slurm.gpus_per_run`` > 1 under ``--executor slurm``), their
number: the configs' batch size is per GPU, so 8 GPUs train another run than 1. Editing an axis adds runs and
keeps the finished ones.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from mnc_bench.errors import UserError, one_line
from mnc_bench.suites.contract import (
    BOUNDARY_METRIC_NAMES,
    COCO_METRIC_NAMES,
    MAX_SEED,
    METRIC_PATTERN,
    SLURM_CPUS_PER_GPU,
    SLURM_MEM_GB_PER_GPU,
    RunRecord,
    is_suite_file,
    suite_file_candidates,
    suite_name,
)
from mnc_bench.suites.start_from import StartFrom, init_option, parse_start_from

SUITE_KEYS = ("base", "grid", "zip", "seeds", "cfg_options", "metrics", "slurm", "start_from")
# Config entries that cannot change a run's results: left out of the run id.
NEUTRAL_KEYS = ("work_dir", "launcher", "resume", "log_level", "log_processor", "visualizer", "vis_backends",
                "dataset_layout", "default_hooks.logger", "default_hooks.checkpoint", "default_hooks.timer",
                "default_hooks.visualization", "randomness.seed", "env_cfg.dist_cfg.timeout")


def is_neutral_option(key: str) -> bool:
    """Whether a --cfg-options key lies under one of NEUTRAL_KEYS (it cannot change a run's results)."""
    return any(key == neutral or key.startswith(neutral + ".") for neutral in NEUTRAL_KEYS)


ID_LENGTH = 12


@dataclass(frozen=True)
class RunSpec(RunRecord):
    """One run of a suite as planned: what it is (its run.json record) and its resolved config."""

    cfg: Any = field(default=None, repr=False, compare=False)  # the resolved mmengine Config

    def record(self) -> RunRecord:
        """What run.json holds (the resolved config goes to config.py)."""
        return RunRecord(**{f.name: getattr(self, f.name) for f in fields(RunRecord)})


@dataclass(frozen=True)
class SlurmSettings:
    """A suite's ``slurm:`` section (``run --executor slurm``'s options override each): what one run asks of
    Slurm. A run has one task per GPU on one node."""

    partition: str | None = None  # the cluster's default partition
    gpus_per_run: int = 1
    cpus_per_run: int | None = None  # whole run; SLURM_CPUS_PER_GPU per GPU when None
    mem_gb: int | None = None  # whole run (the node's); SLURM_MEM_GB_PER_GPU per GPU when None
    timeout_min: int = 24 * 60
    array_parallelism: int = 256  # runs of the suite's job array at once

    def __post_init__(self) -> None:
        for f in fields(self):
            value, text = getattr(self, f.name), f.name == "partition"
            if value is None and f.default is None:
                continue
            if (not isinstance(value, str if text else int) or isinstance(value, bool)
                    or (not text and value < 1)):
                expected = "a string" if text else "a positive integer"
                raise UserError(f"slurm.{f.name}: wrong type: expected {expected}, got {_label(value)}")
        if self.cpus < self.gpus_per_run:
            raise UserError(f"slurm.cpus_per_run: {self.cpus} CPUs cannot serve the run's "
                            f"{self.gpus_per_run} tasks (one per GPU)")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], where: str) -> SlurmSettings:
        """The settings in ``values`` (a suite's ``slurm:`` mapping), each key checked: one UserError naming
        ``where`` and the key."""
        try:
            return cls()._with(values)
        except UserError as exc:
            raise UserError(f"{where}: {exc}") from None

    def overridden(self, overrides: Mapping[str, Any]) -> SlurmSettings:
        """These settings with ``overrides`` (command-line options) applied; a None keeps the setting."""
        return self._with({key: value for key, value in overrides.items() if value is not None})

    def _with(self, values: Mapping[str, Any]) -> SlurmSettings:
        names = [f.name for f in fields(self)]
        unknown = [key for key in values if key not in names]
        if unknown:
            raise UserError(f"slurm.{unknown[0]}: unknown setting (expected {', '.join(names)})")
        return replace(self, **values)

    @property
    def cpus(self) -> int:
        return self.cpus_per_run or SLURM_CPUS_PER_GPU * self.gpus_per_run

    @property
    def cpus_per_task(self) -> int:
        """The CPUs of each of the run's tasks (one per GPU): a rank's torch threads."""
        return self.cpus // self.gpus_per_run

    @property
    def memory_gb(self) -> int:
        return self.mem_gb or SLURM_MEM_GB_PER_GPU * self.gpus_per_run


@dataclass
class Suite:
    name: str
    path: Path
    runs: list[RunSpec]
    axes: list[str]
    metrics: list[str] | None = None
    slurm: SlurmSettings = field(default_factory=SlurmSettings)


def find_suite(name_or_path: str | os.PathLike[str]) -> Path:
    """A suite file path, or a name looked up in ``configs/ablations/`` (here, then beside the package)."""
    path = Path(name_or_path)
    if is_suite_file(path):
        if not path.is_file():
            raise UserError(f"suite file {path} not found")
        return path
    for candidate in suite_file_candidates(path.name, (Path.cwd(), Path(__file__).resolve().parents[2])):
        if candidate.is_file():
            return candidate
    raise UserError(f"suite {name_or_path!r} not found (give a .yaml path or a name in configs/ablations/)")


@dataclass
class _Sections:
    """A suite file's sections, each checked on its own; ``options`` are the suite's ``cfg_options``,
    ``extra`` those given on the command line."""

    grid: dict[str, list[Any]]
    zipped: dict[str, list[Any]]
    options: dict[str, Any]
    extra: dict[str, Any]
    base: str | None
    seeds: list[int]
    metrics: list[str] | None
    slurm: SlurmSettings
    start_from: list[StartFrom] = field(default_factory=list)

    @property
    def axis_keys(self) -> list[str]:
        return list(self.grid) + list(self.zipped)

    def combinations(self) -> list[dict[str, Any]]:
        """The axis values of each run but the seed: the grid's product crossed with the zip's rows."""
        return [dict(a, **b) for a in _product(self.grid) for b in _rows(self.zipped)]


def load_suite(name_or_path: str | os.PathLike[str], *, seeds: Sequence[int] | None = None,
               extra_options: Mapping[str, Any] | None = None, build_models: bool = True,
               slurm_overrides: Mapping[str, Any] | None = None, distributed: bool = False) -> Suite:
    """Read, expand and validate a suite; every run's config is resolved (and its model built when
    ``build_models``) before anything runs. ``seeds`` replaces the suite's; ``extra_options`` apply on top of
    the suite's ``cfg_options`` (e.g. ``data_root``); ``slurm_overrides`` on top of its ``slurm:`` settings.
    ``distributed``: the runs train on ``slurm.gpus_per_run`` GPUs each (``--executor slurm``), else on one
    device; the number is part of the run ids."""
    path = find_suite(name_or_path)
    name = suite_name(path)
    where = f"suite {name}"
    sections = _check_sections(read_suite_file(path), where, seeds, extra_options)
    sections.slurm = sections.slurm.overridden(slurm_overrides or {})
    world_size = sections.slurm.gpus_per_run if distributed else 1
    runs = _expand_runs(name, sections, where, build_models, world_size)
    return Suite(name=name, path=path, runs=runs, axes=sections.axis_keys, metrics=sections.metrics,
                 slurm=sections.slurm)


def _check_sections(data: Mapping[str, Any], where: str, seeds: Sequence[int] | None,
                    extra_options: Mapping[str, Any] | None) -> _Sections:
    """Each section of a suite file checked, in the file format's order (the first problem is reported)."""
    grid, zipped = _axes(data, "grid", where), _axes(data, "zip", where)
    _check_zip_lengths(zipped, where)
    options = _mapping(data.get("cfg_options"), f"{where}: cfg_options")
    for key in options:
        _require_config_key(key, f"{where}: cfg_options: key")
    extra = dict(extra_options or {})
    if "config" in options:
        raise UserError(f"{where}: cfg_options.config: the model config is `base` or a `config` axis")
    _check_axes_set_once(grid, zipped, options, extra, where)
    base = _base(data, grid, zipped, where)
    configs = [str(c) for c in grid.get("config") or zipped.get("config") or [base]]
    return _Sections(grid=grid, zipped=zipped, options=options, extra=extra, base=base,
                     seeds=_seeds(data.get("seeds", [0]) if seeds is None else list(seeds), where),
                     metrics=_metrics(data.get("metrics"), where),
                     slurm=SlurmSettings.from_mapping(_mapping(data.get("slurm"), f"{where}: slurm"), where),
                     start_from=parse_start_from(data.get("start_from"), configs, where))


def _check_zip_lengths(zipped: Mapping[str, list[Any]], where: str) -> None:
    if len({len(values) for values in zipped.values()}) > 1:
        raise UserError(f"{where}: zip: lists of different lengths "
                        f"({', '.join(f'{k}: {len(v)}' for k, v in zipped.items())})")


def _check_axes_set_once(grid: Mapping[str, Any], zipped: Mapping[str, Any],
                         options: Mapping[str, Any], extra: Mapping[str, Any], where: str) -> None:
    """Each axis sets its config key alone: not again in the other axis section or the options, and not
    inside (or around) another axis' key, where one would silently override the other."""
    sections = (("grid", grid), ("zip", zipped), ("cfg_options", options),
                ("the command line options", extra))
    for index, (section, axes) in enumerate(sections[:2]):
        for key in axes:
            for what, other in sections[index + 1:]:
                if key in other:
                    raise UserError(f"{where}: duplicate axis {key}: also set in {what}")
                nested = next((k for k in other if _nests(key, k)), None)
                if nested is not None:
                    raise UserError(f"{where}: {section}.{key} overlaps {nested} in {what}: one sets part "
                                    "of the other")
            nested = next((k for k in axes if k != key and _nests(key, k)), None)
            if nested is not None:
                raise UserError(f"{where}: {section}.{key} overlaps {section}.{nested}: one sets part of the "
                                "other")


def _nests(key: str, other: str) -> bool:
    """Whether one dotted key lies inside the other (``model.cascade`` and ``model.cascade.num_stages``)."""
    return other.startswith(key + ".") or key.startswith(other + ".")


def _base(data: Mapping[str, Any], grid: Mapping[str, Any], zipped: Mapping[str, Any],
          where: str) -> str | None:
    """The ``base`` model config; a suite needs it unless ``config`` is an axis."""
    base = data.get("base")
    if "base" in data and not isinstance(base, str):
        raise UserError(f"{where}: base: must be a config path, got {base!r}")
    if "config" not in grid and "config" not in zipped and not base:
        raise UserError(f"{where}: no model config: give `base` or a `config` axis")
    if base and ("config" in grid or "config" in zipped):
        raise UserError(f"{where}: base: the `config` axis names every run's model config; drop one of them")
    return base


def _expand_runs(name: str, sections: _Sections, where: str, build_models: bool,
                 world_size: int = 1) -> list[RunSpec]:
    """One RunSpec per axis combination and seed, in that order; two runs with one id are an error."""
    resolver = _Resolver(where)
    runs: list[RunSpec] = []
    seen: dict[str, RunSpec] = {}
    for axes in sections.combinations():
        config = str(axes.get("config", sections.base))
        settings = {k: v for k, v in axes.items() if k != "config"}
        variant = ", ".join(f"{k}={_label(v)}" for k, v in settings.items())
        cfg, run_options = resolver.resolve(config, {**sections.options, **settings, **sections.extra})
        if build_models:
            resolver.build_model(f"{config}{' with ' + variant if variant else ''}", cfg)
        ann, images = _test_files(cfg)
        for seed in sections.seeds:
            spec = RunSpec(suite=name, run_id=run_id(cfg, seed, world_size), config=config,
                           cfg_options=run_options,
                           axes=dict(axes), seed=seed, variant=variant, test_ann_file=ann,
                           test_img_dir=images, metrics=sections.metrics, cfg=cfg)
            if spec.run_id in seen:
                raise UserError(f"{where}: runs [{seen[spec.run_id].label}] and [{spec.label}] resolve to "
                                "the same config and seed")
            seen[spec.run_id] = spec
            runs.append(spec)
    if sections.start_from:
        return _started_from(runs, sections.start_from, resolver, world_size, where)
    return runs


def _started_from(runs: list[RunSpec], entries: list[StartFrom], resolver: _Resolver, world_size: int,
                  where: str) -> list[RunSpec]:
    """The runs with those of each ``start_from`` entry's config linked to their starting run (the run of the
    entry's ``from`` config with the same seed and other axis values) and placed after every other run, so
    that the runs they start from are scheduled first."""
    entry_of = {entry.config: entry for entry in entries}

    def key(spec: RunSpec, config: str) -> tuple[str, int, str]:
        others = {k: v for k, v in spec.axes.items() if k != "config"}
        return config, spec.seed, json.dumps(others, sort_keys=True, default=repr)

    by_key = {key(spec, spec.config): spec for spec in runs}
    linked = []
    for spec in runs:
        entry = entry_of.get(spec.config)
        if entry is None:
            continue
        source = by_key.get(key(spec, entry.source))
        if source is None:
            raise UserError(f"{where}: start_from: run [{spec.label}] has no run of {entry.source} with its "
                            "seed and axis values to start from")
        options = {**spec.cfg_options, **init_option(entry, source.run_id)}
        cfg, options = resolver.resolve(spec.config, options)
        if not _is_module(cfg, entry.module):
            raise UserError(f"{where}: start_from.module: {entry.module} is not a module of {spec.config} (a "
                            "config mapping with a type)")
        linked.append(replace(spec, run_id=run_id(cfg, spec.seed, world_size), cfg_options=options, cfg=cfg))
    return [spec for spec in runs if spec.config not in entry_of] + linked


def _is_module(cfg: Any, dotted: str) -> bool:
    """Whether ``dotted`` names a module of the model in ``cfg`` (``model`` or below it, a mapping with a
    ``type``): what mmengine's ``init_weights`` initialises from an ``init_cfg``."""
    if dotted != "model" and not dotted.startswith("model."):
        return False
    value = cfg
    for part in dotted.split("."):
        value = value.get(part) if hasattr(value, "get") else None
    return isinstance(value, Mapping) and "type" in value


def read_suite_file(path: Path) -> dict[str, Any]:
    """The YAML mapping of a suite file; malformed YAML, duplicate keys and unknown sections are one line."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or one_line(exc)
        raise UserError(f"suite {path}: malformed YAML{at}: {problem}") from exc
    except UnicodeDecodeError as exc:
        raise UserError(f"suite {path}: not UTF-8 text") from exc
    if not isinstance(data, dict):
        raise UserError(f"suite {path}: expected a mapping of {', '.join(SUITE_KEYS)}")
    unknown = [key for key in data if key not in SUITE_KEYS]
    if unknown:
        raise UserError(f"suite {suite_name(path)}: unknown section {unknown[0]!r} "
                        f"(expected {', '.join(SUITE_KEYS)})")
    return data


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML silently keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in keys:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (YAML would keep only the last)", key_node.start_mark)
            keys.add(key)
        return super().construct_mapping(node, deep=deep)


def run_id(cfg: Any, seed: int, world_size: int = 1) -> str:
    """12 hex digits of sha256 over the resolved config (neutral keys dropped, sorted JSON), the seed and,
    above 1, the number of GPUs the run trains on (so that the ids of one-device runs stay what they were)."""
    data = cfg.to_dict() if hasattr(cfg, "to_dict") else copy.deepcopy(dict(cfg))
    for key in NEUTRAL_KEYS:
        *parents, last = key.split(".")
        node = data
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    key: dict[str, Any] = {"config": data, "seed": int(seed)}
    if world_size > 1:
        key["world_size"] = int(world_size)
    text = json.dumps(key, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:ID_LENGTH]


class _Resolver:
    """Loads each config once, checks the option keys and value types against it, caches resolved configs."""

    def __init__(self, where: str) -> None:
        self.where = where
        self._raw: dict[str, Any] = {}
        self._built: set[str] = set()

    def raw(self, config: str) -> Any:
        if config not in self._raw:
            from mnc_bench.config_loading import load_config

            if not Path(config).is_file():
                raise UserError(f"{self.where}: config {config} not found")
            self._raw[config] = load_config(config)
        return self._raw[config]

    def resolve(self, config: str, options: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
        """(resolved config, the options as applied): a mapping given for a key whose config value is not a
        mapping (e.g. ``proposal_control=None``, or a module's ``init_cfg=None`` inside a mapping) replaces it
        (mmengine's ``_delete_``) instead of failing."""
        from mnc_bench.config_loading import load_config

        raw = self.raw(config)
        applied = {}
        for key, value in options.items():
            current = _check_option(raw, key, value, f"{self.where}: {key}", config)
            applied[key] = _replacing(value, current)
        try:
            return load_config(config, applied), applied
        except UserError as exc:
            raise UserError(f"{self.where}: {config}: {exc}") from exc

    def build_model(self, what: str, cfg: Any) -> None:
        """Build the model once per distinct model dict: catches values only the model checks."""
        key = json.dumps(cfg.to_dict().get("model"), sort_keys=True, default=repr)
        if key in self._built:
            return
        from mmdet.registry import MODELS
        from mmengine.registry import DefaultScope

        from mnc_bench.preflight import check_buildable

        try:
            check_buildable(cfg, ("train", "test"))
            with DefaultScope.overwrite_default_scope(cfg.get("default_scope", "mmdet")):
                MODELS.build(copy.deepcopy(cfg.model))
        except UserError as exc:
            raise UserError(f"{self.where}: {what}: {exc}") from exc
        except (KeyError, TypeError, ValueError, AssertionError, AttributeError, RuntimeError) as exc:
            raise UserError(f"{self.where}: {what}: the model does not build: {type(exc).__name__}: "
                            f"{one_line(exc)}") from exc
        self._built.add(key)


_ABSENT = object()


def _replacing(value: Any, current: Any) -> Any:
    """``value`` marked (``_delete_``) to replace each config value it gives a mapping for that is not one;
    keys the config lacks are added as given."""
    if not isinstance(value, Mapping) or current is _ABSENT:
        return value
    if not isinstance(current, Mapping):
        return {**value, "_delete_": True}
    return {key: _replacing(item, current.get(key, _ABSENT)) for key, item in value.items()}


def _check_option(cfg: Any, key: str, value: Any, where: str, config: str) -> Any:
    """``key`` (dotted; digits index lists) must exist in ``cfg``; ``value`` must fit the type found there.
    Returns the config's current value."""
    node: Any = cfg._cfg_dict if hasattr(cfg, "_cfg_dict") else cfg
    walked = []
    for part in key.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            inside = f" ({'.'.join(walked)} has no {part!r})" if walked else ""
            raise UserError(f"{where}: unknown config key in {config}{inside}")
        walked.append(part)
    expected = _kind(node)
    given = _kind(value)
    if expected is None or given is None or expected == given:
        return node
    raise UserError(f"{where}: wrong type: {_label(value)} is {given}, {config} has {expected} "
                    f"({_label(node)})")


def _kind(value: Any) -> str | None:
    """Type family for the option check; None accepts anything (None in the config means 'unset')."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return None


def _axes(data: Mapping[str, Any], section: str, where: str) -> dict[str, list[Any]]:
    axes = _mapping(data.get(section), f"{where}: {section}")
    for key, values in axes.items():
        _require_config_key(key, f"{where}: {section}: axis key")
        if not isinstance(values, list):
            raise UserError(f"{where}: {section}.{key}: wrong type: expected a list of values, got "
                            f"{_label(values)}")
        if not values:
            raise UserError(f"{where}: {section}.{key}: empty axis")
        labels = [json.dumps(v, sort_keys=True, default=repr) for v in values]
        if section == "grid" and len(set(labels)) < len(labels):  # a zip column may repeat (rows differ)
            raise UserError(f"{where}: {section}.{key}: a value is listed twice")
        if key == "config" and not all(isinstance(v, str) for v in values):
            raise UserError(f"{where}: {section}.config: wrong type: values must be config paths")
    return axes


def _require_config_key(key: Any, what: str) -> None:
    """A dotted config key: a non-empty string that neither starts nor ends with a dot."""
    if not isinstance(key, str) or not key or key.startswith(".") or key.endswith("."):
        raise UserError(f"{what} {key!r} is not a config key")


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError(f"{where}: wrong type: expected a mapping, got {_label(value)}")
    return dict(value)


def _seeds(value: Any, where: str) -> list[int]:
    if not isinstance(value, list) or not value:
        raise UserError(f"{where}: seeds: expected a non-empty list of integers, got {_label(value)}")
    for seed in value:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise UserError(f"{where}: seeds: {seed!r} is not an integer from 0 to {MAX_SEED}")
    if len(set(value)) < len(value):
        raise UserError(f"{where}: seeds: a seed is listed twice")
    return list(value)


def _metrics(value: Any, where: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise UserError(f"{where}: metrics: expected a non-empty list of metric keys, got {_label(value)}")
    for key in value:
        if not isinstance(key, str) or not METRIC_PATTERN.match(key):
            raise UserError(f"{where}: metrics: {key!r} is not a metric key (e.g. coco/segm/AP, "
                            "voc_mnc/mAP@0.5, proposals/AR@100, vis/AP)")
        kind, _, name = key.partition("/")[2].partition("/")
        if key.startswith("coco/") and name not in (BOUNDARY_METRIC_NAMES if kind == "boundary"
                                                    else COCO_METRIC_NAMES):
            known = BOUNDARY_METRIC_NAMES if kind == "boundary" else COCO_METRIC_NAMES
            raise UserError(f"{where}: metrics: {key}: COCO {kind} metrics are {', '.join(known)}")
    if len(set(value)) < len(value):
        raise UserError(f"{where}: metrics: {next(k for k in value if value.count(k) > 1)} is listed twice")
    return list(value)


def _product(axes: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(axes)
    return [dict(zip(keys, values)) for values in itertools.product(*(axes[k] for k in keys))]


def _rows(axes: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    if not axes:
        return [{}]
    keys = list(axes)
    return [dict(zip(keys, values)) for values in zip(*(axes[k] for k in keys))]


def _test_files(cfg: Any) -> tuple[str, str]:
    from mnc_bench.preflight import dataset_files, leaf_datasets

    for dataset in leaf_datasets((cfg.get("test_dataloader") or {}).get("dataset")):
        ann, images = dataset_files(dataset)
        return str(ann or ""), str(images or "")
    return "", ""


def _label(value: Any) -> str:
    """Short readable text of an axis value (used in variant labels and messages)."""
    if isinstance(value, float) and math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return f"{value:.1f}"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, default=repr, separators=(", ", ": "))
    return str(value)
