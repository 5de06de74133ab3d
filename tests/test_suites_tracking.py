"""`mnc-bench run --track mlflow=URI` against a real local MLflow store (SQLite)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("mmcv.ops")
mlflow = pytest.importorskip("mlflow")

from mnc_bench.suites.tracking import metric_name, tracking_uri  # noqa: E402


def test_track_option():
    assert tracking_uri(None, "results") is None
    assert tracking_uri("mlflow", "/tmp/r") == "sqlite:////tmp/r/mlflow.db"
    assert tracking_uri("mlflow=http://host:5000", "results") == "http://host:5000"
    assert metric_name("voc_mnc/mAP@0.5") == "voc_mnc/mAP_at_0.5"


@pytest.mark.slow
def test_runs_are_logged_to_a_local_mlflow_store(tiny_suite, suite_cli, tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    suite = tiny_suite(iters=3, seeds=(0,))
    suite_cli.finish(suite, tmp_path / "results", "--track", f"mlflow={uri}")
    (run_dir,) = suite_cli.run_dirs(tmp_path / "results")
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tiny")
    (logged,) = client.search_runs([experiment.experiment_id])
    assert logged.info.run_name == run_dir.run_id and logged.info.status == "FINISHED"
    assert logged.data.params["seed"] == "0" and logged.data.tags["model"] == "mask_rcnn_shapes"
    assert logged.data.params["train_cfg.max_iters"] == "3"  # the resolved config, from MLflowVisBackend
    metrics = json.loads(run_dir.file("metrics.json").read_text())
    assert logged.data.metrics["test/coco/segm/AP"] == pytest.approx(metrics["coco/segm/AP"])
    assert logged.data.metrics["test/voc_mnc/mAP_at_0.5"] == pytest.approx(metrics["voc_mnc/mAP@0.5"])
    history = client.get_metric_history(logged.info.run_id, "loss")
    assert sorted(m.step for m in history) == [1, 2, 3]
    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id)}
    assert {"metrics.json", "predictions.json", "run_stats.json"} <= artifacts
    # the files sit beside the SQLite store, not in the working directory
    assert any((tmp_path / "mlflow-artifacts").rglob("metrics.json"))
