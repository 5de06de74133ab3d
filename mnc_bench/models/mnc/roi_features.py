"""What stages 2 and 3 read from the warped RoIs: max pooling of the S x S warped features, plain or masked.

Two implementations of one interface (`RoIFeatures`):

- `DenseRoIFeatures` holds the warped features [R, C, S, S] and pools them with PyTorch's pooling ops (any
  output size; any device);
- `WindowedRoIFeatures` is the fused warp-and-pool of the cascade on CPU. `RoIWarp.pooled` orders the sampling
  points window by window (see `window_kernels`), so that one `grid_sample` call writes the samples already
  grouped by pooling window, and one compiled pass takes stage 2's k x k maxima and stage 3's coarser ones,
  with their argmax. Its backward writes the samples' gradient in one pass (no zero fill, no scatter, no sum of
  the two poolings' full-size gradients) and hands it to `grid_sample`'s backward, which scatters it to the
  features and to the sampling grid, i.e. to the box coordinates. Outputs and gradients are those of the dense
  path up to the order of floating-point sums (tests/test_mnc_speed_equivalence.py).
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from mnc_bench.models.mnc import window_kernels as kernels


class RoIFeatures(Protocol):
    """Warped features of R RoIs, [R, C, S, S], as the stages pool them."""

    @property
    def size(self) -> int:
        """S."""

    def max_pool(self, output_size: int) -> Tensor:
        """[R, C, s, s] (s = `output_size`), as `F.adaptive_max_pool2d` of the warped features."""

    def masked_max_pool(self, masks: Tensor, output_size: int) -> Tensor:
        """Max pooling of the warped features times `masks` [R, 1, S, S] (broadcast over the channels) ->
        [R, C, s, s]."""


def max_pool_planes(planes: Tensor, output_size: int, *, return_indices: bool = False):
    """`adaptive_max_pool2d` of [N, C, S, S] to s x s (s = `output_size`); when s divides S its bins are
    fixed S / s windows, for which `max_pool2d` is the faster kernel (same maxima, same first-maximum
    indices)."""
    size = planes.shape[-1]
    if planes.shape[-2] == size and size % output_size == 0:
        return F.max_pool2d(planes, kernel_size=size // output_size, return_indices=return_indices)
    return F.adaptive_max_pool2d(planes, output_size, return_indices=return_indices)


def pool_warped(features: Tensor, output_size: int) -> Tensor:
    """Max-pool warped features [R, C, S, S] to [R, C, s, s] (s = `output_size`), as `adaptive_max_pool2d`.

    Pools the channel-major storage `RoIWarp` returns in place (a [R, C] pooling of that view would first copy
    it). Without autograd, fixed windows take their maxima with element-wise maxima of strided slices (CPU's
    max_pool2d kernel also computes argmax indices, 3-4x slower); with autograd each bin's gradient goes to
    its first maximum (`max_pool_planes`).
    """
    if features.shape[0] == 0:  # max pooling takes an empty batch, not an empty channel dimension
        return F.adaptive_max_pool2d(features, output_size)
    planes = features.transpose(0, 1)  # contiguous for RoIWarp's output
    size = features.shape[-1]
    if (torch.is_grad_enabled() and features.requires_grad) or features.shape[-2] != size or size % output_size:
        return max_pool_planes(planes, output_size).transpose(0, 1)
    window = size // output_size
    rows = planes[:, :, 0::window]
    for offset in range(1, window):
        rows = torch.maximum(rows, planes[:, :, offset::window])
    pooled = rows[..., 0::window]
    for offset in range(1, window):
        pooled = torch.maximum(pooled, rows[..., offset::window])
    return pooled.transpose(0, 1)


class _MaskedMaxPool(torch.autograd.Function):
    """pool_warped(features * masks) with a backward that works on the pooled bins only.

    Autograd of the two ops would keep the [R, C, S, S] product's inputs and, in backward, scatter the bins'
    gradient into a full-size tensor and multiply it by the masks and by the features (then sum over C): three
    passes over R x C x S x S values to use 1 / (S / s)^2 of them. Here forward keeps each bin's argmax and the
    feature and mask values there; backward scatters grad x mask into the features' gradient and adds
    grad x feature into the masks' gradient at those positions: the same values (the sum over channels in
    another order).
    """

    @staticmethod
    def forward(ctx, features: Tensor, masks: Tensor, output_size: int) -> Tensor:
        planes = features.transpose(0, 1)  # [C, R, S, S], contiguous for RoIWarp's output
        channels, num_rois = planes.shape[:2]
        pooled, indices = max_pool_planes(planes * masks.transpose(0, 1), output_size, return_indices=True)
        indices = indices.flatten(2)  # [C, R, s * s] into each S * S plane
        ctx.save_for_backward(
            indices,
            planes.reshape(channels, num_rois, -1).gather(2, indices),
            masks.reshape(1, num_rois, -1).expand(channels, -1, -1).gather(2, indices),
        )
        ctx.shapes = (tuple(features.shape), tuple(masks.shape))
        return pooled.transpose(0, 1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_pooled: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        indices, feature_values, mask_values = ctx.saved_tensors
        (num_rois, channels, height, width), mask_shape = ctx.shapes
        grad = grad_pooled.transpose(0, 1).reshape(channels, num_rois, -1)  # [C, R, s * s]
        grad_features = grad_masks = None
        if ctx.needs_input_grad[0]:
            grad_features = grad.new_zeros(channels, num_rois, height * width).scatter_add_(
                2, indices, grad * mask_values).view(channels, num_rois, height, width).transpose(0, 1)
        if ctx.needs_input_grad[1]:
            per_roi = (grad * feature_values).transpose(0, 1).reshape(num_rois, -1)
            grad_masks = grad.new_zeros(num_rois, height * width).scatter_add_(
                1, indices.transpose(0, 1).reshape(num_rois, -1), per_roi).view(mask_shape)
        return grad_features, grad_masks, None


def masked_max_pool(features: Tensor, masks: Tensor, output_size: int) -> Tensor:
    """Max pooling of the masked features: [R, C, S, S] x [R, 1, S, S] -> [R, C, s, s], as
    `pool_warped(features * masks, output_size)`."""
    if features.shape[0] == 0 or not (torch.is_grad_enabled() and (features.requires_grad or masks.requires_grad)):
        return pool_warped(features * masks, output_size)
    return _MaskedMaxPool.apply(features, masks, output_size)


class DenseRoIFeatures:
    """Warped features [R, C, S, S] (RoIWarp's channel-major storage or any other), pooled by PyTorch's ops.

    Pools of the same features are kept: a size that divides one already taken (stage 3's 7 x 7 beside stage
    2's 14 x 14) pools those maxima instead, one pass over R x C x S x S values less and the same result.
    """

    def __init__(self, features: Tensor):
        self.features = features
        self._pools: dict[int, Tensor] = {}

    @property
    def size(self) -> int:
        return self.features.shape[-1]

    def max_pool(self, output_size: int) -> Tensor:
        if output_size not in self._pools:
            nested = [size for size in self._pools if self.size % size == 0 and size % output_size == 0]
            source = self._pools[nested[0]] if nested and self.size % output_size == 0 else self.features
            self._pools[output_size] = pool_warped(source, output_size)
        return self._pools[output_size]

    def masked_max_pool(self, masks: Tensor, output_size: int) -> Tensor:
        return masked_max_pool(self.features, masks, output_size)


def as_roi_features(features: Tensor | RoIFeatures) -> RoIFeatures:
    """Warped features [R, C, S, S] as `DenseRoIFeatures`; RoIFeatures as they are."""
    return DenseRoIFeatures(features) if isinstance(features, Tensor) else features


def _fine_to_rois(fine: Tensor, rois: int, m: int) -> Tensor:
    """Window-major fine maxima [C, m * m, R * s * s] -> [R, C, s * m, s * m], RoI-major (what the fc layers
    read without a copy)."""
    channels, size = fine.shape[0], math.isqrt(fine.shape[2] // rois)
    return fine.view(channels, m, m, rois, size, size).permute(3, 0, 4, 1, 5, 2).reshape(
        rois, channels, size * m, size * m)


def _fine_from_rois(fine: Tensor, m: int) -> Tensor:
    """The inverse of `_fine_to_rois`: [R, C, s * m, s * m] -> [C, m * m, R * s * s] (contiguous)."""
    rois, channels, side = fine.shape[:3]
    size = side // m
    return fine.reshape(rois, channels, size, m, size, m).permute(1, 3, 5, 0, 2, 4).reshape(channels, m * m, -1)


def _coarse_to_rois(coarse: Tensor, rois: int) -> Tensor:
    """[C, R * s * s] -> [R, C, s, s] (a transposed view; flattening it per RoI copies)."""
    size = math.isqrt(coarse.shape[1] // rois)
    return coarse.view(coarse.shape[0], rois, size, size).transpose(0, 1)


def _coarse_from_rois(coarse: Tensor) -> Tensor:
    """[R, C, s, s] -> [C, R * s * s] (contiguous)."""
    return coarse.transpose(0, 1).reshape(coarse.shape[1], -1)


def _masks_window_major(masks: Tensor, k: int, m: int) -> Tensor:
    """Masks [R, S, S] -> [k * k, m * m, R * s * s], each element at its sample's window-major position."""
    rois, size = masks.shape[0], masks.shape[-1] // (k * m)
    return masks.reshape(rois, size, m, k, size, m, k).permute(3, 6, 2, 5, 0, 1, 4).reshape(k * k, m * m, -1)


def _masks_from_window_major(masks: Tensor, k: int, m: int, rois: int) -> Tensor:
    """The inverse of `_masks_window_major`: [k * k, m * m, R * s * s] -> [R, S, S]."""
    size = math.isqrt(masks.shape[2] // rois)
    side = size * m * k
    return masks.view(k, k, m, m, rois, size, size).permute(4, 5, 2, 0, 6, 3, 1).reshape(rois, side, side)


class _WarpAndPool(torch.autograd.Function):
    """grid_sample of window-ordered points, then their fine and coarse maxima (`window_kernels.pool_samples`).

    Inputs: atlas [G, C / G, H, W] (channel groups as batch items, `roi_warp`); grid [1, P, s, 2] with
    P * s = k * k * m * m * R * s * s points in window-major order; inside [k * k, m * m, R * s * s] (0/1: the
    sample lies on its level's map) or None when all do. Outputs: the samples [C, k * k, m * m, R * s * s],
    the fine [R, C, s * m, s * m] and the coarse [R, C, s, s] maxima.
    """

    @staticmethod
    def forward(ctx, atlas: Tensor, grid: Tensor, inside: Tensor | None, k: int, m: int, rois: int):
        groups, group_channels = atlas.shape[:2]
        samples = F.grid_sample(atlas, grid.expand(groups, -1, -1, -1), mode="bilinear", padding_mode="zeros",
                                align_corners=False)  # [G, C / G, P, s]
        samples = samples.view(groups * group_channels, k * k, m * m, -1)
        if inside is not None:
            samples = samples * inside
        fine, fine_argmax, coarse, coarse_argmax = kernels.run(kernels.pool_samples, samples,
                                                               any(ctx.needs_input_grad))
        ctx.save_for_backward(atlas, grid, inside, fine_argmax, coarse_argmax)
        ctx.windows = (k, m)
        return samples, _fine_to_rois(fine, rois, m), _coarse_to_rois(coarse, rois)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_samples: Tensor | None, grad_fine: Tensor | None, grad_coarse: Tensor | None):
        atlas, grid, inside, fine_argmax, coarse_argmax = ctx.saved_tensors
        k, m = ctx.windows
        grad_fine = torch.zeros_like(fine_argmax, dtype=atlas.dtype) if grad_fine is None else \
            _fine_from_rois(grad_fine, m)
        grad_coarse = torch.zeros_like(coarse_argmax, dtype=atlas.dtype) if grad_coarse is None else \
            _coarse_from_rois(grad_coarse)
        grad = kernels.run(kernels.pool_gradient, grad_fine, grad_coarse, fine_argmax, coarse_argmax, k,
                           grad_samples)
        if inside is not None:
            grad = grad * inside
        groups = atlas.shape[0]
        grad_atlas, grad_grid = torch.ops.aten.grid_sampler_2d_backward(
            grad.view(groups, -1, grid.shape[1], grid.shape[2]), atlas, grid.expand(groups, -1, -1, -1),
            0, 0, False, [ctx.needs_input_grad[0], ctx.needs_input_grad[1]])  # bilinear, zeros, align_corners
        if grad_grid is not None:
            grad_grid = grad_grid.sum(dim=0, keepdim=True)  # the channel groups share the grid
        return grad_atlas, grad_grid, None, None, None, None


class _MaskedPool(torch.autograd.Function):
    """`window_kernels.masked_pool_samples`: the coarse maxima of samples x masks, differentiable in both.
    Args: samples [C, k * k, m * m, R * s * s]; masks [R, S, S]. Returns [R, C, s, s]."""

    @staticmethod
    def forward(ctx, samples: Tensor, masks: Tensor, k: int, m: int) -> Tensor:
        rois = masks.shape[0]
        with_argmax = any(ctx.needs_input_grad)
        pooled, argmax, sample_values, mask_values = kernels.run(
            kernels.masked_pool_samples, samples, _masks_window_major(masks, k, m), k, m, with_argmax)
        ctx.save_for_backward(argmax, sample_values, mask_values)
        ctx.windows = (k, m, rois)
        return _coarse_to_rois(pooled, rois)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        argmax, sample_values, mask_values = ctx.saved_tensors
        k, m, rois = ctx.windows
        grad_samples, grad_masks = kernels.run(kernels.masked_pool_gradient, _coarse_from_rois(grad), argmax,
                                               sample_values, mask_values, k, m)
        return grad_samples, _masks_from_window_major(grad_masks, k, m, rois), None, None


class WindowedRoIFeatures:
    """The fused warp-and-pool's RoI features: the fine [R, C, S / k, S / k] and coarse [R, C, s, s] maxima
    taken when warping, and the window-major samples for the masked pooling (`_WarpAndPool`)."""

    def __init__(self, atlas: Tensor, grid: Tensor, inside: Tensor | None, k: int, m: int, rois: int):
        self.windows = (k, m)
        self.samples, self.fine, self.coarse = _WarpAndPool.apply(atlas, grid, inside, k, m, rois)

    @property
    def size(self) -> int:
        k, m = self.windows
        return self.coarse.shape[-1] * k * m

    def max_pool(self, output_size: int) -> Tensor:
        for pooled in (self.fine, self.coarse):
            if pooled.shape[-1] == output_size:
                return pooled
        raise ValueError(f"warped for pooling to {self.fine.shape[-1]} and {self.coarse.shape[-1]}, "
                         f"not to {output_size}")

    def masked_max_pool(self, masks: Tensor, output_size: int) -> Tensor:
        if output_size != self.coarse.shape[-1]:
            raise ValueError(f"warped for masked pooling to {self.coarse.shape[-1]}, not to {output_size}")
        k, m = self.windows
        return _MaskedPool.apply(self.samples, masks.reshape(masks.shape[0], self.size, self.size), k, m)
