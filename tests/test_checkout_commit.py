"""The commit that runs and reports record: HEAD, and whether code or configs differ from it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mnc_bench.env import checkout_commit
from mnc_bench.suites import worker

pytestmark = pytest.mark.skipif(subprocess.run(["git", "--version"], capture_output=True).returncode != 0,
                                reason="git not installed")


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A committed checkout with the package's layout (mnc_bench/reporting/, configs/, README.md)."""
    for path in ("mnc_bench/reporting/provenance.py", "configs/model.py", "README.md"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("v1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    # Run from inside the package, as the report and the worker do: paths must be the checkout's, not the
    # cwd's.
    monkeypatch.chdir(tmp_path / "mnc_bench" / "reporting")
    return tmp_path


def test_a_clean_checkout_is_its_head(checkout):
    head = _git(checkout, "rev-parse", "HEAD")
    assert checkout_commit(checkout) == (head, False)
    (checkout / "README.md").write_text("v2\n")  # prose does not change results
    assert checkout_commit(checkout) == (head, False)


@pytest.mark.parametrize("path", ["mnc_bench/reporting/provenance.py", "configs/model.py",
                                  "configs/new_model.py"])
def test_changed_or_new_code_and_configs_are_uncommitted_changes(checkout, path):
    (checkout / path).write_text("v2\n")
    assert checkout_commit(checkout) == (_git(checkout, "rev-parse", "HEAD"), True)


def test_outside_a_checkout_there_is_no_commit(tmp_path):
    assert checkout_commit(tmp_path) == ("", False)


def test_runs_record_twelve_digits_and_dirty(checkout, monkeypatch):
    monkeypatch.setattr(worker, "checkout_commit", lambda: checkout_commit(checkout))
    head = _git(checkout, "rev-parse", "HEAD")
    assert worker.git_commit() == head[:12]
    (checkout / "configs" / "model.py").write_text("v2\n")
    assert worker.git_commit() == head[:12] + "+dirty"
