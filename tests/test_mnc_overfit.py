"""MNC learns: a few synthetic images are overfit end to end (RPN + cascade) to a high mask AP."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("mmcv.ops")
from mmdet.registry import DATASETS, MODELS  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.dataset import pseudo_collate  # noqa: E402
from mmengine.optim import OptimWrapper  # noqa: E402
from pycocotools import mask as mask_utils  # noqa: E402

import mnc_bench.models.mmdet_adapter  # noqa: E402,F401  (registers MNC)
from mnc_bench.data.synthetic import ShapesConfig, write_shapes_dataset  # noqa: E402
from mnc_bench.evaluation.coco import evaluate_coco  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "mnc" / "mnc_5stage_shapes.py"
# The shapes schedule's optimizer family (AdamW, weight decay 0.05) at twice its lr, compressed
# to 250 steps with one lr step (174 s on the quiet 2-core machine). Measured with 300 steps on
# these 2 images: loss 4.3 -> 0.1, mask AP 0.96 with mask voting (0.84 without); the 3-stage
# cascade under that budget reaches only 0.73, its masks sitting on the raw proposals.
ITERATIONS = 250
WARMUP = 10
LR_STEP = 190
LEARNING_RATE = 1e-3

register_all_modules()


def _recalibrate_batch_norm(model, inputs: torch.Tensor) -> None:
    """Set BN running statistics to the exact statistics of `inputs`.

    A from-scratch ResNet trained for a few hundred steps has running averages that still lag its weights;
    evaluation should measure the detector, not that lag.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average: one pass gives the batch statistics
    model.train()
    with torch.no_grad():
        model.extract_feat(inputs)


def _coco_records(samples, category_ids: list[int]) -> list[dict]:
    records = []
    for sample in samples:
        predictions = sample.pred_instances
        for box, score, label, mask in zip(
            predictions.bboxes.tolist(), predictions.scores.tolist(), predictions.labels.tolist(),
            predictions.masks.numpy(),
        ):
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode()
            records.append(dict(
                image_id=sample.img_id, category_id=category_ids[label], score=score, segmentation=rle,
                bbox=[box[0], box[1], box[2] - box[0], box[3] - box[1]],
            ))
    return records


@pytest.mark.slow
def test_five_stage_mnc_overfits_two_shapes_images(tmp_path):
    root = tmp_path / "shapes"
    write_shapes_dataset(root, num_train=2, num_val=1, config=ShapesConfig(image_size=128, seed=0), workers=1)
    cfg = Config.fromfile(str(CONFIG))
    cfg.model.loss_weights.mask = 2.0  # MNC-code's mask weight: masks converge in fewer steps
    # MNC-code's 64 RoIs per image instead of the config's 128 (Mask R-CNN's, for the controlled comparison):
    # this test checks that the cascade learns, and 128 RoIs nearly double a 5-stage step on the CPU.
    cfg.model.train_cfg.rcnn.num_rois = 64
    dataset_cfg = copy.deepcopy(cfg.val_dataloader.dataset)  # no flips: the same two images every step
    dataset_cfg.update(data_root=str(root) + "/", ann_file="annotations/instances_train.json",
                       data_prefix=dict(img="train/"))
    dataset = DATASETS.build(dataset_cfg)
    batch = pseudo_collate([dataset[0], dataset[1]])

    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.05)
    optim_wrapper = OptimWrapper(optimizer, clip_grad=dict(max_norm=35))
    model.train()
    losses = []
    for iteration in range(ITERATIONS):
        for group in optimizer.param_groups:
            step = 0.1 if iteration >= LR_STEP else 1.0
            group["lr"] = LEARNING_RATE * step * min(1.0, (iteration + 1) / WARMUP)
        losses.append(model.train_step(batch, optim_wrapper)["loss"].item())
    assert np.mean(losses[-10:]) < 0.15 * losses[0], losses[::20]

    _recalibrate_batch_norm(model, model.data_preprocessor(batch, True)["inputs"])
    model.eval()
    with torch.no_grad():
        predictions = model.test_step(batch)
    metrics = evaluate_coco(root / "annotations" / "instances_train.json",
                            _coco_records(predictions, list(dataset.cat_ids)), "segm")
    assert metrics["AP"] > 0.8, metrics
