"""The kernels of MNC's fused warp-and-pool on CPU: bilinear sampling of a channels-last atlas straight into
the pooled grids, and the backward of that.

`RoIWarp` samples an S x S grid per RoI, at rows[r, i] and cols[r, j] in atlas cell coordinates. Stage 2
max-pools the samples by k ("fine": S -> S / k) and stage 3 to s x s ("coarse": windows of k m x k m samples,
m = S / (k s)), once as they are and once times the stage-2 mask. The samples are never stored: each kernel
computes those it needs from the four atlas rows around each point (channels-last, so that every load is a
contiguous vector of channels), pools them and keeps each bin's argmax; the backward kernels recompute them.
Sample (i, j) with i = (p m + a2) k + a1 and j = (q m + b2) k + b1 is element (a1, b1) of fine bin
(p m + a2, q m + b2), itself element (a2, b2) of coarse bin (p, q).

Compiled (`run`: torch.compile's C++ backend), each function is one vectorised loop nest; run eagerly, the
same functions take one full-size pass per op (the tests run them so). Semantics are `F.max_pool2d`'s (a
window's first maximum in row-major order gets the gradient; maxima propagate NaN) and `grid_sample`'s
(bilinear, align_corners=False, zero padding) at the coordinates the caller clamped, so that the second row or
column of a clamped sample has weight 0; a sample whose `inside` factor is 0 reads 0 and passes no gradient.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils._python_dispatch import is_in_torch_dispatch_mode

# Set to "0" to run the kernels eagerly (same results, slower): for debugging, or where no C++ compiler is.
COMPILE_ENV = "MNC_BENCH_COMPILE"

Corners = tuple[Tensor, Tensor, Tensor]


def _corners(rows: Tensor, cols: Tensor, width: int) -> Corners:
    """Each sample's top-left atlas row [R, S, S] (int64) and its fractions [R, S, 1, 1], [R, 1, S, 1]."""
    top, left = rows.floor(), cols.floor()
    index = (top[:, :, None] * width + left[:, None, :]).long()
    return index, (rows - top)[:, :, None, None], (cols - left)[:, None, :, None]


def _inside(inside_rows: Tensor, inside_cols: Tensor) -> Tensor:
    """[R, S, S, 1]: 1 where both the sample's row and column lie on its level's map, else 0."""
    return (inside_rows[:, :, None] * inside_cols[:, None, :])[..., None]


def _samples(atlas: Tensor, rows: Tensor, cols: Tensor, inside_rows: Tensor, inside_cols: Tensor,
             width: int) -> Tensor:
    """Bilinear samples [R, S, S, C] of atlas [H * W, C] (rows of `width` cells) at (rows[r, i],
    cols[r, j])."""
    index, fy, fx = _corners(rows, cols, width)
    top = (1 - fx) * atlas[index] + fx * atlas[index + 1]
    bottom = (1 - fx) * atlas[index + width] + fx * atlas[index + width + 1]
    return ((1 - fy) * top + fy * bottom) * _inside(inside_rows, inside_cols)


def _bins(grid: Tensor, window: int) -> Tensor:
    """[R, n w, n w, C] -> [R, n, n, C, w * w]: each w x w bin's elements last, in row-major order."""
    rois, size, channels = grid.shape[0], grid.shape[1], grid.shape[-1]
    bins = size // window
    split = grid.reshape(rois, bins, window, bins, window, channels)
    return split.permute(0, 1, 3, 5, 2, 4).reshape(rois, bins, bins, channels, window * window)


def _unbin(binned: Tensor, window: int) -> Tensor:
    """The inverse of `_bins`: [R, n, n, C, w * w] -> [R, n w, n w, C]."""
    rois, bins, _, channels = binned.shape[:4]
    split = binned.reshape(rois, bins, bins, channels, window, window)
    return split.permute(0, 1, 4, 2, 5, 3).reshape(rois, bins * window, bins * window, channels)


