"""PANet's modules and switches: what each switch changes in the module graph, and every variant trains."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("mmcv.ops")

import torch  # noqa: E402

from mnc_bench.config_loading import load_config  # noqa: E402
from mnc_bench.registration import register_all  # noqa: E402

PANET_SHAPES = Path(__file__).resolve().parents[1] / "configs" / "panet" / "panet_shapes.py"
MASK_RCNN_SHAPES = Path(__file__).resolve().parents[1] / "configs" / "mask_rcnn" / "mask_rcnn_shapes.py"
SWITCHES = ("bottom_up_path", "adaptive_pooling", "fully_connected_fusion")


def _build(config: Path, **switches):
    from mmdet.registry import MODELS
    from mmengine.registry import DefaultScope

    register_all()
    cfg = load_config(config, {f"model.{key}": value for key, value in switches.items()})
    with DefaultScope.overwrite_default_scope("mmdet"):
        model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def test_full_panet_module_graph():
    model = _build(PANET_SHAPES)
    assert type(model.neck).__name__ == "PAFPN"
    head = model.roi_head
    assert (type(head.bbox_roi_extractor).__name__ == type(head.mask_roi_extractor).__name__
            == "AdaptiveRoIExtractor")
    assert len(head.bbox_head.level_fcs) == head.bbox_head.num_levels == 4  # one fc1 per pooled level
    assert len(head.mask_head.level_convs) == head.mask_head.num_levels == 4  # one conv1 per pooled level
    assert len(head.mask_head.convs) == 3  # conv2..conv4 shared after the fusion
    assert head.mask_head.fc_fusion and isinstance(head.mask_head.fusion_fc, torch.nn.Linear)
    assert head.mask_head.fusion_fc.out_features == 28 * 28
    assert head.mask_head.fusion_convs[1].conv.out_channels == head.mask_head.conv_out_channels // 2


@pytest.mark.parametrize("switch", SWITCHES)
def test_each_switch_removes_exactly_its_component(switch):
    full = _build(PANET_SHAPES)
    variant = _build(PANET_SHAPES, **{switch: False})
    assert getattr(variant, switch) is False
    if switch == "bottom_up_path":
        assert type(variant.neck).__name__ == "FPN"
        assert not hasattr(variant.neck, "downsample_convs")
    else:
        assert type(variant.neck).__name__ == "PAFPN"
    head = variant.roi_head
    if switch == "adaptive_pooling":
        assert type(head.bbox_roi_extractor).__name__ == "SingleRoIExtractor"
        assert len(head.bbox_head.level_fcs) == 1 and len(head.mask_head.level_convs) == 1
    else:
        assert len(head.bbox_head.level_fcs) == 4 and len(head.mask_head.level_convs) == 4
    if switch == "fully_connected_fusion":
        assert not head.mask_head.fc_fusion and not hasattr(head.mask_head, "fusion_fc")
    else:
        assert head.mask_head.fc_fusion
    full_params = sum(p.numel() for p in full.parameters())
    assert sum(p.numel() for p in variant.parameters()) < full_params


def test_all_switches_off_is_mask_rcnn():
    panet = _build(PANET_SHAPES, bottom_up_path=False, adaptive_pooling=False, fully_connected_fusion=False)
    mask_rcnn = _build(MASK_RCNN_SHAPES)
    shapes = sorted(tuple(p.shape) for p in panet.parameters())
    assert shapes == sorted(tuple(p.shape) for p in mask_rcnn.parameters())


def test_adaptive_extractor_pools_every_level_and_heads_fuse_them():
    model = _build(PANET_SHAPES).eval()
    feats = tuple(torch.randn(2, 64, 128 // s, 128 // s) for s in (4, 8, 16, 32, 64))
    rois = torch.tensor([[0, 4.0, 4.0, 30.0, 40.0], [1, 10.0, 20.0, 120.0, 110.0], [1, 0.0, 0.0, 8.0, 8.0]])
    head = model.roi_head
    bbox_feats = head.bbox_roi_extractor(feats[: head.bbox_roi_extractor.num_inputs], rois)
    assert bbox_feats.shape == (3, 4, 64, 7, 7)
    # Every level contributes (the single-level extractor would give one grid per RoI).
    assert all(bbox_feats[:, level].abs().sum() > 0 for level in range(4))
    cls_score, bbox_pred = head.bbox_head(bbox_feats)
    assert cls_score.shape == (3, 5) and bbox_pred.shape == (3, 16)
    mask_feats = head.mask_roi_extractor(feats[:4], rois)
    assert mask_feats.shape == (3, 4, 64, 14, 14)
    assert head.mask_head(mask_feats).shape == (3, 4, 28, 28)
    empty = head.bbox_roi_extractor(feats[:4], rois[:0])
    assert empty.shape == (0, 4, 64, 7, 7)


def test_adaptive_extractor_gives_the_roi_layers_rois_of_the_features_type():
    # Under mixed precision the features are fp16 and the training RoIs fp32; mmcv's CUDA RoIAlign reads both
    # as the features' type (mmdet's SingleRoIExtractor converts them too).
    extractor = _build(PANET_SHAPES).roi_head.bbox_roi_extractor
    seen = []
    for layer in extractor.roi_layers:
        layer.forward = lambda feat, rois, layer=layer: seen.append(rois.dtype) or torch.zeros(
            len(rois), feat.shape[1], *layer.output_size, dtype=feat.dtype)
    feats = tuple(torch.randn(1, 64, 32, 32, dtype=torch.float64) for _ in range(extractor.num_inputs))
    extractor(feats, torch.tensor([[0, 4.0, 4.0, 30.0, 40.0]]))
    assert seen == [torch.float64] * extractor.num_inputs


def test_box_head_fuses_by_elementwise_max_after_fc1():
    model = _build(PANET_SHAPES).eval()
    head = model.roi_head.bbox_head
    x = torch.randn(5, 4, 64, 7, 7)
    per_level = torch.stack([torch.relu(fc(x[:, i].flatten(1))) for i, fc in enumerate(head.level_fcs)])
    fused = per_level.max(dim=0).values
    for fc in head.shared_fcs:
        fused = torch.relu(fc(fused))
    cls_score, _ = head(x)
    assert torch.allclose(cls_score, head.fc_cls(fused), atol=1e-5)


def test_fc_fusion_adds_one_class_agnostic_mask_to_every_class():
    model = _build(PANET_SHAPES).eval()
    head = model.roi_head.mask_head
    x = torch.randn(3, 4, 64, 14, 14)
    with torch.no_grad():
        with_fusion = head(x)
        head.fc_fusion = False
        without = head(x)
        head.fc_fusion = True
    difference = with_fusion - without
    assert difference.abs().sum() > 0
    assert torch.allclose(difference, difference[:, :1].expand_as(difference), atol=1e-5)


@pytest.fixture(scope="module")
def train_batch(shapes_dataset):
    """Two packed training samples from the shapes fixture, through the config's own train pipeline."""
    from mmdet.registry import DATASETS
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import DefaultScope

    register_all()
    cfg = load_config(PANET_SHAPES, {"data_root": str(shapes_dataset)})
    with DefaultScope.overwrite_default_scope("mmdet"):
        dataset = DATASETS.build(cfg.train_dataloader.dataset)
    return pseudo_collate([dataset[0], dataset[1]])


