"""Box regression deltas (R-CNN's (dx, dy, dw, dh)) and clipping, both differentiable in the boxes.

Widths are x2 - x1 (mmdet 3.x convention, no "+1"), so deltas match the Mask R-CNN baseline's coder.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from mnc_bench.models.mnc.config import MNCConfig, ParameterError


class BoxCoder:
    """Encode boxes as normalised deltas w.r.t. reference boxes, and decode them back.

    Deltas are divided by `stds` (Fast R-CNN's target normalisation, (0.1, 0.1, 0.2, 0.2) in MNC-code).
    """

    def __init__(
        self, *, stds: Sequence[float] = MNCConfig.box_target_stds, max_log_scale: float = math.log(1000 / 16)
    ):
        if len(stds) != 4 or any(s <= 0 for s in stds):
            raise ParameterError("box_target_stds", f"need 4 positive numbers, got {list(stds)}")
        self.stds = tuple(float(s) for s in stds)
        # Clamping log-scale deltas keeps exp() finite for an untrained regressor.
        self.max_log_scale = max_log_scale

    def encode(self, boxes: Tensor, targets: Tensor) -> Tensor:
        """[N, 4] reference boxes, [N, 4] target boxes -> [N, 4] normalised deltas."""
        widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        centre_x, centre_y = boxes[:, 0] + 0.5 * widths, boxes[:, 1] + 0.5 * heights
        target_widths, target_heights = targets[:, 2] - targets[:, 0], targets[:, 3] - targets[:, 1]
        target_x, target_y = targets[:, 0] + 0.5 * target_widths, targets[:, 1] + 0.5 * target_heights
        eps = torch.finfo(boxes.dtype).eps
        deltas = torch.stack(
            (
                (target_x - centre_x) / widths.clamp(min=eps),
                (target_y - centre_y) / heights.clamp(min=eps),
                torch.log(target_widths.clamp(min=eps) / widths.clamp(min=eps)),
                torch.log(target_heights.clamp(min=eps) / heights.clamp(min=eps)),
            ),
            dim=1,
        )
        return deltas / deltas.new_tensor(self.stds)

    def decode(self, boxes: Tensor, deltas: Tensor) -> Tensor:
        """[N, 4] reference boxes, [N, ..., 4] deltas -> [N, ..., 4] boxes (e.g. class-wise [N, K, 4])."""
        extra_dims = deltas.dim() - 2
        boxes = boxes.reshape(boxes.shape[0], *([1] * extra_dims), 4)
        deltas = deltas * deltas.new_tensor(self.stds)
        widths, heights = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
        centre_x, centre_y = boxes[..., 0] + 0.5 * widths, boxes[..., 1] + 0.5 * heights
        new_x = centre_x + deltas[..., 0] * widths
        new_y = centre_y + deltas[..., 1] * heights
        new_w = widths * deltas[..., 2].clamp(min=-self.max_log_scale, max=self.max_log_scale).exp()
        new_h = heights * deltas[..., 3].clamp(min=-self.max_log_scale, max=self.max_log_scale).exp()
        return torch.stack(
            (new_x - 0.5 * new_w, new_y - 0.5 * new_h, new_x + 0.5 * new_w, new_y + 0.5 * new_h), dim=-1
        )


def clip_boxes(boxes: Tensor, image_size: tuple[int, int]) -> Tensor:
    """Clip [..., 4] boxes to an image of (height, width); the gradient is zero for clipped coordinates."""
    height, width = image_size
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(
        (x1.clamp(0, width), y1.clamp(0, height), x2.clamp(0, width), y2.clamp(0, height)), dim=-1
    )


def inside_image(boxes: Tensor, image_size: tuple[int, int]) -> Tensor:
    """[N, 4] boxes -> [N] bool: the box lies wholly inside an image of (height, width)."""
    height, width = image_size
    return (boxes[:, 0] >= 0) & (boxes[:, 1] >= 0) & (boxes[:, 2] <= width) & (boxes[:, 3] <= height)


def clip_gradient(tensor: Tensor, bound: float | None) -> Tensor:
    """Identity forward; clamps the incoming gradient element-wise to [-bound, bound] (None: no-op).

    MNC-code clips the gradient that later stages send into box deltas (RPN and stage 3) at 1/512: warping
    gradients w.r.t. coordinates are otherwise large enough to destabilise the regressors they reach.
    """
    if bound is None or not tensor.requires_grad:
        return tensor
    return _ClipGradient.apply(tensor, bound)


class _ClipGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: Tensor, bound: float) -> Tensor:
        ctx.bound = bound
        return tensor.clone()

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad.clamp(-ctx.bound, ctx.bound), None
