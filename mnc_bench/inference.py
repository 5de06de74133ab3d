"""Inference from Python on any of our configs, with random weights or one of our checkpoints.

    from mnc_bench.inference import load_model
    model = load_model("configs/mnc/mnc_3stage_shapes.py", "work_dirs/mnc_3stage_shapes/iter_1000.pth")
    sample = model("data/shapes/val/000000.png")   # or an [H, W, 3] uint8 BGR array (mmcv's convention)
    sample.pred_instances  # bboxes [N, 4], scores [N], labels [N] (0-based), masks [N, H, W]

Checkpoints load under torch's weights-only unpickler with the project's allow-list, and strictly: a
checkpoint of another model is an error, not a silent partial load (mmdet's `init_detector` loads
non-strictly). The two steps (`preprocess`: the config's test pipeline without annotation loading, then the
model's data preprocessor; `forward`: the network and its post-processing) are separate so that the bench
can time them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mnc_bench.errors import UserError, one_line

Image = str | os.PathLike[str] | np.ndarray


def _test_pipeline(cfg, *, from_array: bool) -> list[dict[str, Any]]:
    """The config's test pipeline without annotation loading; images from arrays or files."""
    dataset = cfg.test_dataloader.dataset
    while "pipeline" not in dataset and "dataset" in dataset:  # dataset wrappers
        dataset = dataset.dataset
    pipeline = [dict(step) for step in dataset.pipeline if not str(step["type"]).endswith("LoadAnnotations")]
    if not pipeline or not str(pipeline[0]["type"]).endswith("LoadImageFromFile"):
        raise UserError(f"config {cfg.filename}: the test pipeline must start with LoadImageFromFile")
    if from_array:
        pipeline[0] = dict(type="mmdet.LoadImageFromNDArray")
    return pipeline


@dataclass
class Predictor:
    """A detector in eval mode with its config's test pipeline; call it on one image."""

    model: torch.nn.Module
    config: Any  # mmengine Config
    file_pipeline: Any  # mmcv Compose
    array_pipeline: Any

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def preprocess(self, image: Image) -> dict[str, Any]:
        """One image -> the model's batch of one (resized, normalised, padded, on the model's device)."""
        from mmengine.dataset import pseudo_collate

        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise UserError(f"image array: expected [H, W, 3] uint8 BGR, got {image.dtype} {image.shape}")
            packed = self.array_pipeline(dict(img=image, img_id=0))
        else:
            if not Path(image).is_file():
                raise UserError(f"image {image} not found")
            packed = self.file_pipeline(dict(img_path=str(image), img_id=0))
        return self.model.data_preprocessor(pseudo_collate([packed]), False)

    def forward(self, batch: Mapping[str, Any]) -> Any:
        """The network and its post-processing on a preprocessed batch -> DetDataSample (`pred_instances`)."""
        with torch.no_grad():
            return self.model(**batch, mode="predict")[0]

    def __call__(self, image: Image) -> Any:
        return self.forward(self.preprocess(image))


def load_model(
    config: str | os.PathLike[str] | Any,
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    device: str = "cpu",
    cfg_options: Mapping[str, Any] | Sequence[str] | None = None,
) -> Predictor:
    """Build `config`'s model (a config path, or a Config from `load_config`); load `checkpoint` if given
    (random weights otherwise); eval mode on `device`."""
    from mmcv.transforms import Compose
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner import load_checkpoint

    from mnc_bench.checkpoints import allow_mmengine_checkpoint_globals, require_local_checkpoint
    from mnc_bench.config_loading import load_config

    if isinstance(config, Config):
        cfg = config
        if cfg_options:
            raise ValueError("cfg_options: apply them with load_config when passing a Config")
    else:
        cfg = load_config(config, cfg_options)
    for section in ("test_dataloader", "model"):
        if not cfg.get(section):
            raise UserError(f"config {cfg.filename}: cannot run inference, missing {section}")
    init_default_scope(cfg.get("default_scope", "mmdet"))
    model = MODELS.build(cfg.model)
    if checkpoint is not None:
        path = require_local_checkpoint(checkpoint, "checkpoint")
        allow_mmengine_checkpoint_globals()
        try:
            state = load_checkpoint(model, path, map_location="cpu", strict=True, logger="silent")
        except RuntimeError as exc:
            raise UserError(
                f"checkpoint {path} does not fit the model of {cfg.filename}: {one_line(exc)}") from exc
        model.dataset_meta = state.get("meta", {}).get("dataset_meta") or cfg.get("metainfo")
    else:
        model.dataset_meta = cfg.get("metainfo")
    model.cfg = cfg
    model.to(device).eval()
    return Predictor(
        model=model,
        config=cfg,
        file_pipeline=Compose(_test_pipeline(cfg, from_array=False)),
        array_pipeline=Compose(_test_pipeline(cfg, from_array=True)),
    )
