"""What stages 2 and 3 read from the warped RoIs: max pooling of the S x S warped features, plain or masked.

Two implementations of one interface (`RoIFeatures`):

- `DenseRoIFeatures` holds the warped features [R, C, S, S] and pools them with PyTorch's pooling ops (any
  output size; any device);
- `WindowedRoIFeatures` is the fused warp-and-pool of the cascade on CPU. `RoIWarp.pooled` orders the sampling
  points window by window (see `window_kernels`), so that one `grid_sample` call writes the samples already
  grouped by pooling window, and one compiled pass takes stage 2's k x k maxima and stage 3's coarser ones,
  with their argmax. Its backward writes the samples' gradient in one pass (no zero fill, no scatter, no sum
  of the two poolings' full-size gradients) and hands it to `grid_sample`'s backward, which scatters it to the
  features and to the sampling grid, i.e. to the box coordinates. Outputs and gradients are those of the dense
  path up to the order of floating-point sums (tests/test_mnc_speed_equivalence.py).
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn
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
    if ((torch.is_grad_enabled() and features.requires_grad) or features.shape[-2] != size
            or size % output_size):
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
    passes over R x C x S x S values to use 1 / (S / s)^2 of them. Here forward keeps each bin's argmax and
    the feature and mask values there; backward scatters grad x mask into the features' gradient and adds
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
    if features.shape[0] == 0 or not (
            torch.is_grad_enabled() and (features.requires_grad or masks.requires_grad)):
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


class PooledLinear(nn.Linear):
    """`nn.Linear` over pooled RoI features [R, C, h, w], flattened as (C, h, w) like `flatten(1)`.

    Features in channels-last memory format (`WindowedRoIFeatures`' maxima) are read as they are stored, with
    the weight's columns permuted to (h, w, C) instead: a copy of the weight rather than of R times as many
    features, kept between calls while the weight does not change and takes no gradient (inference). The
    products are the same; their sum runs in another order.
    """

    _permuted: tuple[tuple[int, ...], Tensor] | None = None

    def forward(self, maps: Tensor) -> Tensor:
        if (maps.dim() == 4 and not maps.is_contiguous()
                and maps.is_contiguous(memory_format=torch.channels_last)):
            return F.linear(maps.permute(0, 2, 3, 1).reshape(maps.shape[0], -1),
                            self._hwc_weight(maps.shape[1:]), self.bias)
        return super().forward(maps.flatten(1))

    def _hwc_weight(self, chw: tuple[int, ...]) -> Tensor:
        """The weight [out, C * h * w] with its columns in (h, w, C) order."""
        channels, height, width = chw
        if torch.is_grad_enabled() and self.weight.requires_grad:
            self._permuted = None
            return (self.weight.view(-1, channels, height, width).permute(0, 2, 3, 1)
                    .reshape(self.out_features, -1))
        key = (self.weight.data_ptr(), self.weight._version, channels, height, width)
        if self._permuted is None or self._permuted[0] != key:
            permuted = self.weight.detach().view(-1, channels, height, width).permute(0, 2, 3, 1)
            self._permuted = (key, permuted.reshape(self.out_features, -1))
        return self._permuted[1]


def as_roi_features(features: Tensor | RoIFeatures) -> RoIFeatures:
    """Warped features [R, C, S, S] as `DenseRoIFeatures`; RoIFeatures as they are."""
    return DenseRoIFeatures(features) if isinstance(features, Tensor) else features


class _SamplePool(torch.autograd.Function):
    """Stage 2's and stage 3's maxima of the RoI samples, computed from the atlas without storing the samples
    (`window_kernels.sample_pool`); the backward scatters to the atlas and to the sampling coordinates.

    Inputs: atlas [H * W, C] (channels-last); rows, cols [R, S] (atlas cell coordinates, clamped by the
    caller); inside_rows, inside_cols [R, S] (1 where the sample lies on its level's map, else 0). Outputs:
    the fine [R, S / k, S / k, C] and coarse [R, s, s, C] maxima, and a stand-in [R, S, S, C] for the samples
    (an expanded zero: the masked pooling recomputes the samples and hands their gradient back through it).
    """

    @staticmethod
    def forward(ctx, atlas: Tensor, rows: Tensor, cols: Tensor, inside_rows: Tensor, inside_cols: Tensor,
                width: int, k: int, m: int):
        fine, fine_argmax, coarse, coarse_argmax = kernels.run(
            kernels.sample_pool, atlas, rows, cols, inside_rows, inside_cols, width, k, m,
            any(ctx.needs_input_grad))
        ctx.save_for_backward(atlas, rows, cols, inside_rows, inside_cols, fine_argmax, coarse_argmax)
        ctx.sizes = (width, k, m)
        stand_in = atlas.new_zeros(()).expand(rows.shape[0], rows.shape[1], cols.shape[1], atlas.shape[1])
        return fine, coarse, stand_in

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_fine: Tensor | None, grad_coarse: Tensor | None, grad_samples: Tensor | None):
        atlas, rows, cols, inside_rows, inside_cols, fine_argmax, coarse_argmax = ctx.saved_tensors
        width, k, m = ctx.sizes
        if grad_fine is None:
            grad_fine = atlas.new_zeros(fine_argmax.shape)
        if grad_coarse is None:
            grad_coarse = atlas.new_zeros(coarse_argmax.shape)
        grad, grad_rows, grad_cols = kernels.run(
            kernels.sample_gradient, atlas, rows, cols, inside_rows, inside_cols, width, fine_argmax,
            coarse_argmax, grad_fine, grad_coarse, grad_samples, k, m)
        grad_atlas = kernels.run(kernels.atlas_gradient, atlas, rows, cols, grad, width) \
            if ctx.needs_input_grad[0] else None
        # A row coordinate is shared by its row of samples, a column coordinate by its column.
        return grad_atlas, grad_rows.sum(dim=2), grad_cols.sum(dim=1), None, None, None, None, None


class _MaskedSamplePool(torch.autograd.Function):
    """Stage 3's maxima of the samples times the stage-2 masks (`window_kernels.masked_sample_pool`): the
    samples recomputed from the atlas, their gradient handed to `_SamplePool` through its stand-in.

    Inputs: the stand-in [R, S, S, C]; masks [R, S, S]; then `_SamplePool`'s atlas, coordinates and inside
    factors (read, not differentiated here). Output: [R, s, s, C].
    """

    @staticmethod
    def forward(ctx, stand_in: Tensor, masks: Tensor, atlas: Tensor, rows: Tensor, cols: Tensor,
                inside_rows: Tensor, inside_cols: Tensor, width: int, window: int) -> Tensor:
        pooled, argmax, sample_values, mask_values = kernels.run(
            kernels.masked_sample_pool, atlas, rows, cols, inside_rows, inside_cols, masks, width, window,
            ctx.needs_input_grad[0] or ctx.needs_input_grad[1])
        ctx.save_for_backward(argmax, sample_values, mask_values)
        ctx.window = window
        return pooled

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        argmax, sample_values, mask_values = ctx.saved_tensors
        grad_samples, grad_masks = kernels.run(kernels.masked_gradient, grad, argmax, sample_values,
                                               mask_values, ctx.window)
        return grad_samples, grad_masks, None, None, None, None, None, None, None


def _channels_first(maps: Tensor) -> Tensor:
    """[R, h, w, C] -> [R, C, h, w], a view in channels-last memory format (`PooledLinear` reads it so)."""
    return maps.permute(0, 3, 1, 2)


class WindowedRoIFeatures:
    """The fused warp-and-pool's RoI features: the fine [R, C, S / k, S / k] and coarse [R, C, s, s] maxima
    taken when warping (channels-last memory format), and what the masked pooling needs to resample."""

    def __init__(self, atlas: Tensor, rows: Tensor, cols: Tensor, inside_rows: Tensor, inside_cols: Tensor,
                 width: int, k: int, m: int):
        self._sampling = (atlas, rows, cols, inside_rows, inside_cols, width)
        self.size = rows.shape[1]
        self._window = k * m
        fine, coarse, self._stand_in = _SamplePool.apply(atlas, rows, cols, inside_rows, inside_cols, width,
                                                         k, m)
        self.fine, self.coarse = _channels_first(fine), _channels_first(coarse)

    def max_pool(self, output_size: int) -> Tensor:
        for pooled in (self.fine, self.coarse):
            if pooled.shape[-1] == output_size:
                return pooled
        raise ValueError(f"warped for pooling to {self.fine.shape[-1]} and {self.coarse.shape[-1]}, "
                         f"not to {output_size}")

    def masked_max_pool(self, masks: Tensor, output_size: int) -> Tensor:
        if output_size != self.coarse.shape[-1]:
            raise ValueError(f"warped for masked pooling to {self.coarse.shape[-1]}, not to {output_size}")
        masks = masks.reshape(masks.shape[0], self.size, self.size)
        return _channels_first(_MaskedSamplePool.apply(self._stand_in, masks, *self._sampling, self._window))
