"""Stage 3's classifiers (box-level, mask-level, both): labels, losses, gradient gate, test scores, bridge."""

from __future__ import annotations

import math

import pytest
import torch

from mnc_bench.models.mnc import InstanceTargets
from mnc_bench.models.mnc.class_stage import classification_loss
from mnc_bench.models.mnc.targets import mask_level_labels

M = 4  # mask grid of the hand-made cases: 4 x 4 cells of 4 x 4 px over a 16 x 16 px RoI


def _square_target() -> InstanceTargets:
    """One object of class 2 filling the box [0, 0, 16, 16] of a 32 x 32 image (256 px)."""
    masks = torch.zeros(1, 32, 32, dtype=torch.bool)
    masks[0, :16, :16] = True
    box = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    return InstanceTargets(boxes=box, labels=torch.tensor([2]), masks=masks)


def _mask_logits(columns_on: list[int]) -> torch.Tensor:
    """[1, M, M] logits: +10 in the given columns of the grid, -10 elsewhere."""
    logits = torch.full((1, M, M), -10.0)
    logits[0, :, columns_on] = 10.0
    return logits


@pytest.mark.parametrize("columns_on, expected", [
    ([0, 1, 2, 3], 2),  # the whole box: mask IoU 1
    ([0, 1], 2),  # half of the object: mask IoU 128 / 256 = 0.5, a positive (>=, as MNC-code's FG_SEG_THRESH)
    ([0], 0),  # a quarter: mask IoU 0.25 although the box IoU is 1 -> mask-level background
])
def test_mask_level_labels_follow_the_mask_iou(columns_on, expected):
    target = _square_target()
    box = target.boxes
    label = mask_level_labels(
        _mask_logits(columns_on), torch.ones(1, M, M), box, torch.tensor([256.0]), torch.tensor([2]),
        mask_thr=0.4, iou_thr=0.5,
    )
    assert label.tolist() == [expected]


def test_mask_level_masks_are_binarised_at_mask_thr():
    """MNC-code binarises the stage-2 probabilities at 0.4 (BINARIZE_THRESH): a mask of probability 0.45
    everywhere covers the whole RoI."""
    logits = torch.full((1, M, M), math.log(0.45 / 0.55))
    args = (torch.ones(1, M, M), _square_target().boxes, torch.tensor([256.0]), torch.tensor([2]))
    assert mask_level_labels(logits, *args, mask_thr=0.4, iou_thr=0.5).tolist() == [2]
    assert mask_level_labels(logits, *args, mask_thr=0.5, iou_thr=0.5).tolist() == [0]


def test_mask_level_iou_counts_the_object_outside_the_roi():
    # The RoI is the left half of the object and its mask fills it: the grid sees a perfect match, but the
    # union holds the whole object (256 px), so the mask IoU is 128 / 256 = 0.5; at 200 px of object outside
    # the RoI it is 128 / 328 < 0.5.
    roi = torch.tensor([[0.0, 0.0, 8.0, 16.0]])
    logits = torch.full((1, M, M), 10.0)
    def label(object_area: float) -> int:
        coverage, area = torch.ones(1, M, M), torch.tensor([object_area])
        labels = mask_level_labels(logits, coverage, roi, area, torch.tensor([1]), mask_thr=0.4, iou_thr=0.5)
        return int(labels)

    assert label(256.0) == 1 and label(328.0) == 0


def test_cascade_labels_box_level_foreground_by_mask_iou_and_box_level_background_never(tiny_mnc):
    """An object made of a 16 x 16 square and a thin line to its right (box [8, 8, 56, 24], 288 px), and
    three RoIs: its box with a mask on the square (box and mask positive: mask IoU 256 / 288), its box with a
    mask on half the square (box positive, mask IoU 128 / 288: mask-level background), and the square's box
    with a mask on the square (box IoU 1/3, mask IoU 0.89, but box-level background: MNC-code's MaskLayer
    labels only the box-level foreground). The same three again with probability 0.45 where the mask is on:
    binarised at 0.4, as MNC-code."""
    cascade = tiny_mnc.make_cascade(3, labels="both")
    masks = torch.zeros(1, tiny_mnc.IMAGE, tiny_mnc.IMAGE)
    masks[0, 8:24, 8:24] = 1
    masks[0, 8, 24:56] = 1
    box = torch.tensor([[8.0, 8.0, 56.0, 24.0]])
    target = InstanceTargets(boxes=box, labels=torch.tensor([3]), masks=masks)
    rois = torch.tensor([[8.0, 8.0, 56.0, 24.0], [8.0, 8.0, 56.0, 24.0], [8.0, 8.0, 24.0, 24.0]]).repeat(2, 1)
    mask_logits = torch.full((6, 6, 6), -10.0)  # the 6 x 6 grid: columns of 8 px over the object's box
    mask_logits[0, :, :2] = 10.0
    mask_logits[1, :, :1] = 10.0
    mask_logits[2] = 10.0
    mask_logits[3:] = torch.where(mask_logits[:3] > 0, math.log(0.45 / 0.55), -10.0)  # probability 0.45: on
    areas = [target.masks.flatten(1).sum(dim=1)]
    result = cascade._round_targets([rois], mask_logits, [target], areas)
    assert result.labels.tolist() == [3, 3, 0] * 2
    assert result.seg_labels.tolist() == [3, 0, 0] * 2
    # the best mask IoU here is 256 / 288 = 0.89
    strict = tiny_mnc.make_cascade(3, labels="both", seg_label_iou=0.9)
    assert strict._round_targets([rois], mask_logits, [target], areas).seg_labels.tolist() == [0] * 6


