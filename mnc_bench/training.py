"""The one training and evaluation path: config -> checks -> mmengine Runner -> train / test.

Every model (MNC, Mask R-CNN, PANet) goes through :func:`train` and :func:`evaluate_checkpoint`, so the
dataset pipeline, schedule, evaluator and checkpointing are the same code for all of them. Before anything is
built the config is read with every module registered (:mod:`mnc_bench.config_loading`) and checked
(:mod:`mnc_bench.preflight`: datasets, local pretrained weights, model type, loops, dataloaders); checkpoints
are read safely and only when whole (:mod:`mnc_bench.checkpoints`).

Every problem with what the user gave us is a one-line :class:`~mnc_bench.errors.UserError`; anything else
(a bug) keeps its traceback.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnc_bench import determinism
from mnc_bench.amp import TEST_OPTIONS, TRAIN_OPTIONS, add_loss_scale_hook, require_amp_device
from mnc_bench.checkpoints import (
    LAST_CHECKPOINT,
    allow_mmengine_checkpoint_globals,
    latest_good_checkpoint,
    require_local_checkpoint,
)
from mnc_bench.config_loading import load_config
from mnc_bench.errors import UserError, one_line
from mnc_bench.gpu import bind_task_device, require_mmcv_ops_for, training_device
from mnc_bench.preflight import (
    check_buildable,
    check_pretrained_weights,
    dataset_files,
    leaf_datasets,
    prepare_datasets,
    require_sections,
)
from mnc_bench.random_state import add_random_state_hook
from mnc_bench.suites.contract import LAUNCHERS

if TYPE_CHECKING:
    from mnc_bench.soft_masks import SoftMaskTarget

# The scored test passes of suites (final, proposal recall, corruptions) take one image per batch: mmdet pads
# the images of a batch to one size, which changes the detections and so AP.
SINGLE_IMAGE_TEST = {"test_dataloader.batch_size": 1}


@dataclass
class RunResult:
    """What a train or test run leaves behind."""

    work_dir: Path
    metrics: dict[str, float] = field(default_factory=dict)
    checkpoint: Path | None = None  # train: the last checkpoint saved
    predictions: Path | None = None  # test with out=...: the COCO results file


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
    amp: bool = False,
) -> RunResult:
    """Train ``config`` with mmengine's Runner; validate as the schedule says; return the last val metrics.

    ``resume=True`` continues from the latest whole checkpoint in ``work_dir`` (model, optimizer, schedulers,
    iteration; a truncated last checkpoint is skipped with a warning); ``resume_from=PATH`` from that
    checkpoint. ``load_from=PATH`` only initialises the weights. At most one of the three may be given.
    ``amp``: mixed precision through mmengine's AmpOptimWrapper (see :mod:`mnc_bench.amp`; needs a GPU).
    """
    given = [name for name, value in (("resume", resume), ("resume_from", resume_from),
                                      ("load_from", load_from))
             if value not in (False, None)]
    if len(given) > 1:
        raise UserError(f"give at most one of resume, resume_from and load_from, got {' and '.join(given)}")
    cfg = load_config(config, cfg_options)
    require_sections(cfg, ("train_dataloader", "train_cfg", "optim_wrapper"), "train")
    if amp:
        cfg.merge_from_dict(TRAIN_OPTIONS)
    add_loss_scale_hook(cfg)
    add_random_state_hook(cfg)
    require_amp_device(cfg, "train")
    _configure_run(cfg, work_dir=work_dir, launcher=launcher)
    if seed is not None or deterministic:
        randomness = dict(cfg.get("randomness") or {})
        if seed is not None:
            randomness["seed"] = int(seed)
        randomness["deterministic"] = bool(deterministic)
        cfg.randomness = randomness
    cfg.resume = bool(resume) or resume_from is not None
    if resume:
        latest = latest_good_checkpoint(cfg.work_dir)
        if latest is None:
            raise UserError(f"--resume: no checkpoint to resume in {cfg.work_dir} (none there is whole)")
        cfg.load_from = str(latest)
    elif resume_from is not None:
        cfg.load_from = require_local_checkpoint(resume_from, "resume checkpoint")
    elif load_from is not None:
        cfg.load_from = require_local_checkpoint(load_from, "load_from checkpoint")
    elif cfg.get("load_from"):
        cfg.load_from = require_local_checkpoint(cfg.load_from, "load_from checkpoint")
    validating = bool(cfg.get("val_cfg") and cfg.get("val_dataloader"))
    check_buildable(cfg, ["train", "val"] if validating else ["train"])
    prepare_datasets(cfg, ["train_dataloader", "val_dataloader"] if validating else ["train_dataloader"])
    check_pretrained_weights(cfg)
    allow_mmengine_checkpoint_globals()
    deterministic_on_cuda = bool(deterministic) and training_device() == "cuda"
    if deterministic_on_cuda:
        determinism.before_cuda_work()
    runner = _build_runner(cfg)  # applies cfg.randomness
    if deterministic_on_cuda:
        determinism.after_runner_built()
    runner.train()
    from mmengine.dist import barrier

    barrier()  # rank 0 saves the checkpoints, with no wait: the other ranks read last_checkpoint after it
    metrics = {key[len("val/"):]: float(buffer.current())
               for key, buffer in runner.message_hub.log_scalars.items()
               if key.startswith("val/") and key not in ("val/time", "val/data_time")}
    last = Path(cfg.work_dir) / LAST_CHECKPOINT
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
    soft_masks: str | os.PathLike[str] | None = None,
    amp: bool = False,
) -> RunResult:
    """Evaluate ``checkpoint`` on the config's test split; ``out`` receives a COCO results list
    (``image_id, category_id, score, bbox [x, y, w, h], segmentation`` RLE with str counts; video models: with
    ``track_id``); ``soft_masks``: a folder to receive every instance's mask probabilities as 8-bit PNGs and
    their index (:mod:`mnc_bench.soft_masks`), the scored masks unchanged. ``amp``: test in mixed precision
    (mmengine's ``TestLoop(fp16=True)``; needs a GPU)."""
    if out is not None:
        out = Path(out)
        if out.suffix != ".json":
            raise UserError(f"--out {out}: the results file must end in .json")
    target = None
    if soft_masks is not None:
        from mnc_bench.soft_masks import prepare_output

        target = prepare_output(soft_masks)
    try:
        runner = build_test_runner(config, checkpoint, work_dir=work_dir, cfg_options=cfg_options,
                                   launcher=launcher, results_file=out, soft_masks=target, amp=amp)
        metrics = runner.test()
    except BaseException:
        if target is not None:
            shutil.rmtree(target.staging, ignore_errors=True)
        raise
    return RunResult(work_dir=Path(runner.cfg.work_dir),
                     metrics={key: float(value) for key, value in metrics.items()}, predictions=out)


def build_test_runner(
    config: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str],
    *,
    work_dir: str | os.PathLike[str] | None = None,
    cfg_options: Mapping[str, Any] | Sequence[str] | None = None,
    launcher: str = "none",
    results_file: Path | None = None,
    soft_masks: SoftMaskTarget | None = None,
    amp: bool = False,
):
    """An mmengine Runner of ``config``'s test split with ``checkpoint`` loaded strictly (checked like
    :func:`evaluate_checkpoint`'s); ``results_file``: the test evaluator also writes the predictions there;
    ``soft_masks``: the model also gives its mask probabilities, which an extra evaluator writes there;
    ``amp``: mixed precision."""
    cfg = load_config(config, cfg_options)
    require_sections(cfg, ("test_dataloader", "test_evaluator", "test_cfg"), "test")
    if amp:
        cfg.merge_from_dict(TEST_OPTIONS)
    require_amp_device(cfg, "test")
    _configure_run(cfg, work_dir=work_dir, launcher=launcher)
    checkpoint = require_local_checkpoint(checkpoint, "checkpoint")
    cfg.load_from = None  # loaded below, strictly: a checkpoint of another model must not evaluate silently
    cfg.resume = False
    if results_file is not None:
        _add_results_file(cfg, results_file)
    if soft_masks is not None:
        _add_soft_mask_writer(cfg, soft_masks)
    check_buildable(cfg, ["test"])
    prepare_datasets(cfg, ["test_dataloader"])
    allow_mmengine_checkpoint_globals()
    runner = _build_runner(cfg)
    try:
        runner.load_checkpoint(checkpoint, map_location="cpu", strict=True)
    except RuntimeError as exc:
        raise UserError(f"checkpoint {checkpoint} does not fit the model of {cfg.filename}: "
                        f"{one_line(exc)}") from exc
    if soft_masks is not None:
        from mnc_bench.soft_masks import enable_soft_masks

        enable_soft_masks(runner.model)
    return runner


