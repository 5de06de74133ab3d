"""Runs that start from another run of their suite (``start_from``): which run each starts from, the ids, the
order, the worker's wait for the starting run and its checkpoint, the rehearsal's links, and bad input."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("mmcv.ops")

from mnc_bench.cli import main  # noqa: E402
from mnc_bench.errors import UserError  # noqa: E402
from mnc_bench.suites import executors  # noqa: E402
from mnc_bench.suites.executors import LocalExecutor, SubmititExecutor  # noqa: E402
from mnc_bench.suites.record import write_plan  # noqa: E402
from mnc_bench.suites.rundir import RunDir  # noqa: E402
from mnc_bench.suites.runner import plan_suite, prepare_run_dir  # noqa: E402
from mnc_bench.suites.smoke import SmokeSettings, smoke_suite  # noqa: E402
from mnc_bench.suites.spec import load_suite  # noqa: E402
from mnc_bench.suites.start_from import PendingRuns, starting_run, with_checkpoint  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MASK_RCNN = "configs/mask_rcnn/mask_rcnn_shapes.py"
PANET = "configs/panet/panet_shapes.py"
MASK_RCNN_LINKED = "configs/video/mask_rcnn_linked_shapes_video.py"
MASKTRACK = "configs/video/masktrack_rcnn_shapes_video.py"


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(REPO)


def _suite(tmp_path: Path, start_from: str, name: str = "linked", extra: str = "") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(f"""
        grid:
          config: [{PANET}, {MASK_RCNN}]
          train_cfg.max_iters: [2, 3]
        seeds: [0, 1]
        {extra}
    """) + textwrap.dedent(start_from))
    return path


STARTS = f"""
start_from:
  - config: {PANET}
    from: {MASK_RCNN}
    module: model.backbone
    prefix: backbone.
