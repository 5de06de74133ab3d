"""Training targets: which RoIs a stage sees, their labels, box deltas and mask targets.

Labels follow the paper's (N+1)-way softmax: 0 is background, classes are 1..N.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mnc_bench.models.mnc.boxes import BoxCoder
from mnc_bench.models.mnc.config import RoISampling


@dataclass
class InstanceTargets:
    """Ground truth of one image, in network-input pixels."""

    boxes: Tensor  # [G, 4] float (x1, y1, x2, y2)
    labels: Tensor  # [G] int64 in 1..num_classes
    masks: Tensor  # [G, H, W] bool/uint8/float, H x W covering at least the boxes


@dataclass
class RoIAssignment:
    """Targets of R RoIs of one image."""

    labels: Tensor  # [R] int64, 0 = background
    matched_gt: Tensor  # [R] int64 index into the image's ground truth (-1 when there is none)


def max_iou_with_gt(boxes: Tensor, gt_boxes: Tensor) -> tuple[Tensor, Tensor]:
    """Best IoU [R] and the index of that ground truth box [R] (-1 and IoU 0 for an image without objects)."""
    if gt_boxes.shape[0] == 0:
        return boxes.new_zeros(boxes.shape[0]), torch.full((boxes.shape[0],), -1, device=boxes.device)
    from torchvision.ops import box_iou  # on first use (mnc_bench.models.roi_align.tv_roi_align)

    best_iou, matched = box_iou(boxes, gt_boxes).max(dim=1)
    return best_iou, matched


def assign_rois(boxes: Tensor, targets: InstanceTargets, *, fg_iou: float) -> RoIAssignment:
    """Foreground when the best box IoU with a ground-truth box is >= fg_iou (boxes not differentiated)."""
    best_iou, matched = max_iou_with_gt(boxes.detach(), targets.boxes)
    foreground = best_iou >= fg_iou
    labels = torch.zeros_like(matched)
    labels[foreground] = targets.labels[matched[foreground]]
    return RoIAssignment(labels=labels, matched_gt=torch.where(foreground, matched, -1))


def sample_rois(boxes: Tensor, gt_boxes: Tensor, sampling: RoISampling) -> Tensor:
    """Indices into `boxes` of a random subset drawn as `sampling` says: foreground first, then each
    background range in turn. Uses the global torch RNG, so a fixed seed reproduces the sample."""
    best_iou, _ = max_iou_with_gt(boxes.detach(), gt_boxes)
    foreground = (best_iou >= sampling.fg_iou).nonzero().squeeze(1)
    num_fg = min(int(round(sampling.num_rois * sampling.fg_fraction)), foreground.numel())
    chosen = [foreground[torch.randperm(foreground.numel(), device=boxes.device)[:num_fg]]]
    background_budget = sampling.num_rois - num_fg
    for (low, high), fraction in zip(sampling.bg_iou_ranges, sampling.bg_fractions):
        candidates = ((best_iou >= low) & (best_iou < high)).nonzero().squeeze(1)
        count = min(int(round(background_budget * fraction)), candidates.numel())
        chosen.append(candidates[torch.randperm(candidates.numel(), device=boxes.device)[:count]])
    return torch.cat(chosen)


def box_targets(
    boxes: Tensor, assignment: RoIAssignment, targets: InstanceTargets, coder: BoxCoder
) -> Tensor:
    """[R, 4] normalised deltas from each RoI to its matched ground truth box (zeros for background)."""
    deltas = boxes.new_zeros(boxes.shape[0], 4)
    foreground = assignment.labels > 0
    if foreground.any():
        deltas[foreground] = coder.encode(
            boxes.detach()[foreground], targets.boxes[assignment.matched_gt[foreground]].to(boxes.dtype)
        )
    return deltas


def _resampled_ground_truth(
    boxes: Tensor, assignment: RoIAssignment, targets: InstanceTargets, size: int, sampling_ratio: int
) -> Tensor:
    """[P, size, size]: each foreground RoI's matched ground-truth mask, averaged over the RoI's size x size
    bins (RoIAlign, aligned, `sampling_ratio` samples per bin side; 0: about one per pixel)."""
    foreground = (assignment.labels > 0).nonzero().squeeze(1)
    if foreground.numel() == 0:
        return boxes.new_zeros(0, size, size)
    matched = assignment.matched_gt[foreground]
    rois = torch.cat((matched[:, None].to(boxes.dtype), boxes.detach()[foreground]), dim=1)
    gt_masks = targets.masks[:, None].to(boxes.dtype)
    from torchvision.ops import roi_align  # on first use (mnc_bench.models.roi_align.tv_roi_align)

    resampled = roi_align(
        gt_masks, rois, output_size=size, spatial_scale=1.0, sampling_ratio=sampling_ratio, aligned=True
    )
    return resampled[:, 0]


def mask_targets(
    boxes: Tensor, assignment: RoIAssignment, targets: InstanceTargets, mask_size: int
) -> Tensor:
    """Binary [P, m, m] targets of the P foreground RoIs: the matched ground-truth mask inside the RoI.

    The GT mask is bilinearly resampled over the RoI (RoIAlign, aligned, 2x2 samples per bin) and thresholded
    at 0.5, as mmdet's mask targets; the parts of the RoI outside the object's mask are 0.
    """
    resampled = _resampled_ground_truth(boxes, assignment, targets, mask_size, sampling_ratio=2)
    return (resampled >= 0.5).to(boxes.dtype)


def mask_coverage(
    boxes: Tensor, assignment: RoIAssignment, targets: InstanceTargets, mask_size: int
) -> Tensor:
    """[P, m, m] in [0, 1]: the fraction of each bin of each foreground RoI that its ground truth covers."""
    return _resampled_ground_truth(boxes, assignment, targets, mask_size, sampling_ratio=0)


def mask_level_labels(
    mask_logits: Tensor,
    coverage: Tensor,
    boxes: Tensor,
    gt_areas: Tensor,
    labels: Tensor,
    *,
    mask_thr: float,
    iou_thr: float,
) -> Tensor:
    """Labels of the P box-level foreground RoIs for the mask-level classifier (MNC-code's MaskLayer): a RoI
    keeps its class when its predicted mask, binarised at `mask_thr`, has mask IoU >= `iou_thr` with its
    ground truth, else it is background.

    The predicted mask covers the bins of the RoI's m x m grid where it passes the threshold, each bin
    (x2 - x1) (y2 - y1) / m^2 pixels; the intersection adds up the ground truth's pixels in those bins
    (`coverage`, see `mask_coverage`) and the union counts the whole ground-truth mask (`gt_areas`), parts
    outside the RoI included. MNC-code resizes the predicted mask to the box before binarising it, so the
    two differ only where the prediction's boundary crosses a bin.

    Args: mask_logits [P, m, m]; coverage [P, m, m]; boxes [P, 4]; gt_areas [P] pixels of each RoI's
    ground-truth mask; labels [P] box-level labels (all > 0). Returns [P] int64, no gradient.
    """
    predicted = (torch.sigmoid(mask_logits.detach()) >= mask_thr).flatten(1).to(coverage.dtype)
    boxes = boxes.detach()
    cells = mask_logits.shape[-1] * mask_logits.shape[-2]
    cell_area = (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0) / cells
    intersection = (predicted * coverage.flatten(1)).sum(dim=1) * cell_area
    union = predicted.sum(dim=1) * cell_area + gt_areas.to(cell_area.dtype) - intersection
    iou = intersection / union.clamp(min=1e-6)
    return torch.where(iou >= iou_thr, labels, torch.zeros_like(labels))
