"""Atomic writes: all-or-nothing, with the permissions a plain open/mkdir gives, the directory flushed after
the rename; and the early check of output paths."""

from __future__ import annotations

import os
import stat

import pytest

from mnc_bench import io as mnc_io
from mnc_bench.data.synthetic import ShapesConfig, write_shapes_dataset
from mnc_bench.errors import UserError
from mnc_bench.io import atomic_open, check_writable_output, make_staging_dir, write_json


@pytest.fixture
def umask():
    """Set a known umask for the test (the process-wide value is restored afterwards)."""
    previous = os.umask(0o022)
    yield lambda value: os.umask(value)
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002], ids=lambda m: f"umask{m:03o}")
def test_atomic_file_gets_the_mode_open_would_give(tmp_path, umask, mask):
    umask(mask)
    write_json(tmp_path / "atomic.json", {"a": 1})
    with open(tmp_path / "plain.json", "w") as handle:
        handle.write("{}")
    assert mode(tmp_path / "atomic.json") == 0o666 & ~mask == mode(tmp_path / "plain.json")


@pytest.mark.parametrize("mask", [0o022, 0o077], ids=lambda m: f"umask{m:03o}")
def test_staging_dir_gets_the_mode_mkdir_would_give(tmp_path, umask, mask):
    umask(mask)
    staging = make_staging_dir(tmp_path / "out")
    assert staging.parent == tmp_path and staging.is_dir() and not any(staging.iterdir())
    assert mode(staging) == 0o777 & ~mask


def test_generated_dataset_is_readable_by_others(tmp_path, umask):
    umask(0o022)
    out = tmp_path / "shapes"
    write_shapes_dataset(out, num_train=1, num_val=1, config=ShapesConfig(image_size=32), workers=1)
    assert mode(out) == 0o755
    assert mode(out / "annotations") == 0o755
    for split in ("train", "val"):
        assert mode(out / "annotations" / f"instances_{split}.json") == 0o644
        assert mode(out / split / "000000.png") == 0o644


def test_directory_is_flushed_after_the_rename(tmp_path, monkeypatch):
    calls = []
    target = tmp_path / "sub" / "f.txt"
    monkeypatch.setattr(mnc_io, "fsync_dir", lambda d: calls.append((d, target.read_text())))
    with atomic_open(target) as handle:
        handle.write("new")
    assert calls == [(target.parent, "new")]  # flushed once, with the renamed file in place


def test_dataset_folder_rename_is_flushed(tmp_path, monkeypatch):
    import mnc_bench.data.synthetic as synthetic

    out = tmp_path / "shapes"
    calls = []
    monkeypatch.setattr(synthetic, "fsync_dir", lambda d: calls.append((d, (out / "annotations").is_dir())))
    write_shapes_dataset(out, num_train=1, num_val=0, config=ShapesConfig(image_size=32), workers=1)
    assert calls == [(tmp_path, True)]


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_binary_mode(tmp_path):
    with atomic_open(tmp_path / "b.bin", "wb") as handle:
        handle.write(b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"


def test_writable_output_accepts_new_paths_and_creates_nothing(tmp_path):
    check_writable_output(tmp_path / "a" / "b" / "out.json", "--json")
    check_writable_output(tmp_path / "new_dir", "--out", directory=True)
    # an existing dir: emptiness is the writer's call
    check_writable_output(tmp_path, "--out", directory=True)
    (tmp_path / "old.json").write_text("{}")
    check_writable_output(tmp_path / "old.json", "--json")  # replaced atomically
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.json"]


def test_writable_output_refusals_name_the_option_and_path(tmp_path, monkeypatch):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    cases = [
        (lambda: check_writable_output(tmp_path, "--json"), f"--json {tmp_path}: is a directory"),
        (lambda: check_writable_output(a_file, "--out", directory=True),
         f"--out {a_file}: exists and is not a directory"),
        (lambda: check_writable_output(a_file / "x.json", "--out"), f"{a_file} is not a directory"),
        (lambda: check_writable_output(a_file / "d", "--out", directory=True),
         f"{a_file} is not a directory"),
    ]
    for call, expected in cases:
        with pytest.raises(UserError) as info:
            call()
        assert expected in str(info.value) and "\n" not in str(info.value)
    # Permission bits do not stop root, so the unwritable case asks os.access as a normal user would be told.
    real_access = os.access
    monkeypatch.setattr(os, "access",
                        lambda p, m: False if os.fspath(p) == str(tmp_path) else real_access(p, m))
    with pytest.raises(UserError, match=f"directory {tmp_path} is not writable"):
        check_writable_output(tmp_path / "missing" / "x.json", "--out")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_directory_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        with pytest.raises(UserError, match="is not writable"):
            check_writable_output(locked / "x.json", "--out")
    finally:
        locked.chmod(0o755)


def test_outputs_the_system_refuses_are_user_errors_naming_the_path(tmp_path):
    (tmp_path / "file").write_text("")
    (tmp_path / "folder.json").mkdir()
    refused = {
        tmp_path / "file" / "x.json": "cannot write",  # a file where a folder must be
        tmp_path / "folder.json": "cannot write",  # a folder where the file must go
    }
    for path, problem in refused.items():
        with pytest.raises(UserError, match=problem) as info:
            write_json(path, {"a": 1})
        assert str(path) in str(info.value) or str(path.parent) in str(info.value)
        assert "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder.json"]  # no temporary left
    assert not list((tmp_path / "folder.json").iterdir())
    with pytest.raises(UserError, match="exists and is not a folder"):
        make_staging_dir(tmp_path / "file" / "dataset")
    with pytest.raises(UserError, match="exists and is not a folder"):
        mnc_io.ensure_dir(tmp_path / "file")
