"""The shared train/test path: every model trains 2 iterations and writes a COCO results file; resume;
load_from; --deterministic; --out beside another evaluator."""

from __future__ import annotations

import copy
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mmcv.ops")

import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402
from mmengine.registry import HOOKS  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402

from mnc_bench.checkpoints import allow_mmengine_checkpoint_globals  # noqa: E402
from mnc_bench.cli import main  # noqa: E402
from mnc_bench.config_loading import parse_cfg_options  # noqa: E402
from mnc_bench.errors import UserError  # noqa: E402
from mnc_bench.gpu import task_device  # noqa: E402
from mnc_bench.training import evaluate_checkpoint, train  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
MASK_RCNN = CONFIGS / "mask_rcnn" / "mask_rcnn_shapes.py"
PANET = CONFIGS / "panet" / "panet_shapes.py"
MNC = CONFIGS / "mnc" / "mnc_3stage_shapes.py"
MNC_5 = CONFIGS / "mnc" / "mnc_5stage_shapes.py"


def _printed_metric(printed: str, key: str) -> float:
    return float(re.search(rf"^{re.escape(key)} (\S+)$", printed, re.MULTILINE)[1])


# The fast tier keeps MNC (the model this project adds); Mask R-CNN and PANet take the same CLI path and run
# in CI's slow tier (the fast tier's Mask R-CNN checkpoint fixture also trains through it).
@pytest.mark.parametrize("config", [pytest.param(MASK_RCNN, marks=pytest.mark.slow),
                                    pytest.param(PANET, marks=pytest.mark.slow), MNC], ids=lambda p: p.stem)
def test_two_iterations_and_a_test_pass_through_the_cli(config, shapes_dataset, tmp_path, capsys,
                                                        fast_options, check_results_file):
    work = tmp_path / "work"
    # 50 proposals per test image instead of 300: the path is under test, not the scores
    options = [*fast_options(shapes_dataset), "model.test_cfg.rpn.max_per_img=50"]
    code = main(["train", str(config), "--work-dir", str(work), "--seed", "3", "--cfg-options", *options])
    printed = capsys.readouterr().out
    assert code == 0 and "coco/segm/AP " in printed and "coco/bbox/AP " in printed and "iter_2.pth" in printed
    out = tmp_path / "pred.json"
    code = main(["test", str(config), str(work / "iter_2.pth"), "--out", str(out), "--work-dir", str(work),
                 "--cfg-options", *options])
    printed = capsys.readouterr().out
    assert code == 0 and f"predictions {out}" in printed
    val_ann = shapes_dataset / "annotations" / "instances_val.json"
    records, file_ap = check_results_file(out, val_ann)
    assert {r["image_id"] for r in records} <= set(COCO(str(val_ann)).getImgIds())
    # The file holds what the test scored: pycocotools on it gives the printed mask AP (4 decimals).
    assert file_ap == pytest.approx(_printed_metric(printed, "coco/segm/AP"), abs=5e-5)
    # --seed reached mmengine's randomness settings.
    checkpoint = torch.load(work / "iter_2.pth", map_location="cpu", weights_only=False)
    assert checkpoint["meta"]["seed"] == 3


def _train_log(work: Path) -> str:
    logs = sorted(work.glob("*/*.log"))
    return logs[-1].read_text()


@pytest.mark.slow
def test_two_cpu_processes_train_and_test_as_one_run_under_torchrun(shapes_dataset, tmp_path, fast_options,
                                                                    check_results_file):
    """The multi-GPU path (mmengine's pytorch launcher: distributed sampler, DDP over every parameter of MNC,
    checkpoints from rank 0, test results gathered from every rank) on two CPU processes joined by gloo."""
    work, out = tmp_path / "work", tmp_path / "pred.json"

    def torchrun(*args: str) -> str:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                   "-m", "mnc_bench.cli", *args, "--launcher", "pytorch", "--work-dir", str(work),
                   "--cfg-options", *fast_options(shapes_dataset)]
        done = subprocess.run(command, cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="1"),
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
        return done.stdout

    printed = torchrun("train", str(MNC))
    assert printed.count("coco/segm/AP ") == 1  # rank 0 prints the metrics both ranks share
    log = _train_log(work)
    assert "Distributed training: True" in log and "GPU number: 2" in log  # mmengine's count of processes
    assert sorted(path.name for path in work.glob("iter_*.pth")) == ["iter_1.pth", "iter_2.pth"]
    torchrun("test", str(MNC), str(work / "iter_2.pth"), "--out", str(out))
    val_ann = shapes_dataset / "annotations" / "instances_val.json"
    records, _ = check_results_file(out, val_ann)
    # score threshold 0: every image has detections, and each rank scored half of the images
    assert {record["image_id"] for record in records} == set(COCO(str(val_ann)).getImgIds())


