"""The element-wise kernels of MNC's RoI pooling, on warped samples stored window-major.

`RoIWarp` samples an S x S grid per RoI and channel. Stage 2 max-pools it by k ("fine": S -> S / k), stage 3
pools it to s x s ("coarse": windows of k * m samples, m = S / (k * s)), once as it is and once times the
stage-2 mask. Stored window-major, [C, k * k, m * m, R, s, s], sample (i, j) of RoI r, with
i = (p * m + a2) * k + a1 and j = (q * m + b2) * k + b1, being element [c, a1 * k + b1, a2 * m + b2, r, p, q],
the elements of a window are the same element of contiguous slabs: each pooling reduces a leading dimension.

Compiled (`compiled`: torch.compile's C++ backend), each function is one loop over its inputs that fuses the
maxima, the argmax, the mask product and the layout changes; run eagerly, the same functions take one
full-size pass per op. Semantics are `F.max_pool2d`'s: a window's first maximum in row-major order gets the
gradient, and maxima propagate NaN. Argmax codes are int32 (uint8 codes would not vectorise beside the float
lanes).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

# Set to "0" to run the kernels eagerly (same results, slower): for debugging, or where no C++ compiler is.
COMPILE_ENV = "MNC_BENCH_COMPILE"


def _slots(count: int, like: Tensor, dims_after: int) -> Tensor:
    """arange(count) as int32, shaped to broadcast against a tensor with `dims_after` further dimensions."""
    return torch.arange(count, dtype=torch.int32, device=like.device).view(count, *([1] * dims_after))


def pool_samples(samples: Tensor, with_argmax: bool) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None]:
    """Fine and coarse max pooling of window-major samples [C, k * k, m * m, N] (N = R * s * s).

    Returns: the fine maxima [C, m * m, N] (over each k x k window) and, `with_argmax`, their argmax (int32
    a1 * k + b1); the coarse maxima [C, N] (over each m x m window of fine maxima: the k m x k m window's
    maximum) and their argmax (int32 a2 * m + b2).
    """
    if not with_argmax:
        fine = samples.amax(dim=1)
        return fine, None, fine.amax(dim=1), None
    fine, fine_argmax = samples.max(dim=1)
    coarse, coarse_argmax = fine.max(dim=1)
    return fine, fine_argmax.int(), coarse, coarse_argmax.int()


def _row_major(windowed: Tensor, k: int, m: int) -> Tensor:
    """[..., k * k, m * m, N] -> [..., (k m)^2, N]: a coarse window's elements in row-major order (row
    a2 * k + a1, column b2 * k + b1), the order max pooling scans them in."""
    lead = windowed.shape[:-3]
    split = windowed.reshape(*lead, k, k, m, m, windowed.shape[-1])
    d = len(lead)
    return split.permute(*range(d), d + 2, d, d + 3, d + 1, d + 4).reshape(*lead, (k * m) ** 2, -1)


def masked_pool_samples(samples: Tensor, masks: Tensor, k: int, m: int, with_argmax: bool
                        ) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
    """Coarse max pooling of samples x masks; the product is never stored.

    Args: samples [C, k * k, m * m, N]; masks [k * k, m * m, N], window-major as the samples.
    Returns: the maxima [C, N] and, `with_argmax`, their argmax (int32, row-major in the k m x k m window) and
    the sample and the mask value there, [C, N] each.
    """
    products = _row_major(samples * masks, k, m)  # [C, (k m)^2, N]
    if not with_argmax:
        return products.amax(dim=1), None, None, None
    pooled, argmax = products.max(dim=1)
    chosen = argmax[:, None] == _slots((k * m) ** 2, samples, 1)
    # Selected by a sum of one value and zeros rather than gathered: the loop stays vectorised.
    sample_values = torch.where(chosen, _row_major(samples, k, m), 0.0).sum(dim=1)
    mask_values = torch.where(chosen, _row_major(masks, k, m), 0.0).sum(dim=1)
    return pooled, argmax.int(), sample_values, mask_values


def pool_gradient(grad_fine: Tensor, grad_coarse: Tensor, fine_argmax: Tensor, coarse_argmax: Tensor, k: int,
                  grad_samples: Tensor | None = None) -> Tensor:
    """The samples' gradient [C, k * k, m * m, N] from those of `pool_samples`' maxima, grad_fine [C, m * m, N]
    and grad_coarse [C, N], plus `grad_samples` when given."""
    mm = fine_argmax.shape[1]
    # A coarse maximum is one of its window's fine maxima: its gradient joins that fine bin's (autograd of
    # pooling the fine maxima adds the two the same way).
    fine = grad_fine + torch.where(coarse_argmax[:, None] == _slots(mm, grad_fine, 1), grad_coarse[:, None], 0.0)
    grad = torch.where(fine_argmax[:, None] == _slots(k * k, fine, 2), fine[:, None], 0.0)
    return grad if grad_samples is None else grad + grad_samples


def masked_pool_gradient(grad: Tensor, argmax: Tensor, sample_values: Tensor, mask_values: Tensor, k: int,
                         m: int) -> tuple[Tensor, Tensor]:
    """The gradients of `masked_pool_samples`' inputs from its maxima's, grad [C, N]: the samples'
    [C, k * k, m * m, N] (grad x mask at each argmax) and the masks' [k * k, m * m, N] (grad x sample at each
    argmax, summed over the channels)."""
    # Row-major window position of each window-major slot (a1, b1, a2, b2): (a2 k + a1) k m + b2 k + b1.
    in_fine, in_coarse = _slots(k, grad, 0), _slots(m, grad, 0)
    rows = in_coarse.view(1, 1, m, 1) * k + in_fine.view(k, 1, 1, 1)
    columns = in_coarse.view(1, 1, 1, m) * k + in_fine.view(1, k, 1, 1)
    position = (rows * (k * m) + columns).reshape(k * k, m * m, 1)
    chosen = argmax[:, None, None] == position  # [C, k * k, m * m, N]
    grad_samples = torch.where(chosen, (grad * mask_values)[:, None, None], 0.0)
    grad_masks = torch.where(chosen, (grad * sample_values)[:, None, None], 0.0).sum(dim=0)
    return grad_samples, grad_masks


# Per kernel, the RoI dimension of each tensor argument (None: not a tensor): the only size that varies.
_ROI_DIMS: dict[Callable[..., Any], tuple[int | None, ...]] = {
    pool_samples: (3, None),
    masked_pool_samples: (3, 2, None, None, None),
    pool_gradient: (2, 1, 2, 1, None, 3),
    masked_pool_gradient: (1, 1, 1, 1, None, None),
}
_compiled: dict[Callable[..., Any], Callable[..., Any]] = {}


def run(kernel: Callable[..., Any], *args: Any) -> Any:
    """`kernel(*args)`, compiled on first use in this process (torch.compile's C++ backend; inductor caches the
    generated code on disk, so a later process loads it in about a second), with the RoI count as its only
    dynamic size. Eager when `MNC_BENCH_COMPILE=0`, and, with a warning, where compiling fails (e.g. no C++
    compiler)."""
    if os.environ.get(COMPILE_ENV, "1") == "0":
        return kernel(*args)
    compiled_kernel = _compiled.get(kernel)
    if compiled_kernel is None:
        compiled_kernel = _compiled[kernel] = torch.compile(kernel, fullgraph=True)
    if compiled_kernel is kernel or any(
            arg is not None and arg.shape[dim] < 2 for arg, dim in zip(args, _ROI_DIMS[kernel]) if dim is not None):
        return kernel(*args)  # a dynamic size is at least 2: torch.compile specialises sizes 0 and 1
    for arg, dim in zip(args, _ROI_DIMS[kernel]):
        if dim is not None and arg is not None:
            torch._dynamo.mark_dynamic(arg, dim)
    try:
        return compiled_kernel(*args)
    except Exception as error:  # inductor's errors share no base class; whatever failed, run eagerly from now on
        warnings.warn(f"MNC's RoI pooling kernel {kernel.__name__} could not be compiled "
                      f"({type(error).__name__}: {error}); running it eagerly (same results, slower)", stacklevel=2)
        _compiled[kernel] = kernel
        return kernel(*args)
