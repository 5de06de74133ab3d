"""Training targets: which RoIs a stage sees, their labels, box deltas and mask targets.

Labels follow the paper's (N+1)-way softmax: 0 is background, classes are 1..N.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.ops import box_iou, roi_align

from mnc_bench.models.mnc.boxes import BoxCoder


@dataclass
class InstanceTargets:
    """Ground truth of one image, in network-input pixels."""

    boxes: Tensor  # [G, 4] float (x1, y1, x2, y2)
    labels: Tensor  # [G] int64 in 1..num_classes
    masks: Tensor  # [G, H, W] bool/uint8/float, H x W covering at least the boxes


@dataclass(frozen=True)
class RoISampling:
    """Per-image RoI sampling of the first mask/classification round (MNC: 64 RoIs, 25% foreground).

    A RoI is foreground when its best IoU with a ground-truth box is >= `fg_iou` (the paper says "> 0.5";
    MNC-code, like py-faster-rcnn, compares with >=), background when it is in [bg_iou_low, fg_iou).
    """

    num_rois: int = 64
    fg_fraction: float = 0.25
    fg_iou: float = 0.5
    bg_iou_low: float = 0.0

    def __post_init__(self) -> None:
        if self.num_rois < 1:
            raise ValueError(f"num_rois: must be >= 1, got {self.num_rois}")
        if not 0.0 < self.fg_fraction <= 1.0:
            raise ValueError(f"fg_fraction: must be in (0, 1], got {self.fg_fraction}")
        if not 0.0 < self.fg_iou <= 1.0:
            raise ValueError(f"fg_iou: must be in (0, 1], got {self.fg_iou}")
        if not 0.0 <= self.bg_iou_low < self.fg_iou:
            raise ValueError(f"bg_iou_low: must be in [0, fg_iou), got {self.bg_iou_low}")


@dataclass
class RoIAssignment:
    """Targets of R RoIs of one image."""

    labels: Tensor  # [R] int64, 0 = background
    matched_gt: Tensor  # [R] int64 index into the image's ground truth (-1 when there is none)


def max_iou_with_gt(boxes: Tensor, gt_boxes: Tensor) -> tuple[Tensor, Tensor]:
    """Best IoU [R] and the index of that ground truth box [R] (-1 and IoU 0 for an image without objects)."""
    if gt_boxes.shape[0] == 0:
        return boxes.new_zeros(boxes.shape[0]), torch.full((boxes.shape[0],), -1, device=boxes.device)
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
    """Indices into `boxes` of a random subset with at most fg_fraction foreground.

    Background candidates have best IoU in [bg_iou_low, fg_iou). Uses the global torch RNG, so a fixed seed
    reproduces the sample.
    """
    best_iou, _ = max_iou_with_gt(boxes.detach(), gt_boxes)
    foreground = (best_iou >= sampling.fg_iou).nonzero().squeeze(1)
    background = ((best_iou < sampling.fg_iou) & (best_iou >= sampling.bg_iou_low)).nonzero().squeeze(1)
    num_fg = min(int(round(sampling.num_rois * sampling.fg_fraction)), foreground.numel())
    num_bg = min(sampling.num_rois - num_fg, background.numel())
    foreground = foreground[torch.randperm(foreground.numel(), device=boxes.device)[:num_fg]]
    background = background[torch.randperm(background.numel(), device=boxes.device)[:num_bg]]
    return torch.cat((foreground, background))


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


def mask_targets(
    boxes: Tensor, assignment: RoIAssignment, targets: InstanceTargets, mask_size: int
) -> Tensor:
    """Binary [P, m, m] targets of the P foreground RoIs: the matched ground-truth mask inside the RoI.

    The GT mask is bilinearly resampled over the RoI (RoIAlign, aligned, 2x2 samples per bin) and thresholded
    at 0.5, as mmdet's mask targets; the parts of the RoI outside the object's mask are 0.
    """
    foreground = (assignment.labels > 0).nonzero().squeeze(1)
    if foreground.numel() == 0:
        return boxes.new_zeros(0, mask_size, mask_size)
    matched = assignment.matched_gt[foreground]
    rois = torch.cat((matched[:, None].to(boxes.dtype), boxes.detach()[foreground]), dim=1)
    gt_masks = targets.masks[:, None].to(boxes.dtype)
    resampled = roi_align(
        gt_masks, rois, output_size=mask_size, spatial_scale=1.0, sampling_ratio=2, aligned=True
    )
    return (resampled[:, 0] >= 0.5).to(boxes.dtype)
