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
axis-aligned grid is separable: resampling a mask onto any grid is two matrix products, batched here over all
(detection, voter) pairs and over pasting windows of similar size rather than looped per detection.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mnc_bench.models.mnc.boxes import clip_boxes
from mnc_bench.models.mnc.cascade import CascadeOutput

# Voting skips instances whose mask-IoU upper bound is below this fraction of voting_iou; the slack covers the
# bound's mask areas being measured on the m x m grids rather than on the voting grid.
_PRUNE_SLACK = 0.75
# Upper bound on the floats of one batch of resampled masks (voting pairs, pasting windows): bounds the memory
# of an image with many large detections while keeping the batches big enough to amortise the Python calls.
_BATCH_ELEMENTS = 1 << 22
_MIN_CROP_AREA = 32 * 32


@dataclass
class Detections:
    """Final detections of one image, in output-image pixels."""

    boxes: Tensor  # [D, 4] (x1, y1, x2, y2)
    scores: Tensor  # [D]
    labels: Tensor  # [D] int64, 0-based class index
    masks: Tensor  # [D, H, W] bool
    instance_ids: Tensor  # [D] int64: the cascade instance each detection keeps (its NMS winner)
    soft_masks: Tensor | None = None  # [D, H, W] uint8 floor(255 p), the probabilities `masks` binarises


def _tent_weights(positions: Tensor, start: Tensor, end: Tensor, cells: int) -> Tensor:
    """Bilinear weights [N, P, cells] of P sample positions [N, P] over `cells` cells spanning [start, end);
    positions outside get all-zero weights."""
    extent = (end - start).clamp(min=1e-6)
    coordinate = ((positions - start[:, None]) / extent[:, None] * cells - 0.5).clamp(min=0, max=cells - 1)
    inside = (positions >= start[:, None]) & (positions < end[:, None])
    centres = torch.arange(cells, dtype=positions.dtype, device=positions.device)
    return (1 - (coordinate[:, :, None] - centres).abs()).clamp(min=0) * inside[:, :, None]


def _iou_upper_bounds(boxes: Tensor, mask_areas: Tensor, references: Tensor) -> Tensor:
    """Upper bounds [D, N] on the mask IoU of every instance with each reference instance [D].

    Masks lie inside their boxes, so intersection <= min(box intersection, both areas) and
    union >= both areas.
    """
    top_left = torch.maximum(boxes[references, None, :2], boxes[None, :, :2])
    bottom_right = torch.minimum(boxes[references, None, 2:], boxes[None, :, 2:])
    box_intersection = (bottom_right - top_left).clamp(min=0).prod(dim=2)
    areas = mask_areas[references, None]
    intersection = torch.minimum(box_intersection, torch.minimum(mask_areas[None], areas))
    return intersection / torch.maximum(mask_areas[None], areas).clamp(min=1e-6)


def resample_masks(masks: Tensor, boxes: Tensor, ys: Tensor, xs: Tensor) -> Tensor:
    """Sample soft masks [N, h, w] over boxes [N, 4] at rows ys [N, P] and columns xs [N, Q] -> [N, P, Q]."""
    row_weights = _tent_weights(ys, boxes[:, 1], boxes[:, 3], masks.shape[1])  # [N, P, h]
    column_weights = _tent_weights(xs, boxes[:, 0], boxes[:, 2], masks.shape[2])  # [N, Q, w]
    return row_weights @ masks @ column_weights.transpose(1, 2)


def _size_batches(heights: list[int], widths: list[int]) -> list[list[int]]:
    """Indices grouped in ascending crop area so that each group's padded window (count x max h x max w)
    stays within `_BATCH_ELEMENTS` and within twice the crops' own area (counting a crop as at least
    `_MIN_CROP_AREA` pixels, so that tiny crops are not split into many batches)."""
    batches: list[list[int]] = []
    current: list[int] = []
    max_height = max_width = area = 0
    for index in sorted(range(len(heights)), key=lambda i: heights[i] * widths[i]):
        height, width = max(max_height, heights[index]), max(max_width, widths[index])
        crop_area = max(heights[index] * widths[index], _MIN_CROP_AREA)
        padded = (len(current) + 1) * height * width
        if current and (padded > _BATCH_ELEMENTS or padded > 2 * (area + crop_area)):
            batches.append(current)
            current, height, width, area = [], heights[index], widths[index], 0
        current.append(index)
        max_height, max_width, area = height, width, area + crop_area
    if current:
        batches.append(current)
    return batches


