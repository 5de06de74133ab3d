"""A report prints paths relative to the checkout or as <results>/..., never an absolute path of the machine
that made it or ran the suites; runs trained from uncommitted code get a warning at the top."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path, PurePath

import pandas as pd
import pytest

from mnc_bench.reporting import write_report
from mnc_bench.reporting.paths import PathDisplay, shell_join
from mnc_bench.reporting.provenance import bench_command
from mnc_bench.reporting.table import bench_weights

CHECKOUT = Path(__file__).resolve().parents[1]
ELSEWHERE = "/cluster/scratch/ana/results"  # where the suites ran, as the collect tables recorded it


@pytest.fixture(scope="module")
def results(tmp_path_factory, shapes_dataset, build_results) -> Path:
    root = tmp_path_factory.mktemp("provenance")
    build_results(root, shapes_dataset)
    return root / "results"


def _runs(*run_dirs: str) -> pd.DataFrame:
    return pd.DataFrame({"suite": [PurePath(d).parent.name for d in run_dirs],
                         "run_id": [PurePath(d).name for d in run_dirs], "run_dir": list(run_dirs)})


def test_path_display_rules(tmp_path):
    display = PathDisplay.of(tmp_path / "results", _runs(f"{ELSEWHERE}/s/r1"), checkout=CHECKOUT)
    assert display.path(CHECKOUT / "configs" / "mnc" / "x.py") == "configs/mnc/x.py"
    assert display.path(tmp_path / "results" / "s" / "collect.parquet") == "<results>/s/collect.parquet"
    assert display.path(tmp_path / "results") == "<results>"
    assert display.path(f"{ELSEWHERE}/s/r1/work/iter_1000.pth") == "<results>/s/r1/work/iter_1000.pth"
    assert display.path("/opt/weights/model.pth") == "<outside>/model.pth"
    assert display.recorded("configs/mnc/x.py") == "configs/mnc/x.py"  # as the run wrote it, in its checkout
    assert display.recorded(f"{ELSEWHERE}/s/r1/work/iter_1000.pth") == "<results>/s/r1/work/iter_1000.pth"
    reason = f"FileNotFoundError: '{ELSEWHERE}/s/r1/work/x.pth' (see {ELSEWHERE}2/log)"
    assert display.text(reason) == f"FileNotFoundError: '<results>/s/r1/work/x.pth' (see {ELSEWHERE}2/log)"
    # the placeholder stays readable, other text is quoted
    assert (shell_join(["mnc-bench", "report", "--results", "<results>", "a b"])
            == "mnc-bench report --results <results> 'a b'")


def _copy_from_elsewhere(results: Path, copy: Path, suite: str) -> None:
    """``suite``'s table as if the suites had run in ELSEWHERE (run folders beside the table here), with one
    failure reason naming a run folder, and bench results naming checkpoints there."""
    shutil.copytree(results / suite, copy / suite)
    table = pd.read_parquet(copy / suite / "collect.parquet")
    table["run_dir"] = [f"{ELSEWHERE}/{suite}/{run}" for run in table["run_id"]]
    failed = table.index[table["status"] == "failed"][0]
    table.loc[failed, "failure_reason"] = f"RuntimeError: cannot write {ELSEWHERE}/{suite}/x/work/iter_10.pth"
    table.to_parquet(copy / suite / "collect.parquet", index=False)
    (copy / suite / "collect.csv").unlink()
    bench = json.loads((results / "bench" / "models.json").read_text())
    for model in bench["models"]:
        checkpoint = f"{ELSEWHERE}/{suite}/{model['model']}/work/iter_1000.pth"
        model.update(weights="checkpoint", checkpoint=checkpoint)
    (copy / "bench").mkdir()
    (copy / "bench" / "models.json").write_text(json.dumps(bench))


def test_no_absolute_path_in_a_report_of_results_outside_the_checkout(results, tmp_path):
    copy = tmp_path / "elsewhere" / "results"
    _copy_from_elsewhere(results, copy, "mnc_vs_successors")
    written = write_report(["mnc_vs_successors"], tmp_path / "out", results_dir=copy,
                           bench=copy / "bench" / "models.json", figures=False)
    text = (written.out / "report.md").read_text()
    for absolute in (str(tmp_path), str(CHECKOUT), ELSEWHERE):
        assert absolute not in text and absolute not in (written.out / "report.html").read_text()
    assert "- `<results>/mnc_vs_successors/collect.parquet` " in text
    assert "- `<results>/bench/models.json` " in text
    assert re.search(r"^mnc-bench report mnc_vs_successors --out <outside>/out .*--results <results> "
                     r"--bench <results>/bench/models.json --no-figures$", text, flags=re.M)
    assert "mask_rcnn_shapes=<results>/mnc_vs_successors/mask_rcnn_shapes/work/iter_1000.pth" in text
    assert "cannot write <results>/mnc_vs_successors/x/work/iter_10.pth" in text  # a failure reason
    assert "mnc-bench train configs/mnc/mnc_5stage_shapes.py --seed 0" in text


def test_shipped_results_read_relative_to_the_checkout(tmp_path, monkeypatch):
    """The committed collect tables recorded the run folders of the machine that ran the suites: none of those
    paths may reach the report, and the results folder inside the checkout reads `results/...`."""
    monkeypatch.chdir(CHECKOUT)
    table = pd.read_parquet(CHECKOUT / "results" / "mnc_vs_successors" / "collect.parquet")
    recorded = {str(PurePath(d).parent.parent) for d in table["run_dir"]}
    bench = CHECKOUT / "results" / "bench" / "shapes_trained_weights.json"  # checkpoints in recorded folders
    written = write_report(["mnc_vs_successors"], tmp_path / "out", results_dir=CHECKOUT / "results",
                           bench=bench, figures=False)
    text = (written.out / "report.md").read_text()
    assert recorded and not any(root in text for root in recorded) and str(CHECKOUT) not in text
    assert "- `results/mnc_vs_successors/collect.parquet` " in text
    assert "- `configs/ablations/mnc_vs_successors.yaml` " in text
    assert "--results results --bench results/bench/shapes_trained_weights.json" in text
    checkpoint = r"--checkpoint cascade_mask_rcnn_shapes=<results>/cascades_vs_unified/\w+/work/iter_1000"
    assert re.search(checkpoint, text)


def test_runs_from_uncommitted_code_get_a_warning_at_the_top(results, tmp_path):
    copy = tmp_path / "results"
    shutil.copytree(results / "loss_weights", copy / "loss_weights")
    table = pd.read_parquet(copy / "loss_weights" / "collect.parquet")
    clean = write_report(["loss_weights"], tmp_path / "clean", results_dir=copy, bench=None, figures=False)
    assert "Warning" not in (clean.out / "report.md").read_text()
    table.loc[table.index[:3], "git_commit"] = "0123456789ab+dirty"
    table.to_parquet(copy / "loss_weights" / "collect.parquet", index=False)
    written = write_report(["loss_weights"], tmp_path / "dirty", results_dir=copy, bench=None, figures=False)
    lines = (written.out / "report.md").read_text().splitlines()
    assert lines[0] == "# Report: loss_weights"
    assert lines[2].startswith(f"> **Warning:** 3 of {len(table)} runs were trained from code with "
                               "uncommitted changes (0123456789ab+dirty)")
    page = (written.out / "report.html").read_text()
    assert page.index('<p class="warning" role="alert"><strong>Warning:</strong> 3 of') < page.index("<table")


def test_bench_weights_and_command_name_the_trained_checkpoints():
    bench = pd.DataFrame({"model": ["a", "b"], "config": ["configs/a.py", "configs/b.py"],
                          "weights": ["checkpoint", "random"], "checkpoint": ["/w/a.pth", None]})
    assert bench_weights(bench) == "trained weights for a, random weights for the others"
    assert bench_weights(bench.assign(weights="checkpoint")) == "trained weights (--checkpoint)"
    assert bench_weights(bench.drop(columns="weights")) == "weights not recorded"
    display = PathDisplay.of("results", pd.DataFrame(columns=["suite", "run_id", "run_dir"]))
    command = bench_command(bench, Path("results/bench/x.json"), display)
    assert command == ["mnc-bench", "bench", "models", "--configs", "configs/a.py", "configs/b.py",
                       "--checkpoint", "a=<outside>/a.pth", "--json", "results/bench/x.json"]
    # A results file that names the runs the weights come from: the command names them, under --results.
    bench = bench.assign(weights="checkpoint", checkpoint=["/w/a.pth", "/w/b.pth"],
                         weights_run=["mnc_vs_successors/a0", None])
    command = bench_command(bench, Path("results/bench/x.json"), display)
    assert command[6:] == ["--checkpoint", "a=mnc_vs_successors/a0", "b=<outside>/b.pth",
                           "--results", "results", "--json", "results/bench/x.json"]
