"""The mmdet adapter: configs build, training steps through mmdet data structures, predictions, validation."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

pytest.importorskip("mmcv.ops")
from mmdet.registry import DATASETS, MODELS  # noqa: E402
from mmdet.structures.bbox import get_box_tensor  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.dataset import pseudo_collate  # noqa: E402
from mmengine.optim import OptimWrapper  # noqa: E402
from torchvision.ops import box_iou  # noqa: E402

import mnc_bench.models.mmdet_adapter  # noqa: E402,F401  (registers MNC)
from mnc_bench.cli import main  # noqa: E402
from mnc_bench.errors import ConfigError  # noqa: E402

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "mnc"
SHAPES_3 = CONFIG_DIR / "mnc_3stage_shapes.py"
SHAPES_5 = CONFIG_DIR / "mnc_5stage_shapes.py"

register_all_modules()


# Narrower MNC stages than the shapes configs keep these tests fast; the configs themselves are built above.
SMALL_HEADS = dict(warp_size=14, mask_size=14, mask_hidden_dim=32, cls_fc_dim=32)


def _build(config: Path = SHAPES_3, small: bool = True, **model_overrides):
    cfg = Config.fromfile(str(config))
    cfg.model.update(model_overrides)
    if small:
        cfg.model.cascade.update(SMALL_HEADS)
    return MODELS.build(cfg.model), cfg


def _dataset(cfg: Config, root: Path, split: str, pipeline=None):
    loader = cfg.train_dataloader if split == "train" else cfg.val_dataloader
    dataset_cfg = copy.deepcopy(loader.dataset)
    dataset_cfg.data_root = str(root) + "/"
    if pipeline is not None:
        dataset_cfg.pipeline = pipeline
    return DATASETS.build(dataset_cfg)


@pytest.mark.parametrize("config", sorted(CONFIG_DIR.glob("*.py")), ids=lambda p: p.stem)
def test_every_mnc_config_builds(config):
    model, cfg = _build(config, small=False)
    assert type(model).__name__ == "MNC"
    cascade, settings = model.cascade, cfg.model.cascade
    assert cascade.num_stages == settings.num_stages
    assert cascade.mask_stages[0].mask_size == settings.mask_size
    assert cascade.roi_warp.featmap_strides == tuple(float(s) for s in settings.featmap_strides)
    assert cascade.roi_warp.output_size == settings.warp_size
    assert cascade.box_grad == settings.box_grad and cascade.share_weights == settings.share_weights
    weights = cfg.model.loss_weights
    assert all((w.mask, w.cls, w.box) == (weights.mask, weights.cls, weights.box)
               for w in cascade.loss_weights)
    assert model.rpn_loss_weights == dict(loss_rpn_cls=weights.rpn_cls, loss_rpn_bbox=weights.rpn_box)
    assert model.postprocessor.nms_iou == cfg.model.test_cfg.rcnn.nms_iou
    assert model.postprocessor.mask_thr == cfg.model.test_cfg.rcnn.mask_thr


def test_shapes_configs_share_stage_one_with_mask_rcnn():
    mnc = Config.fromfile(str(SHAPES_5)).model
    mask_rcnn = Config.fromfile(str(CONFIG_DIR.parent / "mask_rcnn" / "mask_rcnn_shapes.py")).model
    for key in ("backbone", "neck", "rpn_head", "data_preprocessor"):
        assert mnc[key] == mask_rcnn[key], key
    assert mnc.train_cfg.rpn == mask_rcnn.train_cfg.rpn
    assert mnc.train_cfg.rpn_proposal == mask_rcnn.train_cfg.rpn_proposal
    assert mnc.test_cfg.rpn == mask_rcnn.test_cfg.rpn


@pytest.mark.parametrize("config", [SHAPES_3, SHAPES_5], ids=["3stage", "5stage"])
def test_two_training_iterations_through_mmdet_data_structures(config, shapes_dataset):
    torch.manual_seed(0)
    model, cfg = _build(config)
    dataset = _dataset(cfg, shapes_dataset, "train")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.002, momentum=0.9)
    optim_wrapper = OptimWrapper(optimizer, clip_grad=dict(max_norm=35))
    model.train()
    before = model.rpn_head.rpn_reg.weight.detach().clone()
    for iteration in range(2):
        batch = pseudo_collate([dataset[i] for i in range(2 * iteration, 2 * iteration + 2)])
        log = model.train_step(batch, optim_wrapper)
        assert torch.isfinite(log["loss"])
        stages = 3 if config == SHAPES_3 else 5
        expected = {"loss_rpn_cls", "loss_rpn_bbox"} | {f"loss_mask_s{s}" for s in range(2, stages, 2)}
        expected |= {f"loss_{kind}_s{s}" for s in range(3, stages + 1, 2) for kind in ("cls", "box")}
        assert expected <= set(log)
    assert not torch.equal(before, model.rpn_head.rpn_reg.weight)


@pytest.mark.parametrize("box_grad", [True, False])
def test_cascade_losses_reach_the_rpn_box_deltas_only_with_box_grad(box_grad, shapes_dataset):
    torch.manual_seed(0)
    model, cfg = _build(SHAPES_5)
    model.cascade.box_grad = box_grad
    dataset = _dataset(cfg, shapes_dataset, "train")
    data = model.data_preprocessor(pseudo_collate([dataset[0], dataset[1]]), True)
    model.train()
    losses = model(**data, mode="loss")
    cascade_loss = sum(value for name, value in losses.items() if not name.startswith("loss_rpn"))
    cascade_loss.backward()
    regression_grad = model.rpn_head.rpn_reg.weight.grad
    if box_grad:
        assert regression_grad is not None and regression_grad.abs().sum() > 0
    else:
        assert regression_grad is None or torch.count_nonzero(regression_grad) == 0
    assert model.rpn_head.rpn_cls.weight.grad is None  # objectness only ranks proposals


def test_box_gradient_into_the_rpn_deltas_is_bounded_per_image(shapes_dataset):
    # MNC-code clips each image's gradient at box_grad_clip (one image per batch); our losses are batch
    # means, so the bound on the batch gradient must shrink with the batch or the box gradient outweighs
    # the RPN's own regression loss batch-size times more than in MNC-code.
    torch.manual_seed(0)
    clip = 1e-4
    model, cfg = _build(SHAPES_3)
    model.cascade.box_grad_clip = clip
    captured = {}
    model.rpn_head.register_forward_hook(lambda module, args, output: captured.update(deltas=output[1]))
    dataset = _dataset(cfg, shapes_dataset, "train")
    data = model.data_preprocessor(pseudo_collate([dataset[i] for i in range(4)]), True)
    model.train()
    losses = model(**data, mode="loss")
    for level_deltas in captured["deltas"]:
        level_deltas.retain_grad()
    (1e4 * sum(value for name, value in losses.items() if not name.startswith("loss_rpn"))).backward()
    largest = max(level_deltas.grad.abs().max() for level_deltas in captured["deltas"])
    assert largest == pytest.approx(clip / 4, rel=1e-4)


def test_predict_returns_masks_at_the_original_image_size(shapes_dataset):
    torch.manual_seed(0)
    model, cfg = _build(SHAPES_5)
    pipeline = copy.deepcopy(cfg.val_dataloader.dataset.pipeline)
    resize = next(step for step in pipeline if step["type"] == "Resize")
    resize["scale"] = (96, 96)  # network input 96 x 96, originals 128 x 128
    dataset = _dataset(cfg, shapes_dataset, "val", pipeline)
    model.eval()
    # An untrained classifier scores every class ~0.2; a zero threshold keeps detections to look at.
    model.postprocessor.score_thr = 0.0
    with torch.no_grad():
        samples = model.test_step(pseudo_collate([dataset[0], dataset[1]]))
    for sample in samples:
        assert tuple(sample.img_shape) == (96, 96) and tuple(sample.ori_shape) == (128, 128)
        predictions = sample.pred_instances
        count = len(predictions.scores)
        assert 0 < count <= 100
        assert predictions.masks.shape == (count, 128, 128) and predictions.masks.dtype == torch.bool
        assert predictions.bboxes.shape == (count, 4) and predictions.labels.max() < 4
        assert predictions.bboxes[:, 2:].max() <= 128 and predictions.bboxes.min() >= 0
        assert predictions.bboxes[:, 2:].max() > 96  # boxes were rescaled to the original size
        assert torch.all(predictions.scores[:-1] >= predictions.scores[1:])


def test_proposal_control_is_applied_between_stage_one_and_the_cascade(shapes_dataset):
    model, cfg = _build(SHAPES_3, proposal_control=dict(mode="oracle", oracle_iou=0.8, oracle_per_gt=3))
    dataset = _dataset(cfg, shapes_dataset, "val")
    data = model.data_preprocessor(pseudo_collate([dataset[0]]), False)
    features = model.extract_feat(data["inputs"])
    _, proposals = model._proposals(features, data["data_samples"], training=False)
    gt_boxes = data["data_samples"][0].gt_instances.bboxes
    assert proposals[0].shape == (3 * len(gt_boxes), 4)


@pytest.mark.parametrize("overrides, field", [
    (dict(cascade=dict(num_classes=4, num_stages=4)), "model.cascade.num_stages"),
    (dict(cascade=dict(num_classes=4, num_stages=1)), "model.cascade.num_stages"),
    (dict(cascade=dict(num_classes=4, mask_size=3)), "model.cascade.mask_size"),
    (dict(cascade=dict(num_classes=4, warp_size=27)), "model.cascade.warp_size"),
    (dict(cascade=dict(num_classes=4, cls_fc_dim=0)), "model.cascade.cls_fc_dim"),
    (dict(cascade=dict(num_classes=4, box_grad_clip=-1.0)), "model.cascade.box_grad_clip"),
    (dict(cascade=dict(num_classes=4, colour="red")), "model.cascade"),
    (dict(cascade=dict(num_stages=3)), "model.cascade.num_classes"),
    (dict(cascade=dict(num_classes=4, in_channels=32)), "model.cascade.in_channels"),
    (dict(loss_weights=dict(mask=-1.0)), "model.loss_weights.mask"),
    (dict(loss_weights=dict(rpn_cls=-0.5)), "model.loss_weights.rpn_cls"),
    (dict(loss_weights=dict(cls=[1.0, 1.0])), "model.loss_weights.cls"),
    (dict(backbone=dict(type="NoSuchNet")), "model.backbone.type"),
    (dict(proposal_control=dict(mode="mcg")), "model.proposal_control.mode"),
    (dict(proposal_control=dict(strength=3)), "model.proposal_control"),
    (dict(cascade=dict(num_classes=4, stage3_labels="boxes")), "model.cascade.stage3_labels"),
    (dict(cascade=dict(num_classes=4, seg_label_iou=0.0)), "model.cascade.seg_label_iou"),
    (dict(cascade=dict(num_classes=4, featmap_strides=[])), "model.cascade.featmap_strides"),
])
def test_invalid_config_raises_value_error_naming_the_field(overrides, field):
    cfg = Config.fromfile(str(SHAPES_3))
    model_cfg = cfg.model.to_dict()
    for key, value in overrides.items():
        replaces = key in ("cascade", "backbone")
        model_cfg[key] = value if replaces else {**(model_cfg.get(key) or {}), **value}
    with pytest.raises(ValueError, match=field.replace(".", r"\.")) as error:
        MODELS.build(model_cfg)
    assert isinstance(error.value, ConfigError)


@pytest.mark.parametrize("section, value, field", [
    ("train_cfg", dict(rcnn=dict(fg_fraction=0.0)), "model.train_cfg.rcnn.fg_fraction"),
    ("train_cfg", dict(rcnn=dict(batch=3)), "model.train_cfg.rcnn"),
    ("train_cfg", dict(rcnn=dict(bg_fractions=[0.5, 0.5])), "model.train_cfg.rcnn.bg_fractions"),
    ("test_cfg", dict(rcnn=dict(nms_iou=0.0)), "model.test_cfg.rcnn.nms_iou"),
    ("test_cfg", dict(rpn=dict(nms=dict(type="soft_nms", iou_threshold=0.7))), "model.test_cfg.rpn.nms"),
])
def test_invalid_train_and_test_settings_name_the_field(section, value, field):
    cfg = Config.fromfile(str(SHAPES_3))
    cfg.model[section].update(value)
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        MODELS.build(cfg.model)


def test_single_level_c4_model_without_neck_trains(shapes_dataset):
    """The faithful variant's structure (one stride-16 level, no neck) on a tiny ResNet-18 C4: the stride-16
    map alone reaches the stages, which produce 21 x 21 masks and both stage-3 classifiers."""
    cfg = Config.fromfile(str(SHAPES_3))
    model_cfg = cfg.model.to_dict()
    model_cfg.pop("neck")
    model_cfg["backbone"].update(num_stages=3, strides=(1, 2, 2), dilations=(1, 1, 1), out_indices=(2,))
    model_cfg["rpn_head"].update(
        in_channels=256, feat_channels=64,
        anchor_generator=dict(type="AnchorGenerator", scales=[2, 4, 8], ratios=[0.5, 1.0, 2.0], strides=[16]),
    )
    model_cfg["cascade"].update(SMALL_HEADS, featmap_strides=[16], in_channels=256, mask_size=21)
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    assert model.cascade.roi_warp.featmap_strides == (16.0,) and model.cascade.stage3_labels == "both"
    captured = {}

    def keep(name, value) -> None:  # the first round's; a hook that returns something replaces the value
        captured.setdefault(name, value)

    warp_and_pool = model.cascade.roi_warp.pooled

    def pooled(features, boxes, **sizes):
        keep("features", features)
        return warp_and_pool(features, boxes, **sizes)

    model.cascade.roi_warp.pooled = pooled
    model.cascade.mask_stages[0].register_forward_hook(lambda module, args, out: keep("masks", out))
    model.cascade.class_stages[0].register_forward_hook(lambda module, args, out: keep("stage3", out))
    dataset = _dataset(cfg, shapes_dataset, "train")
    batch = pseudo_collate([dataset[0], dataset[1]])
    data = model.data_preprocessor(batch, True)
    model.train()
    losses = model(**data, mode="loss")
    (features,) = captured["features"]
    height, width = data["inputs"].shape[-2:]
    assert features.shape == (2, 256, height // 16, width // 16)
    rois = captured["masks"].shape[0]
    assert rois > 0 and captured["masks"].shape == (rois, 21, 21)
    stage3 = captured["stage3"]
    assert stage3.cls_logits.shape == stage3.seg_cls_logits.shape == (rois, 5)
    assert stage3.box_deltas.shape == (rois, 4, 4)
    assert {"loss_mask_s2", "loss_cls_s3", "loss_seg_cls_s3", "loss_box_s3"} <= set(losses)
    optim_wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.002))
    log = model.train_step(batch, optim_wrapper)
    assert torch.isfinite(log["loss"])


def _val_at_96(cfg: Config, root: Path):
    """The val split with network inputs of 96 x 96 (originals 128 x 128: scale factor 0.75)."""
    pipeline = copy.deepcopy(cfg.val_dataloader.dataset.pipeline)
    next(step for step in pipeline if step["type"] == "Resize")["scale"] = (96, 96)
    return _dataset(cfg, root, "val", pipeline)


def test_predict_without_rescale_stays_in_network_input_pixels(shapes_dataset):
    torch.manual_seed(0)
    model, cfg = _build(SHAPES_5)
    dataset = _val_at_96(cfg, shapes_dataset)
    model.eval()
    model.postprocessor.score_thr = 0.0
    with torch.no_grad():
        data = model.data_preprocessor(pseudo_collate([dataset[0]]), False)
        (raw,) = model.predict(data["inputs"], data["data_samples"], rescale=False)
        data = model.data_preprocessor(pseudo_collate([dataset[0]]), False)
        (rescaled,) = model.predict(data["inputs"], data["data_samples"], rescale=True)
    raw, rescaled = raw.pred_instances, rescaled.pred_instances
    count = len(raw.scores)
    assert count > 0 and raw.masks.shape == (count, 96, 96) and raw.bboxes.max() <= 96
    assert rescaled.masks.shape == (count, 128, 128)
    torch.testing.assert_close(raw.scores, rescaled.scores)
    torch.testing.assert_close(raw.bboxes, rescaled.bboxes * 0.75)


def test_oracle_proposals_at_test_time_are_in_network_input_pixels(shapes_dataset):
    # Test pipelines load annotations after Resize: the ground truth is in original pixels (128 x 128 here)
    # while the cascade works at 96 x 96.
    model, cfg = _build(SHAPES_3, proposal_control=dict(mode="oracle", oracle_iou=0.8, oracle_per_gt=3))
    dataset = _val_at_96(cfg, shapes_dataset)
    data = model.data_preprocessor(pseudo_collate([dataset[0]]), False)
    with torch.no_grad():
        features = model.extract_feat(data["inputs"])
        _, (proposals,) = model._proposals(features, data["data_samples"], training=False)
    gt_in_input_pixels = get_box_tensor(data["data_samples"][0].gt_instances.bboxes) * 0.75
    count = len(gt_in_input_pixels)
    own_iou = box_iou(proposals, gt_in_input_pixels)[torch.arange(3 * count), torch.arange(3 * count) % count]
    torch.testing.assert_close(own_iou, torch.full_like(own_iou, 0.8), atol=1e-3, rtol=0)


def test_an_invalid_cascade_setting_is_a_one_line_error_of_training(shapes_dataset, tmp_path, capsys):
    options = [f"data_root={shapes_dataset}", "model.cascade.num_stages=4"]
    assert main(["train", str(SHAPES_3), "--work-dir", str(tmp_path), "--cfg-options", *options]) == 2
    lines = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "model.cascade.num_stages" in lines[0] and "odd" in lines[0]
