"""Training targets and the rules around them: foreground threshold, RoI sampling (Fast R-CNN's and
MNC-code's), box-loss normalisation, delta clamping, ground truth in later rounds, batches without RoIs."""

from __future__ import annotations

import math

import pytest
import torch

from mnc_bench.models.mnc import BoxCoder, InstanceTargets, RoISampling
from mnc_bench.models.mnc.class_stage import box_loss
from mnc_bench.models.mnc.targets import assign_rois, sample_rois

GT = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
MNC_CODE = dict(
    num_rois=64, fg_fraction=0.3, bg_iou_ranges=[(0.1, 0.5), (0.0, 0.1)], bg_fractions=[0.85, 0.15]
)


def _target(boxes: torch.Tensor, labels: list[int]) -> InstanceTargets:
    return InstanceTargets(boxes=boxes, labels=torch.tensor(labels), masks=torch.ones(len(boxes), 32, 32))


def test_a_roi_at_exactly_the_foreground_iou_is_foreground():
    # [0, 0, 10, 20] against [0, 0, 10, 10]: IoU 100 / 200 = 0.5 exactly (MNC-code and py-faster-rcnn: >=).
    rois = torch.tensor([[0.0, 0.0, 10.0, 20.0], [0.0, 0.0, 10.0, 20.5], [20.0, 20.0, 30.0, 30.0]])
    assignment = assign_rois(rois, _target(GT, [2]), fg_iou=0.5)
    assert assignment.labels.tolist() == [2, 0, 0]
    # With background drawn from [0, 0.1) only, a RoI at 0.5 is sampled only as foreground.
    sampling = RoISampling(num_rois=2, fg_fraction=0.5, bg_iou_ranges=[(0.0, 0.1)])
    assert sample_rois(rois, GT, sampling).tolist() == [0, 2]


def _boxes_at_ious() -> tuple[torch.Tensor, torch.Tensor]:
    """40 RoIs at IoU 0.6, 40 at 0.3, 40 at 0.05 with GT [0, 0, 10, 10] (widths 10 / IoU, heights 10)."""
    widths = torch.tensor([10 / 0.6] * 40 + [10 / 0.3] * 40 + [10 / 0.05] * 40)
    boxes = torch.stack((torch.zeros(120), torch.zeros(120), widths, torch.full((120,), 10.0)), dim=1)
    iou = torch.tensor([0.6] * 40 + [0.3] * 40 + [0.05] * 40)
    return boxes, iou


def test_mnc_code_sampler_draws_its_fractions_from_its_iou_ranges():
    boxes, iou = _boxes_at_ious()
    torch.manual_seed(0)
    chosen = sample_rois(boxes, GT, RoISampling(**MNC_CODE))
    # round(64 * 0.3) = 19 foreground; background budget 45: round(38.25) = 38 and round(6.75) = 7.
    assert [int((iou[chosen] == v).sum()) for v in (0.6, 0.3, 0.05)] == [19, 38, 7]
    assert len(set(chosen.tolist())) == 64


def test_mnc_code_sampler_does_not_refill_a_short_range_but_background_fills_missing_foreground():
    boxes, iou = _boxes_at_ious()
    keep = torch.cat((torch.arange(0, 5), torch.arange(40, 50), torch.arange(80, 120)))  # 5 / 10 / 40 RoIs
    chosen = sample_rois(boxes[keep], GT, RoISampling(**MNC_CODE))
    # 5 foreground; budget 59 -> [0.1, 0.5) wants 50 but has 10 (not refilled), [0, 0.1) gets round(8.85) = 9.
    assert [int((iou[keep][chosen] == v).sum()) for v in (0.6, 0.3, 0.05)] == [5, 10, 9]


def test_default_sampler_is_one_background_range_filled_from_all_of_it():
    boxes, iou = _boxes_at_ious()
    chosen = sample_rois(boxes, GT, RoISampling(num_rois=64, fg_fraction=0.25))
    assert int((iou[chosen] == 0.6).sum()) == 16 and len(chosen) == 64


@pytest.mark.parametrize("kwargs, field", [
    (dict(bg_iou_ranges=[(0.1, 0.6)]), "sampling.bg_iou_ranges"),
    (dict(bg_iou_ranges=[(0.3, 0.1)]), "sampling.bg_iou_ranges"),
    (dict(bg_iou_ranges=[(0.1, 0.5), (0.0, 0.1)], bg_fractions=[1.0]), "sampling.bg_fractions"),
    (dict(bg_iou_ranges=[(0.1, 0.5), (0.0, 0.1)], bg_fractions=[0.9, 0.2]), "sampling.bg_fractions"),
])
def test_invalid_background_ranges_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        RoISampling(**kwargs)


