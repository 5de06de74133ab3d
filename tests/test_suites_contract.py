"""The suite contract that writers and readers of results share: a suite's name, file and results folder agree
everywhere (dotted names included), run ids of the shipped suites never change, and the metric keys the
evaluation writes are the columns collect keeps."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("mmcv.ops")

from mnc_bench.cli import main  # noqa: E402
from mnc_bench.reporting.table import find_table  # noqa: E402
from mnc_bench.suites import commands  # noqa: E402
from mnc_bench.suites.collect import COLLECTED_METRICS  # noqa: E402
from mnc_bench.suites.contract import (  # noqa: E402
    METRIC_PATTERN,
    RUN_JSON,
    STANDARD_METRICS,
    RunRecord,
    is_suite_file,
    suite_name,
    suite_results_dir,
)
from mnc_bench.suites.spec import load_suite  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("repo_cwd")

# Run ids of the shipped demo suite as `mnc-bench run demo` names them: finished runs are found (and reused
# across suites) by id, so a change to how configs resolve or ids hash must not move them.
DEMO_RUN_IDS = ["f0fe540edf5c", "a3af8a02ec57", "2ea64c4a71a3", "0c8a2034fd12", "897e395fa747",
                "cd8bd509b0ef", "9f8ebdfaffe6", "0ade7aa315cd"]


@pytest.mark.parametrize("given,name,is_file", [
    ("v1.2", "v1.2", False), ("v1.2.yaml", "v1.2", True), ("configs/ablations/v1.2.yml", "v1.2", True),
    ("demo", "demo", False), ("results/x.y.z", "x.y.z", False), (".yaml", ".yaml", False)])
def test_a_suite_name_keeps_its_dots(given, name, is_file):
    assert suite_name(given) == name
    assert suite_results_dir(given, "r") == Path("r") / name
    assert is_suite_file(given) is is_file


def test_a_dotted_suite_runs_into_the_folder_that_status_collect_and_report_read(
        tmp_path, write_suite, shapes_dataset, fake_training, monkeypatch, capsys):
    results = tmp_path / "results"
    suite_file = write_suite(tmp_path / "v1.2.yaml", shapes_dataset, {"train_cfg.max_iters": 2}, seeds=(0, 1))
    executor = fake_training()
    monkeypatch.setattr(commands, "local_executor", lambda *args, **kwargs: executor)
    assert commands.run_command(str(suite_file), results=results, echo=lambda line: None) == 0
    assert [p.name for p in results.iterdir()] == ["v1.2"] and len(executor.trained) == 2
    capsys.readouterr()
    for suite in ("v1.2", str(suite_file)):  # by name and by file
        assert main(["status", suite, "--results", str(results)]) == 0
        assert capsys.readouterr().out.splitlines()[-1] == "2 done"
        assert main(["collect", suite, "--results", str(results)]) == 0
        assert "wrote " + str(results / "v1.2" / "collect.parquet") in capsys.readouterr().out
        assert find_table(suite, results) == results / "v1.2" / "collect.parquet"
    table = pd.read_parquet(results / "v1.2" / "collect.parquet")
    assert table["suite"].tolist() == ["v1.2", "v1.2"] and sorted(table["run_id"]) == sorted(executor.trained)


def test_the_demo_suite_keeps_its_run_ids():
    assert [run.run_id for run in load_suite("demo", build_models=False).runs] == DEMO_RUN_IDS


def test_shipped_results_are_found_by_the_run_ids_their_suite_files_give():
    """The committed collect tables were run from the shipped suite files: the same files, the same ids."""
    for name in ("mnc_vs_successors", "stage3_labels"):
        committed = pd.read_csv(REPO / "results" / name / "collect.csv")["run_id"].tolist()
        assert [run.run_id for run in load_suite(name, build_models=False).runs] == committed, name


def test_the_evaluation_writes_the_metric_keys_that_collect_keeps():
    """Every metric column collect keeps is a key the evaluation writes (masks and boxes, both VOC protocols,
    proposals, Boundary AP, TIDE), and every key it writes (per-class VOC keys too) matches the pattern suites
    may list."""
    import numpy as np
    from pycocotools import mask as mask_utils

    from mnc_bench.evaluation import evaluate

    square = np.zeros((16, 16), dtype=np.uint8, order="F")
    square[:, 8:] = 1
    rle = mask_utils.encode(square)
    rle["counts"] = rle["counts"].decode()
    gt = {"images": [{"id": 1, "height": 16, "width": 16, "file_name": "a.png"}],
          "categories": [{"id": 1, "name": "square"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [8, 0, 8, 16], "area": 128,
                           "iscrowd": 0, "segmentation": rle}]}
    detection = {"image_id": 1, "category_id": 1, "score": 0.9, "bbox": [8, 0, 8, 16], "segmentation": rle}
    keys = set(evaluate(gt, [detection], metric=("all", "boundary", "tide"), iou_type=("segm", "bbox")))
    keys |= set(evaluate(gt, [{"image_id": 1, "bbox": [8, 0, 8, 16], "score": 1.0}], metric="proposals"))
    assert set(STANDARD_METRICS) <= set(COLLECTED_METRICS) <= keys, sorted(set(COLLECTED_METRICS) - keys)
    assert all(METRIC_PATTERN.match(key) for key in keys), [k for k in keys if not METRIC_PATTERN.match(k)]
    assert any(key.startswith("voc_mnc/AP@0.5/") for key in keys)  # a per-class key


def _record_in(folder: Path, data: object) -> RunRecord | None:
    return RunRecord.from_json(data, folder / "results" / "tiny" / "0123456789ab")


def test_a_run_record_from_older_run_json_takes_its_folder_for_what_it_lacks(tmp_path):
    # run.json written before `metrics`, `suite` and `axes` were recorded: the folder names the suite and run
    record = _record_in(tmp_path, {"config": "configs/mnc/mnc_3stage_shapes.py", "cfg_options": {"a": 1},
                                   "seed": "2"})
    assert (record.suite, record.run_id, record.seed, record.axes, record.metrics, record.variant) == (
        "tiny", "0123456789ab", 2, {}, None, "")
    assert record.label == "mnc_3stage_shapes, seed=2"
    assert RunRecord.from_json(record.to_json(), Path("elsewhere")) == record  # what is written reads back


@pytest.mark.parametrize("data", [
    None, [], "text",
    {"config": "c.py", "seed": 0},  # no options
    {"config": None, "cfg_options": {}, "seed": 0},
    {"config": "c.py", "cfg_options": {}},  # no seed
    {"config": "c.py", "cfg_options": {}, "seed": "zero"},
    {"config": "c.py", "cfg_options": {}, "seed": 0, "metrics": "coco/segm/AP"},  # not a list
])
def test_what_is_not_a_run_record_reads_as_none_and_stops_a_worker_in_one_line(tmp_path, data):
    from mnc_bench.errors import UserError
    from mnc_bench.suites.rundir import RunDir

    assert _record_in(tmp_path, data) is None
    run_dir = RunDir(tmp_path / "0123456789ab")
    run_dir.path.mkdir()
    run_dir.write_json(RUN_JSON, data)
    assert run_dir.record() is None
    with pytest.raises(UserError, match=r"run\.json: missing or not a run record$"):
        run_dir.read_run()


def test_a_planned_run_writes_its_record_without_the_resolved_config(tmp_path):
    suite = load_suite("demo")
    spec = suite.runs[0]
    written = spec.record().to_json()
    assert set(written) == {f.name for f in dataclasses.fields(RunRecord)} and "cfg" not in spec.to_json()
    assert written["metrics"] == suite.metrics and written["run_id"] == spec.run_id
