"""The timing line a suite invocation prints: the runner's overhead without the slots a long last run leaves idle."""

from __future__ import annotations

import pytest

from mnc_bench.suites.commands import format_timing
from mnc_bench.suites.runner import idle_after


def test_idle_after_the_last_launch_counts_the_free_slots_only():
    # 2 slots; runs (0, 10), (1, 4), (4, 30); the last launch at 4: slot A free over [10, 30], slot B busy to 30
    assert idle_after(4.0, 30.0, [(0.0, 10.0), (1.0, 4.0), (4.0, 30.0)], workers=2) == pytest.approx(20.0)
    assert idle_after(4.0, 30.0, [(4.0, 30.0), (4.0, 30.0)], workers=2) == pytest.approx(0.0)
    assert idle_after(4.0, 30.0, [], workers=1) == pytest.approx(26.0)


def test_the_overhead_leaves_out_the_idle_tail_and_says_how_much_it_was():
    # 2 workers, 100 s wall, 160 s of runs, of which the tail left 30 slot-seconds idle: 10 s are the runner's
    record = dict(wall_s=100.0, runs_time_s=160.0, runs=3, workers=2, tail_idle_s=30.0)
    line = format_timing(record)
    assert "runner overhead 5.0% of the wall time" in line
    assert "not counting 30.0 slot-seconds idle after the last run started" in line
    # without the record of the tail (older suite.json), all idle time counts, as before
    assert "runner overhead 20.0%" in format_timing({**record, "tail_idle_s": None})
    # the tail can never make the overhead negative
    assert "runner overhead 0.0%" in format_timing({**record, "tail_idle_s": 90.0})
    assert "overhead" not in format_timing(dict(wall_s=5.0, runs_time_s=0.0, runs=0, workers=1))