def test_box_loss_is_normalised_by_all_rois_not_the_foreground(tiny_mnc):
    deltas = torch.zeros(4, tiny_mnc.NUM_CLASSES, 4)
    labels = torch.tensor([2, 0, 0, 0])
    targets = torch.zeros(4, 4)
    targets[0] = torch.tensor([0.5, 0.0, 0.0, 0.0])  # smooth L1 (beta 1) of 0.5: 0.125
    assert box_loss(deltas, labels, targets).item() == pytest.approx(0.125 / 4)
    deltas[1:, :, :] = 7.0  # background RoIs' deltas are not regressed
    assert box_loss(deltas, labels, targets).item() == pytest.approx(0.125 / 4)


def test_decoding_clamps_the_log_scale_deltas():
    coder = BoxCoder()
    box = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    huge = torch.tensor([[0.0, 0.0, 1e4, -1e4]])  # exp() overflows without the clamp
    decoded = coder.decode(box, huge)
    assert torch.isfinite(decoded).all()
    width, height = decoded[0, 2] - decoded[0, 0], decoded[0, 3] - decoded[0, 1]
    assert width.item() == pytest.approx(16 * 1000 / 16) and height.item() == pytest.approx(16 * 16 / 1000)
    assert coder.max_log_scale == pytest.approx(math.log(1000 / 16))


def test_later_rounds_see_the_regressed_rois_plus_the_ground_truth(tiny_mnc):
    torch.manual_seed(0)
    cascade = tiny_mnc.make_cascade(5)
    seen: list[list[torch.Tensor]] = []
    warp_and_pool = cascade.roi_warp.pooled  # what each round calls (the warp fused with its pooling)

    def pooled(features, boxes, **sizes):
        seen.append(list(boxes))
        return warp_and_pool(features, boxes, **sizes)

    cascade.roi_warp.pooled = pooled
    images, proposals, targets = tiny_mnc.make_batch()
    cascade.loss(tiny_mnc.TinyBackbone()(images), proposals, targets, [(tiny_mnc.IMAGE, tiny_mnc.IMAGE)] * 3)
    first, second = seen
    for before, after, target in zip(first, second, targets):
        count = len(target.boxes)
        assert len(after) == len(before) + count
        torch.testing.assert_close(after[len(before):], target.boxes)


@pytest.mark.parametrize("labels", ["box", "both"])
def test_predict_with_no_proposal_in_any_image(labels, tiny_mnc):
    """Warp 8 and mask 6 differ: stage 3 resizes the masks, which must cope with an empty batch."""
    cascade = tiny_mnc.make_cascade(5, labels=labels).eval()
    images, _, _ = tiny_mnc.make_batch()
    with torch.no_grad():
        outputs = cascade.predict(tiny_mnc.TinyBackbone()(images), [torch.zeros(0, 4)] * 3,
                                  [(tiny_mnc.IMAGE, tiny_mnc.IMAGE)] * 3)
    for output in outputs:
        assert output.mask_boxes.shape == (0, 4) and output.mask_logits.shape == (0, 6, 6)
        assert output.class_probs.shape == (0, tiny_mnc.NUM_CLASSES + 1)
        assert output.class_boxes.shape == (0, tiny_mnc.NUM_CLASSES, 4)


@pytest.mark.parametrize("labels", ["box", "both"])
def test_loss_without_ground_truth_or_proposals(labels, tiny_mnc):
    cascade = tiny_mnc.make_cascade(5, labels=labels)
    backbone = tiny_mnc.TinyBackbone()
    images, _, _ = tiny_mnc.make_batch()
    empty = InstanceTargets(boxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long),
                            masks=torch.zeros(0, tiny_mnc.IMAGE, tiny_mnc.IMAGE))
    losses = cascade.loss(backbone(images), [torch.zeros(0, 4)] * 3, [empty] * 3,
                          [(tiny_mnc.IMAGE, tiny_mnc.IMAGE)] * 3)
    assert all(value.item() == 0 for value in losses.values())
    sum(losses.values()).backward()
