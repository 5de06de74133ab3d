import subprocess
import sys
import time


def test_help_does_not_import_torch_or_mmdet():
    code = (
        "import sys\n"
        "from mnc_bench.cli import build_parser\n"
        "try:\n    build_parser().parse_args(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'mmdet', 'mmengine', 'mmcv', 'numpy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_help_answers_quickly():
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "mnc_bench.cli", "--help"], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    assert result.returncode == 0 and "data" in result.stdout
    assert elapsed < 5  # generous: the target is < 1.5 s; this only catches an import of torch on the way


def test_bad_arguments_exit_non_zero_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mnc_bench.cli", "data", "synth", "--out", str(tmp_path / "x"),
                             "--train", "-3"], capture_output=True, text=True)
    assert result.returncode == 2 and "--train" in result.stderr and "Traceback" not in result.stderr


def test_synth_refuses_non_empty_directory(tmp_path):
    (tmp_path / "f").write_text("x")
    result = subprocess.run([sys.executable, "-m", "mnc_bench.cli", "data", "synth", "--out", str(tmp_path),
                             "--train", "1", "--val", "1"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: output directory {tmp_path} exists and is not empty "
                                                  "(choose another --out or remove it)"]


def test_env_reports_versions_and_ops():
    result = subprocess.run([sys.executable, "-m", "mnc_bench.cli", "env"], capture_output=True, text=True)
    assert result.returncode == 0
    for key in ("python", "torch", "torchvision", "mmcv", "mmdet", "mmengine", "mmcv ops", "device"):
        assert any(line.startswith(key + " ") for line in result.stdout.splitlines()), key


def test_bench_unknown_section_is_a_one_line_error():
    result = subprocess.run([sys.executable, "-m", "mnc_bench.cli", "bench", "bogus"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: unknown bench section(s) bogus; choose from data, eval, models"]
