"""Machine-level measurements for the benchmarks: timing statistics, peak memory, FLOPs, the matmul peak.

FLOPs come from PyTorch's dispatch-level counter (`torch.utils.flop_counter.FlopCounterMode`) on the code that
actually runs (data-dependent branches, Python loops and backward passes included), counting a multiply-add
as 2 FLOPs like the matmul peak. It counts matrix products and convolutions (mm, addmm, bmm, baddbmm,
convolution and their backward, attention); it does NOT count element-wise ops, activations, normalisation,
pooling, interpolation and `grid_sample`, nor ops outside the dispatcher (mmcv's RoIAlign and NMS; of the
shapes configs' SeparableRoIAlign it counts the backward's matrix products, not torchvision's forward). For
these models the counted ops are the bulk of the arithmetic but not of the time.
"""

from __future__ import annotations

import os
import platform
import re
import resource
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mnc_bench.allocator import tuned

UNCOUNTED_OPS = (
    "element-wise ops and activations", "normalisation", "pooling", "interpolation", "grid_sample",
    "RoIAlign (mmcv's; SeparableRoIAlign's forward)", "NMS", "optimizer update",
)


def synchronize(device: torch.device | str) -> None:
    """Wait for queued GPU work, so wall-clock timers measure it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def quartiles(samples: Sequence[float]) -> tuple[float, float, float]:
    """(first quartile, median, third quartile); a single sample gives it three times."""
    if len(samples) == 1:
        return samples[0], samples[0], samples[0]
    q1, median, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return q1, median, q3


def count_flops(function: Callable[[], Any]) -> float:
    """FLOPs (multiply-add = 2) of the ops `function` runs that the counter knows (module docstring)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        function()
    return float(counter.get_total_flops())


def matmul_peak_gflops(device: torch.device | str = "cpu", *, size: int = 2048, repeats: int = 5) -> float:
    """The best GFLOP/s of a dense float32 [size x size] @ [size x size] over `repeats` runs, with the current
    thread settings: what this machine's BLAS reaches on the op models are made of."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    torch.mm(a, b)  # warm-up: threads, allocation
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def _resettable_rss() -> bool:
    try:
        _CLEAR_REFS.write_text("5")  # Linux: reset the peak resident set size of this process
    except OSError:
        return False
    return True


@dataclass
class PeakMemory:
    """Peak memory of the code run inside `track()`, the maximum over all such blocks, in MB.

    CUDA: `torch.cuda.max_memory_allocated` (tensors only). CPU: the process's peak resident set size (VmHWM,
    reset before each block through /proc/self/clear_refs), so it includes the interpreter, the libraries and
    every model loaded at the time; where the peak cannot be reset, the lifetime peak (`resource.getrusage`).
    """

    device: torch.device
    peak_mb: float = 0.0
    method: str = field(init=False)

    def __post_init__(self) -> None:
        if self.device.type == "cuda":
            self.method = "cuda max_memory_allocated"
        elif _resettable_rss():
            self.method = "peak RSS (VmHWM, reset per block)"
            if tuned():  # freed memory stays in the process: a block's peak includes every block before it
                self.method += (", but glibc keeps freed memory (mnc_bench/allocator.py): a row is the peak "
                                "so far; MNC_BENCH_ALLOCATOR=system for each model's own")
        else:
            self.method = "lifetime peak RSS (ru_maxrss)"

    @contextmanager
    def track(self) -> Iterator[None]:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            _resettable_rss()
        try:
            yield
        finally:
            synchronize(self.device)
            self.peak_mb = max(self.peak_mb, self._peak_mb())

    def _peak_mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        match = re.search(r"VmHWM:\s+(\d+)\s+kB", _STATUS.read_text()) if _STATUS.is_file() else None
        if match:
            return int(match.group(1)) / 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def machine_info(device: torch.device | str) -> dict[str, Any]:
    """CPU model, torch threads, torch version, GPU name and the 1-minute load average now."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        match = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        cpu = match.group(1).strip() if match else cpu
    device = torch.device(device)
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "load_avg_1min_start": os.getloadavg()[0],
    }
