import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from mnc_bench.cli import build_parser, main


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


@pytest.mark.parametrize("argv", [["--help"], ["env", "--help"], ["data", "synth", "--help"],
                                  ["train", "--help"]])
def test_help_through_the_entry_point_imports_nothing_heavy(argv):
    # What keeps `mnc-bench --help` fast is that nothing heavy is imported on the way: check that, not a
    # clock.
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['mnc-bench', *{argv!r}]\n"
        "try:\n    runpy.run_module('mnc_bench.cli', run_name='__main__')\nexcept SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "heavy = [m for m in ('torch', 'mmdet', 'mmengine', 'mmcv', 'numpy', 'pycocotools') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: mnc-bench")


def test_bad_arguments_exit_non_zero_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mnc_bench.cli", "data", "synth",
                             "--out", str(tmp_path / "x"), "--train", "-3"], capture_output=True, text=True)
    assert result.returncode == 2 and "--train" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("argv", [
    ["data", "synth", "--seed", "-1"],
    ["data", "synth-video", "--seed", "4294967296"],  # numpy's seeds end at 2**32 - 1
    ["run", "demo", "--dry-run", "--seeds", "0", "4294967296"],
    ["train", "configs/mnc/mnc_3stage_shapes.py", "--seed", "x"],
])
def test_seeds_outside_numpys_range_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 2
    assert "must be an integer from 0 to 4294967295" in capsys.readouterr().err.strip().splitlines()[-1]


def test_synth_refuses_non_empty_directory(tmp_path):
    (tmp_path / "f").write_text("x")
    result = subprocess.run([sys.executable, "-m", "mnc_bench.cli", "data", "synth", "--out", str(tmp_path),
                             "--train", "1", "--val", "1"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: output directory {tmp_path} exists and is not "
                                                  "empty (choose another --out or remove it)"]


def test_env_reports_versions_and_ops():
    result = subprocess.run([sys.executable, "-m", "mnc_bench.cli", "env"], capture_output=True, text=True)
    assert result.returncode == 0
    for key in ("python", "torch", "torchvision", "mmcv", "mmdet", "mmengine", "mmcv ops", "device"):
        assert any(line.startswith(key + " ") for line in result.stdout.splitlines()), key


def test_bench_unknown_section_is_a_usage_error():
    result = subprocess.run([sys.executable, "-m", "mnc_bench.cli", "bench", "bogus"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "mnc-bench bench: error: argument {models,data,eval}: invalid choice: 'bogus' "
        "(choose from 'models', 'data', 'eval')")


def _subparsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield (*path, name), child
                yield from _subparsers(child, (*path, name))


def test_every_subcommand_has_a_description():
    found = dict(_subparsers(build_parser()))
    assert {("env",), ("data",), ("data", "synth"), ("evaluate",), ("train",)} <= found.keys()
    missing = [" ".join(path) for path, parser in found.items() if not (parser.description or "").strip()]
    assert not missing, f"subcommands without description=: {missing}"


def test_env_help_says_what_env_does():
    result = subprocess.run([sys.executable, "-m", "mnc_bench.cli", "env", "--help"],
                            capture_output=True, text=True)
    assert result.returncode == 0
    assert "compiled ops" in result.stdout and "Exits 1" in result.stdout


def test_env_fails_when_mmcv_ops_do_not_load(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mmcv.ops", None)  # makes `from mmcv.ops import ...` raise ImportError
    assert main(["env"]) == 1
    captured = capsys.readouterr()
    assert any(line.startswith("mmcv ops ") and "NOT loaded" in line for line in captured.out.splitlines())
    errors = captured.err.strip().splitlines()
    assert (len(errors) == 1 and errors[0].startswith("error: mmcv ops NOT loaded (")
            and "cannot run" in errors[0])


def test_type_errors_do_not_leak_function_names():
    result = subprocess.run([sys.executable, "-m", "mnc_bench.cli", "data", "synth", "--out", "x",
                             "--train", "abc"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "mnc-bench data synth: error: argument --train: must be a non-negative integer, got 'abc'")
    assert "_int" not in result.stderr


@pytest.mark.parametrize("command", ["train", "test"])
def test_config_swallowed_by_cfg_options_is_named(tmp_path, capsys, command):
    config = tmp_path / "model.py"
    config.write_text("")
    argv = [command, "--cfg-options", "a=1", str(config)]
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"argument --cfg-options: expected KEY=VALUE, got '{config}'" in error
    assert "looks like the config file: put it before --cfg-options" in error
    # Before the options (or after `--`), the same config parses.
    args = build_parser().parse_args([command, str(config), *(["ckpt.pth"] if command == "test" else []),
                                      "--cfg-options", "a=1", "b=2"])
    assert args.config == str(config) and args.cfg_options == ["a=1", "b=2"]


def _refused_before_work(capsys, argv: list[str], expected: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {expected}"]


def test_data_synth_out_that_is_a_file(tmp_path, capsys, monkeypatch):
    import mnc_bench.data.synthetic as synthetic

    monkeypatch.setattr(synthetic, "write_shapes_dataset", lambda *a, **k: pytest.fail("work started"))
    target = tmp_path / "file"
    target.write_text("x")
    _refused_before_work(capsys, ["data", "synth", "--out", str(target)],
                         f"--out {target}: exists and is not a directory")


def test_bench_json_that_is_a_directory(tmp_path, capsys, monkeypatch):
    import mnc_bench.bench.data as bench_data

    monkeypatch.setattr(bench_data, "bench_data", lambda *a, **k: pytest.fail("work started"))
    _refused_before_work(capsys, ["bench", "data", "--json", str(tmp_path)],
                         f"--json {tmp_path}: is a directory, expected a file path")


def test_test_out_under_a_file(tmp_path, capsys, monkeypatch):
    import mnc_bench.training as training

    monkeypatch.setattr(training, "evaluate_checkpoint", lambda *a, **k: pytest.fail("work started"))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    config = Path(__file__).parents[1] / "configs" / "mask_rcnn" / "mask_rcnn_shapes.py"
    _refused_before_work(capsys, ["test", str(config), "ckpt.pth", "--out", str(blocker / "pred.json")],
                         f"--out {blocker / 'pred.json'}: {blocker} is not a directory")


def test_unwritable_output_directory(tmp_path, capsys, monkeypatch):
    import os

    real_access = os.access
    monkeypatch.setattr(os, "access",
                        lambda p, m: False if os.fspath(p) == str(tmp_path) else real_access(p, m))
    _refused_before_work(capsys, ["data", "synth", "--out", str(tmp_path / "new")],
                         f"--out {tmp_path / 'new'}: directory {tmp_path} is not writable")
