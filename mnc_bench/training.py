"""The one training and evaluation path: config -> checks -> mmengine Runner -> train / test.

Every model (MNC, Mask R-CNN, PANet) goes through :func:`train` and :func:`evaluate_checkpoint`, so the dataset
pipeline, schedule, evaluator and checkpointing are the same code for all of them. Before anything is built:

- the configs' registrations are imported (mmdet, PANet's modules, MNC's adapter, the evaluation metric);
- ``--cfg-options`` overrides of top-level variables (``data_root=...``, ``backbone_checkpoint=...``) reach
  every value the config derived from them;
- the datasets are checked (the synthetic shapes are generated if their root does not exist yet);
- nothing will be downloaded: pretrained weights must be local files.

Every problem with what the user gave us is a one-line :class:`~mnc_bench.errors.UserError`.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnc_bench.errors import UserError

LAUNCHERS = ("none", "pytorch", "slurm")
# Full content validation of an annotation file below this size (above it: layout only, the dataset
# class reads it anyway and a full check of COCO train would take minutes).
FULL_CHECK_MAX_BYTES = 64 * 1024 * 1024
# Pretrained checkpoints given as URLs or mmengine prefixes would be downloaded: refused.
DOWNLOAD_PREFIXES = ("http://", "https://", "torchvision://", "open-mmlab://", "openmmlab://", "mmcls://",
                     "mmpretrain://", "modelzoo://", "s3://", "pavi://")


@dataclass
class RunResult:
    """What a train or test run leaves behind."""

    work_dir: Path
    metrics: dict[str, float] = field(default_factory=dict)
    checkpoint: Path | None = None  # train: the last checkpoint saved
    predictions: Path | None = None  # test with out=...: the COCO results file


# --------------------------------------------------------------------------------------------------------
# Registrations and checkpoint loading
# --------------------------------------------------------------------------------------------------------

def import_registrations() -> None:
    """Register mmdet's modules, PANet's modules, MNC's adapter and the evaluation metric (idempotent)."""
    from mmdet.utils import register_all_modules

    register_all_modules(init_default_scope=False)
    _import_baselines()
    importlib.import_module("mnc_bench.evaluation.mmdet_registry")
    try:
        importlib.import_module("mnc_bench.models.mmdet_adapter")
    except ModuleNotFoundError as exc:  # MNC not present in this checkout: only MNC configs fail (named)
        if exc.name != "mnc_bench.models.mmdet_adapter":
            raise