"""


def test_each_run_starts_from_the_run_with_its_seed_and_axis_values_which_runs_first(tmp_path):
    plain = load_suite(_suite(tmp_path, "", name="plain"), build_models=False)
    suite = load_suite(_suite(tmp_path, STARTS), build_models=False)
    by_key = {(r.config, r.seed, r.axes["train_cfg.max_iters"]): r for r in suite.runs}
    assert [r.config for r in suite.runs] == [MASK_RCNN] * 4 + [PANET] * 4  # starting runs first
    for (config, seed, iters), run in by_key.items():
        if config != PANET:
            assert starting_run(run.cfg_options) is None
            continue
        source = by_key[(MASK_RCNN, seed, iters)]
        assert starting_run(run.cfg_options) == source.run_id
        assert run.cfg.model.backbone.init_cfg == {"type": "Pretrained", "checkpoint": f"run:{source.run_id}",
                                                   "prefix": "backbone."}  # mmengine drops _delete_
    plain_ids = {(r.config, r.seed, r.axes["train_cfg.max_iters"]): r.run_id for r in plain.runs}
    # the starting run's id is part of the run's id; the starting runs keep theirs
    assert all((plain_ids[key] == run.run_id) == (key[0] == MASK_RCNN) for key, run in by_key.items())


@pytest.mark.parametrize(("entry", "message"), [
    (f"[{{config: {PANET}, from: configs/solov2/solov2_shapes.py, module: model.backbone}}]",
     "start_from[0].from: configs/solov2/solov2_shapes.py is not a model config of the suite"),
    (f"[{{config: {PANET}, from: {PANET}, module: model.backbone}}]", "cannot start from its own runs"),
    (f"[{{config: {PANET}, from: {MASK_RCNN}}}]", "start_from[0].module: required, a string"),
    (f"[{{config: {PANET}, from: {MASK_RCNN}, module: model.backbone, after: 3}}]", "unknown key 'after'"),
    (f"[{{config: {PANET}, from: {MASK_RCNN}, module: model.neck_x}}]", "unknown config key"),
    # config entries that no init_cfg initialises: the run would fail once started, or ignore the weights
    (f"[{{config: {PANET}, from: {MASK_RCNN}, module: train_cfg}}]",
     "start_from.module: train_cfg is not a module of configs/panet/panet_shapes.py"),
    (f"[{{config: {PANET}, from: {MASK_RCNN}, module: model.train_cfg}}]",
     "start_from.module: model.train_cfg is not a module of configs/panet/panet_shapes.py"),
    (f"{{config: {PANET}}}", "start_from: expected a list"),
])
def test_a_bad_start_from_entry_is_one_line_naming_it(tmp_path, capsys, entry, message):
    path = _suite(tmp_path, f"start_from: {entry}\n")
    assert main(["run", str(path), "--dry-run"]) != 0
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and message in err and "suite linked" in err


def test_a_run_without_a_run_to_start_from_is_refused(tmp_path):
    path = tmp_path / "zipped.yaml"  # zipped: the panet run's iteration count has no mask_rcnn run
    path.write_text(textwrap.dedent(f"""
        zip:
          config: [{PANET}, {MASK_RCNN}]
          train_cfg.max_iters: [2, 3]
    """) + textwrap.dedent(STARTS))
    with pytest.raises(UserError, match=r"no run of .*mask_rcnn_shapes.py with its seed and axis values"):
        load_suite(path, build_models=False)


def _prepared(tmp_path: Path):
    suite = load_suite(_suite(tmp_path, STARTS), build_models=False)
    suite_dir = tmp_path / "results" / "linked"
    for planned in plan_suite(suite, suite_dir):
        prepare_run_dir(planned)
    write_plan(suite, suite_dir)
    return suite, suite_dir


def test_the_worker_waits_for_the_starting_run_and_takes_its_final_checkpoint(tmp_path, capsys):
    import torch

    suite, suite_dir = _prepared(tmp_path)
    run = suite.runs[-1]
    source = RunDir(suite_dir / starting_run(run.cfg_options))
    source.update_status(state="running")
    waits = []

    def finish_source(seconds: float) -> None:  # the starting run finishes while the worker waits
        waits.append(seconds)
        source.work_dir.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": {}, "meta": {}}, source.work_dir / "iter_3.pth")
        (source.work_dir / "last_checkpoint").write_text(str(source.work_dir / "iter_3.pth"))
        source.update_status(state="done")

    options = with_checkpoint(run.cfg_options, suite_dir, sleep=finish_source)
    assert len(waits) == 1 and "waiting for run" in capsys.readouterr().out
    assert options["model.backbone"]["init_cfg"]["checkpoint"] == str(source.work_dir / "iter_3.pth")
    assert options["model.backbone"]["init_cfg"]["prefix"] == "backbone."

    source.update_status(state="failed", exit_reason="non-finite loss: loss is nan at iteration 2")
    with pytest.raises(RuntimeError, match=r"starts from, .*, failed: non-finite loss"):
        with_checkpoint(run.cfg_options, suite_dir, sleep=lambda s: None)


class _Job:
    """A submitit job (or a worker process) that ends on its second poll, with exit code 0."""

    def __init__(self, run_dir: str, ended: list[str]) -> None:
        self.run_dir, self.ended, self.polls, self.job_id, self.returncode = run_dir, ended, 0, "1", 0

    def done(self) -> bool:
        self.polls += 1
        if self.polls == 2:
            self.ended.append(Path(self.run_dir).name)
        return self.polls >= 2

    def poll(self) -> int | None:
        return 0 if self.done() else None

    def results(self) -> list[int]:
        return [0]


class _Events:
    def started(self, run_dir: RunDir) -> None:
        pass

    def finished(self, run_dir: RunDir, exit_code: int | None, duration_s: float, failure: str = "") -> None:
        pass

    def tick(self) -> None:
        pass


def _assert_started_after_their_starting_runs(suite, submissions: list[tuple[list[str], list[str]]]) -> None:
    """``submissions``: (the runs handed over at once, the runs ended before) in order."""
    sources = {run.run_id: starting_run(run.cfg_options) for run in suite.runs}
    assert sorted(run for batch, _ in submissions for run in batch) == sorted(sources)
    assert any(source is not None for source in sources.values())
    for batch, ended in submissions:
        assert all(sources[run] is None or sources[run] in ended for run in batch)


@pytest.mark.timeout(60)  # an executor that never frees the held-back runs loops for ever
def test_the_executors_hand_over_a_run_only_once_its_starting_run_has_ended(tmp_path, monkeypatch):
    """A run that starts from another would wait for it inside its worker (holding a GPU, a Slurm job):
    both executors hold it back until the starting run's worker has ended."""
    monkeypatch.setattr(executors, "POLL_S", 0.0)
    suite, suite_dir = _prepared(tmp_path)
    run_dirs = [RunDir(suite_dir / run.run_id) for run in suite.runs]

    ended: list[str] = []
    submissions: list[tuple[list[str], list[str]]] = []

    class ArrayExecutor:  # submitit's, as Slurm runs it: every run may go out at once
        def map_array(self, fn, paths):
            submissions.append(([Path(p).name for p in paths], list(ended)))
            return [_Job(p, ended) for p in paths]

    SubmititExecutor(ArrayExecutor(), max_parallel=len(run_dirs)).execute(run_dirs, _Events(), suite_dir)
    _assert_started_after_their_starting_runs(suite, submissions)
    assert submissions[0] == ([run.run_id for run in suite.runs if starting_run(run.cfg_options) is None], [])

    ended.clear()
    submissions.clear()
    local = LocalExecutor(workers=len(run_dirs), threads=1, gpus=[])
    monkeypatch.setattr(local, "prestart", lambda count=None: None)
    monkeypatch.setattr(local, "_spawn", lambda run_dir, gpu: (
        submissions.append(([run_dir.run_id], list(ended))) or _Job(str(run_dir.path), ended)))
    local.execute(run_dirs, _Events(), suite_dir)
    _assert_started_after_their_starting_runs(suite, submissions)
    independent = {run.run_id for run in suite.runs if starting_run(run.cfg_options) is None}
    assert {batch[0] for batch, ended in submissions if not ended} == independent  # at once, not in turn


