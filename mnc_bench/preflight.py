"""Checks made before mmengine builds anything, so that what the user got wrong is one line naming it.

- the datasets the run reads exist and are valid (the synthetic shapes are generated when missing);
- pretrained weights are local files (nothing is downloaded);
- every ``type`` in the model config is registered (nested heads, losses, assigners, ...); the loop sections
  (``train_cfg``, ``val_cfg``, ``test_cfg``) hold the keys their loop class takes; the dataloader arguments
  obey torch's ``DataLoader`` rules.

Problems with config values are :class:`~mnc_bench.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import inspect
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from mnc_bench.checkpoints import DOWNLOAD_PREFIXES
from mnc_bench.errors import ConfigError, UserError

# Full content validation of an annotation file below this size (above it: layout only, the dataset
# class reads it anyway and a full check of COCO train would take minutes).
FULL_CHECK_MAX_BYTES = 64 * 1024 * 1024
# How long the other ranks of a distributed run wait for rank 0 to write a generated dataset.
GENERATED_WAIT_S = 1800
# The keys of a config's ``synthetic_shapes``.
SHAPES_SETTINGS = ("num_train", "num_val", "image_size", "seed")
# mmengine's Runner.build_dataloader takes these keys itself; every other key goes to torch's DataLoader.
_RUNNER_LOADER_KEYS = {"dataset", "sampler", "batch_sampler", "collate_fn", "worker_init_fn"}
# Loop arguments the Runner passes itself (not config keys).
_RUNNER_LOOP_ARGS = {"self", "runner", "dataloader", "evaluator"}


# --------------------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------------------

def require_sections(cfg, sections: Sequence[str], what: str) -> None:
    missing = [name for name in sections if not cfg.get(name)]
    if missing:
        raise UserError(f"config {cfg.filename}: cannot {what}, missing {', '.join(missing)}")


def leaf_datasets(dataset: Any) -> Iterator[Mapping[str, Any]]:
    """The dataset dicts that read files, through wrappers (RepeatDataset, ConcatDataset, ...)."""
    if not isinstance(dataset, Mapping):
        return
    if "datasets" in dataset:
        for inner in dataset["datasets"]:
            yield from leaf_datasets(inner)
    elif "dataset" in dataset:
        yield from leaf_datasets(dataset["dataset"])
    else:
        yield dataset


def dataset_files(dataset: Mapping[str, Any]) -> tuple[Path | None, Path | None]:
    """(annotation file, image directory) of a leaf dataset dict; None where the dict names none."""
    root = dataset.get("data_root") or ""
    ann = dataset.get("ann_file")
    prefixes = dataset.get("data_prefix") or {}
    prefix = prefixes.get("img", prefixes.get("img_path"))  # img_path: mmdet's video datasets
    ann_path = Path(os.path.join(root, ann)) if ann else None
    img_path = Path(os.path.join(root, prefix)) if prefix is not None else None
    return ann_path, img_path


def prepare_datasets(cfg, loaders: Sequence[str]) -> None:
    """Make sure the datasets the given dataloaders read exist and are valid; generate the synthetic shapes or
    clips if the config asks for them (``synthetic_shapes``, ``synthetic_videos``). Raises a UserError naming
    the expected layout."""
    from mnc_bench.data.check import require_valid_dataset
    from mnc_bench.suites.contract import launcher_rank

    rank = launcher_rank(cfg.get("launcher") or "none")
    shapes = cfg.get("synthetic_shapes")
    if shapes and cfg.get("data_root"):
        ensure_generated(cfg.data_root, shapes_writer(shapes), rank=rank, what="the synthetic shapes dataset")
    videos = cfg.get("synthetic_videos")
    if videos and cfg.get("data_root"):
        from mnc_bench.data.video import video_writer

        ensure_generated(cfg.data_root, video_writer(videos), rank=rank, what="the synthetic shapes clips")
    layout = cfg.get("dataset_layout") or "a COCO-format annotation file and its image directory"
    checked: set[tuple[str, str]] = set()
    for loader in loaders:
        for dataset in leaf_datasets((cfg.get(loader) or {}).get("dataset")):
            ann, images = dataset_files(dataset)
            if ann is None or (str(ann), str(images)) in checked:
                continue
            checked.add((str(ann), str(images)))
            if not ann.is_file():
                raise UserError(f"{loader}: annotation file {ann} not found; expected {layout} "
                                f"(set the location with --cfg-options data_root=DIR/)")
            if images is not None and not images.is_dir():
                raise UserError(f"{loader}: image directory {images} not found; expected {layout} "
                                f"(set the location with --cfg-options data_root=DIR/)")
            if ann.stat().st_size <= FULL_CHECK_MAX_BYTES:
                require_valid_dataset(ann, images)


# Writes a generated dataset to a folder (the first argument); the second says whether to replace a partial
# one there. Returns the summary lines to print.
DatasetWriter = Callable[[Path, bool], str]


def ensure_generated(root: str | os.PathLike[str], write: DatasetWriter, *, rank: int = 0,
                     what: str = "the generated dataset") -> bool:
    """Write a generated dataset at ``root`` unless a complete one is there; True if this process wrote it.

    Complete means both annotation files exist (the writers rename the whole folder into place). A folder
    holding only part of the layout (``annotations/``, ``train/``, ``val/``) is written again; any other
    existing folder, empty or not, is left alone for the dataset checks to report. Rank 0 of a distributed run
    writes and the other ranks wait for it; independent processes that write at once keep the first complete
    copy (:func:`~mnc_bench.data.synthetic.build_atomically`).
    """
    from mnc_bench.data.synthetic import DATASET_SPLITS

    root = Path(root)
    markers = [root / "annotations" / f"instances_{split}.json" for split in DATASET_SPLITS]
    if all(marker.is_file() for marker in markers):
        return False
    entries = {entry.name for entry in root.iterdir()} if root.is_dir() else set()
    partial = bool(entries) and entries <= {"annotations", *DATASET_SPLITS}
    if root.exists() and not partial:
        return False
    if rank != 0:
        deadline = time.monotonic() + GENERATED_WAIT_S
        while not all(marker.is_file() for marker in markers):
            if time.monotonic() > deadline:
                raise UserError(f"waited {GENERATED_WAIT_S // 60} min for rank 0 to write {what} to {root}")
            time.sleep(2)
        return False
    print(f"mnc-bench: writing {what} to {root} ...", file=sys.stderr, flush=True)
    print(write(root, partial), file=sys.stderr, flush=True)
    return True


def shapes_writer(settings: Mapping[str, Any]) -> DatasetWriter:
    """The writer of the shapes dataset a config's ``synthetic_shapes`` describes (keys:
    :data:`SHAPES_SETTINGS`)."""
    from mnc_bench.data.synthetic import ShapesConfig, write_shapes_dataset

    for key in settings:
        if key not in SHAPES_SETTINGS:
            raise ConfigError(
                f"synthetic_shapes.{key}: unknown setting (it takes {', '.join(SHAPES_SETTINGS)})")
    counts = {key: int(settings[key]) for key in ("num_train", "num_val") if key in settings}
    config = ShapesConfig(**{key: int(settings[key]) for key in ("image_size", "seed") if key in settings})

    def write(root: Path, overwrite: bool) -> str:
        return write_shapes_dataset(root, **counts, config=config, overwrite=overwrite)

    return write


# --------------------------------------------------------------------------------------------------------
# Pretrained weights
# --------------------------------------------------------------------------------------------------------

def check_pretrained_weights(cfg) -> None:
    """Pretrained weights come from local files only: refuse URLs, name missing files, expand '~'.

    ``init_cfg=dict(type='Pretrained', checkpoint=None)`` means: train that part from scratch.
    """
    def visit(node: Any, where: str) -> None:
        if isinstance(node, Mapping):
            init_cfg = node.get("init_cfg")
            for item in (init_cfg if isinstance(init_cfg, list) else [init_cfg]):
                if isinstance(item, Mapping) and item.get("type") == "Pretrained":
                    _check_pretrained_entry(node, item, f"{where}.init_cfg")
            for key, value in node.items():
                if key != "init_cfg":
                    visit(value, f"{where}.{key}")
        elif isinstance(node, (list, tuple)):
            for index, value in enumerate(node):
                visit(value, f"{where}[{index}]")

    visit(cfg.model, "model")


def _check_pretrained_entry(owner, init_cfg, where: str) -> None:
    checkpoint = init_cfg.get("checkpoint")
    if checkpoint is None:  # from scratch
        if isinstance(owner.get("init_cfg"), list):
            owner["init_cfg"] = [item for item in owner["init_cfg"] if item is not init_cfg] or None
        else:
            owner["init_cfg"] = None
        return
    checkpoint = str(checkpoint)
    if checkpoint.startswith(DOWNLOAD_PREFIXES):
        raise UserError(f"{where}: {checkpoint} would be downloaded; mnc-bench reads pretrained weights from "
                        "local files only (save the file and pass --cfg-options backbone_checkpoint=PATH)")
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise UserError(f"pretrained weights {path} not found ({where}); put torchvision's ImageNet "
                        "checkpoint there or pass --cfg-options backbone_checkpoint=PATH "
                        "(backbone_checkpoint=None trains the backbone from scratch)")
    init_cfg["checkpoint"] = str(path)


# --------------------------------------------------------------------------------------------------------
# What the Runner builds: model type, loops, dataloaders
# --------------------------------------------------------------------------------------------------------

def check_buildable(cfg, phases: Sequence[str]) -> None:
    """Check the model type, and the loop section and dataloader of each phase ('train', 'val', 'test')
    against what mmengine and torch accept, before the Runner builds anything."""
    check_types(cfg.model, "model")
    for phase in ("train", "val", "test"):
        # mmengine needs a phase's three sections together or not at all.
        sections = [f"{phase}_dataloader", f"{phase}_cfg", "optim_wrapper" if phase == "train" else
                    f"{phase}_evaluator"]
        given = [name for name in sections if cfg.get(name) is not None]
        if given and len(given) < 3:
            missing = next(name for name in sections if name not in given)
            raise ConfigError(f"{missing}: needed with {' and '.join(given)} (set all three or none to None)")
    for phase in phases:
        check_loop(cfg, f"{phase}_cfg")
        check_dataloader(cfg, f"{phase}_dataloader")


def check_types(node: Any, where: str) -> None:
    """Every ``type`` in the model config, at any depth, names something mmdet can build: a model part
    (MODELS, e.g. heads, losses, layers), a task utility (TASK_UTILS: assigners, samplers, coders, anchor
    generators), a weight initialiser, or an mmcv op looked up by name (``RoIAlign``, ``nms``). A typo in a
    nested type would otherwise surface as a KeyError deep inside the Runner's model build."""
    import mmcv.ops
    from mmdet.registry import MODELS, TASK_UTILS
    from mmengine.registry import WEIGHT_INITIALIZERS

    if isinstance(node, Mapping):
        kind = node.get("type")
        if isinstance(kind, str) and not hasattr(mmcv.ops, kind) and all(
                registry.get(kind) is None for registry in (MODELS, TASK_UTILS, WEIGHT_INITIALIZERS)):
            raise ConfigError(f"{where}.type: unknown type {kind!r} (not in mmdet's registries)")
        for key, value in node.items():
            check_types(value, f"{where}.{key}")
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            check_types(value, f"{where}[{index}]")