class _RecordOptimizerState(Hook):
    """Keeps the optimizer state as training starts, i.e. right after a resume loaded it."""

    states: list[dict] = []

    def before_train(self, runner) -> None:
        self.states.append(copy.deepcopy(runner.optim_wrapper.optimizer.state_dict()["state"]))


HOOKS.register_module(module=_RecordOptimizerState, force=True)


def _same_optimizer_state(a: dict, b: dict) -> bool:
    """Same parameters, and for each the same buffers (AdamW: step, exp_avg, exp_avg_sq), bit for bit."""
    return a.keys() == b.keys() and all(
        a[index].keys() == b[index].keys()
        and all(torch.equal(torch.as_tensor(a[index][name]), torch.as_tensor(b[index][name]))
                for name in a[index])
        for index in a)


@pytest.mark.slow
def test_resume_continues_from_the_saved_iteration(shapes_dataset, tmp_path, fast_options):
    work = tmp_path / "work"
    recording = {"custom_hooks": [dict(type="_RecordOptimizerState")]}
    _RecordOptimizerState.states.clear()
    train(MASK_RCNN, work_dir=work,
          cfg_options={**parse_cfg_options(fast_options(shapes_dataset, iters=2, val=False)), **recording})
    assert (work / "iter_2.pth").is_file()
    saved = torch.load(work / "iter_2.pth", map_location="cpu", weights_only=False)
    result = train(MASK_RCNN, work_dir=work, resume=True,
                   cfg_options={**parse_cfg_options(fast_options(shapes_dataset, iters=3, val=False)),
                                **recording})
    log = _train_log(work)
    assert "resumed" in log.lower()
    assert "Iter(train) [3/3]" in log and "Iter(train) [1/3]" not in log and "Iter(train) [2/3]" not in log
    assert result.checkpoint == work / "iter_3.pth"
    allow_mmengine_checkpoint_globals()
    resumed = torch.load(result.checkpoint, map_location="cpu")  # weights_only=True, torch's default
    assert resumed["meta"]["iter"] == 3
    # The optimizer state came along: training started from exactly the saved buffers (a fresh start has
    # none), and they moved on from there.
    assert resumed["optimizer"]["state"] and saved["optimizer"]["state"]
    fresh, loaded = _RecordOptimizerState.states
    assert fresh == {} and _same_optimizer_state(loaded, saved["optimizer"]["state"])
    assert resumed["optimizer"]["state"].keys() == loaded.keys()
    assert all(not torch.equal(resumed["optimizer"]["state"][index]["exp_avg"], loaded[index]["exp_avg"])
               for index in loaded if loaded[index]["exp_avg"].any())
    # An explicit checkpoint path resumes too.
    other = tmp_path / "other"
    train(MASK_RCNN, work_dir=other, resume_from=work / "iter_2.pth",
          cfg_options=fast_options(shapes_dataset, iters=3, val=False))
    assert (other / "iter_3.pth").is_file() and not (other / "iter_1.pth").exists()


