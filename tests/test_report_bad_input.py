"""`mnc-bench report` on bad or thin input: a report saying what is missing, or one line `error: ...`."""

from __future__ import annotations

import json
import os
import shutil

import pandas as pd
import pytest

from mnc_bench.cli import main
from mnc_bench.errors import UserError
from mnc_bench.reporting import figures, write_report
from mnc_bench.reporting.names import display_names
from mnc_bench.reporting.qualitative import ModelChoice, qualitative_figures
from mnc_bench.reporting.style import Canvas, Skipped
from mnc_bench.reporting.table import load_inputs, run_folder
from mnc_bench.reporting.venue import COLUMN
from mnc_bench.suites.contract import REQUIRED_COLUMNS


@pytest.fixture(scope="module")
def results(tmp_path_factory, shapes_dataset, build_results):
    root = tmp_path_factory.mktemp("report_inputs")
    build_results(root, shapes_dataset)
    return root / "results"


def _report(results, out, *suites, **kwargs):
    """A report without figures (the figures are tested in test_report.py)."""
    return write_report(list(suites), out, results_dir=results, bench=results / "bench" / "models.json",
                        figures=False, **kwargs)


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(["report", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_empty_results_still_write_a_report(tmp_path):
    suite = tmp_path / "results" / "empty"
    suite.mkdir(parents=True)
    pd.DataFrame(columns=[*REQUIRED_COLUMNS, "coco/segm/AP"]).to_csv(suite / "collect.csv", index=False)
    written = write_report(["empty"], tmp_path / "out", results_dir=tmp_path / "results", bench=None)
    text = (written.out / "report.md").read_text()
    assert "The results hold no runs" in text and "## Main comparison" not in text
    assert (written.out / "report.html").is_file()


def test_suite_with_only_failed_runs(results, tmp_path):
    written = _report(results, tmp_path / "out", "only_failed")
    text = (written.out / "report.md").read_text()
    assert "Suite only_failed has no finished run" in text
    assert text.count("CUDA out of memory") == 2
    figures = write_report(["only_failed"], tmp_path / "figs", results_dir=results, bench=None)
    assert "all figures: no finished run with the compared metric" in (figures.out / "report.md").read_text()


def test_failed_only_suite_beside_a_good_one(results, tmp_path):
    written = _report(results, tmp_path / "out", "mnc_vs_successors", "only_failed")
    text = (written.out / "report.md").read_text()
    assert "## Main comparison" in text and "Suite only_failed has no finished run" in text


def test_short_metric_name_resolves(results, tmp_path):
    written = _report(results, tmp_path / "out", "proposal_quality", metric="AR@100")
    assert "Compared metric: `proposals/AR@100`" in (written.out / "report.md").read_text()


@pytest.mark.parametrize("kwargs,message", [
    ({"baseline": "yolo"}, "--baseline yolo: no such model in the results (models: mask_rcnn_shapes"),
    ({"metric": "coco/segm/APxx"}, "--metric coco/segm/APxx: not a column of the results table"),
    ({"metric": "AP"}, "--metric AP: ambiguous"),
])
def test_unknown_baseline_or_metric_is_one_line_error(results, tmp_path, kwargs, message):
    with pytest.raises(UserError, match="^" + message.replace("(", r"\(").replace("[", r"\[")) as info:
        _report(results, tmp_path / "out", "mnc_vs_successors", **kwargs)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out" / "report.md").exists()


def test_output_path_that_is_a_file_fails_before_reading_anything(tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("x")
    code, _, err = _cli(capsys, "no_such_suite", "--out", str(target), "--results", str(tmp_path))
    assert code == 2 and err.startswith(f"error: --out {target}: exists and is not a directory")
    code, _, err = _cli(capsys, "no_such_suite", "--out", str(target / "sub"), "--results", str(tmp_path))
    assert code == 2 and "is not a directory" in err and err.count("\n") == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere: an unwritable folder cannot be made")
def test_unwritable_output_folder(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, _, err = _cli(capsys, "x", "--out", str(locked / "out"), "--results", str(tmp_path))
    assert code == 2 and "not writable" in err


def test_missing_and_malformed_tables(tmp_path, capsys):
    code, _, err = _cli(capsys, "nothing", "--out", str(tmp_path / "out"), "--results", str(tmp_path))
    assert code == 2 and "no collected results" in err and "mnc-bench collect nothing" in err
    code, _, err = _cli(capsys, str(tmp_path / "nothing.csv"), "--out", str(tmp_path / "out"))
    assert code == 2 and err == f"error: {tmp_path / 'nothing.csv'}: no such table\n"
    bad = tmp_path / "bad"
    bad.mkdir()
    pd.DataFrame({"suite": ["bad"], "run_id": ["r1"]}).to_csv(bad / "collect.csv", index=False)
    code, _, err = _cli(capsys, "bad", "--out", str(tmp_path / "out"), "--results", str(tmp_path))
    assert code == 2 and "missing column(s) status, model, seed, variant" in err
    row = {"suite": "bad", "run_id": "r1", "status": "finished", "model": "m", "seed": 0, "variant": ""}
    pd.DataFrame([row]).to_csv(bad / "collect.csv", index=False)
    code, _, err = _cli(capsys, "bad", "--out", str(tmp_path / "out"), "--results", str(tmp_path))
    assert code == 2 and "run r1: status 'finished' is not one of done, failed, running, pending" in err
    pd.DataFrame([{**row, "status": "done", "seed": "zero"}]).to_csv(bad / "collect.csv", index=False)
    code, _, err = _cli(capsys, "bad", "--out", str(tmp_path / "out"), "--results", str(tmp_path))
    assert code == 2 and "seed 'zero' is not an integer" in err
    for e in (err,):
        assert "Traceback" not in e and e.count("\n") == 1


@pytest.mark.parametrize(("values", "problem"), [
    ({"coco/segm/AP": "high"}, "run r1: coco/segm/AP 'high' is not a finite number"),  # else dropped as text
    ({"coco/segm/AP": float("inf")}, "run r1: coco/segm/AP inf is not a finite number"),  # else printed as —
    ({"train_time_s": "long"}, "run r1: train_time_s 'long' is not a finite number"),
    ({"model": ""}, "run r1: model is empty"),  # else a row without a name
])
def test_a_damaged_table_value_is_named(tmp_path, capsys, values, problem):
    (tmp_path / "bad").mkdir()
    row = {"suite": "bad", "run_id": "r1", "status": "done", "model": "m", "seed": 0, "variant": "",
           "coco/segm/AP": 0.5, "train_time_s": 10.0}
    pd.DataFrame([{**row, **values}]).to_csv(tmp_path / "bad" / "collect.csv", index=False)
    code, _, err = _cli(capsys, "bad", "--out", str(tmp_path / "out"), "--results", str(tmp_path))
    assert code == 2 and problem in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_an_output_folder_the_system_refuses_is_one_line(results, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "tables").write_text("")  # a file where the report's tables folder goes
    code, _, err = _cli(capsys, "mnc_vs_successors", "--out", str(out), "--results", str(results),
                        "--no-figures")
    assert code == 2 and "tables: exists and is not a folder" in err and err.count("\n") == 1


def test_cli_writes_a_report(results, tmp_path, capsys):
    code, out, err = _cli(capsys, "loss_weights", "--out", str(tmp_path / "r"), "--results", str(results),
                          "--bench", str(results / "bench" / "models.json"), "--metric", "segm/AP",
                          "--no-figures")
    assert code == 0 and err == ""
    assert out.startswith(f"report {tmp_path / 'r' / 'report.md'}")
    assert "--no-figures" in (tmp_path / "r" / "report.md").read_text()  # the command, in the provenance
    assert (tmp_path / "r" / "tables" / "ablation_model_loss_weights_mask.tex").is_file()


def test_parquet_and_csv_tables_give_the_same_report(results, tmp_path):
    """collect writes both; the report prefers parquet (nullable Int64, boolean axes), reads CSV alike."""
    reports = {}
    for fmt in ("parquet", "csv"):
        copy = tmp_path / fmt / "results" / "cascade_depth"
        copy.mkdir(parents=True)
        shutil.copy(results / "cascade_depth" / f"collect.{fmt}", copy)
        written = write_report(["cascade_depth"], tmp_path / fmt / "out",
                               results_dir=tmp_path / fmt / "results", bench=None, figures=False)
        reports[fmt] = (written.out / "report.md").read_text().split("## Provenance")[0]
    assert reports["parquet"] == reports["csv"]
    assert "| MNC 3-stage [box_grad=True, num_stages=7, " in reports["csv"]


def test_box_only_or_broken_predictions_skip_the_qualitative_figure(results, tmp_path):
    tree = tmp_path / "results"
    shutil.copytree(results / "mnc_vs_successors", tree / "mnc_vs_successors")
    done = load_inputs(["mnc_vs_successors"], results_dir=tree).done.copy()
    done["run_dir"] = ""  # runs are found beside the copied table
    first = run_folder(done.iloc[0]) / "predictions.json"
    for run in done.itertuples():
        path = run_folder(done.loc[run.Index]) / "predictions.json"
        records = json.loads(path.read_text())
        path.write_text(json.dumps([{k: v for k, v in r.items() if k != "segmentation"} for r in records]))
    canvas = Canvas(tmp_path / "figs", COLUMN, display_names(done["model"]))
    choice = ModelChoice(sorted(set(done["model"])), "by name")
    (skipped,) = qualitative_figures(done, canvas, choice)
    assert isinstance(skipped, Skipped) and "needs masks" in skipped.reason
    first.write_text("[{not json")
    (skipped,) = qualitative_figures(done, canvas, choice)
    assert isinstance(skipped, Skipped) and "invalid JSON" in skipped.reason
    assert not (tmp_path / "figs").exists()


@pytest.mark.slow
def test_a_figure_that_cannot_be_drawn_costs_only_that_figure(results, tmp_path, monkeypatch):
    def broken(*args):
        raise ValueError("cannot convert float NaN to integer")

    monkeypatch.setattr(figures, "loss_weight_figure", broken)
    written = write_report(["loss_weights"], tmp_path / "out", results_dir=results, bench=None)
    text = (written.out / "report.md").read_text()
    assert ("- loss_weights: could not be drawn from these results: ValueError: cannot convert float NaN to "
            "integer") in text
    assert "## Main comparison" in text and (written.out / "figures" / "training_loss.png").is_file()


def test_a_bug_in_a_figure_stops_the_report_with_its_traceback(results, tmp_path, monkeypatch):
    """Only data a figure cannot draw (ValueError) costs just that figure; a TypeError or KeyError is a
    bug."""
    for error in (TypeError("unsupported operand type(s)"), KeyError("coco/segm/AP")):
        def broken(*args, error=error):
            raise error

        monkeypatch.setattr(figures, "loss_weight_figure", broken)
        with pytest.raises(type(error)):
            write_report(["loss_weights"], tmp_path / "out", results_dir=results, bench=None)


def test_the_reused_from_column_of_collect_is_text_not_a_metric(results, tmp_path):
    """`collect` writes `reused_from` (empty for runs trained in the suite); read back from CSV an all-empty
    column is NaN, which must not turn into a metric column of the report."""
    from mnc_bench.reporting.table import read_table

    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    table_path = copy / "mnc_vs_successors" / "collect.csv"
    table = pd.read_csv(table_path)
    table["reused_from"] = ""
    table.to_csv(table_path, index=False)
    (copy / "mnc_vs_successors" / "collect.parquet").unlink()
    assert read_table(table_path)["reused_from"].tolist() == [""] * len(table)
    written = _report(copy, tmp_path / "out", "mnc_vs_successors")
    tables = [line for line in (written.out / "report.md").read_text().splitlines() if line.startswith("|")]
    assert tables and not any("reused_from" in line for line in tables)


def _shared_default_cell(results, tmp_path):
    """A copy of the results in which loss_weights' default cell (mask 1 / cls 1, seed 0) is cascade_depth's
    default run, reused by its id as the runner does; returns the copy and that run id."""
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    depth = pd.read_csv(copy / "cascade_depth" / "collect.csv")
    default = depth[(depth["axis.model.cascade.num_stages"] == 3) & depth["axis.model.cascade.box_grad"]
                    & (depth["seed"] == 0)]
    run_id = default["run_id"].item()
    weights_path = copy / "loss_weights" / "collect.csv"
    weights = pd.read_csv(weights_path)
    cell = ((weights["axis.model.loss_weights.mask"] == 1.0) & (weights["axis.model.loss_weights.cls"] == 1.0)
            & (weights["seed"] == 0))
    assert cell.sum() == 1
    weights.loc[cell, "run_id"] = run_id
    weights["reused_from"] = [f"cascade_depth/{run_id}" if shared else "" for shared in cell]
    weights.to_csv(weights_path, index=False)
    (copy / "loss_weights" / "collect.parquet").unlink()
    return copy, run_id


def test_a_run_that_two_suites_share_counts_in_each(results, tmp_path):
    """The ablations share their default cell (one run, reused by id): a report of both suites keeps it in
    each suite's groups."""
    copy, run_id = _shared_default_cell(results, tmp_path)
    runs = load_inputs(["cascade_depth", "loss_weights"], results_dir=copy).runs
    assert sorted(runs.loc[runs["run_id"] == run_id, "suite"]) == ["cascade_depth", "loss_weights"]
    weights = runs[(runs["suite"] == "loss_weights") & (runs["axis.model.loss_weights.mask"] == 1.0)
                   & (runs["axis.model.loss_weights.cls"] == 1.0)]
    assert sorted(weights["seed"]) == [0, 1]
    written = _report(copy, tmp_path / "out", "cascade_depth", "loss_weights")
    assert (written.out / "report.md").is_file()


def test_one_suites_table_given_twice_is_one_line(results, tmp_path, capsys):
    other = tmp_path / "elsewhere"
    shutil.copytree(results / "cascade_depth", other / "cascade_depth")
    code, _, err = _cli(capsys, str(results / "cascade_depth" / "collect.csv"),
                        str(other / "cascade_depth" / "collect.csv"), "--out", str(tmp_path / "out"))
    assert code != 0
    assert err.strip().splitlines() == [err.strip()]
    assert "of suite cascade_depth is in two of the tables" in err
    assert not (tmp_path / "out").exists()
