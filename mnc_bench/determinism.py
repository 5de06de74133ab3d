"""``--deterministic`` on CUDA: what torch needs for it, and what it cannot make deterministic.

mmengine's ``randomness.deterministic`` calls ``torch.use_deterministic_algorithms(True)``. On the CPU every
op these models use has a deterministic kernel. On CUDA two things differ (torch's "Reproducibility" notes):
cuBLAS is deterministic only with a fixed workspace (``CUBLAS_WORKSPACE_CONFIG``, read when cuBLAS starts),
and some backward kernels have no deterministic version, so torch raises at the first backward:
``grid_sample``'s (MNC's RoI warp) and bilinear interpolation's (MNC's mask resizing, where the mask and warp
sizes differ). mmcv's own kernels (RoIAlign's backward in the mmdet models) are not seen by torch's check and
stay non-deterministic either way.
"""

from __future__ import annotations

import os
import sys

import torch

CUBLAS_WORKSPACE = ":4096:8"  # torch's documented setting; ":16:8" saves memory and may be slower
NOTE = ("--deterministic on CUDA: cuDNN and cuBLAS (CUBLAS_WORKSPACE_CONFIG={workspace}) deterministic; "
        "the ops without a deterministic CUDA kernel (grid_sample's and bilinear interpolation's backward, "
        "mmcv's RoIAlign) still run, with a warning from torch where it sees them: runs repeat closely, not "
        "bit for bit")


def before_cuda_work() -> None:
    """Fix cuBLAS's workspace (a value the user set is kept) and say what stays non-deterministic. Call before
    the first CUDA matmul of the process."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    print(NOTE.format(workspace=os.environ["CUBLAS_WORKSPACE_CONFIG"]), file=sys.stderr, flush=True)


def after_runner_built() -> None:
    """Keep the deterministic kernels mmengine turned on; warn instead of failing at the ops without one."""
    torch.use_deterministic_algorithms(True, warn_only=True)
