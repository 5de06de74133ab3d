"""Shared fixtures: a tiny shapes dataset and tiny shapes clips generated once per test session, suite files
over it, the CLI
started as a subprocess (optionally stopping at a chosen point, to be killed there), finished run directories,
report inputs, a tiny MNC cascade and the options of tiny trainings."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mnc_bench.models.mnc.window_kernels import COMPILE_ENV
from mnc_bench.suites.rundir import RunDir

REPO = Path(__file__).resolve().parents[1]
MASK_RCNN_SHAPES = "configs/mask_rcnn/mask_rcnn_shapes.py"
# MNC's fused RoI pooling kernels run eagerly in tests (the same functions; compiling them for each tiny test
# model would take minutes): test_compiled_kernels_equal_the_eager_ones checks the compiled ones.
os.environ.setdefault(COMPILE_ENV, "0")
# `make test` runs one pytest-xdist worker per core. Each worker, and every process it starts, gets its share
# of the cores: torch's OpenMP threads wait by spinning, so workers that each used every core would slow
# each other down.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    import torch

    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="session")
def shapes_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small shapes dataset (16 train, 8 val, 128 px) in COCO layout; treat it as read-only."""
    # Imported here: the GPU tier's torch-only half runs where only torch (no pycocotools) is installed.
    from mnc_bench.data.synthetic import ShapesConfig, write_shapes_dataset

    root = tmp_path_factory.mktemp("shapes") / "shapes"
    write_shapes_dataset(root, num_train=16, num_val=8, config=ShapesConfig(image_size=128, seed=0),
                         workers=1)
    return root


@pytest.fixture(scope="session")
def tiny_videos():
    """The clip settings of :func:`video_dataset` (4-6 frames at 64 px, up to 4 objects, seed 3)."""
    from mnc_bench.data.synthetic import ShapesConfig
    from mnc_bench.data.video import VideoConfig

    return VideoConfig(shapes=ShapesConfig(image_size=64, seed=3, max_objects=4), min_frames=4, max_frames=6)


@pytest.fixture(scope="session")
def video_dataset(tmp_path_factory: pytest.TempPathFactory, tiny_videos) -> Path:
    """6 train and 3 val clips in the layout of `mnc-bench data synth-video`; treat it as read-only."""
    from mnc_bench.data.video import write_video_dataset

    root = tmp_path_factory.mktemp("videos") / "videos"
    write_video_dataset(root, num_train=6, num_val=3, config=tiny_videos, workers=1)
    return root


@pytest.fixture()
def repo_cwd(monkeypatch: pytest.MonkeyPatch) -> Path:
    """The checkout as working directory: config paths in suites are relative to it."""
    monkeypatch.chdir(REPO)
    return REPO


# ---- report inputs -----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def build_results() -> Callable[[Path, Path], Any]:
    """``build_results(root, shapes_dataset)``: a realistic results tree of six suites under ``root/results``,
    built without training (see ``report_fixtures``); returns the collected table of every run."""
    from report_fixtures import build_results as build

    return build


# ---- a tiny MNC cascade ------------------------------------------------------------------------------------


