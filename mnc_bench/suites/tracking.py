"""``mnc-bench run --track mlflow[=URI]``: each run's params, training scalars, test metrics and files in
MLflow.

Training logs through mmengine's ``MLflowVisBackend`` (added to the run's visualizer: the resolved config as
params, the logged losses and lr per step); after the test pass the worker logs the test metrics and the run's
result files to the same MLflow run (experiment = suite, run name = run id). The default store is a local
SQLite file, ``sqlite:///<results>/mlflow.db`` (``mlflow ui --backend-store-uri sqlite:///results/mlflow.db``
shows it).
Tracking is not part of a run's identity: the same runs with or without it have the same ids. An attempt that
resumes a run logs a new MLflow run of the same name.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mnc_bench.errors import UserError
from mnc_bench.suites.contract import CONFIG_PY, METRICS_JSON, RESULT_FILES, RUN_JSON, RunRecord

# MLflow metric names allow letters, digits, '_', '-', '.', ' ', '/' (our VOC keys carry '@').
_NAME_SUBSTITUTES = {"@": "_at_"}
# Logged as the MLflow run's artifacts.
ARTIFACTS = (*RESULT_FILES, CONFIG_PY, RUN_JSON)


def tracking_uri(track: str | None, results: str | Path) -> str | None:
    """``mlflow`` -> the default SQLite store under ``results``; ``mlflow=URI`` -> URI; None -> no
    tracking."""
    if track is None:
        return None
    backend, _, uri = track.partition("=")
    if backend != "mlflow":
        raise UserError(f"--track: expected mlflow or mlflow=URI, got {track!r}")
    if not uri:
        return f"sqlite:///{Path(results).resolve() / 'mlflow.db'}"
    return uri


def metric_name(key: str) -> str:
    for old, new in _NAME_SUBSTITUTES.items():
        key = key.replace(old, new)
    return key


def tracked_visualizer(visualizer: Mapping[str, Any], uri: str, run: RunRecord,
                       run_dir: Path) -> dict:
    """The run's visualizer config with mmengine's MLflowVisBackend added. A name of its own keeps the test
    pass (a second Runner in the worker, which reuses a visualizer of the same name) out of the MLflow run."""
    backends = list(visualizer.get("vis_backends") or [])
    backends.append(dict(
        type="MLflowVisBackend", save_dir=str(run_dir / "mlflow"), exp_name=run.suite,
        run_name=run.run_id, tracking_uri=uri, artifact_suffix=(".py",),
        artifact_location=_artifact_location(uri),
        tags={"suite": run.suite, "model": run.model, "variant": run.variant or "-"},
        params={"seed": run.seed, "config": run.config}))
    return dict(visualizer, name=f"mlflow-{run.run_id}", vis_backends=backends)


def _artifact_location(uri: str) -> str | None:
    """A local SQLite store keeps its files beside the database (MLflow's default, ./mlruns, would land in the
    working directory); a tracking server decides for itself."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    return (Path(uri[len(prefix):]).resolve().parent / "mlflow-artifacts").as_uri()


def log_results(uri: str, run: RunRecord, run_dir: Path) -> None:
    """Test metrics (metrics.json) and result files into the run's latest MLflow run, which training
    opened."""
    import json

    from mlflow.entities import Metric

    metrics = json.loads((run_dir / METRICS_JSON).read_text(encoding="utf-8"))
    client, mlflow_run = _latest_run(uri, run)
    now = int(time.time() * 1000)
    entries = [Metric(key=metric_name(f"test/{key}"), value=float(value), timestamp=now, step=0)
               for key, value in metrics.items() if value is not None and math.isfinite(value)]
    for start in range(0, len(entries), 500):  # MLflow's log_batch takes at most 1000 metrics
        client.log_batch(mlflow_run.info.run_id, metrics=entries[start:start + 500])
    for name in ARTIFACTS:
        if (run_dir / name).is_file():
            client.log_artifact(mlflow_run.info.run_id, str(run_dir / name))
    client.set_terminated(mlflow_run.info.run_id, status="FINISHED")


def mark_failed(uri: str, run: RunRecord, reason: str) -> None:
    """A run that failed in training leaves its MLflow run open: close it as FAILED with the reason."""
    found = _latest_run(uri, run, required=False)
    if found is not None:
        client, mlflow_run = found
        client.set_tag(mlflow_run.info.run_id, "failure_reason", reason[:5000])
        client.set_terminated(mlflow_run.info.run_id, status="FAILED")


def _latest_run(uri: str, run: RunRecord, *, required: bool = True) -> Any:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(run.suite)
    runs = [] if experiment is None else client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`mlflow.runName` = '{run.run_id}'",
        order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        if required:
            raise RuntimeError(f"MLflow at {uri}: no run named {run.run_id} in experiment {run.suite}")
        return None
    return client, runs[0]
