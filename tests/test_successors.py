"""MNC's successors beyond Mask R-CNN and PANet: the cascade line (Cascade Mask R-CNN, HTC) and the
unified line (SOLOv2, Mask2Former) train and test through the shared CLI path on CPU, and are the models they
claim to be."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("mmcv.ops")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from pycocotools import mask as mask_utils  # noqa: E402

from mnc_bench.cli import main  # noqa: E402
from mnc_bench.config_loading import load_config  # noqa: E402
from mnc_bench.registration import register_all  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
CASCADE = CONFIGS / "cascade_mask_rcnn" / "cascade_mask_rcnn_shapes.py"
HTC = CONFIGS / "htc" / "htc_shapes.py"
SOLOV2 = CONFIGS / "solov2" / "solov2_shapes.py"
MASK2FORMER = CONFIGS / "mask2former" / "mask2former_shapes.py"

# Test-time settings under which a 2-iteration model still emits detections, for the models without an RoI
# head (fast_options sets model.test_cfg.rcnn.* for the others). SOLOv2's untrained scores sit near its
# focal-loss prior (0.01), below its 0.1 threshold.
TEST_SETTINGS = {
    SOLOV2: ["model.test_cfg.score_thr=0.0", "model.test_cfg.filter_thr=0.0",
             "model.test_cfg.max_per_img=10"],
    MASK2FORMER: ["model.test_cfg.max_per_image=10"],
}


def _options(config: Path, root: Path, fast_options) -> list[str]:
    options = fast_options(root)
    if config in TEST_SETTINGS:
        options = [o for o in options if not o.startswith("model.test_cfg.rcnn.")] + TEST_SETTINGS[config]
    return options


def _build(config: Path):
    from mmdet.registry import MODELS
    from mmengine.registry import DefaultScope

    register_all()
    with DefaultScope.overwrite_default_scope("mmdet"):
        return MODELS.build(load_config(config).model)


@pytest.fixture
def cpu_fallbacks(monkeypatch):
    """Counts calls of the pure-PyTorch paths mmcv/mmdet take on CPU: multi-scale deformable attention and the
    sigmoid focal loss (their compiled ops are CUDA-only)."""
    from mmcv.ops import multi_scale_deform_attn
    from mmdet.models.losses import focal_loss

    calls = {"msda": 0, "focal": 0}

    def counting(module, name, key):
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            calls[key] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    counting(multi_scale_deform_attn, "multi_scale_deformable_attn_pytorch", "msda")
    counting(focal_loss, "py_sigmoid_focal_loss", "focal")
    return calls


@pytest.mark.slow
@pytest.mark.parametrize("config", [CASCADE, HTC, SOLOV2, MASK2FORMER], ids=lambda p: p.stem)
def test_two_iterations_and_a_test_pass_through_the_cli(config, shapes_dataset, tmp_path, capsys,
                                                        cpu_fallbacks, fast_options, check_results_file):
    work = tmp_path / "work"
    code = main(["train", str(config), "--work-dir", str(work), "--seed", "3",
                 "--cfg-options", *_options(config, shapes_dataset, fast_options)])
    printed = capsys.readouterr().out
    assert code == 0 and "iter_2.pth" in printed
    assert "coco/segm/AP " in printed and "voc_mnc/mAP@0.5 " in printed
    out = tmp_path / "pred.json"
    code = main(["test", str(config), str(work / "iter_2.pth"), "--out", str(out), "--work-dir", str(work),
                 "--cfg-options", *_options(config, shapes_dataset, fast_options)])
    printed = capsys.readouterr().out
    assert code == 0 and f"predictions {out}" in printed
    val_ann = shapes_dataset / "annotations" / "instances_val.json"
    records, file_ap = check_results_file(out, val_ann)
    assert file_ap == pytest.approx(float(printed.split("coco/segm/AP ")[1].split()[0]), abs=5e-5)
    assert torch.load(work / "iter_2.pth", map_location="cpu", weights_only=False)["meta"]["seed"] == 3
    # The CPU fall-backs the issue names carried the run (both would be 0 if a CUDA-only op had been taken).
    assert (cpu_fallbacks["msda"] > 0) == (config == MASK2FORMER)
    assert (cpu_fallbacks["focal"] > 0) == (config == SOLOV2)
    if config in (MASK2FORMER, SOLOV2):
        # Box-free models: every box is its mask's tight box (mmdet's Mask2Former; SOLOv2MaskBoxes for SOLOv2,
        # whose mmdet boxes are zeros).
        checked = 0
        for record in records[:20]:
            mask = mask_utils.decode(record["segmentation"])
            if mask.any():
                assert np.allclose(record["bbox"], mask_utils.toBbox(record["segmentation"]), atol=1.0)
                checked += 1
        assert checked > 0


def test_cascades_are_three_stage_and_htc_interleaves_without_a_semantic_branch():
    cascade, htc = _build(CASCADE), _build(HTC)
    for model in (cascade, htc):
        head = model.roi_head
        assert head.num_stages == 3 and len(head.bbox_head) == len(head.mask_head) == 3
        # One head per stage, not one shared: the stages train at IoU 0.5 / 0.6 / 0.7 on different boxes.
        assert len({id(stage.fc_cls.weight) for stage in head.bbox_head}) == 3
        assert [list(stage.bbox_coder.stds) for stage in head.bbox_head] == [
            [0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067]]
        assert all(stage.reg_class_agnostic for stage in head.bbox_head)
    assert type(cascade.roi_head.mask_head[0]).__name__ == "FCNMaskHead"
    assert htc.roi_head.interleaved and htc.roi_head.mask_info_flow and not htc.with_semantic
    # Mask information flow: stages 2 and 3 add the previous stage's mask features.
    assert [head.with_conv_res for head in htc.roi_head.mask_head] == [False, True, True]


@pytest.mark.parametrize("dataset", ["shapes", "r50_fpn_coco", "voc_sbd"])
def test_every_cascade_stage_samples_rois_as_mask_rcnn(dataset):
    """As for MNC (tests/test_mnc_configs.py): the controlled configs sample RoIs as the Mask R-CNN config of
    their dataset, at every stage (mmdet's cascades do the same at 512)."""
    sampler = load_config(CONFIGS / "mask_rcnn" / f"mask_rcnn_{dataset}.py").model.train_cfg.rcnn.sampler
    for folder in ("cascade_mask_rcnn", "htc"):
        stages = load_config(CONFIGS / folder / f"{folder}_{dataset}.py").model.train_cfg.rcnn
        assert len(stages) == 3 and all(stage.sampler == sampler for stage in stages), folder
        assert [stage.assigner.pos_iou_thr for stage in stages] == [0.5, 0.6, 0.7]


def test_unified_models_keep_the_shared_backbone_and_drop_the_rpn():
    reference = _build(CONFIGS / "mask_rcnn" / "mask_rcnn_shapes.py")
    solov2, mask2former = _build(SOLOV2), _build(MASK2FORMER)
    backbone_shapes = [tuple(p.shape) for p in reference.backbone.parameters()]
    for model in (solov2, mask2former):
        assert not hasattr(model, "rpn_head")
        assert [tuple(p.shape) for p in model.backbone.parameters()] == backbone_shapes
    neck_shapes = [tuple(p.shape) for p in reference.neck.parameters()]
    assert [tuple(p.shape) for p in solov2.neck.parameters()] == neck_shapes
    assert not mask2former.with_neck  # the pixel decoder below takes the FPN's place
    decoder = mask2former.panoptic_head.pixel_decoder
    assert type(decoder).__name__ == "MSDeformAttnPixelDecoder"
    # The pixel decoder reads C3-C5 (and C2 for its stride-4 output) at the shared neck width.
    assert decoder.mask_feature.out_channels == reference.neck.fpn_convs[0].conv.out_channels == 64
    assert mask2former.panoptic_head.num_stuff_classes == 0
    fusion_cfg = mask2former.panoptic_fusion_head.test_cfg
    assert not fusion_cfg.panoptic_on and not fusion_cfg.semantic_on and fusion_cfg.instance_on


@pytest.mark.parametrize("config", [MASK2FORMER, SOLOV2], ids=lambda path: path.stem)
def test_the_long_unified_schedules_change_only_the_length(config):
    """The labelled long-schedule rows are the shapes configs with 50 epochs: same model, data, optimizer,
    evaluator; the shared schedule's warm-up and lr steps at the same fractions of the new length."""
    short = load_config(config).to_dict()
    long = load_config(config.with_name(f"{config.stem}_50e.py")).to_dict()
    schedule_keys = {"train_cfg", "param_scheduler", "default_hooks", "max_iters"}
    differing = {key for key in short.keys() | long.keys() if short.get(key) != long.get(key)}
    assert differing <= schedule_keys | {"filename"}, differing - schedule_keys
    epoch_iters = short["synthetic_shapes"]["num_train"] // short["train_dataloader"]["batch_size"]
    assert long["train_cfg"]["max_iters"] == 50 * epoch_iters
    warmup, steps = long["param_scheduler"]
    assert warmup == short["param_scheduler"][0]
    fractions = [m / short["train_cfg"]["max_iters"] for m in short["param_scheduler"][1]["milestones"]]
    assert steps["milestones"] == [int(long["train_cfg"]["max_iters"] * f) for f in fractions]
    assert steps["end"] == long["train_cfg"]["max_iters"]
    assert long["default_hooks"]["checkpoint"]["max_keep_ckpts"] == -1  # part-way checkpoints stay scoreable
    assert ({k: v for k, v in long["default_hooks"].items() if k != "checkpoint"}
            == {k: v for k, v in short["default_hooks"].items() if k != "checkpoint"})
