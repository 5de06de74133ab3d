"""A corrupted test pass of one checkpoint: its test images clean and under each (corruption, severity),
scored with COCO AP for masks and boxes, summarised as mPC and rPC (:mod:`mnc_bench.evaluation.robustness`).

The model is built and loaded once (:func:`mnc_bench.training.build_test_runner`); each condition is one
mmengine ``TestLoop`` at batch 1 over the same images, with ``CorruptImage`` right after the image is loaded.
A subset of ``images`` takes the first images of the test annotation file, in file order, and scores them
against a ground truth cut to those images. Test time only: nothing is trained on corrupted images.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from mnc_bench.errors import UserError
from mnc_bench.evaluation.corruptions import DEFAULT_SEED, SEVERITIES, check_severities, resolve_corruptions
from mnc_bench.evaluation.robustness import PassSettings, RobustnessRecord
from mnc_bench.io import write_json
from mnc_bench.registration import CORRUPT_TRANSFORM, METRIC_NAME

# "full" is the benchmark: 15 corruptions x 5 severities on every test image. "quick" fits a quiet hour for
# the 8 shapes models on 2 CPU cores (docs/analysis.md has the measurement): every corruption at severities 1,
# 3 and 5 on the first 50 test images.
SUBSETS: dict[str, dict[str, Any]] = {
    "full": dict(severities=SEVERITIES, images=None),
    "quick": dict(severities=(1, 3, 5), images=50),
}
ProgressCallback = Callable[[str, int, int], None]  # (condition label, conditions done, conditions in all)


@dataclass(frozen=True)
class PassRequest:
    """What the user asked for; :meth:`settings` checks it."""

    corruptions: Sequence[str] = ("all",)
    severities: Sequence[int] | None = None
    images: int | None = None
    subset: str = "full"
    seed: int = DEFAULT_SEED

    def settings(self) -> PassSettings:
        if self.subset not in SUBSETS:
            raise UserError(f"--subset: unknown subset {self.subset!r}; choose from {', '.join(SUBSETS)}")
        preset = SUBSETS[self.subset]
        images = self.images if self.images is not None else preset["images"]
        if images is not None and (isinstance(images, bool) or not isinstance(images, int) or images < 1):
            raise UserError(f"--images: expected a positive number of images, got {images!r}")
        return PassSettings(corruptions=resolve_corruptions(list(self.corruptions)),
                            severities=check_severities(list(self.severities or preset["severities"])),
                            images=images, seed=int(self.seed))


def corrupted_pass(
    config: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str],
    settings: PassSettings,
    *,
    work_dir: str | os.PathLike[str],
    cfg_options: Mapping[str, Any] | None = None,
    progress: ProgressCallback | None = None,
) -> RobustnessRecord:
    """Score ``checkpoint`` on the clean and corrupted test images of ``config`` (see the module
    docstring)."""
    from torch import get_num_threads

    from mnc_bench.training import SINGLE_IMAGE_TEST, build_test_runner

    started = time.time()
    work_dir = Path(work_dir)
    # mmengine would log every test iteration and metric of every condition: only warnings.
    options = {"log_level": "WARNING", **dict(cfg_options or {}), **SINGLE_IMAGE_TEST}
    runner = build_test_runner(config, checkpoint, work_dir=work_dir, cfg_options=options)
    loader = _plain_loader(runner.cfg.test_dataloader)
    ann_file, image_ids = _ground_truth(loader["dataset"], settings.images, work_dir)
    loader["dataset"]["ann_file"] = str(ann_file)
    evaluator = dict(type=METRIC_NAME, ann_file=str(ann_file), metric="coco", iou_type=("segm", "bbox"))
    conditions: list[tuple[str, int]] = [("clean", 0), *settings.conditions()]
    results: dict[str, dict[int, dict[str, float]]] = {}
    seconds: dict[str, float] = {}
    # This process's CPU time too: on a shared machine, the cost without the other processes.
    cpu_seconds: dict[str, float] = {}
    runner.call_hook("before_run")  # as Runner.test does: the logger hook opens its files here
    for done, (corruption, severity) in enumerate(conditions):
        label = corruption if corruption == "clean" else f"{corruption} s{severity}"
        if progress is not None:
            progress(label, done, len(conditions))
        t0, cpu0 = time.time(), time.process_time()
        metrics = _test(runner, _with_corruption(loader, corruption, severity, settings.seed), evaluator)
        seconds[label] = time.time() - t0
        cpu_seconds[label] = time.process_time() - cpu0
        results.setdefault(corruption, {})[severity] = metrics
    runner.call_hook("after_run")
    if progress is not None:
        progress("done", len(conditions), len(conditions))
    clean = results.pop("clean")[0]
    return RobustnessRecord(
        settings=settings, config=str(config), checkpoint=str(checkpoint), ann_file=str(ann_file),
        image_ids=image_ids, clean=clean, corrupted=results, seconds=time.time() - started,
        details={"threads": get_num_threads(), "seconds_per_condition": seconds,
                 "cpu_seconds_per_condition": cpu_seconds, "imagecorruptions": _version("imagecorruptions")})


def _plain_loader(test_dataloader: Mapping[str, Any]) -> dict[str, Any]:
    loader = copy.deepcopy(dict(test_dataloader))
    dataset = loader.get("dataset")
    if not isinstance(dataset, Mapping) or "pipeline" not in dataset or "ann_file" not in dataset:
        raise UserError("corrupted test pass: test_dataloader.dataset must be one dataset with an ann_file "
                        "and a pipeline (no dataset wrappers)")
    loader["dataset"] = dict(dataset)
    loader["dataset"]["pipeline"] = [dict(step) for step in dataset["pipeline"]]
    if not any(step.get("type") == "LoadImageFromFile" for step in loader["dataset"]["pipeline"]):
        raise UserError("corrupted test pass: the test pipeline has no LoadImageFromFile step to corrupt "
                        "after")
    return loader


def _ground_truth(dataset: Mapping[str, Any], images: int | None, work_dir: Path) -> tuple[Path, list[int]]:
    """The annotation file the pass reads and scores against, and its image ids: the test file itself, or its
    first ``images`` images with their annotations written to ``work_dir``."""
    from mnc_bench.data.coco_format import read_json
    from mnc_bench.preflight import dataset_files

    ann_file, _ = dataset_files(dataset)
    data = read_json(ann_file)
    if images is None or images >= len(data["images"]):
        return ann_file.resolve(), [int(image["id"]) for image in data["images"]]
    kept = data["images"][:images]
    ids = {image["id"] for image in kept}
    subset = {**data, "images": kept, "annotations": [a for a in data["annotations"] if a["image_id"] in ids]}
    path = (work_dir / f"robustness_gt_first{images}.json").resolve()
    write_json(path, subset)
    return path, [int(image["id"]) for image in kept]


def _with_corruption(loader: dict[str, Any], corruption: str, severity: int, seed: int) -> dict[str, Any]:
    if corruption == "clean":
        return loader
    loader = {**loader, "dataset": dict(loader["dataset"])}
    pipeline = list(loader["dataset"]["pipeline"])
    at = next(i for i, step in enumerate(pipeline) if step.get("type") == "LoadImageFromFile") + 1
    pipeline.insert(at, dict(type=CORRUPT_TRANSFORM, corruption=corruption, severity=severity, seed=seed))
    loader["dataset"]["pipeline"] = pipeline
    return loader


def _test(runner: Any, loader: dict[str, Any], evaluator: dict[str, Any]) -> dict[str, float]:
    from mmengine.runner import TestLoop

    # Quiet: pycocotools prints "loading annotations" for each dataset built.
    with contextlib.redirect_stdout(io.StringIO()):
        loop = TestLoop(runner, copy.deepcopy(loader), copy.deepcopy(evaluator))
    return {key: float(value) for key, value in loop.run().items()}


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return ""


def test_corrupted(
    config: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str],
    request: PassRequest,
    *,
    work_dir: str | os.PathLike[str] | None = None,
    cfg_options: Mapping[str, Any] | None = None,
    out: str | os.PathLike[str] | None = None,
) -> str:
    """``mnc-bench test CONFIG CKPT --corruptions ...``: run the pass with a progress bar, write the record to
    ``out`` (default ``WORK_DIR/robustness.json``) and return its summary as text."""
    from mnc_bench.evaluation.robustness import RECORD_FILE, write_record
    from mnc_bench.io import check_writable_output

    settings = request.settings()  # argument errors before anything is built
    if work_dir is None:
        work_dir = Path("work_dirs") / f"{Path(config).stem}_robustness"
    work_dir = Path(work_dir)
    out = Path(out) if out is not None else work_dir / RECORD_FILE
    check_writable_output(out, "--robustness-out")
    with ProgressBar() as progress:
        record = corrupted_pass(config, checkpoint, settings, work_dir=work_dir, cfg_options=cfg_options,
                                progress=progress)
    write_record(out, record)
    return format_record(record) + f"\nrecord {out}"


def format_record(record: RobustnessRecord) -> str:
    """mPC, rPC and clean AP, then AP per severity and per corruption, for masks and boxes."""
    summary, s = record.summary, record.settings
    images = f"first {len(record.image_ids)}" if s.images is not None else f"all {len(record.image_ids)}"
    severities = " ".join(map(str, s.severities))
    lines = [f"{len(s.corruptions)} corruptions x severities {severities} on {images} test images "
             f"(seed {s.seed}), {record.seconds:.0f} s",
             f"{'':<20}{'mask AP':>9}{'box AP':>9}"]

    def row(label: str, suffix: str, scale: float = 100.0) -> str:
        cells = "".join(f"{summary.get(f'robustness/{kind}/{suffix}', float('nan')) * scale:>9.1f}"
                        for kind in ("segm", "bbox"))
        return f"{label:<20}{cells}"

    lines += [row("clean (P)", "AP_clean"), row("mPC", "mPC"), row("rPC (%)", "rPC")]
    lines += [row(f"severity {sev}", f"AP@s{sev}") for sev in s.severities]
    lines += [row(name, f"AP/{name}") for name in s.corruptions]
    return "\n".join(lines)


class ProgressBar:
    """A rich progress bar over the conditions of a pass, as a :data:`ProgressCallback`."""

    def __enter__(self) -> ProgressCallback:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), transient=True)
        self._progress.start()
        self._task = None
        return self._update

    def _update(self, label: str, done: int, total: int) -> None:
        if self._task is None:
            self._task = self._progress.add_task(label, total=total)
        self._progress.update(self._task, description=label, completed=done)

    def __exit__(self, *exc: Any) -> None:
        self._progress.stop()
