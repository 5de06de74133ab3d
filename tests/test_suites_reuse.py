"""Finished runs reused across suites of one results root: copied instead of trained (no worker starts), only
when whole and done, never with --no-reuse; the copy is independent of its source and appears in one
rename."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

pytest.importorskip("mmcv.ops")

from mnc_bench.suites import commands  # noqa: E402
from mnc_bench.suites.collect import collect  # noqa: E402
from mnc_bench.suites.commands import status_command  # noqa: E402
from mnc_bench.suites.rundir import RunDir, list_run_dirs  # noqa: E402
from mnc_bench.suites.runner import format_plan, plan_suite, run_suite  # noqa: E402
from mnc_bench.suites.spec import load_suite  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# config paths in suites are relative to the working directory
pytestmark = pytest.mark.usefixtures("repo_cwd")


@pytest.fixture()
def write_suite(tiny_suite):
    """``write_suite(name, *, seeds=(0, 1), extra="")``: a Mask R-CNN suite; suites that differ only in a
    logging interval (not part of a run id) share runs."""
    return lambda name, *, seeds=(0, 1), extra="": tiny_suite(name=name, seeds=seeds, extra=extra,
                                                               log_interval=len(name))


@pytest.fixture()
def run(fake_training):
    """``run(suite_file, results, **run_suite_options)``: the suite through the runner with a fake training;
    the executor (what it trained) and the lines the runner printed."""

    def run_with_fake_training(path: Path, results: Path, **kwargs):
        executor, lines = fake_training(), []
        run_suite(load_suite(path, build_models=False), results / path.stem, executor=executor,
                  echo=lines.append, progress_stream=io.StringIO(), **kwargs)
        return executor, lines

    return run_with_fake_training


def test_a_run_done_in_another_suite_is_copied_not_trained_and_stands_alone(write_suite, run, tmp_path):
    results = tmp_path / "results"
    a, b = write_suite("a"), write_suite("bb", seeds=(0, 1, 2))
    trained_a, _ = run(a, results)
    ids = trained_a.trained
    assert len(ids) == 2

    plan = plan_suite(load_suite(b, build_models=False), results / "bb")
    assert [p.spec.run_id for p in plan][:2] == ids  # same config and seed: same id, whatever the suite
    assert [p.action for p in plan] == ["reuse", "reuse", "start"]
    text = "\n".join(format_plan(load_suite(b, build_models=False), plan))
    assert f"reuse from a/{ids[0]}" in text and text.endswith("1 start, 2 reuse")

    trained_b, lines = run(b, results)
    assert trained_b.trained == [plan[2].spec.run_id]  # only the new seed trains
    copies = [RunDir(results / "bb" / run_id) for run_id in ids]
    for copy, run_id in zip(copies, ids):
        source = RunDir(results / "a" / run_id)
        status = copy.status()
        assert status["state"] == "done" and status["reused_from"] == f"a/{run_id}"
        assert copy.read_run().suite == "bb" and source.read_run().suite == "a"
        # this suite's config
        assert Config.fromfile(copy.file("config.py")).default_hooks.logger.interval == 2
        assert copy.read_json("metrics.json") == source.read_json("metrics.json")
        assert (copy.work_dir / "iter_3.pth").stat().st_ino == (source.work_dir / "iter_3.pth").stat().st_ino
    assert lines[-1] == "bb: 3 done, 0 failed, 0 running, 0 left"

    table = collect(results / "bb")
    assert table["reused_from"].tolist() == [f"a/{ids[0]}", f"a/{ids[1]}", ""]
    status_text = status_command("bb", results=results)
    assert "reused from" in status_text.splitlines()[0] and f"a/{ids[1]}" in status_text

    # the copy is its own: what happens to the source afterwards does not reach it
    with open(results / "a" / ids[0] / "log.txt", "a", encoding="utf-8") as log:
        log.write("appended to the source\n")
    assert "appended" not in copies[0].file("log.txt").read_text()
    shutil.rmtree(results / "a")
    assert (copies[0].work_dir / "iter_3.pth").read_bytes() == f"weights of {ids[0]}".encode()
    assert collect(results / "bb")["coco/segm/AP"].tolist() == [0.25, 0.25, 0.25]
    trained_again, _ = run(b, results)
    assert trained_again.trained == []


def test_only_whole_finished_runs_with_the_wanted_metrics_are_reused(write_suite, run, tmp_path):
    results = tmp_path / "results"
    a = write_suite("a", seeds=(0, 1, 2, 3))
    failed, interrupted, truncated, whole = (RunDir(results / "a" / run_id)
                                             for run_id in run(a, results)[0].trained)
    failed.update_status(state="failed", exit_reason="non-finite loss")
    interrupted.update_status(state="running")  # killed: no worker holds it
    metrics = truncated.file("metrics.json")
    metrics.write_text(metrics.read_text()[:10])

    b = write_suite("bb", seeds=(0, 1, 2, 3))
    plan = plan_suite(load_suite(b, build_models=False), results / "bb")
    assert [(p.spec.run_id, p.action) for p in plan] == [
        (failed.run_id, "start"), (interrupted.run_id, "start"), (truncated.run_id, "start"),
        (whole.run_id, "reuse")]
    trained, _ = run(b, results)
    assert trained.trained == [failed.run_id, interrupted.run_id, truncated.run_id]

    # a suite that asks for proposal recall cannot take a run that did not measure it (nor score it: this
    # run's checkpoint is not a whole one)
    c = write_suite("ccc", seeds=(3,), extra="metrics: [proposals/AR@100]\n")
    assert [p.action for p in plan_suite(load_suite(c, build_models=False), results / "ccc")] == ["start"]
    whole.write_json("metrics.json", {**whole.read_json("metrics.json"), "proposals/AR@100": 0.5})
    assert [p.action for p in plan_suite(load_suite(c, build_models=False), results / "ccc")] == ["reuse"]
    # so with Boundary AP and TIDE, which a run computes only when its suite names them
    d = write_suite("dddd", seeds=(3,),
                    extra="metrics: [coco/boundary/AP, tide/segm/dAP_loc]\n")
    assert [p.action for p in plan_suite(load_suite(d, build_models=False), results / "dddd")] == ["start"]
    whole.write_json("metrics.json", {**whole.read_json("metrics.json"), "coco/boundary/AP": 0.4})
    assert [p.action for p in plan_suite(load_suite(d, build_models=False), results / "dddd")] == ["start"]
    whole.write_json("metrics.json", {**whole.read_json("metrics.json"), "tide/segm/dAP_loc": 0.1})
    assert [p.action for p in plan_suite(load_suite(d, build_models=False), results / "dddd")] == ["reuse"]


def test_a_run_without_the_wanted_metrics_but_with_its_checkpoint_is_copied_and_only_scored(
        write_suite, run, tmp_path):
    results = tmp_path / "results"
    (source_id,) = run(write_suite("a", seeds=(0,)), results)[0].trained
    source = RunDir(results / "a" / source_id)
    checkpoint = source.work_dir / "iter_1000.pth"
    torch.save({"state_dict": {"w": torch.ones(2)}}, checkpoint)
    (source.work_dir / "last_checkpoint").write_text(str(checkpoint.resolve()))
    suite = write_suite("bb", seeds=(0,), extra="metrics: [proposals/AR@100]\n")
    plan = plan_suite(load_suite(suite, build_models=False), results / "bb")
    assert [(p.spec.run_id, p.action) for p in plan] == [(source_id, "reuse, then score")]
    assert format_plan(load_suite(suite, build_models=False), plan)[1].endswith(
        f"reuse, then score from a/{source_id}")

    given = {}

    class Scorer:
        """Records what a worker would find, then scores the run as one that resumed at its end would."""

        name, workers = "scorer", 1

        def execute(self, run_dirs, events, suite_dir):
            for run_dir in run_dirs:
                given[run_dir.run_id] = (run_dir.state, (run_dir.work_dir / "last_checkpoint").read_text())
                events.started(run_dir)
                run_dir.write_json("metrics.json", {**run_dir.read_json("metrics.json"),
                                                    "proposals/AR@100": 0.7})
                run_dir.update_status(state="done")
                events.finished(run_dir, 0, 1.0)

        def close(self):
            pass

    lines = []
    record = run_suite(load_suite(suite, build_models=False), results / "bb", executor=Scorer(),
                       echo=lines.append, progress_stream=io.StringIO())
    copy = RunDir(results / "bb" / source_id)
    # the worker resumes an interrupted run: its last checkpoint, which is the copy's own file
    assert given == {source_id: ("running", str(copy.work_dir.resolve() / "iter_1000.pth"))}
    assert record["reused"] == 1
    assert (copy.work_dir / "iter_1000.pth").read_bytes() == checkpoint.read_bytes()
    assert copy.status()["reused_from"] == f"a/{source_id}" and copy.state == "done"
    assert copy.read_json("metrics.json")["proposals/AR@100"] == 0.7
    assert "proposals/AR@100" not in source.read_json("metrics.json")  # the source is left as it was


def test_no_reuse_trains_runs_done_elsewhere(write_suite, run, fake_training, tmp_path, monkeypatch, capsys):
    results = tmp_path / "results"
    a, b = write_suite("a", seeds=(0,)), write_suite("bb", seeds=(0,))
    (run_id,) = run(a, results)[0].trained
    executors = []
    monkeypatch.setattr(commands, "local_executor",
                        lambda *a, **k: executors.append(fake_training()) or executors[-1])
    lines = []
    assert commands.run_command(str(b), results=results, dry_run=True, echo=lines.append) == 0
    assert lines[-1].strip() == "1 reuse"
    assert commands.run_command(str(b), results=results, dry_run=True, reuse=False, echo=lines.append) == 0
    assert lines[-1].strip() == "1 start"
    from mnc_bench.cli import main

    capsys.readouterr()
    assert main(["run", str(b), "--results", str(results), "--dry-run", "--no-reuse"]) == 0
    # the flag reaches run_command
    assert capsys.readouterr().out.strip().splitlines()[-1].strip() == "1 start"
    assert commands.run_command(str(b), results=results, reuse=False, echo=lines.append) == 0
    assert executors[-1].trained == [run_id]
    assert "reused_from" not in RunDir(results / "bb" / run_id).status()


KILLER = """
import os, shutil, signal, sys
from mnc_bench.suites import reuse
from mnc_bench.suites.rundir import RunDir

