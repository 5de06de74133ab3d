"""Models side by side (``mnc-bench bench models``): inference latency, training speed, FLOPs, memory.

All models run in one process on the same synthetic shapes images, at each input size. Inference is at batch 1
(the field's convention: a larger test batch changes AP through padding), after warm-up, with the models
interleaved (image r of every model before image r + 1 of any), so machine noise hits every model alike;
training iterations are interleaved the same way. Each model runs at its config's score threshold (what users
see) and at 0 (every model post-processing its full detection budget: the worst case).

Timed apart per image: pre-processing (the config's test pipeline and the data preprocessor), post-processing
(`POST_PROCESSING`: the heads' `predict_by_feat`, mmdet's own boundary between network outputs and detections:
box decoding + class-wise NMS and mask pasting for the R-CNNs; MNC's NMS, mask voting and pasting) and the
network (the rest, RPN proposals included). A training iteration is one `train_step` (data
preprocessor, forward, backward, optimizer update) on batches the config's train pipeline packed beforehand;
that packing is reported apart as data time (`num_workers=0` puts it inside a real iteration).
"""

from __future__ import annotations

import copy
import functools
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mnc_bench.bench import (
    DEFAULT_CONFIGS,
    DEFAULT_REPEATS,
    DEFAULT_SIZES,
    DEFAULT_TRAIN_ITERS,
    DEFAULT_WARMUP,
)
from mnc_bench.bench.inputs import IMAGE_POOL, bgr, render_images, train_record
from mnc_bench.bench.measure import (
    UNCOUNTED_OPS,
    PeakMemory,
    count_flops,
    machine_info,
    matmul_peak_gflops,
    quartiles,
    synchronize,
)
from mnc_bench.bench.profiling import profile_inference, profile_training
from mnc_bench.bench.report import format_tables
from mnc_bench.checkpoints import require_local_checkpoint
from mnc_bench.errors import UserError

REFERENCE_MODEL_TYPE = "MaskRCNN"  # every ratio is to the first config of this model type
# Attributes (dotted paths from the detector; an integer indexes a ModuleList: cascades predict with their
# last stage's heads) whose calls are post-processing; the ones a model has are timed.
POST_PROCESSING = (
    "postprocessor",
    "roi_head.bbox_head.predict_by_feat", "roi_head.mask_head.predict_by_feat",
    "roi_head.bbox_head.-1.predict_by_feat", "roi_head.mask_head.-1.predict_by_feat",
    "mask_head.predict_by_feat",
    "panoptic_fusion_head.predict",  # Mask2Former: top-k query-class pairs, mask upsampling and binarising
)
# Where a config keeps its detection score threshold: the first key path present is used.
SCORE_THRESHOLDS = (("test_cfg", "rcnn", "score_thr"), ("test_cfg", "score_thr"))
_DISTINCT_BATCHES = 4  # training batches packed per model, used in turn
_FLOP_IMAGES = 2  # inference FLOPs: mean over this many images (they follow the detections)