VARIANTS = [
    {},
    {"bottom_up_path": False},
    {"adaptive_pooling": False},
    {"fully_connected_fusion": False},
    {"bottom_up_path": False, "adaptive_pooling": False, "fully_connected_fusion": False},
]


@pytest.mark.parametrize("switches", VARIANTS, ids=lambda s: ",".join(f"{k}=off" for k in s) or "full")
def test_every_variant_trains_an_iteration(train_batch, switches):
    from mmengine.optim import OptimWrapper

    torch.manual_seed(0)
    model = _build(PANET_SHAPES, **switches).train()
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    log_vars = model.train_step(train_batch, wrapper)
    assert all(torch.isfinite(torch.as_tensor(v)) for v in log_vars.values())
    assert {"loss_rpn_cls", "loss_cls", "loss_bbox", "loss_mask"} <= set(log_vars)
    changed = {name for name, p in model.named_parameters() if not torch.equal(p.detach(), before[name])}
    head = "roi_head.mask_head."
    assert any(name.startswith(head + "level_convs") for name in changed)
    assert any(name.startswith("roi_head.bbox_head.level_fcs") for name in changed)
    if switches.get("fully_connected_fusion", True):
        assert head + "fusion_fc.weight" in changed  # the fc branch receives gradient
    if switches.get("adaptive_pooling", True):
        assert all(f"roi_head.bbox_head.level_fcs.{i}.weight" in changed for i in range(4))
    if switches.get("bottom_up_path", True):
        assert any(name.startswith("neck.pafpn_convs") for name in changed)