source, dest, point = sys.argv[1:]
real_copy, real_rename, copied = shutil.copy2, os.rename, []

def copy2(src, dst, **kwargs):  # killed after the first file
    copied.append(src)
    if point == "copy" and len(copied) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_copy(src, dst, **kwargs)

def rename(src, dst):  # killed once the old directory is moved aside, before the copy takes its place
    if point == "swap" and str(src).endswith(".tmp"):
        os.kill(os.getpid(), signal.SIGKILL)
    return real_rename(src, dst)

shutil.copy2, os.rename = copy2, rename
reuse.copy_run(RunDir(source), RunDir(dest), \
write_identity=lambda run_dir: run_dir.write_json("run.json", {}))
"""


@pytest.mark.parametrize("point", ["copy", "swap"])
def test_a_kill_while_copying_leaves_no_half_run(tmp_path, point, finish_run):
    from mnc_bench.suites.reuse import copy_run

    source, dest = RunDir(tmp_path / "a" / "0123456789ab"), RunDir(tmp_path / "b" / "0123456789ab")
    source.write_json("run.json", {"suite": "a"})
    finish_run(source)
    dest.write_json("run.json", {"suite": "b"})  # an earlier invocation prepared it, nothing ran
    dest.write_json("status.json", {"state": "pending"})
    killed = subprocess.run([sys.executable, "-c", KILLER, str(source.path), str(dest.path), point], cwd=REPO)
    assert killed.returncode == -9
    leftovers = sorted(p for p in dest.path.parent.iterdir() if p != dest.path)
    # hidden staging folders of this run only, none listed as a run
    assert leftovers and all(re.fullmatch(rf"\.{dest.run_id}\..+\.tmp", p.name) and p.is_dir()
                             for p in leftovers)
    staged = [RunDir(p) for p in leftovers]
    if point == "copy":  # the copy was being built: the run is as it was
        assert dest.state == "pending" and not dest.file("metrics.json").exists()
        assert [r.run_id for r in list_run_dirs(dest.path.parent)] == [dest.run_id]
        files = [{p.relative_to(r) for p in r.rglob("*") if p.is_file()}
                 for r in (staged[0].path, source.path)]
        assert len(staged) == 1 and files[0] < files[1]  # a part of the source, killed while copying
    else:  # the run moved aside, its whole copy not yet in place: planned again as new
        assert not dest.path.exists() and list_run_dirs(dest.path.parent) == []
        assert sorted(r.state for r in staged) == ["done", "pending"]
        (copy,) = [r for r in staged if r.state == "done"]
        assert copy.read_json("metrics.json") == source.read_json("metrics.json")

    copy_run(source, dest, write_identity=lambda run_dir: run_dir.write_json("run.json", {"suite": "b"}))
    assert dest.state == "done" and dest.read_json("metrics.json") == source.read_json("metrics.json")
    assert not [p for p in dest.path.parent.iterdir() if p.name.startswith(".")]  # leftovers cleared


def test_a_worker_given_a_done_run_leaves_it_alone(tmp_path, finish_run):
    run_dir = RunDir(tmp_path / "suite" / "0123456789ab")
    run_dir.write_json("run.json", {"run_id": run_dir.run_id, "config": "missing.py", "cfg_options": {},
                                    "seed": 0})
    finish_run(run_dir)
    before = run_dir.status()
    worker = subprocess.run([sys.executable, "-m", "mnc_bench.suites.worker", str(run_dir.path)], cwd=REPO)
    assert worker.returncode == 0
    assert run_dir.status() == before and "is done already" in run_dir.file("log.txt").read_text()
    assert json.loads(run_dir.file("metrics.json").read_text())["coco/segm/AP"] == 0.25
