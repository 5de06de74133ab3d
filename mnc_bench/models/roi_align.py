"""RoIAlign with a fast CPU backward: the same operator as mmcv's ``RoIAlign`` (average mode), faster to
train.

mmcv's and torchvision's CPU backward kernels walk every (RoI, channel, bin, sample) and recompute the
bilinear weights for each channel; on the shapes models that loop was a fifth of Mask R-CNN's training step.
The operator is separable: the value of bin ``(ph, pw)`` of RoI ``r`` is
``Wy[r, ph, :] @ F[b_r, c] @ Wx[r, pw, :]``, where ``Wy`` (``Wx``) holds, per output row (column), the sum
over that bin's sampling points of their bilinear weights on the feature rows (columns), divided by the number
of points: mmcv's border rule (a point beyond -1 or the size contributes zero, one in (-1, 0) is clamped to 0,
one past the last row is clamped to it) is a product of a row and a column indicator, so it factors too. The
backward is then two dense matrix products per image, with the weights shared by every channel:

    grad_F[b] = sum_r Wy_r^T  G_r  Wx_r           (G_r: [C, ph, pw])

The forward is torchvision's kernel, which computes each bin's weights once for all channels (the same values
as mmcv's, bit for bit: tests/test_roi_align.py). The dense backward costs ``H * W * C * ph * R``
multiply-adds per image, so it is used for feature maps up to ``DENSE_BACKWARD_MAX_PIXELS`` (every level of
the 128-px shapes models); larger maps keep torchvision's backward.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable


def tv_roi_align(*args, **kwargs) -> Tensor:
    """torchvision's RoIAlign, torchvision imported on first use: its ops pull in torch._dynamo (~1 s of
    start-up), which a process that only reads configs and builds models (a suite's validation) never
    needs."""
    from torchvision.ops import roi_align

    return roi_align(*args, **kwargs)


# Our choice: at 64 x 64 (1,000 RoIs, 64 channels, 7 x 7 bins; ~1.8 GMAC) the dense backward still beat mmcv's
# scalar one (1 thread, loaded machine: 151-299 vs 270-345 ms); the cost grows with the map, the kernel's does
# not.
DENSE_BACKWARD_MAX_PIXELS = 64 * 64


def bin_weights(start: Tensor, size: Tensor, bins: int, samples: Tensor, length: int) -> Tensor:
    """Per-bin interpolation weights along one axis, averaged over the bin's sampling points.

    Args:
        start, size: ``[R]`` RoI start and extent in feature-map coordinates (after the half-pixel offset).
        bins: pooled size along the axis.
        samples: ``[R]`` sampling points per bin along the axis (mmcv: ``sampling_ratio`` or
            ``ceil(size / bins)``).
        length: feature-map size along the axis.
    Returns:
        ``[R, bins, length]``: row ``(r, p)`` holds the weight of every feature row in bin ``p``'s mean.
    """
    num_rois = start.shape[0]
    max_samples = max(int(samples.max().item()), 1) if num_rois else 1
    point = torch.arange(max_samples, dtype=start.dtype, device=start.device)
    bin_size = size / bins
    # [R, bins, S]: mmcv's sampling points start + p * bin + (i + 0.5) * bin / S, for i < S_r
    step = bin_size / samples.clamp(min=1.0)
    bin_start = (start[:, None]
                 + torch.arange(bins, dtype=start.dtype, device=start.device) * bin_size[:, None])
    coords = bin_start[:, :, None] + (point + 0.5) * step[:, None, None]
    used = (point[None, None, :] < samples[:, None, None]) & (coords >= -1.0) & (coords <= length)
    coords = torch.where(used, coords, torch.zeros_like(coords)).clamp(min=0.0)
    low = coords.floor()
    at_end = low >= length - 1
    low = torch.where(at_end, torch.full_like(low, length - 1), low)
    coords = torch.where(at_end, low, coords)
    frac = coords - low
    high = torch.where(at_end, low, low + 1)
    scale = used.to(start.dtype) / samples.clamp(min=1.0)[:, None, None]
    weights = start.new_zeros(num_rois, bins, length)
    weights.scatter_add_(2, low.long(), (1.0 - frac) * scale)
    weights.scatter_add_(2, high.long(), frac * scale)
    return weights


def _rows_per_image(image_of_row: Tensor) -> list[tuple[int, slice | Tensor]]:
    """``(image, rows)`` pairs; slices when the rows come sorted by image (mmdet's ``bbox2roi`` order)."""
    if bool((image_of_row[1:] >= image_of_row[:-1]).all()):
        images, counts = torch.unique_consecutive(image_of_row, return_counts=True)
        ends = counts.cumsum(0).tolist()
        return [(image, slice(end - count, end))
                for image, count, end in zip(images.tolist(), counts.tolist(), ends)]
    return [(image, (image_of_row == image).nonzero().squeeze(1)) for image in image_of_row.unique().tolist()]


class _RoIAlignFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features: Tensor, rois: Tensor, output_size: tuple[int, int], spatial_scale: float,
                sampling_ratio: int, aligned: bool) -> Tensor:
        ctx.save_for_backward(rois)
        ctx.params = (features.shape, output_size, spatial_scale, sampling_ratio, aligned)
        return tv_roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        (rois,) = ctx.saved_tensors
        shape, (bins_h, bins_w), spatial_scale, sampling_ratio, aligned = ctx.params
        _, channels, height, width = shape
        num_rois = rois.shape[0]
        grad_features = grad_out.new_zeros(shape)
        if num_rois == 0:
            return grad_features, None, None, None, None, None
        offset = 0.5 if aligned else 0.0
        x1 = rois[:, 1] * spatial_scale - offset
        y1 = rois[:, 2] * spatial_scale - offset
        roi_w = rois[:, 3] * spatial_scale - offset - x1
        roi_h = rois[:, 4] * spatial_scale - offset - y1
        if not aligned:  # mmcv's legacy mode forces at least one pixel
            roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
        if sampling_ratio > 0:
            samples_y = samples_x = torch.full_like(roi_h, sampling_ratio)
        else:
            samples_y = torch.ceil(roi_h / bins_h)
            samples_x = torch.ceil(roi_w / bins_w)
        weights_y = bin_weights(y1, roi_h, bins_h, samples_y, height).to(grad_out.dtype)  # [R, ph, H]
        weights_x = bin_weights(x1, roi_w, bins_w, samples_x, width).to(grad_out.dtype)  # [R, pw, W]
        # [R, ph*C, pw] @ [R, pw, W] -> [R, ph, C, W]: laid out for the per-image product without a copy
        rows = torch.bmm(grad_out.transpose(1, 2).reshape(num_rois, bins_h * channels, bins_w), weights_x)
        rows = rows.view(num_rois * bins_h, channels * width)
        weights_y = weights_y.reshape(num_rois * bins_h, height)
        image_of_row = rois[:, 0].long().repeat_interleave(bins_h)
        for image, pick in _rows_per_image(image_of_row):
            # [H, R_b*ph] @ [R_b*ph, C*W] -> [H, C, W]
            grad_features[image] = ((weights_y[pick].t() @ rows[pick]).view(height, channels, width)
                                    .transpose(0, 1))
        return grad_features, None, None, None, None, None


class SeparableRoIAlign(nn.Module):
    """Drop-in for ``mmcv.ops.RoIAlign`` (``pool_mode='avg'``; no ``use_torchvision``) with the fast backward
    above.

    Args and shapes as mmcv's: features ``[B, C, H, W]``, rois ``[R, 5]`` (image index, x1, y1, x2, y2 in
    image pixels) -> ``[R, C, out_h, out_w]``.
    """

    def __init__(self, output_size: int | tuple[int, int], spatial_scale: float = 1.0,
                 sampling_ratio: int = 0, pool_mode: str = "avg", aligned: bool = True) -> None:
        super().__init__()
        if pool_mode != "avg":
            raise ValueError(f"SeparableRoIAlign: pool_mode={pool_mode!r} is not implemented here; use "
                             "mmcv's RoIAlign")
        self.output_size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)
        self.aligned = aligned

    def forward(self, features: Tensor, rois: Tensor) -> Tensor:
        height, width = features.shape[-2:]
        if (features.requires_grad and features.device.type == "cpu"
                and height * width <= DENSE_BACKWARD_MAX_PIXELS):
            return _RoIAlignFunction.apply(features, rois, self.output_size, self.spatial_scale,
                                           self.sampling_ratio, self.aligned)
        return tv_roi_align(features, rois, self.output_size, self.spatial_scale, self.sampling_ratio,
                            self.aligned)

    def extra_repr(self) -> str:
        return (f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
                f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}")
