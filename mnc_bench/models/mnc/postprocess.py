"""MNC inference post-processing: class-wise NMS, mask voting, pasting masks into the image.

Every cascade instance carries a soft m x m mask over its `mask_box` and a score per class. A detection is an
(instance, class) pair: class-wise box NMS (IoU 0.3) over the mask boxes, as MNC-code, keeps the best pairs,
then each kept mask is optionally replaced by a vote: the score-weighted mean of the binarised masks of all
instances whose score for that class passes `score_thr` and whose mask IoU with the kept mask exceeds
`voting_iou` (MNC-code binarises each mask before averaging; it selects voters by box IoU, the paper and this
code by mask IoU). Masks are binarised at `mask_thr` (0.4 in MNC-code) after pasting.
The reported box of a detection is its class-specific regressed box from the classification stage.

Masks are resampled as if resized to their box and pasted (MNC-code's cv2.resize): bilinear between cell
centres, x1 + (i + 0.5) * (x2 - x1) / m for an m x m mask, border values extended to the box edges, and zero
outside the box, so a pasted mask never leaks out of its box nor loses its corners. That sampling of an
axis-aligned grid is separable: resampling a mask onto any grid is two matrix products.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from mnc_bench.models.mnc.boxes import clip_boxes
from mnc_bench.models.mnc.cascade import CascadeOutput

# Voting skips instances whose mask-IoU upper bound is below this fraction of voting_iou; the slack covers the
# bound's mask areas being measured on the m x m grids rather than on the voting grid.
_PRUNE_SLACK = 0.75


@dataclass
class Detections:
    """Final detections of one image, in output-image pixels."""

    boxes: Tensor  # [D, 4] (x1, y1, x2, y2)
    scores: Tensor  # [D]
    labels: Tensor  # [D] int64, 0-based class index
    masks: Tensor  # [D, H, W] bool


def _tent_weights(positions: Tensor, start: Tensor, end: Tensor, cells: int) -> Tensor:
    """Bilinear weights [N, P, cells] of P sample positions [N, P] over `cells` cells spanning [start, end);
    positions outside get all-zero weights."""
    extent = (end - start).clamp(min=1e-6)
    coordinate = ((positions - start[:, None]) / extent[:, None] * cells - 0.5).clamp(min=0, max=cells - 1)
    inside = (positions >= start[:, None]) & (positions < end[:, None])
    centres = torch.arange(cells, dtype=positions.dtype, device=positions.device)
    return (1 - (coordinate[:, :, None] - centres).abs()).clamp(min=0) * inside[:, :, None]


def _iou_upper_bound(boxes: Tensor, mask_areas: Tensor, reference: int) -> Tensor:
    """Upper bound [N] on the mask IoU of every instance with instance `reference`, from boxes and mask areas.

    Masks lie inside their boxes, so intersection <= min(box intersection, both areas) and
    union >= both areas.
    """
    top_left = torch.maximum(boxes[reference, :2], boxes[:, :2])
    bottom_right = torch.minimum(boxes[reference, 2:], boxes[:, 2:])
    box_intersection = (bottom_right - top_left).clamp(min=0).prod(dim=1)
    area = mask_areas[reference]
    intersection = torch.minimum(box_intersection, torch.minimum(mask_areas, area))
    return intersection / torch.maximum(mask_areas, area).clamp(min=1e-6)


def resample_masks(masks: Tensor, boxes: Tensor, ys: Tensor, xs: Tensor) -> Tensor:
    """Sample soft masks [N, h, w] over boxes [N, 4] at rows ys [N, P] and columns xs [N, Q] -> [N, P, Q]."""
    row_weights = _tent_weights(ys, boxes[:, 1], boxes[:, 3], masks.shape[1])  # [N, P, h]
    column_weights = _tent_weights(xs, boxes[:, 0], boxes[:, 2], masks.shape[2])  # [N, Q, w]
    return row_weights @ masks @ column_weights.transpose(1, 2)


def paste_masks(masks: Tensor, boxes: Tensor, image_size: tuple[int, int], *, threshold: float) -> Tensor:
    """Paste soft masks [N, h, w] into boxes [N, 4] on an (H, W) image -> [N, H, W] bool (>= threshold)."""
    height, width = image_size
    pasted = torch.zeros(masks.shape[0], height, width, dtype=torch.bool, device=masks.device)
    masks, boxes = masks.float(), boxes.float()
    # A mask is zero outside its box, so only the box's crop of the canvas is computed (a loop over instances,
    # each crop in one shot): the cost is the boxes' area rather than N full images.
    columns = torch.stack((boxes[:, 0].floor(), boxes[:, 2].ceil()), dim=1).clamp(0, width).long().tolist()
    rows = torch.stack((boxes[:, 1].floor(), boxes[:, 3].ceil()), dim=1).clamp(0, height).long().tolist()
    for index, ((x_begin, x_end), (y_begin, y_end)) in enumerate(zip(columns, rows)):
        if x_end <= x_begin or y_end <= y_begin:
            continue
        ys = torch.arange(y_begin, y_end, dtype=torch.float32, device=masks.device) + 0.5
        xs = torch.arange(x_begin, x_end, dtype=torch.float32, device=masks.device) + 0.5
        soft = resample_masks(masks[index : index + 1], boxes[index : index + 1], ys[None], xs[None])[0]
        pasted[index, y_begin:y_end, x_begin:x_end] = soft >= threshold
    return pasted


class MNCPostProcessor:
    """Turn one image's `CascadeOutput` into at most `max_per_img` detections."""

    def __init__(
        self,
        *,
        score_thr: float = 0.05,
        nms_iou: float = 0.3,
        max_per_img: int = 100,
        mask_thr: float = 0.4,
        mask_voting: bool = True,
        voting_iou: float = 0.5,
        voting_resolution: int = 56,
    ):
        if not 0.0 <= score_thr < 1.0:
            raise ValueError(f"score_thr: must be in [0, 1), got {score_thr}")
        if not 0.0 < nms_iou <= 1.0:
            raise ValueError(f"nms_iou: must be in (0, 1], got {nms_iou}")
        if max_per_img < 1:
            raise ValueError(f"max_per_img: must be >= 1, got {max_per_img}")
        if not 0.0 < mask_thr < 1.0:
            raise ValueError(f"mask_thr: must be in (0, 1), got {mask_thr}")
        if not 0.0 <= voting_iou < 1.0:
            raise ValueError(f"voting_iou: must be in [0, 1), got {voting_iou}")
        if voting_resolution < 4:
            raise ValueError(f"voting_resolution: must be >= 4, got {voting_resolution}")
        self.score_thr = score_thr
        self.nms_iou = nms_iou
        self.max_per_img = max_per_img
        self.mask_thr = mask_thr
        self.mask_voting = mask_voting
        self.voting_iou = voting_iou
        self.voting_resolution = voting_resolution

    def __call__(
        self,
        instances: CascadeOutput,
        *,
        image_size: tuple[int, int],
        scale: tuple[float, float] = (1.0, 1.0),
    ) -> Detections:
        """Args:
            instances: N instances in network-input pixels.
            image_size: (H, W) of the output image (the original image for evaluation).
            scale: (x, y) factors from output to network-input pixels (mmdet's `scale_factor`); boxes are
                divided by them.
        """
        divisor = instances.mask_boxes.new_tensor([scale[0], scale[1], scale[0], scale[1]])
        mask_boxes = instances.mask_boxes / divisor
        class_boxes = instances.class_boxes / divisor
        mask_probs = instances.mask_logits.sigmoid()
        class_scores = instances.class_probs[:, 1:]

        instance_ids, class_ids = (class_scores > self.score_thr).nonzero(as_tuple=True)
        scores = class_scores[instance_ids, class_ids]
        keep = batched_nms(mask_boxes[instance_ids], scores, class_ids, self.nms_iou)[: self.max_per_img]
        instance_ids, class_ids, scores = instance_ids[keep], class_ids[keep], scores[keep]

        if self.mask_voting:
            paste_boxes, paste_probs = self.vote(
                mask_boxes, mask_probs, class_scores, instance_ids, class_ids
            )
        else:
            paste_boxes, paste_probs = mask_boxes[instance_ids], mask_probs[instance_ids]
        return Detections(
            boxes=clip_boxes(class_boxes[instance_ids, class_ids], image_size),
            scores=scores,
            labels=class_ids,
            masks=paste_masks(paste_probs, paste_boxes, image_size, threshold=self.mask_thr),
        )

    def vote(
        self,
        mask_boxes: Tensor,
        mask_probs: Tensor,
        class_scores: Tensor,
        instance_ids: Tensor,
        class_ids: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """Voted masks of the kept detections, each as a (frame box [4], soft mask [V, V]) pair.

        Candidate voters are the instances whose score for the class passes `score_thr` and whose mask IoU
        with the kept mask can still exceed `voting_iou` given their boxes and mask areas
        (`_iou_upper_bound`); the frame is the union of their boxes, so all their masks are compared and
        averaged on one V x V grid.
        Returns frame boxes [D, 4] and voted masks [D, V, V] with values in [0, 1].
        """
        resolution = self.voting_resolution
        frames = mask_boxes.new_zeros(len(instance_ids), 4)
        voted = mask_probs.new_zeros(len(instance_ids), resolution, resolution)
        grid = (torch.arange(resolution, dtype=mask_probs.dtype, device=mask_probs.device) + 0.5) / resolution
        box_areas = (mask_boxes[:, 2] - mask_boxes[:, 0]) * (mask_boxes[:, 3] - mask_boxes[:, 1])
        mask_areas = (mask_probs >= self.mask_thr).flatten(1).float().mean(dim=1) * box_areas
        for index, (kept, class_id) in enumerate(zip(instance_ids.tolist(), class_ids.tolist())):
            possible = _iou_upper_bound(mask_boxes, mask_areas, kept) > _PRUNE_SLACK * self.voting_iou
            candidates = ((class_scores[:, class_id] > self.score_thr) & possible).nonzero().squeeze(1)
            # The kept instance first, so row 0 is the reference mask.
            candidates = torch.cat((candidates.new_tensor([kept]), candidates[candidates != kept]))
            boxes = mask_boxes[candidates]
            frame = torch.cat((boxes[:, :2].min(dim=0).values, boxes[:, 2:].max(dim=0).values))
            ys = (frame[1] + grid * (frame[3] - frame[1])).expand(len(candidates), resolution)
            xs = (frame[0] + grid * (frame[2] - frame[0])).expand(len(candidates), resolution)
            resampled = resample_masks(mask_probs[candidates], boxes, ys, xs)
            binary = (resampled >= self.mask_thr).to(mask_probs.dtype)
            intersection = (binary * binary[:1]).flatten(1).sum(dim=1)
            union = (binary + binary[:1]).clamp(max=1).flatten(1).sum(dim=1)
            voters = intersection > self.voting_iou * union
            voters[0] = True
            weights = class_scores[candidates[voters], class_id]
            frames[index] = frame
            voted[index] = (weights[:, None, None] * binary[voters]).sum(dim=0) / weights.sum()
        return frames, voted