def _tiny_mnc_kit() -> SimpleNamespace:
    """The tiny cascade's parts (built here, so that torch is imported only by the tests that use them)."""
    import torch
    from torch import nn

    from mnc_bench.models.mnc import ClassStage, InstanceTargets, MaskStage, MNCCascade, RoISampling, RoIWarp

    IMAGE = 64
    CHANNELS = 8
    NUM_CLASSES = 3


    class TinyBackbone(nn.Module):
        """Two-level features from a 64 x 64 image (strides 4 and 8): the cascade's inputs carry gradient."""

        def __init__(self):
            super().__init__()
            self.conv4 = nn.Conv2d(3, CHANNELS, 4, stride=4)
            self.conv8 = nn.Conv2d(CHANNELS, CHANNELS, 2, stride=2)

        def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
            level0 = torch.relu(self.conv4(images))
            return [level0, torch.relu(self.conv8(level0))]


    def make_cascade(num_stages: int = 3, labels: str = "box", **kwargs) -> MNCCascade:
        return MNCCascade(
            roi_warp=RoIWarp(featmap_strides=[4, 8], output_size=8, finest_scale=16.0),
            mask_stage=MaskStage(in_channels=CHANNELS, warp_size=8, mask_size=6, hidden_dim=16),
            class_stage=ClassStage(
                in_channels=CHANNELS, num_classes=NUM_CLASSES, pooled_size=2, fc_dim=16, num_fcs=2,
                labels=labels
            ),
            num_stages=num_stages,
            sampling=RoISampling(num_rois=16, fg_fraction=0.25),
            **kwargs,
        )


    def _target(boxes: list[list[float]], labels: list[int]) -> InstanceTargets:
        masks = torch.zeros(len(boxes), IMAGE, IMAGE, dtype=torch.bool)
        for mask, (x1, y1, x2, y2) in zip(masks, boxes):
            mask[int(y1) + 2 : int(y2) - 2, int(x1) + 1 : int(x2) - 1] = True
        return InstanceTargets(
            boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            labels=torch.tensor(labels, dtype=torch.long),
            masks=masks,
        )


    def make_batch(seed: int = 0):
        """Three images with 2, 0 and 1 objects; proposals jittered around the objects plus random boxes."""
        generator = torch.Generator().manual_seed(seed)
        images = torch.rand(3, 3, IMAGE, IMAGE, generator=generator)
        targets = [
            _target([[4, 6, 30, 28], [30, 30, 60, 58]], [1, 3]),
            _target([], []),
            _target([[10, 12, 50, 40]], [2]),
        ]
        proposals = []
        for target in targets:
            noise = torch.randn(6 * len(target.boxes), 4, generator=generator) * 2
            around = target.boxes.repeat(6, 1) + noise
            corners = torch.rand(10, 2, generator=generator) * 40
            random = torch.cat((corners, corners + 8 + torch.rand(10, 2, generator=generator) * 20), dim=1)
            proposals.append(torch.cat((around, random)).requires_grad_())
        return images, proposals, targets

    return SimpleNamespace(IMAGE=IMAGE, CHANNELS=CHANNELS, NUM_CLASSES=NUM_CLASSES, TinyBackbone=TinyBackbone,
                           make_cascade=make_cascade, make_batch=make_batch)


@pytest.fixture(scope="session")
def tiny_mnc() -> SimpleNamespace:
    """A cascade small enough to train in milliseconds: ``IMAGE`` (64 px), ``NUM_CLASSES`` (3), ``CHANNELS``,
    ``TinyBackbone()`` (two feature levels, strides 4 and 8), ``make_cascade(num_stages=3, labels="box",
    **kwargs)`` and ``make_batch(seed=0)`` (three images with 2, 0 and 1 objects, their proposals and
    targets)."""
    return _tiny_mnc_kit()


# ---- training on the shapes fixture ------------------------------------------------------------------------


def _fast_options(root: Path, iters: int = 2, val: bool = True) -> list[str]:
    """Tiny runs on the 16/8-image fixture: small batches, few detections to paste, checkpoint every iter."""
    return [
        f"data_root={root}",
        f"train_cfg.max_iters={iters}",
        f"train_cfg.val_interval={iters}",
        f"train_cfg.val_begin={1 if val else 10_000}",  # else mmengine validates after the last iteration
        "train_dataloader.batch_size=2",
        "default_hooks.logger.interval=1",
        "default_hooks.checkpoint.interval=1",
        "default_hooks.checkpoint.max_keep_ckpts=5",
        "model.test_cfg.rcnn.score_thr=0.0",
        "model.test_cfg.rcnn.max_per_img=10",
    ]


