"""Which mmcv build this machine needs, and whether the installed one is it (for tools/build_mmcv_wheel.sh).

Run with the venv's Python; it imports torch only (mnc-bench itself is installed after mmcv)::

    python tools/mmcv_build_target.py target            # shell assignments TARGET, ARCHS, KEY, NOTE, STAMP
    python tools/mmcv_build_target.py accepts KEY TARGET  # exit 0 when the installed mmcv is that build
    python tools/mmcv_build_target.py toolkit           # exit 0, or 1 with one line naming what is missing

What mmcv 2.1.0's setup.py does (read from its sdist): it compiles CUDA kernels whenever
``torch.cuda.is_available()`` or ``FORCE_CUDA == "1"`` (``FORCE_CUDA=0`` does not turn them off), through
torch's cpp_extension: nvcc from ``CUDA_HOME``, GPU architectures from ``TORCH_CUDA_ARCH_LIST`` or, unset,
those of the visible GPUs, ``MAX_JOBS`` compilers at once. A build without CUDA kernels imports fine and
reports ``get_compiling_cuda_version() == "not available"``. So the target is decided here:

- ``cuda``: torch is a CUDA build and a GPU is visible or ``TORCH_CUDA_ARCH_LIST`` is set (a build on a login
  node for the GPU nodes); the kernels are built for that list or for the visible GPUs' architectures;
- ``cpu``: ``MNC_BENCH_CPU_ONLY=1``, a torch without CUDA, or no GPU and no arch list.

The cache key names everything the compiled ops depend on: mmcv, torch (its ``+cuXXX`` tag and CUDA version),
the Python ABI, the target and the architectures; a CPU build is never accepted for a CUDA target.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MMCV_VERSION = "2.1.0"  # mmdet 3.3.0 refuses mmcv >= 2.2.0
CPU_ONLY_BUILD = "not available"  # get_compiling_cuda_version() of a build without CUDA kernels
STAMP_NAME = ".mnc-bench-mmcv-build"  # in the venv (sys.prefix): the key of the installed build


@dataclass(frozen=True)
class Target:
    kind: str  # "cuda" | "cpu"
    archs: str  # TORCH_CUDA_ARCH_LIST form, e.g. "8.0;9.0"; "" for cpu
    key: str
    note: str  # why a CPU build was chosen although torch has CUDA; "" otherwise


def normalise_archs(text: str) -> str:
    """``"9.0 8.0+PTX;8.0"`` -> ``"8.0;8.0+PTX;9.0"`` (torch's cpp_extension splits on spaces and
    semicolons)."""
    return ";".join(sorted({part for part in re.split(r"[ ;]+", text.strip()) if part}))


def visible_archs(torch: Any) -> str:
    """The compute capabilities of the visible GPUs, e.g. ``"8.0;9.0"``; "" without any."""
    if not torch.cuda.is_available():
        return ""
    return normalise_archs(";".join("%d.%d" % torch.cuda.get_device_capability(index)
                                    for index in range(torch.cuda.device_count())))


def build_target(environ: Mapping[str, str], torch: Any) -> Target:
    """The build this machine needs (see the module docstring) and its cache key."""
    torch_cuda = torch.version.cuda
    requested = normalise_archs(environ.get("TORCH_CUDA_ARCH_LIST", ""))
    archs = requested or visible_archs(torch)
    note = ""
    if environ.get("MNC_BENCH_CPU_ONLY") == "1":
        kind = "cpu"
    elif torch_cuda is None:
        kind = "cpu"
        if archs:
            note = f"torch {torch.__version__} has no CUDA: building mmcv's CPU ops only"
    elif not archs:
        kind = "cpu"
        note = ("no GPU visible and TORCH_CUDA_ARCH_LIST unset: building mmcv's CPU ops only; run `make "
                "install` again on a GPU machine, or set TORCH_CUDA_ARCH_LIST (e.g. '8.0;9.0') to build CUDA "
                "kernels here")
    else:
        kind = "cuda"
    python = f"cp{sys.version_info.major}{sys.version_info.minor}"
    build = "cpu" if kind == "cpu" else "sm" + "_".join(arch.replace(".", "") for arch in archs.split(";"))
    key = f"mmcv-{MMCV_VERSION}-torch{torch.__version__}-cuda{torch_cuda or 'none'}-{python}-{build}"
    return Target(kind=kind, archs=archs if kind == "cuda" else "", key=key, note=note)


def accepts(*, key: str, kind: str, installed_version: str | None, compiled_cuda: str | None,
            stamp: str | None) -> bool:
    """Whether the installed mmcv serves the target: mmcv 2.1.0 with loadable ops (``compiled_cuda`` is what
    its ``get_compiling_cuda_version()`` says, None when the ops do not load); for ``cuda`` also with CUDA
    kernels, built for this key (the stamp written when it was installed). Any build with ops serves
    ``cpu``."""
    if installed_version != MMCV_VERSION or compiled_cuda is None:
        return False
    if kind == "cpu":
        return True
    return compiled_cuda != CPU_ONLY_BUILD and stamp == key


def toolkit_problem(cuda_home: str | None, torch_cuda: str, nvcc_release: str | None) -> str | None:
    """What stops a CUDA build of mmcv, in one line (None: nothing). ``nvcc_release``: ``nvcc --version``'s
    release, e.g. "12.4"; torch's cpp_extension refuses an nvcc of another major version than torch's CUDA."""
    fix = (f"install the CUDA toolkit {torch_cuda.split('.')[0]}.x (torch's CUDA is {torch_cuda}) or set "
           "CUDA_HOME to it; MNC_BENCH_CPU_ONLY=1 builds the CPU ops only (mmdet's models then run on the "
           "CPU only)")
    where = f"CUDA_HOME={cuda_home}" if cuda_home else "CUDA_HOME unset and no nvcc on PATH"
    if not cuda_home or not (Path(cuda_home) / "bin" / "nvcc").is_file():
        return f"building mmcv's CUDA kernels needs nvcc, not found ({where}): {fix}"
    if not (Path(cuda_home) / "include" / "cuda_runtime_api.h").is_file():
        return f"building mmcv's CUDA kernels needs the CUDA headers, not found under {where}/include: {fix}"
    if nvcc_release is None:
        return f"{cuda_home}/bin/nvcc --version does not run: {fix}"
    if nvcc_release.split(".")[0] != torch_cuda.split(".")[0]:
        return f"nvcc {nvcc_release} at {cuda_home} does not match torch's CUDA {torch_cuda}: {fix}"
    return None


def _installed() -> tuple[str | None, str | None]:
    try:
        import mmcv
        from mmcv.ops import RoIAlign, get_compiling_cuda_version, nms  # noqa: F401  (the ops mmdet needs)
    except Exception:  # noqa: BLE001 - not installed, mmcv-lite, or ops built for another torch
        try:
            import mmcv

            return mmcv.__version__, None
        except Exception:  # noqa: BLE001
            return None, None
    return mmcv.__version__, get_compiling_cuda_version()


def _nvcc_release(cuda_home: str) -> str | None:
    try:
        text = subprocess.run([str(Path(cuda_home) / "bin" / "nvcc"), "--version"], capture_output=True,
                              text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"release (\d+\.\d+)", text)
    return match.group(1) if match else None


def main(argv: list[str]) -> int:
    import torch

    command = argv[0] if argv else ""
    if command == "target":
        target = build_target(os.environ, torch)
        for name, value in (("TARGET", target.kind), ("ARCHS", target.archs), ("KEY", target.key),
                            ("NOTE", target.note), ("STAMP", str(Path(sys.prefix) / STAMP_NAME))):
            print(f"{name}={shlex.quote(value)}")
        return 0
    if command == "accepts" and len(argv) == 3:
        stamp_path = Path(sys.prefix) / STAMP_NAME
        stamp = stamp_path.read_text().strip() if stamp_path.is_file() else None
        version, compiled = _installed()
        return 0 if accepts(key=argv[1], kind=argv[2], installed_version=version, compiled_cuda=compiled,
                            stamp=stamp) else 1
    if command == "toolkit":
        from torch.utils.cpp_extension import CUDA_HOME

        release = _nvcc_release(CUDA_HOME) if CUDA_HOME else None
        problem = toolkit_problem(CUDA_HOME, torch.version.cuda or "", release)
        if problem:
            print(f"error: {problem}")
            return 1
        print(CUDA_HOME)
        return 0
    print(__doc__.split("\n\n")[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
