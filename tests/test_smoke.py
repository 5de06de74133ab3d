"""`mnc-bench run SUITE --smoke`: every run shortened (iterations, images), full-size otherwise, in its own
results root, with a verdict per run; CI rehearses every shipped suite on the CPU, the COCO and VOC ones on
shapes drawn in their layouts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

pytest.importorskip("mmcv.ops")
from mnc_bench.cli import main  # noqa: E402
from mnc_bench.config_loading import load_config  # noqa: E402
from mnc_bench.data.layouts import COCO_CATEGORY_IDS, write_layout_dataset  # noqa: E402
from mnc_bench.errors import UserError  # noqa: E402
from mnc_bench.suites.contract import LOG_TXT  # noqa: E402
from mnc_bench.suites.rundir import list_run_dirs  # noqa: E402
from mnc_bench.suites.smoke import SmokeSettings, smoke_options, smoke_root, smoke_suite  # noqa: E402
from mnc_bench.suites.spec import load_suite  # noqa: E402
from mnc_bench.suites.start_from import starting_run  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SUITES = sorted((REPO / "configs" / "ablations").glob("*.yaml"))
FULL_SIZE = ("_coco", "_voc")  # suites of the full-size layouts: minutes per run on the CPU


def _suite_param(path: Path):
    """The shapes suites rehearse in CI's slow tier; the full-size ones (6-12 GB and 2-4 min per run on the
    CPU, up to 10 runs a suite, an hour or more in all) in the long tier, with an hour per suite (the default
    15 min stopped cascade_depth_coco after 3 of its 10 rehearsals, all of them ok)."""
    marks = [pytest.mark.long, pytest.mark.timeout(3600)] if path.stem.endswith(FULL_SIZE) else []
    return pytest.param(path, id=path.stem, marks=marks)
MNC_COCO = REPO / "configs" / "mnc" / "mnc_3stage_coco_r50.py"


def test_smoke_options_shorten_the_run_and_keep_the_rest(tmp_path):
    cfg = load_config(MNC_COCO, {"backbone_checkpoint": str(tmp_path / "missing.pth")})
    options, note = smoke_options(cfg, SmokeSettings(iters=3, train_images=5, test_images=2))
    smoke = load_config(MNC_COCO, {"backbone_checkpoint": str(tmp_path / "missing.pth"), **options})
    assert smoke.train_cfg == {"type": "IterBasedTrainLoop", "max_iters": 3, "val_interval": 3}
    assert smoke.default_hooks.checkpoint.interval == 3 and not smoke.default_hooks.checkpoint.by_epoch
    assert smoke.train_dataloader.dataset.indices == 5 and smoke.test_dataloader.dataset.indices == 2
    assert smoke.model.backbone.init_cfg.checkpoint is None and "random backbone weights" in note
    # the full-size settings stay: pipelines (image size), batch, optimizer, the model but its initial weights
    assert smoke.train_dataloader.dataset.pipeline == cfg.train_dataloader.dataset.pipeline
    assert smoke.train_dataloader.batch_size == cfg.train_dataloader.batch_size == 2
    assert smoke.optim_wrapper == cfg.optim_wrapper
    assert smoke.model.cascade == cfg.model.cascade and smoke.model.rpn_head == cfg.model.rpn_head
    weights = tmp_path / "resnet50.pth"
    weights.write_bytes(b"")
    _, note = smoke_options(load_config(MNC_COCO, {"backbone_checkpoint": str(weights)}), SmokeSettings())
    assert note == ""


def test_options_applied_twice_keep_their_delete_marker():
    """A run's options are applied to its config more than once (its worker trains, then tests): a replacing
    dict (mmengine's `_delete_`) must replace every time."""
    options = {"train_cfg": {"type": "IterBasedTrainLoop", "max_iters": 2, "_delete_": True}}
    for _ in range(2):
        assert load_config(MNC_COCO, options).train_cfg == {"type": "IterBasedTrainLoop", "max_iters": 2}


def test_smoke_runs_have_their_own_ids(shapes_dataset):
    suite = load_suite("stage3_labels", extra_options={"data_root": f"{shapes_dataset}/"}, build_models=False)
    smoke, _ = smoke_suite(suite, SmokeSettings())
    assert len(smoke.runs) == len(suite.runs)
    assert not {run.run_id for run in smoke.runs} & {run.run_id for run in suite.runs}
    assert [run.label for run in smoke.runs] == [run.label for run in suite.runs]


@pytest.mark.parametrize("settings", [dict(iters=0), dict(train_images=0)])
def test_smoke_settings_must_be_positive(settings):
    with pytest.raises(UserError, match="--smoke: "):
        SmokeSettings(**settings)


def test_smoke_options_without_smoke_are_a_one_line_error(capsys):
    assert main(["run", "demo", "--smoke-iters", "3"]) == 2
    assert capsys.readouterr().err.strip() == "error: --smoke-iters and --smoke-images go with --smoke"


@pytest.mark.parametrize("layout,files", [
    ("coco", ["annotations/instances_train2017.json", "annotations/instances_val2017.json", "train2017",
              "val2017"]),
    ("voc", ["annotations/instances_train.json", "annotations/instances_val.json", "images"]),
])
def test_tiny_datasets_in_the_coco_and_voc_layouts(layout, files, tmp_path):
    root = tmp_path / layout
    write_layout_dataset(root, layout, num_train=2, num_val=1, image_size=64)
    assert all((root / name).exists() for name in files)
    train = json.loads((root / files[0]).read_text())
    assert len(train["images"]) == 2 and train["annotations"]
    ids = [category["id"] for category in train["categories"]]
    assert ids == (list(COCO_CATEGORY_IDS) if layout == "coco" else list(range(1, 21)))
    assert {a["category_id"] for a in train["annotations"]} <= set(ids[:4])
    image_dir = root / (files[2])
    assert all((image_dir / image["file_name"]).is_file() for image in train["images"])


@pytest.mark.slow  # four shapes runs, 2 iterations each (1-3 min on 2 cores)
def test_smoke_names_the_run_with_a_bad_value(shapes_dataset, tmp_path, capsys, monkeypatch):
    """One run of the suite has a loss weight that overflows float32: it passes validation (the value is a
    valid number) and fails at its first iteration. Smoke finishes every run and names that one."""
    monkeypatch.chdir(REPO)
    suite = tmp_path / "planted.yaml"
    suite.write_text(yaml.safe_dump({
        "base": "configs/mnc/mnc_3stage_shapes.py",
        "grid": {"model.loss_weights.mask": [1.0, 1.0e40]},
        "seeds": [0],
        "cfg_options": {"data_root": f"{shapes_dataset}/"},
    }))
    results = tmp_path / "results"
    code = main(["run", str(suite), "--smoke", "--results", str(results)])
    out = capsys.readouterr().out
    verdicts = out[out.index("smoke planted: "):].splitlines()
    assert code == 1 and verdicts[0] == "smoke planted: 1 of 2 runs ok"
    good, bad = verdicts[1:]
    assert "model.loss_weights.mask=1.0," in good and good.endswith("  ok")
    assert "model.loss_weights.mask=1e+40" in bad
    assert bad.endswith("FAILED: non-finite loss: loss is inf at iteration 1 (loss_mask_s2 non-finite)")
    assert sorted(path.name for path in results.iterdir()) == ["smoke"]  # nothing in the real results
    run_dirs = [path for path in (results / "smoke" / "planted").iterdir() if (path / "run.json").is_file()]
    good_run = next(path for path in run_dirs if path.name in good)
    stats = json.loads((good_run / "run_stats.json").read_text())
    assert stats["max_iters"] == 2 and stats["batch_size"] == 8  # 2 iterations at the suite's own batch size


@pytest.fixture(scope="module")
def full_size_layouts(tmp_path_factory) -> dict[str, Path]:
    """Tiny COCO and VOC datasets at the layouts' full image sizes (800 and 600 px)."""
    roots = {}
    for layout in ("coco", "voc"):
        roots[layout] = tmp_path_factory.mktemp(layout) / layout
        write_layout_dataset(roots[layout], layout, num_train=2, num_val=1)
    return roots


def _data_root(suite: Path, request: pytest.FixtureRequest) -> Path:
    """The tiny dataset a suite rehearses on: full-size COCO or VOC layouts for `*_coco` / `*_voc` suites,
    clips for the video suites, the shapes fixture otherwise (fixtures built only when a suite needs them)."""
    for layout in ("coco", "voc"):
        if suite.stem.endswith(f"_{layout}"):
            return request.getfixturevalue("full_size_layouts")[layout]
    if suite.stem.startswith("video_"):
        return request.getfixturevalue("video_dataset")
    return request.getfixturevalue("shapes_dataset")


@pytest.mark.slow  # every run of the suite, 1 iteration on the CPU
@pytest.mark.parametrize("suite", [_suite_param(path) for path in SUITES])
def test_every_shipped_suite_passes_its_smoke_rehearsal(suite, request, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    data_root = _data_root(suite, request)
    # A full-size MNC trains in 6-12 GB on the CPU: one run at a time there, two of the small shapes runs, and
    # glibc's own allocator, which returns freed blocks (mnc_bench.allocator trades memory for speed).
    workers = "1" if suite.stem.endswith(FULL_SIZE) else "2"
    monkeypatch.setenv("MNC_BENCH_ALLOCATOR", "system")
    code = main(["run", suite.stem, "--smoke", "--smoke-iters", "1", "--smoke-images", "2", "1",
                 "--seeds", "0", "--workers", workers, "--results", str(tmp_path / "results"),
                 "--cfg-options", f"data_root={data_root}/"])
    captured = capsys.readouterr()
    out = captured.out
    assert f"smoke {suite.stem}: " in out, captured.err  # it stopped before rehearsing: the error says why
    verdicts = out[out.index(f"smoke {suite.stem}: "):]
    assert code == 0, verdicts
    started = 0  # start_from is rehearsed too: each such run starts from its starting run's rehearsal
    for run_dir in list_run_dirs(smoke_root(tmp_path / "results") / suite.stem):
        source = starting_run(run_dir.read_run().cfg_options)
        if source is not None:
            assert f"=== starting from run {source}: " in run_dir.file(LOG_TXT).read_text()
            started += 1
    assert (started > 0) == ("start_from" in yaml.safe_load(suite.read_text()))