def test_pending_runs_hold_back_only_runs_whose_starting_run_is_executing_here(tmp_path):
    suite, suite_dir = _prepared(tmp_path)
    by_id = {run.run_id: RunDir(suite_dir / run.run_id) for run in suite.runs}
    dependent = next(run for run in suite.runs if starting_run(run.cfg_options) is not None)
    source = by_id[starting_run(dependent.cfg_options)]
    bare = RunDir(tmp_path / "no_run_json")  # no run.json: nothing to wait for

    alone = PendingRuns([by_id[dependent.run_id], bare])  # its starting run is not in this invocation
    assert alone.take(5, executing=0) == [by_id[dependent.run_id], bare] and not alone

    pending = PendingRuns([source, by_id[dependent.run_id]])
    assert pending.take(5, executing=0) == [source]
    assert pending.take(5, executing=1) == []
    with pytest.raises(RuntimeError, match=f"runs {dependent.run_id} wait for runs that no worker"):
        pending.take(5, executing=0)  # an executor that lost its starting run
    pending.finished(source)
    assert pending.take(5, executing=0) == [by_id[dependent.run_id]]


@pytest.mark.timeout(120)  # unrefused, the run would wait for its starting run for ever
def test_running_a_run_without_its_starting_run_is_refused(tmp_path, capsys):
    suite, suite_dir = _prepared(tmp_path)
    run = suite.runs[-1]
    code = main(["run", str(tmp_path / "linked.yaml"), "--results", str(tmp_path / "results"),
                 "--only", run.run_id])
    err = capsys.readouterr().err.strip()
    assert code != 0 and err.splitlines() == [err]
    assert f"starts from run {starting_run(run.cfg_options)}, which is neither done nor run by this" in err


def test_a_rehearsal_starts_from_the_rehearsal_of_its_starting_run(tmp_path):
    suite = load_suite(_suite(tmp_path, STARTS), build_models=False)
    rehearsal, _ = smoke_suite(suite, SmokeSettings(iters=2, train_images=4, test_images=2))
    pairs = list(zip(suite.runs, rehearsal.runs, strict=True))
    real_to_smoke = {real.run_id: smoke.run_id for real, smoke in pairs}
    for real, smoke in pairs:
        source = starting_run(real.cfg_options)
        if source is not None:
            assert starting_run(smoke.cfg_options) == real_to_smoke[source]
            assert smoke.cfg.model.backbone.init_cfg["checkpoint"] == f"run:{real_to_smoke[source]}"


def test_masktrack_rcnn_starts_with_the_detector_weights_of_the_linked_mask_rcnn_run(tmp_path):
    """The shipped video suite's entry, end to end through mmengine's Pretrained init: MaskTrack R-CNN's
    detector holds the per-frame Mask R-CNN's weights (checkpoint keys `detector.*`) before training."""
    import torch
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    from mnc_bench.config_loading import load_config

    register_all_modules()
    suite = load_suite("video_consistency", seeds=[0], build_models=False)
    masktrack = next(run for run in suite.runs if run.config == MASKTRACK)
    source = next(run for run in suite.runs if run.config == MASK_RCNN_LINKED)
    assert starting_run(masktrack.cfg_options) == source.run_id

    linked = MODELS.build(load_config(MASK_RCNN_LINKED).model)
    with torch.no_grad():
        for index, parameter in enumerate(linked.parameters()):
            parameter.fill_(0.01 * (index % 7 + 1))
    checkpoint = tmp_path / "iter_1000.pth"
    torch.save({"state_dict": linked.state_dict(), "meta": {}}, checkpoint)
    run_dir = RunDir(tmp_path / "video_consistency" / source.run_id)
    run_dir.work_dir.mkdir(parents=True)
    (run_dir.work_dir / checkpoint.name).write_bytes(checkpoint.read_bytes())
    (run_dir.work_dir / "last_checkpoint").write_text(str(run_dir.work_dir / checkpoint.name))
    run_dir.file("run.json").write_text(json.dumps({}))
    run_dir.update_status(state="done")

    options = with_checkpoint(masktrack.cfg_options, run_dir.path.parent, sleep=lambda s: None)
    model = MODELS.build(load_config(MASKTRACK, options).model)
    model.init_weights()
    started = model.detector.state_dict()
    expected = {key[len("detector."):]: value for key, value in linked.state_dict().items()}
    assert started.keys() == expected.keys()
    assert all(torch.equal(started[key], expected[key]) for key in expected)
    assert not torch.equal(model.track_head.embed_head.fcs[0].weight,
                           torch.full_like(model.track_head.embed_head.fcs[0].weight, 0.01))