@dataclass(frozen=True)
class ModelsBenchSettings:
    """What `bench_models` runs. `batch` is the training batch (default: each config's); `checkpoints` maps a
    config stem to a checkpoint (random weights otherwise), `weights_runs` to the suite run that trained it
    (`<suite>/<run-id>`, recorded as `weights_run`); `train_iters=0` skips training."""

    configs: tuple[str, ...] = DEFAULT_CONFIGS
    sizes: tuple[int, ...] = DEFAULT_SIZES
    batch: int | None = None
    repeats: int = DEFAULT_REPEATS
    train_iters: int = DEFAULT_TRAIN_ITERS
    warmup: int = DEFAULT_WARMUP
    checkpoints: Mapping[str, str] = field(default_factory=dict)
    weights_runs: Mapping[str, str] = field(default_factory=dict)
    device: str = "cpu"
    seed: int = 0
    threads: int | None = None  # torch intra-op threads for the whole process (default: torch's choice)
    profile_dir: str | None = None  # also write per-op and Python profiles of one call per model and phase

    def __post_init__(self) -> None:
        if not self.configs:
            raise UserError("--configs: give at least one config")
        stems = [Path(c).stem for c in self.configs]
        duplicated = sorted({s for s in stems if stems.count(s) > 1})
        if duplicated:
            raise UserError(f"--configs: {duplicated[0]} given twice (models are named by config stem)")
        for config in self.configs:
            if not Path(config).is_file():
                raise UserError(f"--configs: config {config} not found")
        if not self.sizes or any(size < 32 for size in self.sizes) or len(set(self.sizes)) < len(self.sizes):
            raise UserError(f"--size: distinct sizes of at least 32 pixels, got {list(self.sizes)}")
        if self.repeats < 1 or (self.batch is not None and self.batch < 1):
            raise UserError(f"--repeats and --batch must be >= 1, got {self.repeats} and {self.batch}")
        if self.train_iters < 0 or self.warmup < 0:
            raise UserError(f"--train-iters and --warmup must be >= 0, got {self.train_iters}, {self.warmup}")
        if self.threads is not None and self.threads < 1:
            raise UserError(f"--threads: must be >= 1, got {self.threads}")
        for stem, checkpoint in self.checkpoints.items():
            if stem not in stems:
                raise UserError(f"--checkpoint {stem}={checkpoint}: no config named {stem} among "
                                f"{', '.join(stems)}")
            require_local_checkpoint(checkpoint, f"--checkpoint {stem}:")
        try:
            device_type = torch.device(self.device).type
        except RuntimeError as exc:
            raise UserError(f"--device {self.device}: not a torch device (cpu, cuda, cuda:N)") from exc
        if device_type == "cuda":
            if not torch.cuda.is_available():
                raise UserError(f"--device {self.device}: CUDA is not available")
            from mnc_bench.gpu import require_mmcv_ops_for

            require_mmcv_ops_for(self.device, "bench models")


@dataclass
class _Variant:
    """One model at one score threshold, with its timings."""

    stem: str
    score_thr: float
    predictor: Any
    post_timer: PostProcessingTimer
    memory: PeakMemory
    samples: dict[str, list[float]] = field(
        default_factory=lambda: {key: [] for key in ("pre", "net", "post", "total")})
    detections: list[int] = field(default_factory=list)
    gflops: float = math.nan  # of one inference, measured after the timing


