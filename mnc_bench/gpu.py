"""Whether mmcv's compiled ops can run on the GPU that training, testing or benchmarking would use.

mmcv 2.1.0 compiles its CUDA kernels only when its setup.py sees ``torch.cuda.is_available()`` or
``FORCE_CUDA=1`` (``tools/build_mmcv_wheel.sh`` sees to it); a CPU-only build imports fine and says so through
``mmcv.ops.get_compiling_cuda_version()``, which returns ``"not available"`` (mmcv/ops/csrc/pytorch/info.cpp).
Such a build fails only at the first CUDA forward of mmdet's RoIAlign, NMS or deformable attention
("nms_impl: implementation for device cuda:0 not found"); a build for other GPU architectures fails there with
"no kernel image is available". Both are caught here before anything is built, in one line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mnc_bench.errors import UserError, one_line

CPU_ONLY_BUILD = "not available"  # what a CPU-only mmcv build reports as its CUDA version
FIX = ("rebuild mmcv on a GPU machine with `make install` (or set TORCH_CUDA_ARCH_LIST and run "
       "tools/build_mmcv_wheel.sh; see docs/gpu.md), or hide the GPUs (CUDA_VISIBLE_DEVICES=) to run on the "
       "CPU")


def mmcv_cuda_version() -> str | None:
    """The CUDA version mmcv's ops were compiled with; None for a CPU-only build. Raises ImportError when the
    ops do not load at all."""
    from mmcv.ops import get_compiling_cuda_version

    version = get_compiling_cuda_version()
    return None if version == CPU_ONLY_BUILD else version


def mmcv_ops_on_cuda_problem(device: str = "cuda") -> str | None:
    """Why mmcv's ops cannot run on ``device`` (a CUDA device), or None when they can: the build has no CUDA
    kernels, or a probe (NMS of two boxes) fails there, e.g. for kernels of other GPU architectures."""
    try:
        version = mmcv_cuda_version()
    except ImportError as exc:
        return f"mmcv's ops do not load ({type(exc).__name__}: {one_line(exc)})"
    if version is None:
        return "mmcv's ops were built without CUDA kernels (a CPU-only build)"
    import torch
    from mmcv.ops import nms

    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0]], device="cpu")
    try:
        nms(boxes.to(device), torch.tensor([0.9, 0.8], device="cpu").to(device), 0.5)
    except RuntimeError as exc:
        return f"mmcv's ops (built with CUDA {version}) fail on {device}: {one_line(exc)}"
    return None


_PROBE = ("import sys; from mnc_bench.gpu import mmcv_ops_on_cuda_problem as problem; "
          "sys.stdout.write(problem(sys.argv[1]) or '')")


def mmcv_ops_problem_in_subprocess(device: str = "cuda") -> str | None:
    """:func:`mmcv_ops_on_cuda_problem` asked of a child process: the probe opens a CUDA context (hundreds
    of MB on the GPU) that a long-lived parent, such as a suite's runner, would hold until it exits, on the
    GPU of one of its runs."""
    package_root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root,
                                                                      os.environ.get("PYTHONPATH")]))}
    probe = subprocess.run([sys.executable, "-c", _PROBE, device], capture_output=True, text=True, env=env)
    if probe.returncode != 0:
        lines = probe.stderr.strip().splitlines()
        return f"the check of mmcv's ops failed ({lines[-1] if lines else f'exit {probe.returncode}'})"
    return probe.stdout or None


def require_mmcv_ops_for(device: str, what: str, *, in_subprocess: bool = False) -> None:
    """A one-line UserError when ``what`` would run on a CUDA ``device`` that mmcv's ops cannot serve;
    ``in_subprocess``: check from a child process (see :func:`mmcv_ops_problem_in_subprocess`)."""
    if not device.startswith("cuda"):
        return
    problem = (mmcv_ops_problem_in_subprocess if in_subprocess else mmcv_ops_on_cuda_problem)(device)
    if problem is not None:
        raise UserError(f"{what} would run on {device}, but {problem}: mmdet's models fail at their first "
                        f"CUDA forward; {FIX}")


def require_mmcv_cuda_build(what: str) -> None:
    """A one-line UserError when ``what`` will run on GPUs elsewhere (Slurm nodes, from this environment) and
    mmcv's ops here have no CUDA kernels; with a GPU visible here, the ops are also tried on it."""
    import torch

    if torch.cuda.is_available():
        require_mmcv_ops_for("cuda", what)
        return
    try:
        version = mmcv_cuda_version()
    except ImportError as exc:
        raise UserError(f"{what}: mmcv's ops do not load ({type(exc).__name__}: {one_line(exc)})") from exc
    if version is None:
        raise UserError(f"{what} will run on GPUs, but mmcv's ops in this environment were built without "
                        "CUDA kernels (a CPU-only build): mmdet's models fail at their first CUDA forward; "
                        f"{FIX}")


def training_device() -> str:
    """The device mmengine's Runner puts the model on: the current CUDA device when one is visible."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# The variable from which each mmengine launcher takes the process's CUDA device (``torch.cuda.set_device``):
# the local rank, which presumes that every process of a node sees all the node's GPUs.
DEVICE_VARIABLES = {"pytorch": "LOCAL_RANK", "slurm": "SLURM_LOCALID"}


def task_device(local_rank: int, visible: int) -> int:
    """The device (index among the process's ``visible`` GPUs) of the process with ``local_rank`` on its node:
    its local rank's where it sees the node's GPUs, device 0 where the cluster binds one GPU to each task
    (Slurm's ``--gpus-per-task`` or ``--gpu-bind``: every task sees its own GPU as ``cuda:0``)."""
    if local_rank < visible:
        return local_rank
    if visible == 1:
        return 0
    raise UserError(f"the process of local rank {local_rank} sees {visible} GPUs: give each task one GPU or "
                    "every task all of the node's")


def bind_task_device(launcher: str) -> str | None:
    """Point ``launcher``'s device variable at a GPU this process can see (see :func:`task_device`), before
    mmengine's launcher reads it, and make it the current device; returns it (``cuda:N``), or None where the
    launcher names no device.

    Current from here on, so that what runs before mmengine's launcher (the check of mmcv's ops) opens no CUDA
    context on the first GPU: every rank of a node would leave one there."""
    variable = DEVICE_VARIABLES.get(launcher)
    if variable is None or variable not in os.environ:
        return None
    import torch

    index = task_device(int(os.environ[variable]), torch.cuda.device_count())
    os.environ[variable] = str(index)
    torch.cuda.set_device(index)
    return f"cuda:{index}"
