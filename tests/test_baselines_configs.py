"""Every config in configs/ loads through mnc_bench.config_loading and builds its model; the zoo is
complete."""

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
        "panet/panet_shapes.py", "panet/panet_r50_coco.py", "panet/panet_r101_coco.py",
        "panet/panet_voc_sbd.py",
        "mnc/mnc_3stage_shapes.py", "mnc/mnc_3stage_coco_r50.py", "mnc/mnc_3stage_coco_r101.py",
        "mnc/mnc_3stage_voc_sbd.py",
        "mnc/mnc_5stage_shapes.py", "mnc/mnc_5stage_coco_r50.py", "mnc/mnc_5stage_coco_r101.py",
        "mnc/mnc_5stage_voc_sbd.py",
        # Issue 11: the cascade line and the unified line.
        *(f"{model}/{model}_{variant}.py"
          for model, variants in (
              ("cascade_mask_rcnn", ("shapes", "r50_fpn_coco", "r101_fpn_coco", "voc_sbd")),
              ("htc", ("shapes", "r50_fpn_coco", "r101_fpn_coco", "voc_sbd")),
              ("solov2", ("shapes", "r50_fpn_coco", "r101_fpn_coco", "voc_sbd")),
              ("mask2former", ("shapes", "r50_coco", "r101_coco", "voc_sbd")))
          for variant in variants),
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


# Parts of the shared stage one an architecture has no place for; everything else it must share exactly.
NO_RPN = {"SOLOv2", "SOLOv2MaskBoxes", "Mask2Former"}  # box-free / query-based: no proposals
NO_NECK = {"Mask2Former"}  # its pixel decoder takes the FPN's place (checked against the FPN below)


def _shared_stage_one(cfg) -> dict:
    model = cfg.model.to_dict()
    train_cfg, test_cfg = model.get("train_cfg", {}), model.get("test_cfg", {})
    parts = dict(backbone=model["backbone"], data_preprocessor=model["data_preprocessor"],
                 train_dataloader=cfg.train_dataloader.to_dict(), val_evaluator=cfg.val_evaluator.to_dict(),
                 train_cfg=cfg.train_cfg.to_dict(), optim_wrapper=cfg.optim_wrapper.to_dict())
    if model["type"] in NO_NECK:
        assert "neck" not in model, cfg.filename
    else:
        parts["neck"] = dict(model["neck"])
        parts["neck"].pop("type")  # PANet swaps FPN for PAFPN: same arguments, same widths
    if model["type"] in NO_RPN:
        assert "rpn_head" not in model and "rpn" not in train_cfg and "rpn" not in test_cfg, cfg.filename
    else:
        parts.update(rpn_head=model["rpn_head"], rpn=train_cfg.get("rpn"),
                     rpn_proposal=train_cfg.get("rpn_proposal"), test_rpn=test_cfg.get("rpn"))
    return parts


def _assert_shares_stage_one(config: Path, reference: dict) -> None:
    """``config`` holds every shared part it has exactly as ``reference`` (a model with all of them)."""
    cfg = load_config(config)
    parts = _shared_stage_one(cfg)
    assert parts == {key: reference[key] for key in parts}, config.name
    if cfg.model.type in NO_NECK:  # the pixel decoder reads the FPN's inputs at the FPN's width
        head = cfg.model.panoptic_head
        assert head.in_channels == reference["neck"]["in_channels"], config.name
        assert head.feat_channels == head.out_channels == reference["neck"]["out_channels"], config.name


def test_shapes_models_share_backbone_neck_rpn_data_and_schedule():
    configs = [p for p in CONFIGS if p.stem.endswith("_shapes")]
    assert {"mask_rcnn_shapes", "panet_shapes", "cascade_mask_rcnn_shapes", "htc_shapes", "solov2_shapes",
            "mask2former_shapes"} <= {p.stem for p in configs}
    reference = _shared_stage_one(load_config(CONFIGS_DIR / "mask_rcnn" / "mask_rcnn_shapes.py"))
    assert reference["backbone"]["depth"] == 18 and reference["neck"]["out_channels"] == 64
    assert reference["rpn_proposal"]["max_per_img"] == reference["test_rpn"]["max_per_img"] == 300
    for config in configs:
        _assert_shares_stage_one(config, reference)