@pytest.mark.parametrize("labels, heads, keys", [
    ("box", ("classifier",), {"loss_cls_s3"}),
    ("mask", ("seg_classifier",), {"loss_seg_cls_s3"}),
    ("both", ("classifier", "seg_classifier"), {"loss_cls_s3", "loss_seg_cls_s3"}),
])
def test_stage3_labels_choose_the_classifiers_and_their_losses(labels, heads, keys, tiny_mnc):
    torch.manual_seed(0)
    cascade = tiny_mnc.make_cascade(5, labels=labels)
    stage = cascade.class_stages[0]
    present = [name for name in ("classifier", "seg_classifier") if getattr(stage, name) is not None]
    assert present == list(heads)
    images, proposals, targets = tiny_mnc.make_batch()
    losses = cascade.loss(tiny_mnc.TinyBackbone()(images), proposals, targets,
                          [(tiny_mnc.IMAGE, tiny_mnc.IMAGE)] * 3)
    stage3_keys = {key for key in losses if "cls" in key}
    assert stage3_keys == keys | {key.replace("_s3", "_s5") for key in keys}
    assert all(torch.isfinite(value) and value > 0 for value in losses.values())


@pytest.mark.parametrize("labels", ["box", "both"])
def test_classification_gradient_reaches_only_the_masks_of_the_scoring_classifiers_positives(
        labels, tiny_mnc):
    """MNC-code's MaskLayer passes the classification gradient into the masks of its mask-level positives
    only; with the box-level classifier alone, of the box-level foreground."""
    torch.manual_seed(0)
    cascade = tiny_mnc.make_cascade(3, labels=labels)
    images, proposals, targets = tiny_mnc.make_batch()
    features = tiny_mnc.TinyBackbone()(images)
    # Plus each object's box moved 7 px right: box IoU ~0.58, but an untrained mask (all probabilities ~0.5,
    # so the whole RoI once binarised) has mask IoU < 0.5 with the object.
    shift = torch.tensor([7.0, 0.0, 7.0, 0.0])
    boxes = [torch.cat((p.detach(), t.boxes + shift)) for p, t in zip(proposals, targets)]
    (result,) = cascade._run_rounds(features, boxes, [(tiny_mnc.IMAGE, tiny_mnc.IMAGE)] * 3, targets)
    result.mask_logits.retain_grad()
    stage3, round_targets = result.stage3, result.targets
    heads = ((stage3.cls_logits, round_targets.labels), (stage3.seg_cls_logits, round_targets.seg_labels))
    loss = sum(classification_loss(logits, label) for logits, label in heads if logits is not None)
    loss.backward()
    gate = (round_targets.seg_labels if labels == "both" else round_targets.labels) > 0
    reached = result.mask_logits.grad.flatten(1).abs().sum(dim=1) > 0
    assert gate.any() and (~gate).any()
    if labels == "both":  # the box-level foreground holds RoIs whose masks are not mask-level positives
        assert ((round_targets.labels > 0) & ~gate).any()
    assert torch.equal(reached, gate)


def _set_head(linear: torch.nn.Linear, favourite: int) -> None:
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.zero_()
        linear.bias[favourite] = 5.0


@pytest.mark.parametrize("labels, scoring_class", [("box", 1), ("mask", 2), ("both", 2)])
def test_test_scores_and_the_stage_bridge_use_the_configured_classifier(labels, scoring_class, tiny_mnc):
    torch.manual_seed(0)
    cascade = tiny_mnc.make_cascade(5, labels=labels).eval()
    stage = cascade.class_stages[0]
    if stage.classifier is not None:
        _set_head(stage.classifier, favourite=1)
    if stage.seg_classifier is not None:
        _set_head(stage.seg_classifier, favourite=2)
    with torch.no_grad():  # class c's deltas move a box by c * 0.1 widths to the right
        stage.box_regressor.weight.zero_()
        stage.box_regressor.bias.zero_()
        stage.box_regressor.bias.view(tiny_mnc.NUM_CLASSES, 4)[:, 0] = torch.arange(
            1.0, tiny_mnc.NUM_CLASSES + 1)
    images, proposals, _ = tiny_mnc.make_batch()
    with torch.no_grad():
        outputs = cascade.predict(tiny_mnc.TinyBackbone()(images), proposals,
                                  [(tiny_mnc.IMAGE, tiny_mnc.IMAGE)] * 3)
    for output, image_proposals in zip(outputs, proposals):
        count = len(image_proposals)
        assert torch.all(output.class_probs.argmax(dim=1) == scoring_class)
        expected = output.class_boxes[:count, scoring_class - 1]
        torch.testing.assert_close(output.mask_boxes[count:], expected)
