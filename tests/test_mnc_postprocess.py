"""Inference post-processing on hand-made instances: NMS, score threshold, cap, voting, pasting, rescaling;
and the batched voting and pasting against the per-detection reference they replaced."""

from __future__ import annotations

import pytest
import torch

from mnc_bench.models.mnc import CascadeOutput, MNCPostProcessor, paste_masks, postprocess

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


def test_mask_voting_of_an_image_without_instances_gives_no_detections():
    # Oracle proposals leave an image without ground truth without RoIs: nothing reaches the voting.
    empty = CascadeOutput(mask_boxes=torch.zeros(0, 4), mask_logits=torch.zeros(0, M, M),
                          class_probs=torch.zeros(0, NUM_CLASSES + 1),
                          class_boxes=torch.zeros(0, NUM_CLASSES, 4))
    found = MNCPostProcessor(score_thr=0.0, mask_voting=True)(empty, image_size=(16, 16))
    assert len(found.scores) == 0 and found.masks.shape == (0, 16, 16)


def test_mask_vote_is_weighted_by_the_voters_scores():
    processor = MNCPostProcessor(mask_thr=0.5, voting_iou=0.5)
    # One low-scored full-box voter (mask IoU 0.75): 0.1 / (0.9 + 0.1) on the right quarter stays below 0.5
    # (an unweighted mean would give 0.5 and fill it).
    instances = _instances(boxes=[[0, 0, 16, 16]] * 2, masks=[_mask(slice(0, 6)), _mask()],
                           scores=[[0.9, 0.0], [0.1, 0.0]])
    voted = processor(instances, image_size=(16, 16))
    assert voted.masks[0, :, :12].all() and not voted.masks[0, :, 12:].any()


def test_nms_runs_on_the_mask_boxes_not_the_regressed_class_boxes():
    far_apart = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 1.0, 1.0]],
                              [[50.0, 50.0, 60.0, 60.0], [0.0, 0.0, 1.0, 1.0]]])
    # Mask boxes overlap (IoU 0.9 > 0.3), class boxes do not: one detection.
    overlapping_masks = _instances(boxes=[[0, 0, 20, 20], [0, 0, 20, 19]], masks=[_mask()] * 2,
                                   scores=[[0.9, 0.0], [0.8, 0.0]], class_boxes=far_apart)
    detections = MNCPostProcessor(mask_voting=False)(overlapping_masks, image_size=(64, 64))
    assert detections.scores.tolist() == pytest.approx([0.9])
    # Mask boxes apart, class boxes identical: both stay.
    same_class_boxes = torch.tensor([[[0.0, 0.0, 20.0, 20.0]] * 2] * 2)
    apart_masks = _instances(boxes=[[0, 0, 20, 20], [40, 40, 60, 60]], masks=[_mask()] * 2,
                             scores=[[0.9, 0.0], [0.8, 0.0]], class_boxes=same_class_boxes)
    detections = MNCPostProcessor(mask_voting=False)(apart_masks, image_size=(64, 64))
    assert detections.scores.tolist() == pytest.approx([0.9, 0.8])


def test_voters_need_the_detection_class_score_above_the_threshold():
    processor = MNCPostProcessor(mask_thr=0.5, voting_iou=0.5, score_thr=0.05)
    # 20 full-box masks scored 0.5 for class 1 and 0.04 for class 0: below score_thr for class 0, so they do
    # not vote for the class-0 detection (if they did, 20 x 0.04 / 1.3 > 0.5 would fill the right quarter).
    instances = _instances(boxes=[[0, 0, 16, 16]] * 21, masks=[_mask(slice(0, 6))] + [_mask()] * 20,
                           scores=[[0.5, 0.0]] + [[0.04, 0.5]] * 20)
    voted = processor(instances, image_size=(16, 16))
    class0 = voted.masks[voted.labels == 0]
    assert len(class0) == 1 and class0[0, :, :12].all() and not class0[0, :, 12:].any()


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


# ----------------------------------------------------------------------------------------------------------
# The batched voting and pasting give the outputs of the per-detection loops they replaced (kept here only).
# ----------------------------------------------------------------------------------------------------------

