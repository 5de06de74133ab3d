"""The CLI's glibc malloc settings (mnc_bench/allocator.py): large blocks come from the reusable heap instead
of fresh mmaps, unless the user opts out."""

from __future__ import annotations

import ctypes.util
import os
import subprocess
import sys

import pytest

# A fresh process per case (mallopt settings are process-wide): allocate 64 MB with malloc and report how many
# bytes glibc holds in mmapped blocks (mallinfo2().hblkhd).
PROBE = """
import ctypes, ctypes.util, sys
from mnc_bench.allocator import tune_allocator
applied = tune_allocator()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                 "fordblks", "keepcost")]
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
block = libc.malloc(64 << 20)
print(applied, libc.mallinfo2().hblkhd)
"""


def _probe(opt_out: bool) -> tuple[bool, int]:
    env = {k: v for k, v in os.environ.items() if k != "MNC_BENCH_ALLOCATOR"}
    if opt_out:
        env["MNC_BENCH_ALLOCATOR"] = "system"
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    applied, mmapped = out.stdout.split()
    return applied == "True", int(mmapped)


@pytest.mark.skipif(not sys.platform.startswith("linux") or ctypes.util.find_library("c") is None
                    or not hasattr(ctypes.CDLL(ctypes.util.find_library("c")), "mallinfo2"),
                    reason="glibc >= 2.33 (mallinfo2) only")
def test_large_blocks_come_from_the_heap_unless_the_user_opts_out():
    applied, mmapped = _probe(opt_out=False)
    assert applied and mmapped < 64 << 20
    applied, mmapped = _probe(opt_out=True)
    assert not applied and mmapped >= 64 << 20


def test_commands_apply_the_settings_calls_from_python_do_not(monkeypatch):
    """`mnc-bench ...` and the suite worker tune their process; `main([...])` from Python (tests, notebooks)
    leaves the caller's process as it is."""
    from mnc_bench import cli
    from mnc_bench.suites import worker

    calls = []
    monkeypatch.setattr(cli, "tune_allocator", lambda: calls.append("cli"))
    monkeypatch.setattr(worker, "tune_allocator", lambda: calls.append("worker"))
    assert cli.main(["data", "check", "/nonexistent.json"]) == 2 and calls == []
    monkeypatch.setattr("sys.argv", ["mnc-bench", "data", "check", "/nonexistent.json"])
    assert cli.main() == 2 and calls == ["cli"]
    monkeypatch.setattr("sys.argv", ["worker", "/nonexistent/run"])
    monkeypatch.setattr(worker, "run", lambda run_dir, **kwargs: 0)
    assert worker.main() == 0 and calls == ["cli", "worker"]