def _check_results_file(path: Path, ann_file: Path) -> tuple[list[dict], float]:
    """The records (checked field by field) and the mask AP pycocotools gives the file as it is."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    records = json.loads(path.read_text())
    assert isinstance(records, list) and records
    gt = COCO(str(ann_file))
    for record in records[:50]:
        assert set(record) >= {"image_id", "category_id", "score", "bbox", "segmentation"}
        assert isinstance(record["segmentation"]["counts"], str)
        assert len(record["bbox"]) == 4 and record["bbox"][2] >= 0 and record["bbox"][3] >= 0
        assert record["category_id"] in gt.getCatIds()
    detections = gt.loadRes(str(path))  # pycocotools accepts the file as it is
    evaluator = COCOeval(gt, detections, "segm")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return records, float(evaluator.stats[0])


@pytest.fixture(scope="session")
def fast_options() -> Callable[..., list[str]]:
    """``fast_options(data_root, iters=2, val=True)``: --cfg-options for tiny runs on the shapes fixture."""
    return _fast_options


@pytest.fixture(scope="session")
def check_results_file() -> Callable[[Path, Path], tuple[list[dict], float]]:
    """``check_results_file(predictions, ann_file)``: the records (checked field by field) and the mask AP
    pycocotools gives the results file as it is."""
    return _check_results_file


# ---- suite files -------------------------------------------------------------------------------------------


def _write_suite(path: Path, data_root: Path, cfg_options: Mapping[str, Any], *, seeds: Iterable[int] = (0,),
                 extra: Mapping[str, Any] | None = None) -> Path:
    import yaml

    suite = {"base": MASK_RCNN_SHAPES, "seeds": list(seeds),
             "cfg_options": {"data_root": f"{data_root}/", **cfg_options}, **(extra or {})}
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


@pytest.fixture()
def write_suite() -> Callable[..., Path]:
    """``write_suite(path, data_root, cfg_options, *, seeds=(0,), extra=None)``: a suite over Mask R-CNN on
    the shapes config reading ``data_root``; ``extra`` adds top-level keys (grid, metrics...)."""
    return _write_suite


@pytest.fixture()
def tiny_suite(tmp_path: Path, shapes_dataset: Path) -> Callable[..., Path]:
    """``tiny_suite(*, name="tiny", iters=3, seeds=(0, 1, 2), extra="", log_interval=1)``: a Mask R-CNN
    suite file in ``tmp_path`` on the shapes fixture that checkpoints every iteration (for the kill-and-resume
    tests); ``extra`` is YAML appended."""

    def make(*, name: str = "tiny", iters: int = 3, seeds: Iterable[int] = (0, 1, 2), extra: str = "",
             log_interval: int = 1) -> Path:
        path = _write_suite(tmp_path / f"{name}.yaml", shapes_dataset, {
            "train_cfg.max_iters": iters,
            "train_dataloader.batch_size": 2,
            "default_hooks.logger.interval": log_interval,
            "default_hooks.checkpoint.interval": 1,
            "default_hooks.checkpoint.max_keep_ckpts": 5,
            "model.test_cfg.rcnn.max_per_img": 10,
            "model.test_cfg.rcnn.score_thr": 0.0,  # every run predicts, however little it trained
        }, seeds=seeds)
        if extra:
            path.write_text(path.read_text() + textwrap.dedent(extra))
        return path

    return make


# ---- finished runs -----------------------------------------------------------------------------------------


def _finish_run(run_dir: RunDir) -> None:
    run_dir.work_dir.mkdir(parents=True, exist_ok=True)
    (run_dir.work_dir / "iter_3.pth").write_bytes(b"weights of " + run_dir.run_id.encode())
    run_dir.write_json("metrics.json", {"coco/segm/AP": 0.25, "coco/bbox/AP": 0.5})
    run_dir.write_json("predictions.json", [])
    with open(run_dir.file("log.txt"), "a", encoding="utf-8") as log:
        log.write("=== done\n")
    run_dir.update_status(state="done", started="2026-01-01T00:00:00+00:00",
                          ended="2026-01-01T00:10:00+00:00", exit_reason="finished", attempt=1)


@pytest.fixture()
def finish_run() -> Callable[[RunDir], None]:
    """``finish_run(run_dir)``: what a worker leaves in a finished run directory, without training (a
    checkpoint naming the run, metrics, predictions, the log's last line, a done status)."""
    return _finish_run


class FakeTraining:
    """An executor that 'trains' by writing a finished run's files (``finish_run``); records which runs it was
    given."""

    name = "fake"
    workers = 1

    def __init__(self) -> None:
        self.trained: list[str] = []

    def execute(self, run_dirs: Iterable[RunDir], events: Any, suite_dir: Path) -> None:
        for run_dir in run_dirs:
            self.trained.append(run_dir.run_id)
            events.started(run_dir)
            _finish_run(run_dir)
            events.finished(run_dir, 0, 1.0)

    def close(self) -> None:
        pass


@pytest.fixture()
def fake_training() -> type[FakeTraining]:
    """``fake_training()``: an executor that finishes each run it is given without training
    (``.trained``: their ids)."""
    return FakeTraining


# ---- the CLI as a subprocess, stopped at a chosen point ----------------------------------------------------

# Run as `python -c RUNNER POINT ARGS...` in the checkout: `mnc-bench ARGS` that stops, when it reaches
# POINT, after writing `.paused-POINT` (holding its pid) into the folder of that moment, until it is killed.
#   between: in the runner, once the first run has finished and its status is settled (the suite folder);
#   results: in each worker, once metrics.json is written, before the run is recorded done (the run folder).
RUNNER = r"""
import os, subprocess, sys, time
from pathlib import Path

point = sys.argv.pop(1)


def pause(folder):
    Path(folder, f".paused-{point}").write_text(str(os.getpid()))
    while True:
        time.sleep(60)


if point == "between":
    from mnc_bench.suites import runner

    finished = runner.RunEvents.finished

    def finished_then_pause(self, run_dir, *args, **kwargs):
        finished(self, run_dir, *args, **kwargs)
        pause(run_dir.path.parent)

    runner.RunEvents.finished = finished_then_pause
elif point == "results":
    class Popen(subprocess.Popen):  # workers (-m mnc_bench.suites.worker ARGS) start as -c WORKER ARGS
        def __init__(self, command, **kwargs):
            if "mnc_bench.suites.worker" in command:
                at = command.index("mnc_bench.suites.worker")
                command = [*command[:at - 1], "-c", __WORKER__, *command[at + 1:]]
            super().__init__(command, **kwargs)

    subprocess.Popen = Popen
elif point:
    raise SystemExit(f"unknown pause point {point!r}")

from mnc_bench.cli import main

sys.exit(main(sys.argv[1:]))
"""
WORKER = r"""
import os, sys, time
from pathlib import Path

from mnc_bench.suites import worker


def pause_then_merge(work_dir):
    Path(work_dir).parent.joinpath(".paused-results").write_text(str(os.getpid()))
    while True:
        time.sleep(60)


worker.merge_scalars = pause_then_merge  # called right after metrics.json is written
sys.exit(worker.main())
"""


class SuiteCli:
    """``mnc-bench run`` in a subprocess of its own, as a user starts it."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def start(self, suite: Path, results: Path, *args: str, pause: str = "") -> subprocess.Popen:
        """Start ``mnc-bench run SUITE --results RESULTS ARGS``; ``pause``: where to stop (see RUNNER)."""
        script = RUNNER.replace("__WORKER__", repr(WORKER))
        process = subprocess.Popen([sys.executable, "-c", script, pause, "run", str(suite), "--results",
                                    str(results), *args], cwd=REPO, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        self.started.append(process)
        return process

    def finish(self, suite: Path, results: Path, *args: str) -> str:
        """Run the suite to its end; its output (the exit code must be 0)."""
        process = self.start(suite, results, *args)
        out, _ = process.communicate(timeout=1800)
        assert process.returncode == 0, out
        return out

    @staticmethod
    def wait_for(predicate: Callable[[], bool], timeout: float = 900.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.2)

    def kill(self, process: subprocess.Popen, run_dirs: list[RunDir]) -> None:
        """SIGKILL the runner; its workers die with it (PR_SET_PDEATHSIG): no run stays held."""
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        self.wait_for(lambda: not any(run_dir.is_live() for run_dir in run_dirs), 30, "the workers to die")

    @staticmethod
    def run_dirs(results: Path, name: str = "tiny") -> list[RunDir]:
        """The run directories of suite ``name``'s plan, in plan order."""
        suite_dir = results / name
        plan = json.loads((suite_dir / "suite.json").read_text())["run_ids"]
        return [RunDir(suite_dir / run_id) for run_id in plan]


@pytest.fixture()
def suite_cli() -> Iterator[SuiteCli]:
    """Runners a test leaves running (it failed while waiting) are killed, and their workers with them."""
    cli = SuiteCli()
    yield cli
    for process in cli.started:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=30)