def _reference_paste(masks, boxes, image_size, *, threshold):
    height, width = image_size
    pasted = torch.zeros(masks.shape[0], height, width, dtype=torch.bool)
    columns = torch.stack((boxes[:, 0].floor(), boxes[:, 2].ceil()), dim=1).clamp(0, width).long().tolist()
    rows = torch.stack((boxes[:, 1].floor(), boxes[:, 3].ceil()), dim=1).clamp(0, height).long().tolist()
    for index, ((x_begin, x_end), (y_begin, y_end)) in enumerate(zip(columns, rows)):
        if x_end <= x_begin or y_end <= y_begin:
            continue
        ys = torch.arange(y_begin, y_end, dtype=torch.float32) + 0.5
        xs = torch.arange(x_begin, x_end, dtype=torch.float32) + 0.5
        soft = postprocess.resample_masks(masks[index : index + 1], boxes[index : index + 1],
                                          ys[None], xs[None])[0]
        pasted[index, y_begin:y_end, x_begin:x_end] = soft >= threshold
    return pasted


def _reference_vote(processor, mask_boxes, mask_probs, class_scores, instance_ids, class_ids):
    resolution = processor.voting_resolution
    frames = mask_boxes.new_zeros(len(instance_ids), 4)
    voted = mask_probs.new_zeros(len(instance_ids), resolution, resolution)
    grid = (torch.arange(resolution, dtype=mask_probs.dtype) + 0.5) / resolution
    box_areas = (mask_boxes[:, 2] - mask_boxes[:, 0]) * (mask_boxes[:, 3] - mask_boxes[:, 1])
    mask_areas = (mask_probs >= processor.mask_thr).flatten(1).float().mean(dim=1) * box_areas
    for index, (kept, class_id) in enumerate(zip(instance_ids.tolist(), class_ids.tolist())):
        top_left = torch.maximum(mask_boxes[kept, :2], mask_boxes[:, :2])
        bottom_right = torch.minimum(mask_boxes[kept, 2:], mask_boxes[:, 2:])
        box_intersection = (bottom_right - top_left).clamp(min=0).prod(dim=1)
        intersection = torch.minimum(box_intersection, torch.minimum(mask_areas, mask_areas[kept]))
        bound = intersection / torch.maximum(mask_areas, mask_areas[kept]).clamp(min=1e-6)
        possible = bound > postprocess._PRUNE_SLACK * processor.voting_iou
        candidates = ((class_scores[:, class_id] > processor.score_thr) & possible).nonzero().squeeze(1)
        candidates = torch.cat((candidates.new_tensor([kept]), candidates[candidates != kept]))
        boxes = mask_boxes[candidates]
        frame = torch.cat((boxes[:, :2].min(dim=0).values, boxes[:, 2:].max(dim=0).values))
        ys = (frame[1] + grid * (frame[3] - frame[1])).expand(len(candidates), resolution)
        xs = (frame[0] + grid * (frame[2] - frame[0])).expand(len(candidates), resolution)
        resampled = postprocess.resample_masks(mask_probs[candidates], boxes, ys, xs)
        binary = (resampled >= processor.mask_thr).to(mask_probs.dtype)
        intersection = (binary * binary[:1]).flatten(1).sum(dim=1)
        union = (binary + binary[:1]).clamp(max=1).flatten(1).sum(dim=1)
        voters = intersection > processor.voting_iou * union
        voters[0] = True
        weights = class_scores[candidates[voters], class_id]
        frames[index] = frame
        voted[index] = (weights[:, None, None] * binary[voters]).sum(dim=0) / weights.sum()
    return frames, voted