def format_metrics(metrics: Mapping[str, float]) -> str:
    """One ``key value`` line per metric, sorted."""
    return "\n".join(f"{key} {value:.4f}" for key, value in sorted(metrics.items()))


def _configure_run(cfg, *, work_dir, launcher: str) -> None:
    if launcher not in LAUNCHERS:
        raise UserError(f"launcher must be one of {', '.join(LAUNCHERS)}, got {launcher!r}")
    device = training_device()
    if launcher != "none" and device == "cuda":
        device = bind_task_device(launcher) or device
    require_mmcv_ops_for(device, "the model")
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = str(work_dir)
    elif not cfg.get("work_dir"):
        cfg.work_dir = str(Path("work_dirs") / Path(cfg.filename).stem)
    if launcher != "none" and device == "cpu":
        _join_cpu_process_group(cfg, launcher)


def _join_cpu_process_group(cfg, launcher: str) -> None:
    """Distributed training without GPUs: mmengine's launchers bind every process to a CUDA device, so a CPU
    process joins a gloo process group here (env:// from torchrun or from a suite's submitit task), which the
    Runner then uses as it is; DDP wraps the CPU model without device ids. Everything else is the GPU path:
    distributed sampler, gradient all-reduce, checkpoints and metrics on rank 0."""
    import torch.distributed as dist

    if launcher != "pytorch":
        raise UserError(f"--launcher {launcher} needs GPUs; on CPU, start the processes with torchrun and "
                        "--launcher pytorch")
    missing = [key for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if key not in os.environ]
    if missing:
        raise UserError(f"--launcher pytorch needs {', '.join(missing)} in the environment: start the "
                        "processes with torchrun")
    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
    wrapper = cfg.get("model_wrapper_cfg") or dict(
        type="MMDistributedDataParallel", broadcast_buffers=False,
        find_unused_parameters=cfg.get("find_unused_parameters", False))
    wrapper.setdefault("device_ids", None)  # mmengine's default ([LOCAL_RANK]) names a CUDA device
    cfg.model_wrapper_cfg = wrapper


