"""Proposal recall (AR@k) of a trained model on its test split, for suites that list ``proposals/...``
metrics.

The test pass scores final detections only, so the proposals are taken in a second pass over the test images
(batch 1): stage 1 of a freshly built model with the trained weights. For MNC that is the RPN output after the
config's proposal controls (cap, jitter, oracle, random); the controls draw from their own generator seeded
from the config, so this pass sees the same boxes the test pass fed to stage 2. MNC's proposals carry no
score: their order (best first) is kept as a descending score. Mask R-CNN and PANet give mmdet's RPN
proposals with their objectness. A model without a stage 1 of either kind has no proposals to score.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from mnc_bench.errors import UserError
from mnc_bench.suites.contract import RunRecord


def proposal_recall(cfg: Any, checkpoint: str, ann_file: str) -> dict[str, float]:
    """``proposals/AR@k`` keys of the model in ``cfg`` (a resolved mmengine Config) with ``checkpoint``'s
    weights, on the device the Runner trains on (mmengine's ``get_device``: the current GPU, which a
    distributed launcher sets per rank). In a distributed run every rank calls it and scores its share of the
    images."""
    import torch
    from mmdet.registry import MODELS
    from mmengine.device import get_device
    from mmengine.dist import all_gather_object, is_distributed
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner, load_checkpoint

    from mnc_bench.checkpoints import allow_mmengine_checkpoint_globals
    from mnc_bench.evaluation import evaluate

    init_default_scope(cfg.get("default_scope", "mmdet"))
    allow_mmengine_checkpoint_globals()
    model = MODELS.build(cfg.model)
    load_checkpoint(model, checkpoint, map_location="cpu", strict=True, logger="silent")
    model.to(get_device())  # mmengine's BaseModel.to also moves the data preprocessor's inputs there
    model.eval()
    loader_cfg = dict(cfg.test_dataloader, batch_size=1)
    loader = Runner.build_dataloader(loader_cfg)
    arrays: dict[int, np.ndarray] = {}
    with torch.no_grad():
        for data_batch in loader:
            data = model.data_preprocessor(data_batch, False)
            for sample, boxes, scores in _proposals(model, data["inputs"], data["data_samples"]):
                arrays[int(sample.metainfo["img_id"])] = np.concatenate(
                    [boxes.detach().cpu().numpy().reshape(-1, 4),
                     scores.detach().cpu().numpy().reshape(-1, 1)],
                    axis=1)
    if is_distributed():  # the test sampler gave each rank its share of the images (padded with repeats)
        arrays = {image_id: array for part in all_gather_object(arrays) for image_id, array in part.items()}
    return evaluate(ann_file, arrays, metric="proposals")


def run_proposal_recall(run: RunRecord, checkpoint: str | os.PathLike[str]) -> dict[str, float]:
    """:func:`proposal_recall` of a suite's run (its run.json: config, options, test annotations) with the
    weights of ``checkpoint``, on its test split at one image per batch, as its test pass."""
    from mnc_bench.config_loading import load_config
    from mnc_bench.training import SINGLE_IMAGE_TEST

    cfg = load_config(run.config, {**run.cfg_options, **SINGLE_IMAGE_TEST})
    return proposal_recall(cfg, str(checkpoint), run.test_ann_file)


def _proposals(model: Any, inputs: Any, samples: list[Any]) -> list[tuple[Any, Any, Any]]:
    """Per image: (data sample, boxes [R, 4] xyxy at the original image size, scores [R])."""
    import torch

    from mnc_bench.models.mmdet_adapter import MNC

    features = model.extract_feat(inputs)
    if isinstance(model, MNC):
        out = []
        for sample, boxes in zip(samples, model.proposals(features, samples)):
            scale = torch.as_tensor(_scale(sample.metainfo), dtype=boxes.dtype, device=boxes.device)
            scores = torch.linspace(1.0, 0.0, boxes.shape[0] + 1, device=boxes.device)[:-1]
            out.append((sample, boxes / scale.repeat(2), scores))
        return out
    rpn_head = getattr(model, "rpn_head", None)
    if rpn_head is not None and hasattr(rpn_head, "predict"):  # mmdet two-stage detectors
        results = rpn_head.predict(features, samples, rescale=True)
        return [(sample, result.bboxes, result.scores) for sample, result in zip(samples, results)]
    raise UserError(f"{type(model).__name__} has no stage-1 proposals to score (proposals/... metrics need "
                    "an RPN)")


def _scale(meta: Mapping[str, Any]) -> tuple[float, float]:
    factor = meta.get("scale_factor", (1.0, 1.0))
    return float(factor[0]), float(factor[1])