def _random_instances(seed: int, num: int = 300, size: float = 96.0) -> CascadeOutput:
    """Like a cascade's output: clusters of jittered boxes around 8 objects with similar noisy masks (plenty
    of voters), plus scattered boxes of all sizes (some leaving the image, three of zero size); 4 classes."""
    generator = torch.Generator().manual_seed(seed)
    clustered = num // 2
    objects = torch.rand(8, 2, generator=generator) * size
    object_extents = torch.rand(8, 2, generator=generator) * size * 0.5 + 8
    owner = torch.randint(0, 8, (clustered,), generator=generator)
    jitter = 1 + 0.1 * torch.randn(clustered, 4, generator=generator)
    cluster_boxes = torch.cat((objects[owner] - object_extents[owner] / 2 * jitter[:, :2],
                               objects[owner] + object_extents[owner] / 2 * jitter[:, 2:]), dim=1)
    centres = torch.rand(num - clustered, 2, generator=generator) * size * 1.2 - 0.1 * size
    extents = torch.rand(num - clustered, 2, generator=generator) ** 2 * size * 0.8 + 0.5
    boxes = torch.cat((cluster_boxes, torch.cat((centres - extents / 2, centres + extents / 2), dim=1)))
    boxes[-3:, 2:] = boxes[-3:, :2]  # zero-size boxes
    shapes = torch.randn(8, 14, 14, generator=generator).cumsum(1).cumsum(2) / 4  # smooth blobs
    logits = torch.cat((shapes[owner], torch.zeros(num - clustered, 14, 14)))
    logits = logits + torch.randn(num, 14, 14, generator=generator)
    scores = torch.randn(num, 5, generator=generator) * 2
    scores[:clustered, 1:].scatter_add_(1, (owner % 4)[:, None], torch.full((clustered, 1), 3.0))
    class_boxes = boxes[:, None].repeat(1, 4, 1) + torch.randn(num, 4, 4, generator=generator)
    return CascadeOutput(mask_boxes=boxes, mask_logits=logits, class_probs=scores.softmax(dim=1),
                         class_boxes=class_boxes)


@pytest.mark.parametrize("seed, score_thr, batch_elements",
                         [(0, 0.05, 1 << 22), (1, 0.0, 1 << 22), (2, 0.05, 5000)])
def test_batched_voting_and_pasting_match_the_per_detection_reference(monkeypatch, seed, score_thr,
                                                                       batch_elements):
    # A small batch budget splits the pairs and the paste windows into many batches.
    monkeypatch.setattr(postprocess, "_BATCH_ELEMENTS", batch_elements)
    instances = _random_instances(seed)
    processor = MNCPostProcessor(score_thr=score_thr, voting_resolution=24)
    image_size = (80, 100)
    detections = processor(instances, image_size=image_size)
    assert len(detections.scores) == 100

    mask_probs, class_scores = instances.mask_logits.sigmoid(), instances.class_probs[:, 1:]
    instance_ids = torch.stack([(class_scores[:, label] == score).nonzero()[0, 0]
                                for label, score in zip(detections.labels, detections.scores)])
    frames, voted = processor.vote(instances.mask_boxes, mask_probs, class_scores, instance_ids,
                                   detections.labels)
    reference_frames, reference_voted = _reference_vote(
        processor, instances.mask_boxes, mask_probs, class_scores, instance_ids, detections.labels)
    torch.testing.assert_close(frames, reference_frames, rtol=0, atol=0)
    torch.testing.assert_close(voted, reference_voted, rtol=1e-5, atol=1e-6)
    reference_masks = _reference_paste(reference_voted, reference_frames, image_size,
                                       threshold=processor.mask_thr)
    assert reference_masks.any(dim=(1, 2)).sum() > 50
    assert ((voted > 0) & (voted < 1)).any(dim=(1, 2)).sum() >= 5  # detections with voters beyond their own
    assert torch.equal(detections.masks, reference_masks)


def test_batched_paste_matches_the_reference_at_any_threshold(monkeypatch):
    monkeypatch.setattr(postprocess, "_BATCH_ELEMENTS", 3000)
    instances = _random_instances(3, num=60, size=40.0)
    soft = instances.mask_logits.sigmoid()
    for threshold in (0.0, 0.3, 0.9):  # 0: every in-box pixel, and none outside the box crop
        expected = _reference_paste(soft, instances.mask_boxes, (40, 36), threshold=threshold)
        assert torch.equal(paste_masks(soft, instances.mask_boxes, (40, 36), threshold=threshold), expected)