@pytest.mark.parametrize("dataset, depth", [("coco", 50), ("coco", 101), ("voc_sbd", 50)])
def test_full_size_models_of_a_dataset_share_stage_one_data_and_schedule(dataset, depth):
    """The controlled comparisons: same backbone, FPN, RPN (where the model has them), input pipeline,
    schedule and evaluator (the single-level C4 MNC is the faithful variant and deliberately differs)."""
    configs = [p for p in CONFIGS if dataset in p.stem and "c4" not in p.stem
               and load_config(p).model.backbone.depth == depth]
    assert {p.parent.name for p in configs} == {"mask_rcnn", "panet", "mnc", "cascade_mask_rcnn", "htc",
                                                 "solov2", "mask2former"}, configs
    reference = _shared_stage_one(load_config(next(p for p in configs if p.parent.name == "mask_rcnn")))
    for config in configs:
        _assert_shares_stage_one(config, reference)


def _class_counts(node, key: str = "model") -> list[tuple[str, int]]:
    """Every ``num_classes`` / ``num_things_classes`` in a model config and every class-weight length - 1."""
    found = []
    if isinstance(node, dict):
        for name, value in node.items():
            if name in ("num_classes", "num_things_classes") and isinstance(value, int):
                found.append((f"{key}.{name}", value))
            elif name == "class_weight" and value is not None:
                found.append((f"{key}.{name} (length - 1: 'no object')", len(value) - 1))
            else:
                found += _class_counts(value, f"{key}.{name}")
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            found += _class_counts(value, f"{key}[{index}]")
    return found


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS_DIR)))
def test_every_head_predicts_the_datasets_classes(config):
    """A head left at another dataset's class count (one of a cascade's three, a class-weight list) builds and
    trains silently; catch it here."""
    cfg = load_config(config)
    classes = (cfg.train_dataloader.dataset.get("metainfo") or {}).get("classes")
    expected = len(classes) if classes else 80  # mmdet's CocoDataset: the 80 COCO classes
    counts = _class_counts(cfg.model.to_dict())
    assert counts and all(count == expected for _, count in counts), (expected, counts)


def test_full_size_configs_read_pretrained_weights_from_a_local_path_only():
    for config in CONFIGS:
        cfg = load_config(config)
        detector = cfg.model.get("detector", cfg.model)  # video models wrap an image detector
        init_cfg = detector.backbone.get("init_cfg")
        if init_cfg:
            assert "://" not in init_cfg["checkpoint"], config.name
            assert init_cfg["checkpoint"] == cfg.backbone_checkpoint


def test_loaded_configs_are_not_yapf_formatted(monkeypatch):
    """mmengine formats a config's text with yapf whenever it is printed or saved (every checkpoint, ~0.5 s
    each); load_config turns that off, which mmengine 0.10.7's fromfile forgets for .py configs."""
    import mmengine.config.config as mmengine_config

    def refuse(*args, **kwargs):
        raise AssertionError("yapf was called")

    monkeypatch.setattr(mmengine_config, "FormatCode", refuse)
    cfg = load_config(CONFIGS_DIR / "mnc" / "mnc_3stage_shapes.py", ["train_cfg.max_iters=3"])
    assert "max_iters=3" in cfg.pretty_text


@pytest.mark.slow
def test_validating_a_suite_does_not_import_torchvision(tmp_path):
    """Validating a suite (every config read and every model built, what `mnc-bench run` does before any run
    starts) leaves torchvision unimported: its ops pull in torch._dynamo, ~1 s on the way to the first
    training iteration; our models import it on first use, idle suite workers ahead of time."""
    import subprocess
    import sys

    suite = tmp_path / "two.yaml"
    suite.write_text("grid:\n  config: [configs/mnc/mnc_5stage_shapes.py, configs/panet/panet_shapes.py]\n"
                     "seeds: [0]\n")
    probe = ("import sys\n"
             "from mnc_bench.suites.spec import load_suite\n"
             f"assert len(load_suite({str(suite)!r}).runs) == 2\n"
             "print(sorted(m for m in ('torchvision', 'torch._dynamo') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                          cwd=CONFIGS_DIR.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