def sample_pool(atlas: Tensor, rows: Tensor, cols: Tensor, inside_rows: Tensor, inside_cols: Tensor,
                width: int, k: int, m: int,
                with_argmax: bool) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None]:
    """Stage 2's and stage 3's max pooling of the samples.

    Args: atlas [H * W, C]; rows, cols, inside_rows, inside_cols [R, S] (the inside factors 0 or 1).
    Returns: the fine maxima [R, S / k, S / k, C] (over each k x k window) and, `with_argmax`, their argmax
    (int32 a1 * k + b1); the coarse maxima [R, s, s, C] (over each m x m window of fine maxima) and their
    argmax (int32 a2 * m + b2).
    """
    windows = _bins(_samples(atlas, rows, cols, inside_rows, inside_cols, width), k)
    if not with_argmax:
        fine = windows.amax(dim=-1)
        return fine, None, _bins(fine, m).amax(dim=-1), None
    fine, fine_argmax = windows.max(dim=-1)
    coarse, coarse_argmax = _bins(fine, m).max(dim=-1)
    return fine, fine_argmax.int(), coarse, coarse_argmax.int()


def masked_sample_pool(atlas: Tensor, rows: Tensor, cols: Tensor, inside_rows: Tensor, inside_cols: Tensor,
                       masks: Tensor, width: int, window: int, with_argmax: bool
                       ) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
    """Stage 3's max pooling of the samples times masks [R, S, S] (broadcast over the channels) over
    `window` x `window` windows (window = k m).

    Returns: the maxima [R, s, s, C] and, `with_argmax`, their argmax (int32, row-major in the window) and the
    sample and the mask value there, [R, s, s, C] each.
    """
    samples = _samples(atlas, rows, cols, inside_rows, inside_cols, width)
    products = _bins(samples * masks[..., None], window)
    if not with_argmax:
        return products.amax(dim=-1), None, None, None
    pooled, argmax = products.max(dim=-1)
    chosen = argmax[..., None] == torch.arange(window * window, device=argmax.device)
    # Picked out by a sum of one value and zeros rather than gathered: the loop stays vectorised.
    sample_values = torch.where(chosen, _bins(samples, window), 0.0).sum(dim=-1)
    mask_values = torch.where(chosen, _bins(masks[..., None], window), 0.0).sum(dim=-1)
    return pooled, argmax.int(), sample_values, mask_values


def _sample_gradient(fine_argmax: Tensor, coarse_argmax: Tensor, grad_fine: Tensor, grad_coarse: Tensor,
                     grad_samples: Tensor | None, k: int, m: int) -> Tensor:
    """Every sample's gradient [R, S, S, C]: its fine bin's when it is that bin's argmax, the coarse bin's
    joining the fine bin's that is the coarse argmax (as autograd of pooling the fine maxima adds them), plus
    `grad_samples`."""
    chosen = coarse_argmax[..., None] == torch.arange(m * m, device=coarse_argmax.device)
    fine = grad_fine + _unbin(torch.where(chosen, grad_coarse[..., None], 0.0), m)
    chosen = fine_argmax[..., None] == torch.arange(k * k, device=fine_argmax.device)
    grad = _unbin(torch.where(chosen, fine[..., None], 0.0), k)
    return grad if grad_samples is None else grad + grad_samples


def sample_gradient(atlas: Tensor, rows: Tensor, cols: Tensor, inside_rows: Tensor, inside_cols: Tensor,
                    width: int, fine_argmax: Tensor, coarse_argmax: Tensor, grad_fine: Tensor,
                    grad_coarse: Tensor, grad_samples: Tensor | None, k: int,
                    m: int) -> tuple[Tensor, Tensor, Tensor]:
    """The samples' gradient from those of `sample_pool`'s maxima (grad_fine [R, S / k, S / k, C], grad_coarse
    [R, s, s, C]) and of the samples themselves (`grad_samples` [R, S, S, C], from the masked pooling, or
    None).

    Returns: the gradient [R, S, S, C] of every sample, and those [R, S, S] of each sample's row and column
    coordinate (summed over the channels).
    """
    grad = _sample_gradient(fine_argmax, coarse_argmax, grad_fine, grad_coarse, grad_samples, k, m)
    grad = grad * _inside(inside_rows, inside_cols)
    index, fy, fx = _corners(rows, cols, width)
    top_left, top_right = atlas[index], atlas[index + 1]
    bottom_left, bottom_right = atlas[index + width], atlas[index + width + 1]
    along_rows = (1 - fx) * (bottom_left - top_left) + fx * (bottom_right - top_right)
    along_cols = (1 - fy) * (top_right - top_left) + fy * (bottom_right - bottom_left)
    return grad, (grad * along_rows).sum(dim=-1), (grad * along_cols).sum(dim=-1)


def atlas_gradient(atlas: Tensor, rows: Tensor, cols: Tensor, grad: Tensor, width: int) -> Tensor:
    """The atlas's gradient [H * W, C]: every sample's gradient grad [R, S, S, C] added into its four atlas
    rows with its bilinear weights."""
    index, fy, fx = _corners(rows, cols, width)
    result = torch.zeros_like(atlas)
    channels = atlas.shape[1]
    for offset, weight in ((0, (1 - fy) * (1 - fx)), (1, (1 - fy) * fx), (width, fy * (1 - fx)),
                           (width + 1, fy * fx)):
        result.index_put_(((index + offset).flatten(),), (grad * weight).reshape(-1, channels),
                          accumulate=True)
    return result


def masked_gradient(grad: Tensor, argmax: Tensor, sample_values: Tensor, mask_values: Tensor, window: int
                    ) -> tuple[Tensor, Tensor]:
    """The gradients of `masked_sample_pool`'s samples [R, S, S, C] (grad x mask at each argmax) and masks
    [R, S, S] (grad x sample at each argmax, summed over the channels), from its maxima's,
    grad [R, s, s, C]."""
    chosen = argmax[..., None] == torch.arange(window * window, device=argmax.device)
    grad_samples = _unbin(torch.where(chosen, (grad * mask_values)[..., None], 0.0), window)
    to_masks = torch.where(chosen, (grad * sample_values)[..., None], 0.0).sum(dim=3, keepdim=True)
    return grad_samples, _unbin(to_masks, window)[..., 0]


# Per kernel, the dimensions that vary between calls (the RoI count; the atlas's rows, which follow the
# batch), of each positional argument; the other sizes are compiled in.
_DYNAMIC_DIMS: dict[Callable[..., Any], tuple[int | None, ...]] = {
    sample_pool: (0, 0, 0, 0, 0),
    masked_sample_pool: (0, 0, 0, 0, 0, 0),
    sample_gradient: (0, 0, 0, 0, 0, None, 0, 0, 0, 0, 0),
    atlas_gradient: (0, 0, 0, 0),
    masked_gradient: (0, 0, 0, 0),
}
# The atlas gradient adds into rows that several samples share: compiled for one thread, the additions need no
# atomics (inductor makes every parallel indexed addition atomic, which is ten times slower on two threads).
_SINGLE_THREADED = {atlas_gradient}
_compiled: dict[Callable[..., Any], Callable[..., Any]] = {}


def run(kernel: Callable[..., Any], *args: Any) -> Any:
    """`kernel(*args)`, compiled on first use in this process (torch.compile's C++ backend; inductor caches
    the generated code on disk, so a later process loads it in seconds), with the RoI count and the atlas size
    as its dynamic sizes. Eager when `MNC_BENCH_COMPILE=0`, and, with a warning, where compiling fails (e.g.
    no C++ compiler)."""
    dims = _DYNAMIC_DIMS[kernel]
    dynamic = [(arg, dim) for arg, dim in zip(args, dims) if dim is not None and isinstance(arg, Tensor)]
    if (os.environ.get(COMPILE_ENV, "1") == "0" or any(arg.shape[dim] < 2 for arg, dim in dynamic)
            or is_in_torch_dispatch_mode(include_infra_modes=False)):
        # A dynamic size is at least 2 (torch.compile specialises sizes 0 and 1); under a dispatch mode (the
        # bench's FLOP counter) torch.compile refuses to run: this call runs eagerly, later ones compiled.
        return kernel(*args)
    compiled_kernel = _compiled.get(kernel)
    if compiled_kernel is None:
        options = {"cpp.threads": 1} if kernel in _SINGLE_THREADED else {}
        compiled_kernel = _compiled[kernel] = torch.compile(kernel, fullgraph=True, options=options)
    if compiled_kernel is kernel:
        return kernel(*args)
    for arg, dim in dynamic:
        torch._dynamo.mark_dynamic(arg, dim)
    try:
        return compiled_kernel(*args)
    except Exception as error:
        # inductor's errors share no base class; whatever failed, run eagerly from now on
        warnings.warn(f"MNC's RoI pooling kernel {kernel.__name__} could not be compiled "
                      f"({type(error).__name__}: {error}); running it eagerly (same results, slower)",
                      stacklevel=2)
        _compiled[kernel] = kernel
        return kernel(*args)