def test_load_from_initialises_weights_and_restarts_the_count(shapes_dataset, tmp_path, fast_options):
    work = tmp_path / "work"
    first = train(MASK_RCNN, work_dir=work, cfg_options=fast_options(shapes_dataset, iters=1, val=False))
    again = tmp_path / "again"
    train(MASK_RCNN, work_dir=again, load_from=first.checkpoint,
          cfg_options=[*fast_options(shapes_dataset, iters=1, val=False), "optim_wrapper.optimizer.lr=0.0"])
    assert "Load checkpoint from" in _train_log(again)
    before = torch.load(first.checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    after = torch.load(again / "iter_1.pth", map_location="cpu", weights_only=False)["state_dict"]
    # lr 0: the conv weights are exactly the loaded ones (BN running statistics still update).
    name = "backbone.layer1.0.conv1.weight"
    assert torch.equal(before[name], after[name])


class _Sneaky:
    def __reduce__(self):
        from mmengine.logging.history_buffer import HistoryBuffer

        return getattr, (HistoryBuffer, "__init__")


def test_checkpoint_allowlist_does_not_open_getattr(tmp_path):
    allow_mmengine_checkpoint_globals()
    path = tmp_path / "sneaky.pth"
    torch.save({"x": _Sneaky()}, path)
    with pytest.raises(pickle.UnpicklingError, match="only HistoryBuffer's statistics methods"):
        torch.load(path)


def test_resume_without_a_checkpoint_is_a_user_error(shapes_dataset, tmp_path, fast_options):
    with pytest.raises(UserError, match="no checkpoint to resume"):
        train(MASK_RCNN, work_dir=tmp_path / "empty", resume=True, cfg_options=fast_options(shapes_dataset))


@pytest.fixture(scope="module")
def mask_rcnn_checkpoint(shapes_dataset, tmp_path_factory, fast_options) -> Path:
    """Mask R-CNN after one iteration on the fixture dataset."""
    work = tmp_path_factory.mktemp("mask_rcnn_one_iteration")
    return train(MASK_RCNN, work_dir=work,
                 cfg_options=fast_options(shapes_dataset, iters=1, val=False)).checkpoint


def test_a_checkpoint_of_another_model_is_refused(shapes_dataset, mask_rcnn_checkpoint, fast_options):
    with pytest.raises(UserError, match="does not fit the model"):
        evaluate_checkpoint(PANET, mask_rcnn_checkpoint, cfg_options=fast_options(shapes_dataset))


def test_out_beside_another_evaluator_adds_a_coco_only_metric_of_ours(shapes_dataset, mask_rcnn_checkpoint,
                                                                      tmp_path, fast_options,
                                                                      check_results_file):
    val_ann = shapes_dataset / "annotations" / "instances_val.json"
    mmdet_metric = dict(type="CocoMetric", ann_file=str(val_ann), metric=["segm"])
    out = tmp_path / "pred.json"
    result = evaluate_checkpoint(MASK_RCNN, mask_rcnn_checkpoint, out=out, work_dir=tmp_path / "work",
                                 cfg_options={**parse_cfg_options(fast_options(shapes_dataset)),
                                              "test_evaluator": [mmdet_metric]})
    assert "coco/segm_mAP" in result.metrics  # mmdet's metric still ran
    ours = {key for key in result.metrics if not key.startswith("coco/segm_")}
    assert "coco/segm/AP" in ours and not any(key.startswith(("voc_", "proposals/")) for key in ours)
    assert result.predictions == out
    _, file_ap = check_results_file(out, val_ann)
    assert file_ap == pytest.approx(result.metrics["coco/segm/AP"], abs=1e-9)


def _logged_losses(work: Path) -> list[str]:
    """The total loss of every logged training step, as the run's log prints it (mmengine's visualizer, which
    writes scalars.json, is a process-wide instance that stays with the first run's work dir)."""
    return re.findall(r"Iter\(train\) .*  loss: (\S+)", _train_log(work))


def test_deterministic_on_cuda_fixes_cublas_and_warns_where_torch_has_no_deterministic_kernel(
        shapes_dataset, tmp_path, fast_options, monkeypatch, capsys):
    # mmengine's randomness.deterministic turns on torch's deterministic algorithms, which on CUDA raise at
    # the first backward of grid_sample (MNC's RoI warp); the training must start with the cuBLAS workspace
    # fixed and those ops warning instead.
    from mnc_bench import training

    seen = {}

    class Runner:
        message_hub = type("Hub", (), {"log_scalars": {}})()

        def train(self):
            seen["cublas"] = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
            seen["warn_only"] = torch.is_deterministic_algorithms_warn_only_enabled()

    def build(cfg):
        torch.use_deterministic_algorithms(True)  # what mmengine's set_random_seed(deterministic=True) does
        return Runner()

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(training, "training_device", lambda: "cuda")
    monkeypatch.setattr(training, "require_mmcv_ops_for", lambda device, what: None)  # this CPU-only mmcv
    monkeypatch.setattr(training, "_build_runner", build)
    enabled_before = torch.are_deterministic_algorithms_enabled()
    try:
        train(MNC, work_dir=tmp_path / "work", deterministic=True,
              cfg_options=parse_cfg_options(fast_options(shapes_dataset, iters=1, val=False)))
    finally:
        torch.use_deterministic_algorithms(enabled_before)
    assert seen == {"cublas": ":4096:8", "warn_only": True}
    note = "--deterministic on CUDA: cuDNN and cuBLAS (CUBLAS_WORKSPACE_CONFIG=:4096:8) deterministic"
    assert note in capsys.readouterr().err


@pytest.mark.parametrize(("launcher", "variable"), [("pytorch", "LOCAL_RANK"), ("slurm", "SLURM_LOCALID")])
def test_a_process_bound_to_its_own_gpu_is_launched_on_it(launcher, variable, shapes_dataset, tmp_path,
                                                          fast_options, monkeypatch):
    # A cluster that binds one GPU per task (Slurm's --gpus-per-task): the process of local rank 1 sees one
    # GPU, cuda:0, and mmengine's launchers would call torch.cuda.set_device(1) ("invalid device ordinal").
    from mnc_bench import training

    seen = {}

    class Runner:
        message_hub = type("Hub", (), {"log_scalars": {}})()

        def train(self):
            pass

    def build(cfg):
        seen["device"] = os.environ[variable]  # what mmengine's launcher hands torch.cuda.set_device
        return Runner()

    monkeypatch.setenv(variable, "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(training, "training_device", lambda: "cuda")
    events = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: events.append(("current device", index)))
    # mmcv's ops are probed on the process's own GPU, made current first: no CUDA context on the first GPU
    monkeypatch.setattr(training, "require_mmcv_ops_for",
                        lambda device, what: events.append(("probe", device)))
    monkeypatch.setattr(training, "_build_runner", build)
    train(MNC, work_dir=tmp_path / "work", launcher=launcher,
          cfg_options=parse_cfg_options(fast_options(shapes_dataset, iters=1, val=False)))
    assert seen == {"device": "0"}
    assert events == [("current device", 0), ("probe", "cuda:0")]


@pytest.mark.parametrize(("local_rank", "visible", "device"), [(1, 2, 1), (3, 8, 3), (1, 1, 0), (0, 1, 0)])
def test_a_process_takes_its_local_ranks_gpu_or_the_only_one_it_sees(local_rank, visible, device):
    assert task_device(local_rank, visible) == device


def test_a_process_seeing_some_of_the_gpus_but_not_its_own_is_refused():
    with pytest.raises(UserError, match="the process of local rank 3 sees 2 GPUs"):
        task_device(3, 2)


@pytest.mark.slow
def test_deterministic_runs_repeat_bit_for_bit(shapes_dataset, tmp_path, fast_options):
    enabled_before = torch.are_deterministic_algorithms_enabled()
    runs = []
    try:
        for name in ("first", "second"):
            torch.use_deterministic_algorithms(False)
            work = tmp_path / name
            assert main(["train", str(MASK_RCNN), "--deterministic", "--seed", "7", "--work-dir", str(work),
                         "--cfg-options", *fast_options(shapes_dataset, iters=2, val=False)]) == 0
            assert torch.are_deterministic_algorithms_enabled()  # randomness.deterministic reached mmengine
            checkpoint = torch.load(work / "iter_2.pth", map_location="cpu", weights_only=False)
            saved = Config.fromstring(checkpoint["meta"]["cfg"], ".py")  # the config text mmengine saved
            assert saved.randomness == dict(deterministic=True, seed=7)
            runs.append((checkpoint["state_dict"], _logged_losses(work)))
    finally:
        torch.use_deterministic_algorithms(enabled_before)
    (weights, losses), (weights_again, losses_again) = runs
    assert len(losses) == 2 and losses == losses_again
    assert weights.keys() == weights_again.keys()
    assert all(torch.equal(weights[name], weights_again[name]) for name in weights)


# Floors 0.075-0.1 below the lowest shapes-val mask AP of 3 seeds after the default schedule
# (mnc_vs_successors, README "Results on shapes": Mask R-CNN 0.385, PANet 0.389, MNC-3 0.355, MNC-5 0.499), so
# seed noise passes and a regression that stops a model learning does not.
DEFAULT_SCHEDULE_MASK_AP_FLOOR = {MASK_RCNN: 0.30, PANET: 0.28, MNC: 0.28, MNC_5: 0.40}


@pytest.mark.long
@pytest.mark.timeout(3 * 3600)
@pytest.mark.parametrize("config", list(DEFAULT_SCHEDULE_MASK_AP_FLOOR), ids=lambda p: p.stem)
def test_default_shapes_schedule_learns(config, tmp_path_factory):
    """The default schedule (1000 iterations) on the default synthetic data, generated on the fly: 25-60 min
    per model on one CPU core."""
    root = tmp_path_factory.mktemp("shapes_default") / "shapes"
    result = train(config, work_dir=tmp_path_factory.mktemp("work"), cfg_options=[f"data_root={root}"])
    assert result.metrics["coco/segm/AP"] > DEFAULT_SCHEDULE_MASK_AP_FLOOR[config]
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_two_runs_of_one_config_within_a_second_keep_their_own_logs(shapes_dataset, tmp_path, monkeypatch,
                                                                    fast_options):
    """mmengine hands out its logger by name, '<experiment>_<timestamp to the second>', and its visualizer by
    the config's name ('visualizer' in mmdet's configs): runs in one process must not share either (the second
    run's log, scalars and config would land in the first's work dir, or in an earlier test's)."""
    import mmengine.runner.runner as mmengine_runner

    monkeypatch.setattr(mmengine_runner.time, "strftime", lambda *args: "20260101_000000")
    for name in ("first", "second"):
        assert main(["train", str(MASK_RCNN), "--work-dir", str(tmp_path / name),
                     "--cfg-options", *fast_options(shapes_dataset, iters=2, val=False)]) == 0
    for name in ("first", "second"):
        assert len(_logged_losses(tmp_path / name)) == 2, name
        (vis_data,) = (tmp_path / name).glob("*/vis_data")
        scalars = [line for line in (vis_data / "scalars.json").read_text().splitlines() if '"loss"' in line]
        assert len(scalars) == 2 and (vis_data / "config.py").is_file(), name