def check_loop(cfg, section: str) -> None:
    """``train_cfg`` / ``val_cfg`` / ``test_cfg`` against the ``__init__`` of the loop class mmengine will
    build."""
    from mmdet.registry import LOOPS
    from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop, TestLoop, ValLoop

    loop = cfg.get(section)
    if not isinstance(loop, Mapping):
        raise ConfigError(f"{section}: must be a dict, got {loop!r}")
    keys = dict(loop)
    if "type" in keys:
        if section == "train_cfg" and "by_epoch" in keys:
            raise ConfigError(f"{section}.by_epoch: give either {section}.type or {section}.by_epoch, not "
                              "both")
        loop_type = keys.pop("type")
        loop_class = LOOPS.get(loop_type) if isinstance(loop_type, str) else loop_type
        if loop_class is None:
            raise ConfigError(f"{section}.type: unknown loop type {loop_type!r} (not in mmengine's LOOPS "
                              "registry)")
    elif section == "train_cfg":
        if "by_epoch" not in keys:
            raise ConfigError(f"{section}: needs a `type` (e.g. 'IterBasedTrainLoop') or `by_epoch`")
        loop_class = EpochBasedTrainLoop if keys.pop("by_epoch") else IterBasedTrainLoop
    else:
        loop_class = ValLoop if section == "val_cfg" else TestLoop
    parameters = inspect.signature(loop_class.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    accepted = [name for name, p in parameters.items() if name not in _RUNNER_LOOP_ARGS
                and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    for key in keys:
        if key not in accepted and not takes_any:
            raise ConfigError(f"{section}.{key}: {loop_class.__name__} takes no {key!r} "
                              f"(it takes {', '.join(accepted) or 'no keys'})")
    for name in accepted:
        if parameters[name].default is inspect.Parameter.empty and name not in keys:
            raise ConfigError(f"{section}.{name}: required by {loop_class.__name__}")
    for key in ("max_epochs", "max_iters", "val_interval"):
        if key in keys and not _is_int(keys[key], minimum=1):
            raise ConfigError(f"{section}.{key}: must be a positive integer, got {keys[key]!r}")


def check_dataloader(cfg, name: str) -> None:
    """A dataloader dict against mmengine's ``Runner.build_dataloader`` and torch's ``DataLoader`` rules."""
    from torch.utils.data import DataLoader

    loader = cfg.get(name)
    if not isinstance(loader, Mapping):
        raise ConfigError(f"{name}: must be a dict, got {loader!r}")
    for key in ("dataset", "sampler"):
        if not loader.get(key):
            raise ConfigError(f"{name}.{key}: required")
    parameters = inspect.signature(DataLoader.__init__).parameters
    accepted = set(parameters) - {"self"} - _RUNNER_LOADER_KEYS
    for key in loader:
        if key not in accepted | _RUNNER_LOADER_KEYS:
            raise ConfigError(f"{name}.{key}: not an argument of torch's DataLoader "
                              f"(it takes {', '.join(sorted(accepted))})")
    if not _is_int(loader.get("batch_size", 1), minimum=1):
        raise ConfigError(f"{name}.batch_size: must be a positive integer, got {loader['batch_size']!r}")
    workers = loader.get("num_workers", 0)
    if not _is_int(workers, minimum=0):
        raise ConfigError(f"{name}.num_workers: must be a non-negative integer, got {workers!r}")
    if workers == 0:
        for key in ("persistent_workers", "prefetch_factor", "multiprocessing_context"):
            if loader.get(key) not in (None, False):
                raise ConfigError(f"{name}.{key}: needs {name}.num_workers > 0 (it is 0); drop {key} or set "
                                  "num_workers")
    timeout = loader.get("timeout", 0)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout < 0:
        raise ConfigError(f"{name}.timeout: must be a non-negative number, got {timeout!r}")
    # mmengine hands torch either its sampler or, when there is a batch_sampler, that one (with batch_size).
    if loader.get("batch_sampler"):
        for key in ("shuffle", "drop_last"):
            if loader.get(key):
                raise ConfigError(f"{name}.{key}: torch's DataLoader does not take it with a batch_sampler "
                                  f"({name}.batch_sampler)")
    elif loader.get("shuffle"):
        raise ConfigError(f"{name}.shuffle: torch's DataLoader does not take it with a sampler; "
                          f"set {name}.sampler.shuffle instead")


def _is_int(value: Any, *, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum
