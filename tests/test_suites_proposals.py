"""Proposal recall of an MNC model through the adapter's public ``proposals``: the boxes stage 2 sees, in
order, at the original image size (no training: the oracle's boxes do not depend on the weights)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("mmcv.ops")

import torch  # noqa: E402
from mmdet.registry import MODELS  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

from mnc_bench.config_loading import load_config  # noqa: E402
from mnc_bench.suites.proposals import proposal_recall  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def test_oracle_proposals_at_iou_092_give_ar_09_at_the_original_image_size(shapes_dataset, tmp_path):
    cfg = load_config(REPO / "configs/mnc/mnc_3stage_shapes.py", {"data_root": f"{shapes_dataset}/"})
    cfg.model.proposal_control = dict(mode="oracle", oracle_iou=0.92)
    (resize,) = [step for step in cfg.test_dataloader.dataset.pipeline if step["type"] == "Resize"]
    # the 128-pixel images reach the network at 200 pixels: boxes must be scaled back
    resize["scale"] = (200, 200)
    init_default_scope("mmdet")
    checkpoint = tmp_path / "random.pth"
    torch.save({"state_dict": MODELS.build(cfg.model).state_dict()}, checkpoint)
    metrics = proposal_recall(cfg, str(checkpoint),
                              str(shapes_dataset / "annotations" / "instances_val.json"))
    # each ground truth's first box is at IoU 0.92: found at IoU .5, .55, ..., .9 and not at .95
    assert metrics["proposals/AR@10"] == pytest.approx(0.9, abs=1e-6)
    assert metrics["proposals/AR@100"] == pytest.approx(0.9, abs=1e-6)


def test_the_recall_pass_runs_on_the_device_the_runner_trains_on(shapes_dataset, tmp_path, monkeypatch):
    """On a GPU machine mmengine's get_device() says 'cuda'; here it says 'meta', and the model and its inputs
    must both be found there (the stage-1 pass itself is replaced: nothing runs on 'meta')."""
    import mmengine.device

    import mnc_bench.suites.proposals as recall

    cfg = load_config(REPO / "configs/mnc/mnc_3stage_shapes.py", {"data_root": f"{shapes_dataset}/"})
    init_default_scope("mmdet")
    checkpoint = tmp_path / "random.pth"
    torch.save({"state_dict": MODELS.build(cfg.model).state_dict()}, checkpoint)
    seen = []
    monkeypatch.setattr(mmengine.device, "get_device", lambda: "meta")
    monkeypatch.setattr(recall, "_proposals", lambda model, inputs, samples: seen.append(
        (next(model.parameters()).device.type, inputs.device.type)) or [])
    import mnc_bench.evaluation

    monkeypatch.setattr(mnc_bench.evaluation, "evaluate", lambda *args, **kwargs: {})
    recall.proposal_recall(cfg, str(checkpoint), str(shapes_dataset / "annotations" / "instances_val.json"))
    assert seen and set(seen) == {("meta", "meta")}
