"""The mmcv install (tools/build_mmcv_wheel.sh with tools/mmcv_build_target.py): the build it picks and its
cache key on GPU and CPU machines (torch.cuda patched), which installed build it accepts, and its one-line
stops."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tools" / "build_mmcv_wheel.sh"
_spec = importlib.util.spec_from_file_location("mmcv_build_target", REPO / "tools" / "mmcv_build_target.py")
build = sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)  # dataclasses look their module up
_spec.loader.exec_module(build)


@pytest.fixture
def gpus(monkeypatch):
    """Make torch see GPUs of the given compute capabilities (none: no GPU)."""

    def see(*capabilities: tuple[int, int]) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: bool(capabilities))
        monkeypatch.setattr(torch.cuda, "device_count", lambda: len(capabilities))
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=0: capabilities[index])
        monkeypatch.setattr(torch.version, "cuda", "12.4")
        monkeypatch.setattr(torch, "__version__", "2.14.1+cu124")

    return see


def test_a_gpu_machine_builds_cuda_kernels_for_its_gpus_under_its_own_key(gpus):
    gpus((9, 0), (8, 0), (9, 0))
    target = build.build_target({}, torch)
    assert (target.kind, target.archs) == ("cuda", "8.0;9.0")
    assert "torch2.14.1+cu124-cuda12.4-" in target.key and target.key.endswith("-sm80_90")
    gpus()
    cpu = build.build_target({}, torch)
    assert cpu.kind == "cpu" and cpu.key.endswith("-cpu") and cpu.key != target.key
    assert "no GPU visible" in cpu.note  # said out loud: this build will not serve the GPU nodes


def test_the_arch_list_builds_cuda_kernels_without_a_gpu_and_names_the_key(gpus):
    gpus()
    target = build.build_target({"TORCH_CUDA_ARCH_LIST": "9.0 8.6+PTX"}, torch)
    assert (target.kind, target.archs) == ("cuda", "8.6+PTX;9.0") and target.key.endswith("-sm86+PTX_90")
    gpus((8, 0))  # the override wins over the visible GPU
    assert build.build_target({"TORCH_CUDA_ARCH_LIST": "9.0"}, torch).key.endswith("-sm90")


def test_cpu_only_on_purpose_and_with_a_cpu_only_torch(gpus, monkeypatch):
    gpus((8, 0))
    assert build.build_target({"MNC_BENCH_CPU_ONLY": "1"}, torch).kind == "cpu"
    monkeypatch.setattr(torch.version, "cuda", None)
    target = build.build_target({}, torch)
    assert target.kind == "cpu" and "cudanone" in target.key and "has no CUDA" in target.note


def test_a_cpu_build_is_never_accepted_for_a_cuda_target():
    key = "mmcv-2.1.0-torch2.14.1+cu124-cuda12.4-cp311-sm90"
    installed = dict(installed_version="2.1.0", stamp=key)
    assert not build.accepts(key=key, kind="cuda", compiled_cuda="not available", **installed)
    assert build.accepts(key=key, kind="cuda", compiled_cuda="12.4", **installed)
    # kernels for other GPUs, or of an unknown build: built again
    assert not build.accepts(key=key, kind="cuda", compiled_cuda="12.4", installed_version="2.1.0",
                             stamp=key.replace("sm90", "sm80"))
    assert not build.accepts(key=key, kind="cuda", compiled_cuda="12.4", **dict(installed, stamp=None))
    # any build with loadable ops serves the CPU; none without them
    assert build.accepts(key="k", kind="cpu", compiled_cuda="not available", **dict(installed, stamp=None))
    assert not build.accepts(key="k", kind="cpu", compiled_cuda=None, installed_version="2.1.0", stamp=None)
    assert not build.accepts(key="k", kind="cpu", compiled_cuda="12.4", installed_version="2.2.0", stamp=None)


def test_toolkit_problems_are_one_line_naming_what_to_install(tmp_path):
    assert "needs nvcc, not found (CUDA_HOME unset" in build.toolkit_problem(None, "12.4", None)
    home = tmp_path / "cuda"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "nvcc").write_text("")
    assert "needs the CUDA headers" in build.toolkit_problem(str(home), "12.4", "12.4")
    (home / "include").mkdir()
    (home / "include" / "cuda_runtime_api.h").write_text("")
    assert "nvcc 11.8 at" in build.toolkit_problem(str(home), "12.4", "11.8")
    assert build.toolkit_problem(str(home), "12.4", "12.6") is None
    assert "MNC_BENCH_CPU_ONLY=1" in build.toolkit_problem(None, "12.4", None)


def _script(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """The install script against this venv with an empty wheel cache (nothing is installed: every path taken
    here ends before pip)."""
    environ = {key: value for key, value in os.environ.items() if key not in ("CUDA_HOME", "CUDA_PATH")}
    return subprocess.run(["bash", str(SCRIPT), sys.executable, str(tmp_path / "cache")], capture_output=True,
                          text=True, timeout=300, env={**environ, **env})


@pytest.mark.slow  # the script starts Python with torch and mmcv three times (10-40 s)
def test_without_nvcc_a_cuda_build_stops_with_one_line(tmp_path):
    pytest.importorskip("mmcv.ops")
    if torch.version.cuda is None:
        pytest.skip("this torch has no CUDA: the install builds CPU ops")
    done = _script(tmp_path, TORCH_CUDA_ARCH_LIST="9.0", CUDA_HOME=str(tmp_path / "no-cuda"))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().startswith("error: building mmcv's CUDA kernels needs nvcc, not found "
                                          f"(CUDA_HOME={tmp_path / 'no-cuda'})")
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "cache").exists()


@pytest.mark.slow  # the script starts Python with torch and mmcv twice (10-30 s)
def test_cpu_only_on_purpose_keeps_the_installed_cpu_build(tmp_path):
    pytest.importorskip("mmcv.ops")
    done = _script(tmp_path, TORCH_CUDA_ARCH_LIST="9.0", MNC_BENCH_CPU_ONLY="1")
    assert done.returncode == 0 and done.stdout.strip() == "mmcv 2.1.0 with ops already installed"