def _build_runner(cfg):
    """mmengine's Runner for ``cfg`` (which has passed the pre-flight checks). Config values that only the
    model can judge are ConfigErrors raised by the model itself; any other exception is a bug and keeps its
    traceback."""
    from mmengine.runner import Runner

    if not cfg.get("experiment_name"):
        # mmengine names the logger and visualizer '<stem>_<timestamp to the second>' and hands out an
        # existing instance of that name: two runs of one config in one process within a second would share
        # one log.
        cfg.experiment_name = f"{Path(cfg.filename or 'run').stem}_{uuid.uuid4().hex[:8]}"
    if isinstance(cfg.get("visualizer"), dict):
        # mmdet's configs name it 'visualizer', and mmengine hands out the instance of that name that exists:
        # every later run in the process would write its scalars and config into the first run's vis_data.
        cfg.visualizer["name"] = cfg.experiment_name
    return Runner.from_cfg(cfg)


def _add_soft_mask_writer(cfg, target: SoftMaskTarget) -> None:
    """Append the soft-mask writer, which fills ``target``, to the test evaluator."""
    from mnc_bench.soft_masks import WRITER_NAME

    evaluators = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) else [cfg.test_evaluator]
    ann = next((item.get("ann_file") for item in evaluators if item.get("ann_file")), None)
    if ann is None:
        leaves = leaf_datasets(cfg.test_dataloader.get("dataset"))
        ann, _ = next((dataset_files(d) for d in leaves), (None, None))
    writer = dict(type=WRITER_NAME, staging=str(target.staging), out=str(target.out),
                  ann_file=None if ann is None else str(ann))
    cfg.test_evaluator = [*evaluators, writer]


def _add_results_file(cfg, out: Path) -> None:
    """Have the test evaluator write the predictions: our metrics write them as they score (the video metric:
    tracked records); for any other evaluator, add one of ours that only computes COCO AP."""
    evaluators = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) else [cfg.test_evaluator]
    ours = [item for item in evaluators if item.get("type") in ("MNCBenchMetric", "MNCBenchVideoMetric")]
    if ours:
        ours[0]["results_file"] = str(out)
        return
    ann, _ = next((dataset_files(d) for d in leaf_datasets(cfg.test_dataloader.get("dataset"))), (None, None))
    if ann is None:
        raise UserError("--out needs the test dataset's annotation file (test_dataloader.dataset.ann_file)")
    cfg.test_evaluator = [*evaluators, dict(type="MNCBenchMetric", ann_file=str(ann), metric="coco",
                                            results_file=str(out))]
