"""A machine that looks like a GPU machine (torch.cuda patched) with this CPU-only mmcv build: `mnc-bench env`
reports it, and train / test / run / bench stop before building anything, in one line."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("mmcv.ops")
from test_mnc_adapter import SHAPES_3  # noqa: E402

from mnc_bench import gpu  # noqa: E402
from mnc_bench.cli import main  # noqa: E402
from mnc_bench.env import OPS_CUDA_KEY, collect_env, env_problems  # noqa: E402
from mnc_bench.errors import UserError  # noqa: E402


@pytest.fixture
def fake_gpu(monkeypatch):
    """torch says one GPU is visible; mmcv's ops are this environment's CPU-only build."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Fake GPU")
    assert gpu.mmcv_cuda_version() is None  # the premise: this environment's mmcv has no CUDA kernels


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_env_reports_cpu_only_ops_as_unusable_on_the_gpu(fake_gpu, capsys):
    info = collect_env()
    assert info["device"] == "cuda (1 x Fake GPU)"
    assert info[OPS_CUDA_KEY].startswith("NOT usable: mmcv's ops were built without CUDA kernels")
    assert any("mmdet's models fail on the GPU" in problem for problem in env_problems(info))
    assert main(["env"]) == 1
    assert "mmcv ops on the GPU" in _one_error_line(capsys)


def test_env_without_a_gpu_accepts_cpu_only_ops(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    info = collect_env()
    assert info[OPS_CUDA_KEY].startswith("no CUDA kernels") and not env_problems(info)


def test_ops_with_cuda_kernels_that_fail_on_the_gpu_are_reported(fake_gpu, monkeypatch):
    monkeypatch.setattr(gpu, "mmcv_cuda_version", lambda: "12.4")  # e.g. built for other GPU architectures
    problem = gpu.mmcv_ops_on_cuda_problem("cuda")
    assert problem is not None and problem.startswith("mmcv's ops (built with CUDA 12.4) fail on cuda: ")


@pytest.mark.parametrize("command", ["train", "test"])
def test_train_and_test_on_the_gpu_stop_before_building(command, fake_gpu, shapes_dataset, tmp_path, capsys):
    work = tmp_path / "work"
    args = [command, str(SHAPES_3)] + ([str(tmp_path / "missing.pth")] if command == "test" else [])
    code = main([*args, "--work-dir", str(work), "--cfg-options", f"data_root={shapes_dataset}/"])
    line = _one_error_line(capsys)
    assert code == 2 and "make install" in line
    assert line.startswith("error: the model would run on cuda, but mmcv's ops were built without CUDA")
    assert not work.exists()  # nothing was built or written


@pytest.mark.parametrize("executor", ["local", "slurm"])
def test_a_suite_for_gpus_stops_before_any_run(executor, shapes_dataset, tmp_path, capsys, monkeypatch,
                                               request, write_suite):
    if executor == "local":
        request.getfixturevalue("fake_gpu")
    else:  # the Slurm runs get GPUs; the login node has none
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    suite = write_suite(tmp_path / "s.yaml", shapes_dataset, {"train_cfg.max_iters": 1})
    code = main(["run", str(suite), "--executor", executor, "--results", str(tmp_path / "results")])
    line = _one_error_line(capsys)
    assert code == 2 and line.startswith("error: suite s ") and "without CUDA kernels" in line
    assert not (tmp_path / "results").exists()


def test_bench_on_the_gpu_stops_before_building(fake_gpu):
    from mnc_bench.bench.models import ModelsBenchSettings

    with pytest.raises(UserError, match=r"^bench models would run on cuda, but mmcv's ops were built"):
        ModelsBenchSettings(configs=(str(SHAPES_3),), device="cuda")


def test_the_runner_asks_a_child_process_whether_mmcv_runs_on_the_gpu(monkeypatch):
    # A suite's runner lives as long as the suite: a CUDA context the check opened would sit on a run's GPU.
    assert gpu.mmcv_ops_problem_in_subprocess("cuda") == gpu.mmcv_ops_on_cuda_problem("cuda")
    monkeypatch.setattr(gpu, "_PROBE", "import sys; sys.exit('the driver went away')")
    failed = "the check of mmcv's ops failed (the driver went away)"
    assert gpu.mmcv_ops_problem_in_subprocess("cuda") == failed
