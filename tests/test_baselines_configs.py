"""Every config in configs/ loads through mnc_bench.config_loading and builds its model; the zoo is complete."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("mmcv.ops")

from mnc_bench.config_loading import load_config  # noqa: E402
from mnc_bench.registration import register_all  # noqa: E402

CONFIGS_DIR = Path(__file__).resolve().parents[1] / "configs"
CONFIGS = sorted(p for p in CONFIGS_DIR.rglob("*.py") if "_base_" not in p.parts)


def _build(cfg):
    from mmdet.registry import MODELS
    from mmengine.registry import DefaultScope

    with DefaultScope.overwrite_default_scope("mmdet"):
        return MODELS.build(cfg.model)


def test_the_zoo_is_complete():
    """Issue 4: every model x {shapes, coco R50, coco R101, voc_sbd}."""
    names = {str(p.relative_to(CONFIGS_DIR)) for p in CONFIGS}
    expected = {
        "mask_rcnn/mask_rcnn_shapes.py", "mask_rcnn/mask_rcnn_r50_fpn_coco.py",
        "mask_rcnn/mask_rcnn_r101_fpn_coco.py", "mask_rcnn/mask_rcnn_voc_sbd.py",
        "panet/panet_shapes.py", "panet/panet_r50_coco.py", "panet/panet_r101_coco.py", "panet/panet_voc_sbd.py",
        "mnc/mnc_3stage_shapes.py", "mnc/mnc_3stage_coco_r50.py", "mnc/mnc_3stage_coco_r101.py",
        "mnc/mnc_3stage_voc_sbd.py",
        "mnc/mnc_5stage_shapes.py", "mnc/mnc_5stage_coco_r50.py", "mnc/mnc_5stage_coco_r101.py",
        "mnc/mnc_5stage_voc_sbd.py",
    }
    assert expected <= names, sorted(expected - names)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS_DIR)))
def test_config_builds_its_model(config):
    register_all()
    cfg = load_config(config)
    model = _build(cfg)
    assert type(model).__name__ == cfg.model.type
    assert sum(p.numel() for p in model.parameters()) > 0
    # Every config holds the dataset's normalisation and padding (the fairness guard in load_config).
    assert cfg.model.data_preprocessor == cfg.data_preprocessor


def _shared_stage_one(cfg) -> dict:
    model = cfg.model.to_dict()
    train_cfg, test_cfg = model.get("train_cfg", {}), model.get("test_cfg", {})
    neck = dict(model["neck"])
    neck.pop("type")  # PANet swaps FPN for PAFPN: same arguments, same widths
    return dict(backbone=model["backbone"], neck=neck, rpn_head=model["rpn_head"],
                rpn=train_cfg.get("rpn"), rpn_proposal=train_cfg.get("rpn_proposal"), test_rpn=test_cfg.get("rpn"),
                data_preprocessor=model["data_preprocessor"], train_dataloader=cfg.train_dataloader.to_dict(),
                val_evaluator=cfg.val_evaluator.to_dict(), train_cfg=cfg.train_cfg.to_dict(),
                optim_wrapper=cfg.optim_wrapper.to_dict())


def test_shapes_models_share_backbone_neck_rpn_data_and_schedule():
    configs = [p for p in CONFIGS if p.stem.endswith("_shapes")]
    assert {"mask_rcnn_shapes", "panet_shapes"} <= {p.stem for p in configs}
    reference = _shared_stage_one(load_config(CONFIGS_DIR / "mask_rcnn" / "mask_rcnn_shapes.py"))
    assert reference["backbone"]["depth"] == 18 and reference["neck"]["out_channels"] == 64
    assert reference["rpn_proposal"]["max_per_img"] == reference["test_rpn"]["max_per_img"] == 300
    for config in configs:
        assert _shared_stage_one(load_config(config)) == reference, config.name


@pytest.mark.parametrize("dataset, depth", [("coco", 50), ("coco", 101), ("voc_sbd", 50)])
def test_full_size_models_of_a_dataset_share_stage_one_data_and_schedule(dataset, depth):
    """The controlled comparisons: same backbone, FPN, RPN, input pipeline, schedule and evaluator (the single-level
    C4 MNC is the faithful variant and deliberately differs)."""
    configs = [p for p in CONFIGS if dataset in p.stem and "c4" not in p.stem
               and load_config(p).model.backbone.depth == depth]
    assert {p.parent.name for p in configs} == {"mask_rcnn", "panet", "mnc"}, configs
    reference = _shared_stage_one(load_config(configs[0]))
    for config in configs[1:]:
        assert _shared_stage_one(load_config(config)) == reference, config.name


def test_full_size_configs_read_pretrained_weights_from_a_local_path_only():
    for config in CONFIGS:
        cfg = load_config(config)
        init_cfg = cfg.model.backbone.get("init_cfg")
        if init_cfg:
            assert "://" not in init_cfg["checkpoint"], config.name
            assert init_cfg["checkpoint"] == cfg.backbone_checkpoint