def paste_masks(masks: Tensor, boxes: Tensor, image_size: tuple[int, int], *, threshold: float) -> Tensor:
    """Paste soft masks [N, h, w] into boxes [N, 4] on an (H, W) image -> [N, H, W] bool (>= threshold)."""
    return _paste(masks, boxes, image_size, threshold)


def paste_soft_masks(masks: Tensor, boxes: Tensor, image_size: tuple[int, int]) -> Tensor:
    """As :func:`paste_masks`, the probabilities themselves -> [N, H, W] float in [0, 1] (0 outside boxes)."""
    return _paste(masks, boxes, image_size, None)


def _paste(masks: Tensor, boxes: Tensor, image_size: tuple[int, int], threshold: float | None) -> Tensor:
    height, width = image_size
    dtype = torch.bool if threshold is not None else torch.float32
    pasted = torch.zeros(masks.shape[0], height, width, dtype=dtype, device=masks.device)
    if masks.shape[0] == 0:
        return pasted
    masks, boxes = masks.float(), boxes.float()
    # A mask is zero outside its box, so only the box's pixel crop of the canvas is computed. Crops of similar
    # size are resampled together in a window padded to the largest (placed inside the image); the padding
    # is masked out, so the cost stays close to the boxes' area rather than N full images.
    x_begin, x_end = boxes[:, 0].floor().clamp(0, width).long(), boxes[:, 2].ceil().clamp(0, width).long()
    y_begin, y_end = boxes[:, 1].floor().clamp(0, height).long(), boxes[:, 3].ceil().clamp(0, height).long()
    heights, widths = (y_end - y_begin).clamp(min=0), (x_end - x_begin).clamp(min=0)
    for batch in _size_batches(heights.tolist(), widths.tolist()):
        index = torch.tensor(batch, device=masks.device)
        window_height, window_width = int(heights[index].max()), int(widths[index].max())
        if window_height == 0 or window_width == 0:
            continue
        offsets_y = torch.arange(window_height, device=masks.device)
        offsets_x = torch.arange(window_width, device=masks.device)
        rows = torch.minimum(y_begin[index], y_begin.new_tensor(height - window_height))[:, None] + offsets_y
        columns = torch.minimum(x_begin[index], x_begin.new_tensor(width - window_width))[:, None] + offsets_x
        soft = resample_masks(masks[index], boxes[index], rows.float() + 0.5, columns.float() + 0.5)
        in_rows = (rows >= y_begin[index, None]) & (rows < y_end[index, None])
        in_columns = (columns >= x_begin[index, None]) & (columns < x_end[index, None])
        inside = in_rows[:, :, None] & in_columns[:, None, :]
        window = (soft >= threshold) & inside if threshold is not None else soft.clamp(0, 1) * inside
        pasted[index[:, None, None], rows[:, :, None], columns[:, None, :]] = window
    return pasted


