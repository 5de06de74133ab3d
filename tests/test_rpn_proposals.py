"""Stage-1 proposals that stay differentiable in the RPN's box deltas."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("mmcv.ops")
from mmdet.models.dense_heads import RPNHead  # noqa: E402

from mnc_bench.models.mnc.boxes import clip_boxes, inside_image  # noqa: E402
from mnc_bench.models.rpn_proposals import rpn_proposals  # noqa: E402

IMAGE = (48, 64)  # height, width


def _head() -> RPNHead:
    return RPNHead(
        in_channels=4,
        feat_channels=4,
        anchor_generator=dict(type="AnchorGenerator", scales=[2, 4], ratios=[0.5, 1.0, 2.0], strides=[8]),
        bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0] * 4),
    )


def _outputs(head: RPNHead) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    torch.manual_seed(0)
    height, width = IMAGE[0] // 8, IMAGE[1] // 8
    scores = torch.randn(1, head.num_base_priors, height, width)
    deltas = (0.3 * torch.randn(1, head.num_base_priors * 4, height, width)).requires_grad_(True)
    return [scores], [deltas]


def test_proposals_are_clipped_and_carry_gradient_to_the_deltas():
    head = _head()
    scores, deltas = _outputs(head)
    (proposals,) = rpn_proposals(head, scores, deltas, [IMAGE], nms_pre=0, max_per_img=50, nms_iou=0.7)
    assert 0 < proposals.shape[0] <= 50
    assert proposals[:, 0::2].min() >= 0 and proposals[:, 0::2].max() <= IMAGE[1]
    assert proposals[:, 1::2].min() >= 0 and proposals[:, 1::2].max() <= IMAGE[0]
    proposals.sum().backward()
    assert deltas[0].grad.abs().sum() > 0


def test_anchors_and_proposals_crossing_the_border_send_no_gradient():
    head = _head()
    scores, deltas = _outputs(head)
    (proposals,) = rpn_proposals(head, scores, deltas, [IMAGE], nms_pre=0, max_per_img=1000, nms_iou=1.0)
    proposals.sum().backward()
    # One row per (y, x, anchor), in the order of the head's priors.
    gradient = deltas[0].grad[0].permute(1, 2, 0).reshape(-1, 4)
    anchors = head.prior_generator.grid_priors([deltas[0].shape[-2:]], device="cpu")[0]
    decoded = head.bbox_coder.decode(anchors, deltas[0].detach()[0].permute(1, 2, 0).reshape(-1, 4))
    inside = inside_image(anchors, IMAGE) & inside_image(decoded, IMAGE)
    has_gradient = gradient.abs().sum(dim=1) > 0
    assert has_gradient.any() and (~inside).any()
    assert not has_gradient[~inside].any()


def test_gradient_into_the_deltas_is_clamped_element_wise():
    head = _head()
    scores, deltas = _outputs(head)
    (proposals,) = rpn_proposals(
        head, scores, deltas, [IMAGE], nms_pre=0, max_per_img=50, nms_iou=0.7, delta_grad_clip=1e-3
    )
    (100 * proposals).sum().backward()
    assert deltas[0].grad.abs().max() == pytest.approx(1e-3)


def test_min_bbox_size_drops_proposals_not_larger_in_both_sides():
    head = _head()
    scores, deltas = _outputs(head)
    settings = dict(nms_pre=0, max_per_img=1000, nms_iou=1.0)  # IoU 1.0: NMS removes nothing
    (every,) = rpn_proposals(head, scores, deltas, [IMAGE], min_bbox_size=-1.0, **settings)
    shortest_side = (every[:, 2:] - every[:, :2]).min(dim=1).values
    threshold = float(shortest_side.median())
    (kept,) = rpn_proposals(head, scores, deltas, [IMAGE], min_bbox_size=threshold, **settings)
    assert 0 < len(kept) == int((shortest_side > threshold).sum()) < len(every)
    assert ((kept[:, 2:] - kept[:, :2]).min(dim=1).values > threshold).all()


def test_nms_pre_keeps_the_best_scoring_anchors_of_a_level():
    head = _head()
    scores, deltas = _outputs(head)
    (proposals,) = rpn_proposals(head, scores, deltas, [IMAGE], nms_pre=10, max_per_img=1000, nms_iou=1.0)
    # Rows in the order of the head's priors: (y, x, anchor).
    objectness = scores[0][0].permute(1, 2, 0).reshape(-1).sigmoid()
    best = objectness.topk(10).indices
    anchors = head.prior_generator.grid_priors([scores[0].shape[-2:]], device="cpu")[0]
    level_deltas = deltas[0].detach()[0].permute(1, 2, 0).reshape(-1, 4)
    expected = clip_boxes(head.bbox_coder.decode(anchors[best], level_deltas[best]), IMAGE)
    torch.testing.assert_close(proposals.detach(), expected)
