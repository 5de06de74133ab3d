"""Reading a suite's results back: the plan against existing run directories, `status`, and `collect`'s tidy
table (schema, one row per run, parquet + CSV). Run directories are written here the way the worker writes
them."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("mmcv.ops")

from mnc_bench.cli import main  # noqa: E402
from mnc_bench.suites.collect import collect, cpu_share, write_table  # noqa: E402
from mnc_bench.suites.contract import STANDARD_METRICS  # noqa: E402
from mnc_bench.suites.record import write_plan  # noqa: E402
from mnc_bench.suites.rundir import RunDir  # noqa: E402
from mnc_bench.suites.runner import plan_suite, prepare_run_dir  # noqa: E402
from mnc_bench.suites.spec import load_suite  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def suite(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    path = tmp_path / "tiny.yaml"
    path.write_text(textwrap.dedent("""
        grid:
          config: [configs/mnc/mnc_3stage_shapes.py, configs/mask_rcnn/mask_rcnn_shapes.py]
          train_cfg.max_iters: [2, 3]
        seeds: [0, 1]
        metrics: [coco/segm/AP, voc_mnc/AP@0.5/circle]
    """))
    return load_suite(path, build_models=False)


def test_cpu_share_is_left_empty_on_a_gpu_and_where_a_figure_is_missing():
    stats = {"worker_time_s": 100.0, "cpu_time_s": 70.0, "threads": 1}
    assert cpu_share(stats) == pytest.approx(0.7)
    assert cpu_share({**stats, "device": "cpu"}) == pytest.approx(0.7)
    assert cpu_share({**stats, "device": "cuda"}) is None
    assert cpu_share({"worker_time_s": 100.0, "threads": 1}) is None
    assert cpu_share({**stats, "worker_time_s": 0.0}) is None


def _prepare(suite, suite_dir: Path) -> list[RunDir]:
    plan = plan_suite(suite, suite_dir)
    for planned in plan:
        prepare_run_dir(planned)
    write_plan(suite, suite_dir)
    return [planned.run_dir for planned in plan]


def _finish(run_dir: RunDir, ap: float) -> None:
    run_dir.write_json("metrics.json", {"coco/segm/AP": ap, "coco/bbox/AP": 0.5,
                                        "voc_mnc/AP@0.5/circle": 0.25, "voc_sds/mAP@0.7": math.nan})
    run_dir.write_json("run_stats.json", {"batch_size": 8, "lr": 5e-4, "max_iters": 2, "train_time_s": 12.5,
                                          "s_per_iter": 1.25, "threads": 2, "peak_mem_mb": 900.0,
                                          "params": 123, "git_commit": "abc", "worker_time_s": 20.0,
                                          "cpu_time_s": 30.0})
    run_dir.update_status(state="done", started="2024-01-01T10:00:00+00:00",
                          ended="2024-01-01T10:01:30+00:00", exit_reason="finished")


def test_plan_follows_the_run_states(suite, tmp_path):
    suite_dir = tmp_path / "results" / "tiny"
    dirs = _prepare(suite, suite_dir)
    assert all(p.action == "start" for p in plan_suite(suite, suite_dir))
    _finish(dirs[0], 0.3)
    dirs[1].update_status(state="failed", exit_reason="boom")
    dirs[2].update_status(state="running")  # no process holds it: interrupted
    dirs[3].update_status(state="running")
    with dirs[3].hold():  # a live worker holds it
        actions = [p.action for p in plan_suite(suite, suite_dir)]
        rerun = [p.action for p in plan_suite(suite, suite_dir, rerun_failed=True)]
    assert actions[:5] == ["skip (done)", "skip (failed)", "resume", "skip (running elsewhere)", "start"]
    assert rerun[1] == "rerun"


def test_only_executes_the_named_runs_and_leaves_the_others(suite, tmp_path):
    suite_dir = tmp_path / "results" / "tiny"
    dirs = _prepare(suite, suite_dir)
    _finish(dirs[0], 0.3)
    dirs[1].update_status(state="running")  # interrupted
    chosen = {dirs[2].run_id}
    actions = [p.action for p in plan_suite(suite, suite_dir, only=chosen)]
    assert actions[:3] == ["skip (done)", "skip (not in --only)", "start"]
    assert actions[3:] == ["skip (not in --only)"] * (len(dirs) - 3)


def test_only_names_a_run_the_suite_does_not_plan(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    code = main(["run", "cascade_depth", "--dry-run", "--seeds", "0", "--only", "0123456789ab"])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert err.splitlines() == [err] and "--only 0123456789ab: not a run of suite cascade_depth" in err


def test_update_keeps_the_finished_runs_whose_folders_are_gone(suite, tmp_path, capsys):
    import shutil

    results = tmp_path / "results"
    suite_dir = results / "tiny"
    dirs = _prepare(suite, suite_dir)
    _finish(dirs[0], 0.3)
    _finish(dirs[1], 0.4)
    dirs[2].update_status(state="failed", exit_reason="boom")
    dirs[3].update_status(state="running")
    _finish(dirs[5], 0.7)
    stale = RunDir(suite_dir / "0123456789ab")  # a run of an axis value since removed from the suite
    record = json.loads(dirs[0].file("run.json").read_text())
    stale.write_json("run.json", {**record, "run_id": "0123456789ab"})
    _finish(stale, 0.9)
    assert main(["collect", "tiny", "--results", str(results), "--all"]) == 0
    shutil.copy(suite_dir / "collect.parquet", suite_dir / "all.parquet")
    # the same run (same id) done under another suite, whose table names its own axes
    other = pd.read_parquet(suite_dir / "collect.parquet")
    other = other[other["run_id"] == dirs[5].run_id].drop(columns=["axis.train_cfg.max_iters"])
    write_table(other.assign(suite="other", **{"coco/segm/AP": 0.75}), results / "other" / "collect.parquet")
    planned = json.loads(dirs[5].file("run.json").read_text())
    for run_dir in [*dirs[:4], dirs[5], stale]:  # the machine is given back: only the tables stay
        shutil.rmtree(run_dir.path)
    _finish(dirs[4], 0.5)  # a run finished since

    assert main(["collect", "tiny", "--results", str(results), "--update"]) == 0
    table = pd.read_parquet(suite_dir / "collect.parquet")
    by_id = table.set_index("run_id")
    assert by_id.loc[dirs[0].run_id, "coco/segm/AP"] == pytest.approx(0.3)
    assert by_id.loc[dirs[1].run_id, "coco/segm/AP"] == pytest.approx(0.4)
    assert by_id.loc[dirs[2].run_id, "failure_reason"] == "boom"
    assert dirs[3].run_id not in by_id.index  # it was running: nothing of it is left to keep
    assert "0123456789ab" not in by_id.index  # no longer planned (kept with --all)
    assert by_id.loc[dirs[4].run_id, "coco/segm/AP"] == pytest.approx(0.5)
    assert by_id.loc[dirs[0].run_id, "axis.train_cfg.max_iters"] == 2 and str(table["seed"].dtype) == "Int64"
    assert table["run_id"].is_unique
    assert by_id.loc[dirs[5].run_id, "coco/segm/AP"] == pytest.approx(0.7)  # its own row before the other's
    assert pd.read_csv(suite_dir / "collect.csv")["run_id"].tolist() == table["run_id"].tolist()

    assert main(["collect", "tiny", "--results", str(results), "--update", "--all",
                 "--out", str(suite_dir / "all.parquet")]) == 0
    assert "0123456789ab" in set(pd.read_parquet(suite_dir / "all.parquet")["run_id"])
    for name in ("collect.parquet", "collect.csv"):  # without its own record, the run comes from the other
        (suite_dir / name).unlink()
    assert main(["collect", "tiny", "--results", str(results), "--update"]) == 0
    reused = pd.read_parquet(suite_dir / "collect.parquet").set_index("run_id").loc[dirs[5].run_id]
    assert reused["coco/segm/AP"] == pytest.approx(0.75) and reused["suite"] == "tiny"
    assert reused["reused_from"] == f"other/{dirs[5].run_id}"
    assert reused["axis.train_cfg.max_iters"] == planned["axes"]["train_cfg.max_iters"]
    assert reused["seed"] == planned["seed"] and reused["variant"] == planned["variant"]

    assert main(["collect", "tiny", "--results", str(results)]) == 0  # without --update: the folders only
    assert dirs[0].run_id not in set(pd.read_parquet(suite_dir / "collect.parquet")["run_id"])
    capsys.readouterr()


def test_collect_writes_one_row_per_run_in_the_shared_schema(suite, tmp_path, capsys):
    suite_dir = tmp_path / "results" / "tiny"
    dirs = _prepare(suite, suite_dir)
    for index, run_dir in enumerate(dirs[:6]):
        _finish(run_dir, 0.1 * index)
    dirs[6].update_status(state="failed", exit_reason="non-finite loss: loss is nan at iteration 1")
    stale = RunDir(suite_dir / "0123456789ab")  # a run of an axis value since removed from the suite
    stale.write_json("run.json", {**json.loads(dirs[0].file("run.json").read_text()),
                                  "run_id": "0123456789ab"})
    _finish(stale, 0.9)

    table = collect(suite_dir)
    assert len(table) == 8 and table["run_id"].is_unique and "0123456789ab" not in set(table["run_id"])
    assert len(collect(suite_dir, include_all=True)) == 9
    expected_start = ["suite", "run_id", "status", "failure_reason", "config", "model", "seed", "variant",
                      "axis.config", "axis.train_cfg.max_iters"]
    assert list(table.columns[:10]) == expected_start
    assert set(STANDARD_METRICS) <= set(table.columns) and "voc_mnc/AP@0.5/circle" in table.columns
    assert list(table.columns[-14:]) == ["batch_size", "lr", "max_iters", "train_time_s", "s_per_iter",
                                         "threads", "peak_mem_mb", "params", "git_commit", "cpu_share",
                                         "run_dir", "test_ann_file", "test_img_dir", "reused_from"]
    first = table.iloc[0]
    assert first["suite"] == "tiny" and first["model"] == "mnc_3stage_shapes" and first["seed"] == 0
    assert first["variant"] == "train_cfg.max_iters=2" and first["axis.train_cfg.max_iters"] == 2
    assert first["axis.config"] == "configs/mnc/mnc_3stage_shapes.py"
    assert first["status"] == "done" and first["failure_reason"] == "" and first["batch_size"] == 8
    assert first["threads"] == 2 and str(table["threads"].dtype) == "Int64"
    assert first["cpu_share"] == pytest.approx(30.0 / (20.0 * 2))  # CPU time / (wall x threads)
    assert math.isnan(first["voc_sds/mAP@0.7"]) and math.isnan(first["proposals/AR@100"])
    assert table.loc[6, "status"] == "failed" and table.loc[6, "failure_reason"].startswith("non-finite loss")
    assert math.isnan(table.loc[6, "coco/segm/AP"]) and table.loc[7, "status"] == "pending"
    assert table["coco/segm/AP"].iloc[:6].tolist() == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    # rows that differ only by seed share (model, variant)
    assert table.groupby(["model", "variant"]).size().tolist() == [2, 2, 2, 2]

    code = main(["collect", "tiny", "--results", str(tmp_path / "results")])
    out = capsys.readouterr().out.splitlines()
    assert code == 0 and out[-1] == f"wrote {suite_dir / 'collect.parquet'}, {suite_dir / 'collect.csv'}"
    # the summary ends with the suite's first metric over seeds: mean, sd and n of each finished group
    means = out[out.index(next(line for line in out if "coco/segm/AP mean" in line)):-1]
    assert means[0].split() == ["model", "variant", "coco/segm/AP", "mean", "sd", "seeds"]
    assert [line.split() for line in means[1:]] == [
        ["mask_rcnn_shapes", "train_cfg.max_iters=2", "0.450", "0.071", "2"],
        ["mnc_3stage_shapes", "train_cfg.max_iters=2", "0.050", "0.071", "2"],
        ["mnc_3stage_shapes", "train_cfg.max_iters=3", "0.250", "0.071", "2"]]
    parquet = pd.read_parquet(suite_dir / "collect.parquet")
    csv = pd.read_csv(suite_dir / "collect.csv")
    assert parquet["run_id"].tolist() == table["run_id"].tolist() == csv["run_id"].tolist()
    assert parquet["coco/segm/AP"].iloc[:6].tolist() == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])


def test_status_lists_states_durations_and_reasons(suite, tmp_path, capsys):
    suite_dir = tmp_path / "results" / "tiny"
    dirs = _prepare(suite, suite_dir)
    _finish(dirs[0], 0.3)
    dirs[1].update_status(state="failed", exit_reason="out of memory: CUDA out of memory")
    dirs[2].update_status(state="running", started="2024-01-01T10:00:00+00:00")
    assert main(["status", str(suite_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:2] == [dirs[0].run_id, "mnc_3stage_shapes,"] and "1m30s" in lines[1]
    assert "failed" in lines[2] and lines[2].endswith("out of memory: CUDA out of memory")
    assert "running (interrupted" in lines[3]
    assert lines[-1] == "1 done, 1 failed, 1 running, 5 pending"


def test_collect_and_status_of_a_suite_never_run(tmp_path, capsys):
    assert main(["collect", "nothing", "--results", str(tmp_path)]) == 2
    assert "no results at" in capsys.readouterr().err
    assert main(["status", "nothing", "--results", str(tmp_path)]) == 2


@pytest.mark.parametrize(("file", "content", "problem"), [
    ("metrics.json", "[1]", "metrics.json: not a JSON object"),
    ("metrics.json", None, "metrics.json: missing"),
    ("metrics.json", '{"coco/segm/AP": "high"}',
     "metrics.json: coco/segm/AP: expected a number or null, got 'high'"),
    ("run_stats.json", '{"train_time_s": "long"}', "run_stats.json: train_time_s: expected a number or null"),
    ("run.json", "{", "run.json: missing or not a run record"),
    ("status.json", '{"state": "exploded"}', "status.json: not a run status"),
    ("suite.json", '{"run_ids": "abc"}', "suite.json: run_ids: expected a list of strings"),
    ("suite.json", "[1, 2]", "suite.json: not a suite record"),
])
def test_a_damaged_record_is_named_instead_of_collected_as_missing(suite, tmp_path, capsys, file, content,
                                                                    problem):
    suite_dir = tmp_path / "results" / "tiny"
    run_dirs = _prepare(suite, suite_dir)
    _finish(run_dirs[0], 0.4)
    path = suite_dir / file if file == "suite.json" else run_dirs[0].file(file)
    if content is None:
        path.unlink()
    else:
        path.write_text(content)
    assert main(["collect", "tiny", "--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and problem in err
    assert not list(suite_dir.glob("collect.*"))


def test_an_output_the_system_refuses_is_one_line_and_leaves_neither_table(suite, tmp_path, capsys):
    suite_dir = tmp_path / "results" / "tiny"
    _finish(_prepare(suite, suite_dir)[0], 0.4)
    out = tmp_path / "tables"
    (out / "collect.csv").mkdir(parents=True)  # the CSV's place is taken: the parquet must not be written
    assert main(["collect", "tiny", "--results", str(tmp_path / "results"),
                 "--out", str(out / "collect.parquet")]) == 2
    assert "collect.csv: is a directory" in capsys.readouterr().err
    assert not (out / "collect.parquet").exists()


def test_a_plan_that_leaves_out_finished_runs_warns_before_collect_would_drop_them(suite, tmp_path, capsys):
    suite_dir = tmp_path / "results" / "tiny"
    run_dirs = _prepare(suite, suite_dir)  # the recorded plan: seeds 0 and 1
    _finish(run_dirs[0], 0.4)
    results = ["--results", str(tmp_path / "results")]
    assert main(["run", str(suite.path), "--dry-run", "--seeds", "2", *results]) == 0
    out = capsys.readouterr().out
    assert ("warning: this plan leaves out 1 finished run(s) of the recorded one "
            f"(e.g. {run_dirs[0].run_id})") in out
    assert main(["run", str(suite.path), "--dry-run", "--seeds", "0", "1", "2", *results]) == 0
    assert "warning" not in capsys.readouterr().out