class PostProcessingTimer:
    """Wraps a detector's `POST_PROCESSING` callables and accumulates the seconds spent in them."""

    def __init__(self, model: torch.nn.Module, device: torch.device):
        self.seconds = 0.0
        self.device = device
        self.timed: list[str] = []
        for path in POST_PROCESSING:
            owner_path, _, name = path.rpartition(".")
            owner = model
            for part in filter(None, owner_path.split(".")):
                if part.lstrip("-").isdigit():
                    owner = owner[int(part)] if isinstance(owner, torch.nn.ModuleList) else None
                else:
                    owner = getattr(owner, part, None)
            if owner is not None and getattr(owner, name, None) is not None:
                # A plain (non-Module) attribute: on an nn.Module it shadows the method of the class.
                setattr(owner, name, self._wrap(getattr(owner, name)))
                self.timed.append(path)

    def _wrap(self, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            synchronize(self.device)
            start = time.perf_counter()
            result = function(*args, **kwargs)
            synchronize(self.device)
            self.seconds += time.perf_counter() - start
            return result

        return timed


def _dataset(cfg, loader: str):
    dataset = cfg.get(loader, {}).get("dataset")
    while dataset is not None and "pipeline" not in dataset and "dataset" in dataset:
        dataset = dataset.dataset
    if dataset is None:
        raise UserError(f"config {cfg.filename}: the bench needs {loader}.dataset.pipeline")
    return dataset


def _set_input_size(cfg, size: int, loaders: Sequence[str]) -> None:
    """Square synthetic images of side `size`, resized by the pipelines to `size` (keeping the ratio)."""
    for loader in loaders:
        pipeline = _dataset(cfg, loader).pipeline
        resizes = [step for step in pipeline if step["type"] in ("Resize", "mmdet.Resize")]
        if not resizes:
            raise UserError(f"config {cfg.filename}: {loader} pipeline has no Resize step to apply --size to")
        for step in resizes:
            step["scale"] = (size, size)


def score_threshold_key(cfg) -> tuple[str, ...] | None:
    """Where the config keeps its score threshold; None for a model without one (Mask2Former's instance mode
    keeps its top ``max_per_image`` query-class pairs whatever their score, i.e. it always runs "at 0")."""
    for key in SCORE_THRESHOLDS:
        node = cfg.model
        for part in key:
            node = node.get(part) if isinstance(node, Mapping) else None
        if isinstance(node, (int, float)):
            return key
    return None


@dataclass
class _Trainer:
    """One model's training state and timings."""

    stem: str
    model: torch.nn.Module
    optim_wrapper: Any
    batches: list[Any]
    batch_size: int
    data_seconds: list[float]
    memory: PeakMemory
    seconds: list[float] = field(default_factory=list)

    def batch(self, index: int) -> Any:
        return copy.deepcopy(self.batches[index % len(self.batches)])  # the data preprocessor pads in place

    def run(self, batch: Any) -> None:
        self.model.train_step(batch, self.optim_wrapper)

    def timed_step(self, index: int) -> float:
        batch, device = self.batch(index), self.memory.device
        with self.memory.track():
            synchronize(device)
            start = time.perf_counter()
            self.run(batch)
            synchronize(device)
            return time.perf_counter() - start


def _trainer(stem: str, predictor: Any, images: list[Any], settings: ModelsBenchSettings) -> _Trainer:
    from mmcv.transforms import Compose
    from mmengine.dataset import pseudo_collate
    from mmengine.optim import build_optim_wrapper

    cfg = predictor.config
    if not cfg.get("optim_wrapper"):
        raise UserError(f"config {cfg.filename}: the bench's training part needs optim_wrapper")
    pipeline = [dict(step) for step in _dataset(cfg, "train_dataloader").pipeline]
    if not str(pipeline[0]["type"]).endswith("LoadImageFromFile"):
        raise UserError(f"config {cfg.filename}: the train pipeline must start with LoadImageFromFile")
    pipeline[0] = dict(type="mmdet.LoadImageFromNDArray")
    transform = Compose(pipeline)
    batch_size = settings.batch or int(cfg.train_dataloader.batch_size)
    batches, data_seconds = [], []
    for index in range(min(settings.warmup + settings.train_iters, _DISTINCT_BATCHES)):
        ids = [(index * batch_size + j) % len(images) for j in range(batch_size)]
        start = time.perf_counter()
        batches.append(pseudo_collate([transform(train_record(images[i], i)) for i in ids]))
        data_seconds.append(time.perf_counter() - start)
    model = predictor.model.train()
    return _Trainer(stem=stem, model=model, optim_wrapper=build_optim_wrapper(model, cfg.optim_wrapper),
                    batches=batches, batch_size=batch_size, data_seconds=data_seconds,
                    memory=PeakMemory(torch.device(settings.device)))


def _infer(variant: _Variant, image: np.ndarray) -> None:
    predictor, device = variant.predictor, variant.memory.device
    with variant.memory.track():
        synchronize(device)
        start = time.perf_counter()
        batch = predictor.preprocess(image)
        synchronize(device)
        preprocessed = time.perf_counter()
        variant.post_timer.seconds = 0.0
        sample = predictor.forward(batch)
        synchronize(device)
        end = time.perf_counter()
    post = variant.post_timer.seconds
    for key, seconds in (("pre", preprocessed - start), ("net", end - preprocessed - post), ("post", post),
                         ("total", end - start)):
        variant.samples[key].append(1000 * seconds)
    variant.detections.append(len(sample.pred_instances))


def _load_variants(config: str, settings: ModelsBenchSettings, size: int) -> tuple[_Variant, _Variant]:
    """The model at its config's score threshold and at 0, with the same weights."""
    from mnc_bench.config_loading import load_config
    from mnc_bench.inference import load_model

    stem = Path(config).stem
    cfg = load_config(config)
    _set_input_size(cfg, size, ["test_dataloader"] + (["train_dataloader"] if settings.train_iters else []))
    key = score_threshold_key(cfg)
    own = 0.0 if key is None else float(functools.reduce(getattr, key[:-1], cfg.model)[key[-1]])
    variants = []
    for score_thr in (own, 0.0):
        variant_cfg = copy.deepcopy(cfg)
        if key is not None:
            functools.reduce(getattr, key[:-1], variant_cfg.model)[key[-1]] = score_thr
        torch.manual_seed(settings.seed)  # random weights: identical for both thresholds
        predictor = load_model(variant_cfg, settings.checkpoints.get(stem), device=settings.device)
        device = torch.device(settings.device)
        variants.append(_Variant(stem=stem, score_thr=score_thr, predictor=predictor,
                                 post_timer=PostProcessingTimer(predictor.model, device),
                                 memory=PeakMemory(device)))
    return variants[0], variants[1]


def _inference_fields(variant: _Variant, peak: float, suffix: str) -> dict[str, Any]:
    q1, median, q3 = quartiles(variant.samples["total"])
    gflops = variant.gflops
    fields = {
        "detections": float(np.mean(variant.detections)),
        "gflops": gflops,
        "infer_ms_median": median,
        "infer_ms_q1": q1,
        "infer_ms_q3": q3,
        "infer_pre_ms": quartiles(variant.samples["pre"])[1],
        "infer_net_ms": quartiles(variant.samples["net"])[1],
        "infer_post_ms": quartiles(variant.samples["post"])[1] if variant.post_timer.timed else None,
        "infer_gflops_per_s": gflops / (median / 1000),
        "infer_share_of_peak": gflops / (median / 1000) / peak,
        "infer_peak_rss_mb": variant.memory.peak_mb,
    }
    return {f"{key}{suffix}": value for key, value in fields.items()}


@dataclass
class _Model:
    """One config at one input size: the model at its score threshold and at 0, and its trainer."""

    config: str
    own: _Variant
    zero: _Variant
    trainer: _Trainer | None = None


def _bench_size(size: int, settings: ModelsBenchSettings, peak: float, print_fn: Callable[[str], None]
                ) -> list[dict[str, Any]]:
    """Every model's record at input size ``size``, in the order of ``settings.configs``."""
    print_fn(f"-- {size} px: building {len(settings.configs)} models and {IMAGE_POOL} images ...")
    models = [_Model(config, *_load_variants(config, settings, size)) for config in settings.configs]
    variants = [variant for model in models for variant in (model.own, model.zero)]
    images = render_images(size, settings.seed)
    arrays = [bgr(image) for image in images]
    print_fn(f"-- {size} px: inference, {settings.warmup} warm-up + {settings.repeats} images per model and "
             "threshold")
    _time_inference(variants, arrays, settings)
    for variant in variants:
        variant.gflops = _inference_gflops(variant, arrays[:min(_FLOP_IMAGES, settings.repeats)])
    if settings.profile_dir:
        profile_inference(Path(settings.profile_dir), size, variants, arrays[0])
    if settings.train_iters:
        print_fn(f"-- {size} px: training, {settings.warmup} warm-up + {settings.train_iters} iterations per "
                 "model")
        for model in models:
            model.trainer = _trainer(model.own.stem, model.own.predictor, images, settings)
        trainers = [model.trainer for model in models]
        _time_training(trainers, settings)
        if settings.profile_dir:
            profile_training(Path(settings.profile_dir), size, trainers)
    records = [_record(model, size, settings, peak) for model in models]
    _add_ratios(records)
    return records


def _time_inference(variants: list[_Variant], arrays: list[np.ndarray],
                    settings: ModelsBenchSettings) -> None:
    """Image r of every variant before image r + 1 of any; the warm-up images leave no sample."""
    for index in range(settings.warmup + settings.repeats):
        for variant in variants:
            _infer(variant, arrays[index % len(arrays)])
            if index < settings.warmup:
                for samples in variant.samples.values():
                    samples.pop()
                variant.detections.pop()
                variant.memory.peak_mb = 0.0


def _inference_gflops(variant: _Variant, arrays: list[np.ndarray]) -> float:
    """GFLOPs of one inference, the mean over ``arrays`` (the count follows the detections)."""
    return float(np.mean([count_flops(functools.partial(variant.predictor, array))
                          for array in arrays])) / 1e9


def _time_training(trainers: list[_Trainer], settings: ModelsBenchSettings) -> None:
    """Iteration i of every model before iteration i + 1 of any; the warm-up iterations leave no sample."""
    for index in range(settings.warmup + settings.train_iters):
        for trainer in trainers:
            seconds = trainer.timed_step(index)
            if index >= settings.warmup:
                trainer.seconds.append(seconds)
            else:
                trainer.memory.peak_mb = 0.0


def _record(model: _Model, size: int, settings: ModelsBenchSettings, peak: float) -> dict[str, Any]:
    """The results row of one model: what it is, its inference at both thresholds, its training."""
    own = model.own
    cfg, network = own.predictor.config, own.predictor.model
    record: dict[str, Any] = {
        "model": own.stem,
        "config": model.config,
        "model_type": cfg.model.type,
        "size": size,
        "params": sum(p.numel() for p in network.parameters()),
        "proposals": ((cfg.model.get("test_cfg") or {}).get("rpn") or {}).get("max_per_img"),
        "weights": "checkpoint" if own.stem in settings.checkpoints else "random",
        "checkpoint": settings.checkpoints.get(own.stem),
        "weights_run": settings.weights_runs.get(own.stem),
        "score_thr": own.score_thr,
        "post_processing_timed": own.post_timer.timed,
        **_inference_fields(own, peak, ""),
        **_inference_fields(model.zero, peak, "_thr0"),
    }
    if model.trainer is not None:
        record.update(_training_fields(model.trainer, peak))
    return record


def _training_fields(trainer: _Trainer, peak: float) -> dict[str, Any]:
    train_flops = count_flops(lambda: trainer.run(trainer.batch(0))) / 1e9
    q1, median, q3 = quartiles(trainer.seconds)
    return dict(
        train_batch=trainer.batch_size, train_s_per_iter=median, train_s_per_iter_q1=q1,
        train_s_per_iter_q3=q3, train_img_per_s=trainer.batch_size / median,
        train_data_s_per_iter=quartiles(trainer.data_seconds)[1], train_gflops_per_iter=train_flops,
        gflops_per_s=train_flops / median, share_of_peak=train_flops / median / peak,
        peak_rss_mb=trainer.memory.peak_mb,
    )


def _add_ratios(records: list[dict[str, Any]]) -> None:
    reference = next((r for r in records if r["model_type"] == REFERENCE_MODEL_TYPE), None)
    for record in records:
        for ratio, key in (("ratio_infer_to_mask_rcnn", "infer_ms_median"),
                           ("ratio_infer_thr0_to_mask_rcnn", "infer_ms_median_thr0"),
                           ("ratio_train_to_mask_rcnn", "train_s_per_iter")):
            value = reference.get(key) if reference else None
            record[ratio] = record[key] / value if value and record.get(key) is not None else None


def bench_models(settings: ModelsBenchSettings | None = None, *,
                 print_fn: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the bench (default settings: the shipped shapes configs, relative to the checkout); print its
    tables; return {machine, settings, models (first size), by_size}."""
    settings = settings or ModelsBenchSettings()
    device = torch.device(settings.device)
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    machine = machine_info(device)
    peak = matmul_peak_gflops(device)
    machine["matmul_peak_gflops"] = peak
    print_fn(f"-- dense float32 matmul peak: {peak:.1f} GFLOP/s ({machine['threads']} threads)")
    by_size = {str(size): _bench_size(size, settings, peak, print_fn) for size in settings.sizes}
    machine["load_avg_1min_end"] = os.getloadavg()[0]
    results = {
        "machine": machine,
        "settings": {
            "configs": list(settings.configs), "size": list(settings.sizes), "batch": settings.batch,
            "repeats": settings.repeats, "train_iters": settings.train_iters, "warmup": settings.warmup,
            "device": settings.device, "seed": settings.seed, "threads": settings.threads,
            "reference_model_type": REFERENCE_MODEL_TYPE,
            "infer_batch": 1,
            "flop_counter": "torch.utils.flop_counter.FlopCounterMode (multiply-add = 2 FLOPs)",
            "flops_not_counted": list(UNCOUNTED_OPS), "memory": PeakMemory(device).method,
        },
        "models": by_size[str(settings.sizes[0])],
        "by_size": by_size,
    }
    for line in format_tables(results):
        print_fn(line)
    return results
