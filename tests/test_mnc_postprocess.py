"""Inference post-processing on hand-made instances: NMS, score threshold, cap, voting, pasting, rescaling."""

from __future__ import annotations

import pytest
import torch

from mnc_bench.models.mnc import CascadeOutput, MNCPostProcessor, paste_masks

NUM_CLASSES = 2
M = 8
BIG = 12.0  # a logit whose sigmoid is 1 to float precision


def _instances(boxes, masks, scores, class_boxes=None) -> CascadeOutput:
    """`scores`: [N, NUM_CLASSES] foreground probabilities; the background column gets the rest."""
    scores = torch.tensor(scores, dtype=torch.float32)
    probs = torch.cat(((1 - scores.sum(dim=1, keepdim=True)).clamp(min=0), scores), dim=1)
    boxes = torch.tensor(boxes, dtype=torch.float32)
    if class_boxes is None:
        class_boxes = boxes[:, None].repeat(1, NUM_CLASSES, 1)
    logits = torch.where(torch.stack(masks), BIG, -BIG)
    return CascadeOutput(mask_boxes=boxes, mask_logits=logits, class_probs=probs, class_boxes=class_boxes)


def _mask(columns: slice = slice(None)) -> torch.Tensor:
    mask = torch.zeros(M, M, dtype=torch.bool)
    mask[:, columns] = True
    return mask


def test_paste_fills_exactly_the_box_at_threshold_one_half():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 50.0], [0.0, 0.0, 16.0, 16.0]])
    masks = torch.stack((torch.ones(4, 4), torch.cat((torch.ones(4, 2), torch.zeros(4, 2)), dim=1)))
    pasted = paste_masks(masks, boxes, (64, 48), threshold=0.5)
    assert pasted.shape == (2, 64, 48) and pasted.dtype == torch.bool
    expected = torch.zeros(2, 64, 48, dtype=torch.bool)
    expected[0, 20:50, 10:30] = True
    expected[1, 0:16, 0:8] = True
    assert torch.equal(pasted, expected)


def test_paste_handles_boxes_outside_and_no_masks():
    box = torch.tensor([[-20.0, -20.0, 8.0, 8.0]])
    pasted = paste_masks(torch.ones(1, 4, 4), box, (16, 16), threshold=0.5)
    assert pasted[0, :8, :8].all() and not pasted[0, 8:].any() and not pasted[0, :, 8:].any()
    assert paste_masks(torch.zeros(0, 4, 4), torch.zeros(0, 4), (5, 7), threshold=0.5).shape == (0, 5, 7)


def test_classwise_nms_keeps_one_per_overlapping_group_and_both_classes():
    instances = _instances(
        boxes=[[0, 0, 20, 20], [1, 1, 21, 21], [1, 0, 20, 20], [40, 40, 60, 60]],
        masks=[_mask()] * 4,
        scores=[[0.9, 0.0], [0.8, 0.0], [0.0, 0.7], [0.6, 0.0]],
    )
    detections = MNCPostProcessor(mask_voting=False)(instances, image_size=(64, 64))
    assert detections.labels.tolist() == [0, 1, 0]
    assert detections.scores.tolist() == pytest.approx([0.9, 0.7, 0.6])
    assert detections.masks.shape == (3, 64, 64)


def test_score_threshold_and_cap():
    boxes = [[10 * i, 0, 10 * i + 8, 8] for i in range(6)]
    scores = [[0.01 + 0.1 * i, 0.0] for i in range(6)]
    instances = _instances(boxes, [_mask()] * 6, scores)
    assert len(MNCPostProcessor(score_thr=0.05)(instances, image_size=(16, 64)).scores) == 5
    capped = MNCPostProcessor(max_per_img=3)(instances, image_size=(16, 64))
    assert capped.scores.tolist() == pytest.approx([0.51, 0.41, 0.31])


def test_reported_box_is_the_class_specific_regressed_box_rescaled():
    class_boxes = torch.tensor([[[1.0, 1.0, 9.0, 9.0], [2.0, 3.0, 12.0, 14.0]]])
    instances = _instances([[0, 0, 10, 10]], [_mask()], [[0.1, 0.8]], class_boxes=class_boxes)
    detections = MNCPostProcessor(mask_voting=False)(instances, image_size=(40, 40), scale=(0.5, 0.5))
    assert detections.labels.tolist() == [1, 0]
    torch.testing.assert_close(detections.boxes[0], torch.tensor([4.0, 6.0, 24.0, 28.0]))
    expected = torch.zeros(40, 40, dtype=torch.bool)
    expected[0:20, 0:20] = True  # mask box [0, 0, 10, 10] at scale 0.5
    assert torch.equal(detections.masks[0], expected)


def _voting_case(voter_masks: list[torch.Tensor], voter_score: float):
    kept_mask = _mask(slice(0, 6))  # left three quarters
    box = [0, 0, 16, 16]
    return _instances(
        boxes=[box] * (1 + len(voter_masks)),
        masks=[kept_mask] + voter_masks,
        scores=[[0.5, 0.0]] + [[voter_score, 0.0]] * len(voter_masks),
    )


def test_mask_voting_averages_masks_with_high_mask_iou():
    processor = MNCPostProcessor(mask_thr=0.5, voting_iou=0.5)
    # Two full-box voters (mask IoU 0.75 with the kept mask) outvote it on the right quarter: 0.9 / 1.4 > 0.5.
    instances = _voting_case([_mask(), _mask()], voter_score=0.45)
    voted = processor(instances, image_size=(16, 16))
    assert len(voted.scores) == 1 and voted.scores.item() == pytest.approx(0.5)
    assert voted.masks[0].all()
    unvoted = MNCPostProcessor(mask_thr=0.5, mask_voting=False)(instances, image_size=(16, 16))
    assert unvoted.masks[0, :, :12].all() and not unvoted.masks[0, :, 12:].any()


def test_mask_voting_ignores_low_mask_iou_and_other_classes():
    processor = MNCPostProcessor(mask_thr=0.5, voting_iou=0.5)
    # Right-quarter masks have mask IoU 0 with the kept mask: they must not vote even with large weights.
    instances = _voting_case([_mask(slice(6, 8))] * 3, voter_score=0.45)
    voted = processor(instances, image_size=(16, 16))
    assert voted.masks[0, :, :12].all() and not voted.masks[0, :, 12:].any()
    # Full masks scored only for the other class do not vote for class 0 either.
    other_class = _voting_case([_mask(), _mask()], voter_score=0.0)
    other_class.class_probs[1:, 2] = 0.45
    voted = processor(other_class, image_size=(16, 16))
    class0 = voted.masks[voted.labels == 0][0]
    assert class0[:, :12].all() and not class0[:, 12:].any()


@pytest.mark.parametrize("kwargs, field", [
    (dict(score_thr=1.0), "score_thr"),
    (dict(nms_iou=0.0), "nms_iou"),
    (dict(max_per_img=0), "max_per_img"),
    (dict(mask_thr=1.0), "mask_thr"),
    (dict(voting_iou=1.0), "voting_iou"),
])
def test_invalid_settings_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        MNCPostProcessor(**kwargs)
