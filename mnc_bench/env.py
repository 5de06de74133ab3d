"""What the software stack is and whether mmcv's compiled ops load (``mnc-bench env``)."""

from __future__ import annotations

import importlib
import importlib.metadata
import platform
import sys


def _version(module: str) -> str:
    try:
        imported = importlib.import_module(module)
    except Exception as exc:  # any import failure is information for the report, not a crash
        return f"not importable ({type(exc).__name__}: {exc})"
    try:
        return importlib.metadata.version(module)
    except importlib.metadata.PackageNotFoundError:
        return getattr(imported, "__version__", "unknown")


def collect_env() -> dict[str, str]:
    """Versions of the pinned stack, whether mmcv ops load, thread count and the device training would use."""
    info = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("torch", "torchvision", "mmcv", "mmdet", "mmengine", "pycocotools", "numpy"):
        info[name] = _version(name)
    try:
        from mmcv.ops import RoIAlign, nms  # noqa: F401  (the ops mmdet needs)

        info["mmcv ops"] = "loaded"
    except Exception as exc:
        info["mmcv ops"] = f"NOT loaded ({type(exc).__name__}: {exc})"
    try:
        import torch

        info["torch threads"] = str(torch.get_num_threads())
        cuda = torch.cuda.is_available()
        info["device"] = f"cuda ({torch.cuda.device_count()} x {torch.cuda.get_device_name(0)})" if cuda else "cpu"
    except Exception as exc:
        info["device"] = f"unknown ({exc})"
    info["executable"] = sys.executable
    return info


def format_env(info: dict[str, str]) -> str:
    width = max(map(len, info))
    return "\n".join(f"{key:<{width}}  {value}" for key, value in info.items())