def _import_baselines() -> None:
    """``mnc_bench.baselines`` is the repository's ``baselines/`` (setup.py maps it); from an uninstalled
    source tree, load that directory under the same name."""
    try:
        importlib.import_module("mnc_bench.baselines")
        return
    except ModuleNotFoundError as exc:
        if exc.name != "mnc_bench.baselines":
            raise
    import mnc_bench

    package_dir = Path(mnc_bench.__file__).resolve().parents[1] / "baselines"
    spec = importlib.util.spec_from_file_location(
        "mnc_bench.baselines", package_dir / "__init__.py", submodule_search_locations=[str(package_dir)])
    if spec is None or spec.loader is None:
        raise ImportError(f"mnc_bench.baselines is not installed and {package_dir} is missing")
    module = importlib.util.module_from_spec(spec)
    sys.modules["mnc_bench.baselines"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["mnc_bench.baselines"]
        raise
    mnc_bench.baselines = module  # type: ignore[attr-defined]


def allow_mmengine_checkpoint_globals() -> None:
    """Let ``torch.load(weights_only=True)`` (torch >= 2.6's default) read mmengine's own checkpoints.

    mmengine 0.10 saves its message hub beside the weights: ``HistoryBuffer`` objects (numpy arrays, and their
    statistics methods pickled as ``getattr(HistoryBuffer, 'mean')``) and numpy scalars in the runtime info.
    The safe unpickler rejects those, so ``resume`` and ``load_from`` fail. We allowlist exactly these globals
    instead of turning ``weights_only`` off (which would let a checkpoint run arbitrary code). ``getattr`` in
    particular is NOT allowed: the name resolves to :func:`_history_buffer_method`, which hands out only
    HistoryBuffer's registered statistics methods.
    """
    import numpy as np
    import torch
    from mmengine.logging.history_buffer import HistoryBuffer

    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar  # type: ignore[no-redef]
    # A pickled dtype is rebuilt as np.dtype(...) and then given its state, which needs its class
    # (numpy.dtypes.Float64DType, ...): allow the classes of numpy's built-in numeric/bool/str dtypes.
    dtype_classes = sorted({type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDGUS"}, key=lambda c: c.__name__)
    torch.serialization.add_safe_globals([
        HistoryBuffer,
        np.ndarray,
        np.dtype,
        *dtype_classes,
        # numpy 2 writes numpy._core.*, numpy 1 wrote numpy.core.*: accept checkpoints from either.
        (_reconstruct, "numpy._core.multiarray._reconstruct"),
        (_reconstruct, "numpy.core.multiarray._reconstruct"),
        (scalar, "numpy._core.multiarray.scalar"),
        (scalar, "numpy.core.multiarray.scalar"),
        (_history_buffer_method, "builtins.getattr"),
    ])


def _history_buffer_method(owner: Any, name: str) -> Any:
    """Stands in for ``getattr`` while unpickling: only ``HistoryBuffer.<registered statistics method>``."""
    from mmengine.logging.history_buffer import HistoryBuffer

    # The four built-in statistics (registered on first use) and any registered with register_statistics.
    allowed = {"min", "max", "mean", "current", *HistoryBuffer._statistics_methods}
    if owner is HistoryBuffer and isinstance(name, str) and name in allowed:
        return getattr(HistoryBuffer, name)
    import pickle

    raise pickle.UnpicklingError(f"checkpoint asks for getattr({owner!r}, {name!r}); only HistoryBuffer's "
                                 "statistics methods are allowed")


# --------------------------------------------------------------------------------------------------------
# Config loading and checks
# --------------------------------------------------------------------------------------------------------

def parse_cfg_options(options: Mapping[str, Any] | Sequence[str] | None) -> dict[str, Any]:
    """``["a.b=1", "c=[1,2]"]`` (CLI form, values parsed as mmengine's ``--cfg-options`` does) or a mapping."""
    if options is None:
        return {}
    if isinstance(options, Mapping):
        return dict(options)
    from mmengine.config import DictAction

    parsed: dict[str, Any] = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--cfg-options: expected KEY=VALUE, got {item!r}")
        parsed[key] = DictAction._parse_iterable(value)
    return parsed


def load_config(config: str | os.PathLike[str], cfg_options: Mapping[str, Any] | Sequence[str] | None = None):
    """Read an mmdet-style config (``_base_`` inheritance) and apply ``cfg_options``.

    A top-level string variable overridden here (``data_root``, ``backbone_checkpoint``) is also replaced
    where the config used it: in values equal to the old value and, for directory values ending in '/', in
    paths starting with it (``data_root + 'annotations/...'``).
    """
    from mmengine.config import Config

    path = Path(config)
    if not path.is_file():
        raise UserError(f"config {path} not found")
    if path.suffix != ".py":
        raise UserError(f"config {path}: expected an mmdet-style Python config (.py)")
    import_registrations()
    try:
        # format_python_code=False: yapf-formatting the config text costs seconds at every checkpoint save.
        cfg = Config.fromfile(str(path), format_python_code=False)
    except Exception as exc:  # a config is Python: whatever reading it raises is a problem with the config
        raise UserError(f"config {path}: {type(exc).__name__}: {_one_line(exc)}") from exc
    options = parse_cfg_options(cfg_options)
    renamed = {key: (cfg[key], value) for key, value in options.items()
               if "." not in key and isinstance(cfg.get(key), str) and cfg[key] != value}
    try:
        cfg.merge_from_dict(options)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise UserError(f"--cfg-options: {_one_line(exc)}") from exc
    for key, (old, new) in renamed.items():
        _replace_variable(cfg._cfg_dict, old, new, skip=key)
    if not isinstance(cfg.get("model"), Mapping) or "type" not in cfg.model:
        raise UserError(f"config {path}: needs a `model` dict with a `type`")
    if "data_preprocessor" in cfg and cfg.model.get("data_preprocessor") != cfg.data_preprocessor:
        raise UserError(f"config {path}: model.data_preprocessor differs from the dataset's data_preprocessor "
                        "(normalisation and padding must be identical across compared models; "
                        "set `model = dict(data_preprocessor=_base_.data_preprocessor)` and override both)")
    return cfg


def _replace_variable(node: Any, old: str, new: Any, skip: str) -> None:
    """Replace ``old`` by ``new`` in the string values of a nested config (in place)."""
    prefix_old = old if old.endswith("/") else None
    prefix_new = None if new is None or prefix_old is None else str(new).rstrip("/") + "/"

    def convert(value: Any) -> Any:
        if isinstance(value, str):
            if value == old:
                return new
            if prefix_old and prefix_new is not None and value.startswith(prefix_old):
                return prefix_new + value[len(prefix_old):]
            return value
        if isinstance(value, (list, tuple)):
            return type(value)(convert(item) for item in value)
        if isinstance(value, dict):
            for key in list(value):
                value[key] = convert(value[key])
        return value

    for key in list(node):
        if key != skip:
            node[key] = convert(node[key])


def _one_line(exc: BaseException) -> str:
    # KeyError's str() quotes its message; show the message itself.
    text = exc.args[0] if isinstance(exc, KeyError) and len(exc.args) == 1 else str(exc)
    text = str(text).strip() or type(exc).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " ".join(lines)[:500]


def _require_sections(cfg, sections: Sequence[str], what: str) -> None:
    missing = [name for name in sections if not cfg.get(name)]
    if missing:
        raise UserError(f"config {cfg.filename}: cannot {what}, missing {', '.join(missing)}")


def _leaf_datasets(dataset: Any) -> Iterator[Mapping[str, Any]]:
    """The dataset dicts that read files, through wrappers (RepeatDataset, ConcatDataset, ...)."""
    if not isinstance(dataset, Mapping):
        return
    if "datasets" in dataset:
        for inner in dataset["datasets"]:
            yield from _leaf_datasets(inner)
    elif "dataset" in dataset:
        yield from _leaf_datasets(dataset["dataset"])
    else:
        yield dataset


def _dataset_files(dataset: Mapping[str, Any]) -> tuple[Path | None, Path | None]:
    root = dataset.get("data_root") or ""
    ann = dataset.get("ann_file")
    prefix = (dataset.get("data_prefix") or {}).get("img")
    ann_path = Path(os.path.join(root, ann)) if ann else None
    img_path = Path(os.path.join(root, prefix)) if prefix is not None else None
    return ann_path, img_path


def prepare_datasets(cfg, loaders: Sequence[str]) -> None:
    """Make sure the datasets the given dataloaders read exist and are valid; generate the shapes if asked.

    Raises a UserError naming the expected layout before any model is built.
    """
    from mnc_bench.data.check import require_valid_dataset

    _maybe_generate_shapes(cfg)
    layout = cfg.get("dataset_layout") or "a COCO-format annotation file and its image directory"
    checked: set[tuple[str, str]] = set()
    for loader in loaders:
        for dataset in _leaf_datasets((cfg.get(loader) or {}).get("dataset")):
            ann, images = _dataset_files(dataset)
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


def _maybe_generate_shapes(cfg) -> None:
    """The synthetic shapes are the one dataset we create: when its root does not exist yet."""
    spec = cfg.get("synthetic_shapes")
    root = cfg.get("data_root")
    if not spec or not root or Path(root).exists():
        return
    from mnc_bench.data.synthetic import ShapesConfig, write_shapes_dataset

    if int(os.environ.get("RANK", "0")) != 0:  # distributed: rank 0 writes, the others wait for it
        marker = Path(root) / "annotations" / "instances_val.json"
        deadline = time.monotonic() + 1800
        while not marker.is_file():
            if time.monotonic() > deadline:
                raise UserError(f"waited 30 min for rank 0 to write the shapes dataset to {root}")
            time.sleep(2)
        return
    spec = dict(spec)
    config = ShapesConfig(image_size=int(spec.pop("image_size", 128)), seed=int(spec.pop("seed", 0)))
    print(f"mnc-bench: writing the synthetic shapes dataset to {root} ...", file=sys.stderr, flush=True)
    summary = write_shapes_dataset(root, num_train=int(spec.pop("num_train", 1000)),
                                   num_val=int(spec.pop("num_val", 200)), config=config)
    print(summary, file=sys.stderr, flush=True)


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
        raise UserError(f"pretrained weights {path} not found ({where}); put torchvision's ImageNet checkpoint "
                        "there or pass --cfg-options backbone_checkpoint=PATH (backbone_checkpoint=None trains "
                        "the backbone from scratch)")
    init_cfg["checkpoint"] = str(path)


def _check_checkpoint_file(path: str | os.PathLike[str], what: str) -> str:
    text = str(path)
    if text.startswith(DOWNLOAD_PREFIXES):
        raise UserError(f"{what} {text} would be downloaded; give a local checkpoint file")
    if not Path(text).expanduser().is_file():
        raise UserError(f"{what} {text} not found")
    return str(Path(text).expanduser())


def _configure_run(cfg, *, work_dir, launcher: str) -> None:
    if launcher not in LAUNCHERS:
        raise UserError(f"launcher must be one of {', '.join(LAUNCHERS)}, got {launcher!r}")
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = str(work_dir)
    elif not cfg.get("work_dir"):
        cfg.work_dir = str(Path("work_dirs") / Path(cfg.filename).stem)
    if launcher != "none":
        import torch

        if not torch.cuda.is_available():  # mmengine's distributed init binds each process to a CUDA device
            raise UserError(f"--launcher {launcher} needs GPUs (one process per GPU); on CPU use --launcher none")


def _build_runner(cfg):
    from mmengine.runner import Runner

    model_type = cfg.model.get("type")
    try:
        return Runner.from_cfg(cfg)
    except (KeyError, TypeError, ValueError, AssertionError, AttributeError) as exc:
        if isinstance(exc, KeyError) and model_type == "MNC" and "MNC" in str(exc):
            raise UserError("model type 'MNC' is not registered: mnc_bench.models.mmdet_adapter failed to "
                            "import or is missing") from exc
        raise UserError(f"config {cfg.filename}: cannot build the run: {type(exc).__name__}: {_one_line(exc)}") from exc


# --------------------------------------------------------------------------------------------------------
# Train and test
# --------------------------------------------------------------------------------------------------------

def train(
    config: str | os.PathLike[str],
    *,
    work_dir: str | os.PathLike[str] | None = None,
    cfg_options: Mapping[str, Any] | Sequence[str] | None = None,
    seed: int | None = None,
    deterministic: bool = False,
    resume: bool = False,
    resume_from: str | os.PathLike[str] | None = None,
    load_from: str | os.PathLike[str] | None = None,
    launcher: str = "none",
) -> RunResult:
    """Train ``config`` with mmengine's Runner; validate as the schedule says; return the last val metrics.

    ``resume=True`` continues from the latest checkpoint in ``work_dir`` (model, optimizer, schedulers,
    iteration); ``resume_from=PATH`` from that checkpoint. ``load_from=PATH`` only initialises the weights.
    At most one of the three may be given.
    """
    cfg = load_config(config, cfg_options)
    _require_sections(cfg, ("train_dataloader", "train_cfg", "optim_wrapper"), "train")
    _configure_run(cfg, work_dir=work_dir, launcher=launcher)
    if seed is not None or deterministic:
        randomness = dict(cfg.get("randomness") or {})
        if seed is not None:
            randomness["seed"] = int(seed)
        randomness["deterministic"] = bool(deterministic)
        cfg.randomness = randomness
    given = [name for name, value in (("resume", resume), ("resume_from", resume_from), ("load_from", load_from))
             if value not in (False, None)]
    if len(given) > 1:
        raise UserError(f"give at most one of resume, resume_from and load_from, got {' and '.join(given)}")
    cfg.resume = bool(resume) or resume_from is not None
    if resume:
        latest = Path(cfg.work_dir) / "last_checkpoint"
        if not latest.is_file():
            raise UserError(f"--resume: no checkpoint to resume in {cfg.work_dir} (no last_checkpoint file)")
        cfg.load_from = None
    elif resume_from is not None:
        cfg.load_from = _check_checkpoint_file(resume_from, "resume checkpoint")
    elif load_from is not None:
        cfg.load_from = _check_checkpoint_file(load_from, "load_from checkpoint")
    elif cfg.get("load_from"):
        cfg.load_from = _check_checkpoint_file(cfg.load_from, "load_from checkpoint")
    loaders = ["train_dataloader"] + (["val_dataloader"] if cfg.get("val_cfg") and cfg.get("val_dataloader") else [])
    prepare_datasets(cfg, loaders)
    check_pretrained_weights(cfg)
    allow_mmengine_checkpoint_globals()
    runner = _build_runner(cfg)
    runner.train()
    metrics = {key[len("val/"):]: float(buffer.current()) for key, buffer in runner.message_hub.log_scalars.items()
               if key.startswith("val/") and key not in ("val/time", "val/data_time")}
    last = Path(cfg.work_dir) / "last_checkpoint"
    checkpoint = Path(last.read_text().strip()) if last.is_file() else None
    return RunResult(work_dir=Path(cfg.work_dir), metrics=metrics, checkpoint=checkpoint)


def evaluate_checkpoint(
    config: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] | None = None,
    work_dir: str | os.PathLike[str] | None = None,
    cfg_options: Mapping[str, Any] | Sequence[str] | None = None,
    launcher: str = "none",
) -> RunResult:
    """Evaluate ``checkpoint`` on the config's test split; ``out`` receives a COCO results list
    (``image_id, category_id, score, bbox [x, y, w, h], segmentation`` RLE with str counts)."""
    cfg = load_config(config, cfg_options)
    _require_sections(cfg, ("test_dataloader", "test_evaluator", "test_cfg"), "test")
    _configure_run(cfg, work_dir=work_dir, launcher=launcher)
    checkpoint = _check_checkpoint_file(checkpoint, "checkpoint")
    cfg.load_from = None  # loaded below, strictly: a checkpoint of another model must not evaluate silently
    cfg.resume = False
    if out is not None:
        out = Path(out)
        if out.suffix != ".json":
            raise UserError(f"--out {out}: the results file must end in .json")
        _add_results_file(cfg, out)
    prepare_datasets(cfg, ["test_dataloader"])
    allow_mmengine_checkpoint_globals()
    runner = _build_runner(cfg)
    try:
        runner.load_checkpoint(checkpoint, map_location="cpu", strict=True)
    except RuntimeError as exc:
        raise UserError(f"checkpoint {checkpoint} does not fit the model of {cfg.filename}: {_one_line(exc)}") from exc
    metrics = runner.test()
    return RunResult(work_dir=Path(cfg.work_dir), metrics={key: float(value) for key, value in metrics.items()},
                     predictions=out)


def _add_results_file(cfg, out: Path) -> None:
    """Have the test evaluator write the predictions: our metric writes them as it scores; for any other
    evaluator, add one of ours that only computes COCO AP."""
    evaluators = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) else [cfg.test_evaluator]
    ours = [item for item in evaluators if item.get("type") == "MNCBenchMetric"]
    if ours:
        ours[0]["results_file"] = str(out)
        return
    ann, _ = next((_dataset_files(d) for d in _leaf_datasets(cfg.test_dataloader.get("dataset"))), (None, None))
    if ann is None:
        raise UserError("--out needs the test dataset's annotation file (test_dataloader.dataset.ann_file)")
    cfg.test_evaluator = [*evaluators, dict(type="MNCBenchMetric", ann_file=str(ann), metric="coco",
                                            results_file=str(out))]


def format_metrics(metrics: Mapping[str, float]) -> str:
    """One ``key value`` line per metric, sorted."""
    return "\n".join(f"{key} {value:.4f}" for key, value in sorted(metrics.items()))
