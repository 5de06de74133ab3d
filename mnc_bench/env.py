"""What the software stack is and whether mmcv's compiled ops load (``mnc-bench env``)."""

from __future__ import annotations

import importlib
import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path

OPS_KEY, OPS_LOADED = "mmcv ops", "loaded"
OPS_CUDA_KEY = "mmcv ops on the GPU"
# Without these nothing trains or tests; the other entries are information.
REQUIRED = ("torch", "torchvision", "mmcv", "mmdet", "mmengine", "pycocotools")
_NOT_IMPORTABLE = "not importable"


CHECKOUT = Path(__file__).resolve().parents[1]
# What decides a result: the code and the configs. A README edit does not make a run's code differ from its
# commit.
RESULT_PATHS = ("mnc_bench", "configs")


def checkout_commit(root: Path = CHECKOUT) -> tuple[str, bool]:
    """HEAD of the git checkout at ``root`` and whether its code or configs (:data:`RESULT_PATHS`) have
    uncommitted changes, new files included; ``("", False)`` outside a git checkout or without git."""
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        changes = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", *RESULT_PATHS],
                                 capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "", False
    return head, bool(changes)


def _version(module: str) -> str:
    try:
        imported = importlib.import_module(module)
    except Exception as exc:  # any import failure is information for the report, not a crash
        return f"{_NOT_IMPORTABLE} ({type(exc).__name__}: {exc})"
    try:
        return importlib.metadata.version(module)
    except importlib.metadata.PackageNotFoundError:
        return getattr(imported, "__version__", "unknown")


def collect_env() -> dict[str, str]:
    """Versions of the pinned stack, whether mmcv ops load and have CUDA kernels (and, with a GPU, run on it),
    thread count and the device training would use."""
    info = {"python": platform.python_version(), "platform": platform.platform()}
    for name in (*REQUIRED, "numpy"):
        info[name] = _version(name)
    try:
        from mmcv.ops import RoIAlign, nms  # noqa: F401  (the ops mmdet needs)

        info[OPS_KEY] = OPS_LOADED
    except Exception as exc:
        info[OPS_KEY] = f"NOT loaded ({type(exc).__name__}: {exc})"
    cuda = False
    try:
        import torch

        info["torch CUDA"] = torch.version.cuda or "none (a CPU-only torch)"
        info["torch threads"] = str(torch.get_num_threads())
        cuda = torch.cuda.is_available()
        info["device"] = (f"cuda ({torch.cuda.device_count()} x {torch.cuda.get_device_name(0)})" if cuda
                          else "cpu")
    except Exception as exc:
        info["device"] = f"unknown ({exc})"
    if info[OPS_KEY] == OPS_LOADED:
        info[OPS_CUDA_KEY] = _ops_on_gpu(cuda)
    info["executable"] = sys.executable
    return info


def _ops_on_gpu(cuda: bool) -> str:
    """Whether mmcv's ops have CUDA kernels and, with a GPU visible, whether they run there."""
    from mnc_bench.gpu import mmcv_cuda_version, mmcv_ops_on_cuda_problem

    version = mmcv_cuda_version()
    if not cuda:
        return (f"CUDA {version} kernels (no GPU visible)" if version
                else "no CUDA kernels (a CPU-only build; enough without a GPU)")
    problem = mmcv_ops_on_cuda_problem("cuda")
    return f"CUDA {version} kernels, run on cuda" if problem is None else f"NOT usable: {problem}"


def format_env(info: dict[str, str]) -> str:
    width = max(map(len, info))
    return "\n".join(f"{key:<{width}}  {value}" for key, value in info.items())


def env_problems(info: dict[str, str]) -> list[str]:
    """What in ``info`` stops training and testing: a required package that does not import, mmcv's compiled
    ops not loading (mmdet's RoIAlign / NMS; ``mmcv-lite`` or an mmcv built for another torch)."""
    problems = [f"{name} is {info[name]}" for name in REQUIRED if info[name].startswith(_NOT_IMPORTABLE)]
    if info[OPS_KEY] != OPS_LOADED:
        problems.append(f"mmcv ops {info[OPS_KEY]}: mmdet's models cannot run (mmcv must be built with its "
                        "ops for this torch; see docs/installation.md)")
    elif info.get(OPS_CUDA_KEY, "").startswith("NOT usable"):
        from mnc_bench.gpu import FIX

        problems.append(f"{OPS_CUDA_KEY} {info[OPS_CUDA_KEY]}: mmdet's models fail on the GPU; {FIX}")
    return problems
