"""`mnc-bench rescore SUITE --metric boundary tide proposals`: the finished runs' saved predictions scored
again, or their proposals taken from their final checkpoint, the keys merged into their metrics.json (nothing
else changed), other runs left alone; `collect` shows the columns."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("mmcv.ops")

from mnc_bench.cli import main  # noqa: E402
from mnc_bench.evaluation import evaluate  # noqa: E402
from mnc_bench.suites.collect import collect  # noqa: E402
from mnc_bench.suites.record import write_plan  # noqa: E402
from mnc_bench.suites.runner import plan_suite, prepare_run_dir  # noqa: E402
from mnc_bench.suites.spec import load_suite  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _prepared(suite_file: Path, suite_dir: Path):
    """The suite of ``suite_file`` planned into ``suite_dir``, its run folders made (nothing run)."""
    suite = load_suite(suite_file, build_models=False)
    plan = plan_suite(suite, suite_dir)
    for planned in plan:
        prepare_run_dir(planned)
    write_plan(suite, suite_dir)
    return suite, plan


def test_rescore_adds_boundary_and_tide_from_the_saved_predictions(shapes_dataset, tmp_path, monkeypatch,
                                                                   capsys):
    monkeypatch.chdir(REPO)
    suite_file = tmp_path / "tiny.yaml"
    suite_file.write_text(textwrap.dedent(f"""
        base: configs/mask_rcnn/mask_rcnn_shapes.py
        seeds: [0, 1, 2]
        cfg_options: {{data_root: {shapes_dataset}/}}
    """))
    suite_dir = tmp_path / "results" / "tiny"
    suite, plan = _prepared(suite_file, suite_dir)
    done, no_predictions, pending = (p.run_dir for p in plan)
    ann = shapes_dataset / "annotations" / "instances_val.json"
    gt = json.loads(ann.read_text())
    # imperfect predictions: every object found, one in three with the wrong class
    predictions = [{"image_id": a["image_id"], "segmentation": a["segmentation"], "bbox": a["bbox"],
                    "category_id": a["category_id"] if k % 3 else 1 + a["category_id"] % 4,
                    "score": 1.0 - k / 1000}
                   for k, a in enumerate(gt["annotations"])]
    done.file("predictions.json").write_text(json.dumps(predictions))
    for run_dir in (done, no_predictions):
        run_dir.write_json("metrics.json", {"coco/segm/AP": 0.5})
        run_dir.update_status(state="done")

    assert main(["rescore", str(suite_file), "--results", str(tmp_path / "results"), "--metric", "boundary",
                 "tide"]) == 1  # one finished run could not be scored
    printed, err = capsys.readouterr()
    assert "keys added" in printed and "predictions.json not found" in printed
    assert err == "1 finished run(s) not scored (see above)\n"
    metrics = json.loads(done.file("metrics.json").read_text())
    expected = evaluate(ann, predictions, metric=["boundary", "tide"], iou_type=("segm", "bbox"))
    assert metrics["coco/segm/AP"] == 0.5  # kept
    for key, value in expected.items():  # NaN (undefined, e.g. no large objects) is stored as null
        assert metrics[key] is None if math.isnan(value) else metrics[key] == pytest.approx(value), key
    assert metrics["tide/segm/dAP_cls"] > 0.1 and metrics["coco/boundary/AP"] < 1.0
    assert json.loads(no_predictions.file("metrics.json").read_text()) == {"coco/segm/AP": 0.5}
    assert not pending.file("metrics.json").exists()
    table = collect(suite_dir).set_index("run_id")
    assert table.loc[done.run_id, "tide/bbox/dAP_cls"] == pytest.approx(expected["tide/bbox/dAP_cls"])


def test_rescore_of_an_unknown_suite_is_one_line(tmp_path, capsys):
    assert main(["rescore", "nowhere", "--results", str(tmp_path), "--metric", "boundary"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no results at") and err.count("\n") == 1


def test_rescore_of_a_suite_without_a_finished_run_says_so(tmp_path, capsys):
    (tmp_path / "results" / "empty").mkdir(parents=True)
    assert main(["rescore", "empty", "--results", str(tmp_path / "results"), "--metric", "tide"]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path}/results/empty: no finished run to score\n"


def test_rescore_adds_proposal_recall_from_the_final_checkpoint(shapes_dataset, tmp_path, monkeypatch,
                                                                capsys):
    """Oracle proposals at IoU 0.92 (boxes that do not depend on the weights: a random checkpoint will do)
    give AR 0.9; a finished run without a checkpoint is named and left as it was."""
    import torch
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    from mnc_bench.config_loading import load_config

    monkeypatch.chdir(REPO)
    suite_file = tmp_path / "oracle.yaml"
    suite_file.write_text(textwrap.dedent(f"""
        base: configs/mnc/mnc_3stage_shapes.py
        seeds: [0, 1, 2, 3]
        cfg_options:
          data_root: {shapes_dataset}/
          model.proposal_control: {{mode: oracle, oracle_iou: 0.92}}
    """))
    suite, plan = _prepared(suite_file, tmp_path / "results" / "oracle")
    scored, without_checkpoint, moved, broken = (p.run_dir for p in plan)
    init_default_scope("mmdet")
    cfg = load_config(suite.runs[0].config, suite.runs[0].cfg_options)
    scored.work_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": MODELS.build(cfg.model).state_dict(), "meta": {}},
               scored.work_dir / "iter_1.pth")
    moved.write_json("run.json", {**moved.read_run().to_json(), "test_ann_file": str(tmp_path / "gone.json")})
    for run_dir in (scored, without_checkpoint, moved, broken):
        run_dir.write_json("metrics.json", {"coco/segm/AP": 0.5})
        run_dir.update_status(state="done")
    broken.file("run.json").write_text("{")

    assert main(["rescore", str(suite_file), "--results", str(tmp_path / "results"), "--metric",
                 "proposals"]) == 1
    printed = capsys.readouterr().out
    assert "keys added" in printed and "no whole checkpoint" in printed
    gone = f"{moved.run_id} mnc_3stage_shapes seed 2: not scored: test annotations {tmp_path}/gone.json "
    assert gone + "not found" in printed
    assert f"{broken.run_id}: not scored: {broken.file('run.json')}: missing or not a run record" in printed
    metrics = json.loads(scored.file("metrics.json").read_text())
    assert metrics["coco/segm/AP"] == 0.5  # kept
    assert metrics["proposals/AR@100"] == pytest.approx(0.9, abs=1e-6)
    assert json.loads(without_checkpoint.file("metrics.json").read_text()) == {"coco/segm/AP": 0.5}
    assert scored.state == "done" and without_checkpoint.state == "done"