def to_8bit(probabilities: Tensor) -> Tensor:
    """Probabilities in [0, 1] -> uint8 floor(255 p), as mmdet's mask heads write soft masks."""
    return (probabilities * 255).to(torch.uint8)


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
        # Also return each detection's pasted probabilities (soft-mask export): set by callers, not a setting.
        self.soft_masks = False

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
        from torchvision.ops import batched_nms  # on first use (mnc_bench.models.roi_align.tv_roi_align)

        keep = batched_nms(mask_boxes[instance_ids], scores, class_ids, self.nms_iou)[: self.max_per_img]
        instance_ids, class_ids, scores = instance_ids[keep], class_ids[keep], scores[keep]

        if self.mask_voting:
            paste_boxes, paste_probs = self.vote(
                mask_boxes, mask_probs, class_scores, instance_ids, class_ids
            )
        else:
            paste_boxes, paste_probs = mask_boxes[instance_ids], mask_probs[instance_ids]
        soft_masks = None
        if self.soft_masks:
            soft_masks = to_8bit(paste_soft_masks(paste_probs, paste_boxes, image_size))
        return Detections(
            boxes=clip_boxes(class_boxes[instance_ids, class_ids], image_size),
            scores=scores,
            labels=class_ids,
            masks=paste_masks(paste_probs, paste_boxes, image_size, threshold=self.mask_thr),
            instance_ids=instance_ids,
            soft_masks=soft_masks,
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
        (`_iou_upper_bounds`); the frame is the union of their boxes, so all their masks are compared and
        averaged on one V x V grid. All (detection, candidate) pairs are resampled in batches.
        Returns frame boxes [D, 4] and voted masks [D, V, V] with values in [0, 1].
        """
        resolution = self.voting_resolution
        num_detections = len(instance_ids)
        if num_detections == 0:  # nothing kept (an image without instances): the reductions below need some
            return mask_boxes.new_zeros(0, 4), mask_probs.new_zeros(0, resolution, resolution)
        detections = torch.arange(num_detections, device=mask_boxes.device)
        # Coordinates in the boxes' type: fp16 mask probabilities (test --amp) would round the grid.
        grid = (torch.arange(resolution, dtype=mask_boxes.dtype, device=mask_boxes.device) + 0.5) / resolution
        box_areas = (mask_boxes[:, 2] - mask_boxes[:, 0]) * (mask_boxes[:, 3] - mask_boxes[:, 1])
        mask_areas = (mask_probs >= self.mask_thr).flatten(1).float().mean(dim=1) * box_areas
        possible = _iou_upper_bounds(mask_boxes, mask_areas, instance_ids) > _PRUNE_SLACK * self.voting_iou
        candidates = (class_scores[:, class_ids].T > self.score_thr) & possible  # [D, N]
        candidates[detections, instance_ids] = True
        corners = mask_boxes[None].expand(num_detections, -1, -1)
        frames = torch.cat((
            corners[..., :2].masked_fill(~candidates[..., None], float("inf")).amin(dim=1),
            corners[..., 2:].masked_fill(~candidates[..., None], float("-inf")).amax(dim=1),
        ), dim=1)
        ys = frames[:, 1, None] + grid * (frames[:, 3] - frames[:, 1])[:, None]  # [D, V]
        xs = frames[:, 0, None] + grid * (frames[:, 2] - frames[:, 0])[:, None]

        def binarised(pair_detections: Tensor, pair_instances: Tensor) -> Tensor:
            resampled = resample_masks(mask_probs[pair_instances], mask_boxes[pair_instances],
                                       ys[pair_detections], xs[pair_detections])
            return (resampled >= self.mask_thr).to(mask_probs.dtype)  # [P, V, V]

        # The kept mask of each detection is the reference every other candidate is compared with.
        references = binarised(detections, instance_ids)
        reference_areas = references.flatten(1).sum(dim=1)
        weight_sums = class_scores[instance_ids, class_ids]
        voted = references * weight_sums[:, None, None]
        candidates[detections, instance_ids] = False
        pair_detections, pair_instances = candidates.nonzero(as_tuple=True)
        batch = max(1, _BATCH_ELEMENTS // (resolution * resolution))
        for begin in range(0, len(pair_detections), batch):
            owner, instance = pair_detections[begin : begin + batch], pair_instances[begin : begin + batch]
            binary = binarised(owner, instance)
            intersection = (binary * references[owner]).flatten(1).sum(dim=1)
            union = binary.flatten(1).sum(dim=1) + reference_areas[owner] - intersection
            weights = class_scores[instance, class_ids[owner]] * (intersection > self.voting_iou * union)
            voted.index_add_(0, owner, binary * weights[:, None, None])
            weight_sums.index_add_(0, owner, weights)
        return frames, voted / weight_sums[:, None, None]
