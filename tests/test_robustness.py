"""Robustness to corruptions: the benchmark's corruptions run on this stack and are deterministic per (image,
corruption, severity); mPC and rPC from per-condition AP; bad corruption names and severities are one-line
errors; a corrupted pass of a checkpoint through `mnc-bench test --corruptions` and of a suite's finished runs
through `mnc-bench robustness`, with `collect` columns."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from mnc_bench.cli import main
from mnc_bench.errors import UserError
from mnc_bench.evaluation.corruptions import (
    CORRUPTION_GROUPS,
    CORRUPTIONS,
    check_severities,
    corrupt_image,
    resolve_corruptions,
)
from mnc_bench.evaluation.robustness import summarize

REPO = Path(__file__).resolve().parents[1]
MASK_RCNN = REPO / "configs" / "mask_rcnn" / "mask_rcnn_shapes.py"


def test_groups_are_the_benchmark_groups_of_the_package():
    imagecorruptions = pytest.importorskip("imagecorruptions")
    for group, names in CORRUPTION_GROUPS.items():
        assert names == tuple(imagecorruptions.get_corruption_names(group)), group
    assert CORRUPTIONS == tuple(imagecorruptions.get_corruption_names("common"))


def test_names_groups_and_all_resolve_in_benchmark_order():
    assert resolve_corruptions(["all"]) == CORRUPTIONS and len(CORRUPTIONS) == 15
    assert resolve_corruptions(["fog", "noise"]) == ("gaussian_noise", "shot_noise", "impulse_noise", "fog")
    assert check_severities([5, 1, 3, 1]) == (1, 3, 5)


@pytest.mark.parametrize("bad, words", [
    (dict(corruption=["fog_of_war"]), "unknown corruption 'fog_of_war'"),
    (dict(corruption=["speckle_noise"]), "unknown corruption 'speckle_noise'"),  # held out of the benchmark
    (dict(severity=[0]), "severity 0 is out of range"),
    (dict(severity=[3, 6]), "severity 6 is out of range"),
])
def test_bad_names_and_severities_are_user_errors_naming_the_value(bad, words):
    with pytest.raises(UserError, match=words):
        resolve_corruptions(bad["corruption"]) if "corruption" in bad else check_severities(bad["severity"])


@pytest.mark.parametrize("argv, words", [
    (["--corruptions", "fog_of_war"], "unknown corruption 'fog_of_war'"),
    (["--corruptions", "all", "--severities", "0"], "severity 0 is out of range"),
    (["--corruptions", "noise", "--severities", "1", "6"], "severity 6 is out of range"),
    (["--severities", "3"], "give --corruptions too"),
])
def test_cli_errors_are_one_line_before_anything_is_built(argv, words, tmp_path, capsys):
    # The config and checkpoint do not exist: the arguments are checked first.
    assert main(["test", str(tmp_path / "no_config.py"), str(tmp_path / "no.pth"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and words in err


def test_suite_command_checks_its_arguments_first(tmp_path, capsys):
    assert main(["robustness", "no_such_suite", "--results", str(tmp_path), "--severities", "6"]) == 2
    assert "severity 6 is out of range" in capsys.readouterr().err


def test_every_corruption_runs_and_is_deterministic_per_image_corruption_and_severity():
    pytest.importorskip("imagecorruptions")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    random_ones = set(CORRUPTION_GROUPS["noise"]) | {"glass_blur", "motion_blur", "snow", "frost", "fog",
                                                      "elastic_transform"}
    np.random.seed(123)
    state = np.random.get_state()
    for corruption in CORRUPTIONS:
        first = corrupt_image(image, corruption, 3, image_id=7)
        assert first.shape == image.shape and first.dtype == np.uint8, corruption
        assert not np.array_equal(first, image), corruption
        again = corrupt_image(image, corruption, 3, image_id=7)
        np.testing.assert_array_equal(again, first, err_msg=corruption)
        if corruption in random_ones:
            other_image = corrupt_image(image, corruption, 3, image_id=8)
            other_seed = corrupt_image(image, corruption, 3, image_id=7, seed=1)
            assert not np.array_equal(other_image, first), corruption
            assert not np.array_equal(other_seed, first), corruption
    # The global generator is left as it was, for the rest of the process.
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), state))


def test_transform_corrupts_in_rgb_and_returns_bgr():
    pytest.importorskip("mmcv")
    from mnc_bench.data.corruption_transform import CorruptImage

    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, size=(40, 40, 3), dtype=np.uint8)
    results = CorruptImage("frost", 2, seed=3).transform({"img": rgb[..., ::-1].copy(), "img_id": 5})
    expected = corrupt_image(rgb, "frost", 2, image_id=5, seed=3)
    np.testing.assert_array_equal(results["img"][..., ::-1], expected)
    swapped = corrupt_image(rgb[..., ::-1].copy(), "frost", 2, image_id=5, seed=3)[..., ::-1]
    assert not np.array_equal(results["img"][..., ::-1], swapped)  # the channel order matters for frost


def test_mpc_and_rpc_from_per_condition_ap():
    clean = {"coco/segm/AP": 0.4, "coco/bbox/AP": 0.5}
    def ap(segm: float, bbox: float) -> dict[str, float]:
        return {"coco/segm/AP": segm, "coco/bbox/AP": bbox}

    corrupted = {"fog": {1: ap(0.3, 0.4), 3: ap(0.1, 0.2)}, "snow": {1: ap(0.2, 0.3), 3: ap(0.0, 0.1)}}
    got = summarize(clean, corrupted)
    assert got["robustness/segm/AP_clean"] == 0.4
    assert got["robustness/segm/mPC"] == pytest.approx(0.15)
    assert got["robustness/segm/rPC"] == pytest.approx(0.15 / 0.4)
    assert got["robustness/bbox/mPC"] == pytest.approx(0.25)
    assert got["robustness/segm/AP@s1"] == pytest.approx(0.25)
    assert got["robustness/segm/AP@s3"] == pytest.approx(0.05)
    assert got["robustness/segm/AP/fog"] == pytest.approx(0.2)
    assert got["robustness/bbox/AP/snow"] == pytest.approx(0.2)
    zero = summarize({"coco/segm/AP": 0.0}, {"fog": {1: {"coco/segm/AP": 0.0}}})
    assert math.isnan(zero["robustness/segm/rPC"])


# ------------------------------------------------------------------------------------------------------------
# With a model: Mask R-CNN after one iteration on the fixture dataset.
# ------------------------------------------------------------------------------------------------------------

def fast_options(root: Path) -> list[str]:
    return [f"data_root={root}", "train_cfg.max_iters=1", "train_cfg.val_begin=10000",
            "train_dataloader.batch_size=2", "default_hooks.checkpoint.interval=1",
            "model.test_cfg.rcnn.score_thr=0.0", "model.test_cfg.rcnn.max_per_img=10"]


@pytest.fixture(scope="module")
def checkpoint(shapes_dataset, tmp_path_factory) -> Path:
    pytest.importorskip("mmcv.ops")
    from mnc_bench.training import train

    work = tmp_path_factory.mktemp("mask_rcnn_robustness")
    return train(MASK_RCNN, work_dir=work, cfg_options=fast_options(shapes_dataset)).checkpoint


@pytest.mark.slow
def test_corrupted_pass_of_a_checkpoint_through_the_cli(shapes_dataset, checkpoint, tmp_path, capsys):
    out = tmp_path / "record.json"
    argv = ["test", str(MASK_RCNN), str(checkpoint), "--work-dir", str(tmp_path / "work"),
            "--cfg-options", *fast_options(shapes_dataset), "--corruptions", "gaussian_noise", "brightness",
            "--severities", "1", "5", "--images", "3", "--corruption-seed", "4", "--robustness-out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "mPC" in printed and "gaussian_noise" in printed and str(out) in printed
    record = json.loads(out.read_text())
    assert record["settings"] == {"corruptions": ["gaussian_noise", "brightness"], "severities": [1, 5],
                                  "images": 3, "seed": 4}
    val = json.loads((shapes_dataset / "annotations" / "instances_val.json").read_text())
    assert record["image_ids"] == [image["id"] for image in val["images"][:3]]
    assert set(record["corrupted"]) == {"gaussian_noise", "brightness"}
    assert set(record["corrupted"]["brightness"]) == {"1", "5"}
    assert "coco/segm/AP" in record["clean"] and "coco/bbox/AP" in record["corrupted"]["brightness"]["5"]
    aps = [record["corrupted"][c][s]["coco/segm/AP"] for c in record["corrupted"] for s in ("1", "5")]
    assert record["summary"]["robustness/segm/mPC"] == pytest.approx(np.mean(aps))
    assert set(record["details"]["seconds_per_condition"]) == {
        "clean", "gaussian_noise s1", "gaussian_noise s5", "brightness s1", "brightness s5"}


@pytest.mark.slow
def test_suite_command_scores_finished_runs_once_and_collect_shows_the_columns(shapes_dataset, checkpoint,
                                                                              tmp_path, monkeypatch, capsys):
    from mnc_bench.suites.collect import collect
    from mnc_bench.suites.record import write_plan
    from mnc_bench.suites.runner import plan_suite, prepare_run_dir
    from mnc_bench.suites.spec import load_suite

    monkeypatch.chdir(REPO)
    suite_file = tmp_path / "tiny.yaml"
    testing = [o for o in fast_options(shapes_dataset) if o.startswith(("data_root", "model."))]
    options = "\n".join(f"  {o.split('=', 1)[0]}: {o.split('=', 1)[1]}" for o in testing)
    suite_file.write_text(f"base: {MASK_RCNN}\nseeds: [0]\ncfg_options:\n{options}\n")
    suite = load_suite(suite_file, build_models=False)
    results = tmp_path / "results"
    plan = plan_suite(suite, results / "tiny")
    for planned in plan:
        prepare_run_dir(planned)
    write_plan(suite, results / "tiny")
    run_dir = plan[0].run_dir
    run_dir.work_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(checkpoint, run_dir.work_dir / checkpoint.name)
    (run_dir.work_dir / "last_checkpoint").write_text(str(run_dir.work_dir / checkpoint.name))
    run_dir.write_json("metrics.json", {"coco/segm/AP": 0.0})
    run_dir.update_status(state="done")

    argv = ["robustness", str(suite_file), "--results", str(results), "--corruptions", "contrast",
            "--severities", "2", "--images", "2"]
    assert main(argv) == 0
    assert "mask mPC" in capsys.readouterr().out
    record = json.loads(run_dir.file("robustness.json").read_text())
    assert record["settings"]["corruptions"] == ["contrast"] and record["settings"]["images"] == 2
    stamp = run_dir.file("robustness.json").stat().st_mtime_ns
    assert main(argv) == 0
    assert "skipped" in capsys.readouterr().out
    assert run_dir.file("robustness.json").stat().st_mtime_ns == stamp
    table = collect(results / "tiny")
    for key in ("robustness/segm/mPC", "robustness/segm/rPC", "robustness/bbox/AP_clean",
                "robustness/segm/AP@s2", "robustness/segm/AP/contrast"):
        expected = record["summary"][key]  # null: undefined (rPC of a clean AP of 0)
        got = table.loc[0, key]
        assert math.isnan(got) if expected is None else got == pytest.approx(expected), key


def test_quick_subset_and_explicit_values():
    from mnc_bench.robustness import PassRequest

    quick = PassRequest(subset="quick").settings()
    assert (quick.corruptions, quick.severities, quick.images, quick.seed) == (CORRUPTIONS, (1, 3, 5), 50, 0)
    assert len(quick.conditions()) == 45
    mine = PassRequest(corruptions=["blur"], subset="quick", images=7, severities=[2], seed=3).settings()
    assert (mine.corruptions, mine.severities, mine.images, mine.seed) == (
        CORRUPTION_GROUPS["blur"], (2,), 7, 3)
    full = PassRequest().settings()
    assert full.images is None and full.severities == (1, 2, 3, 4, 5) and len(full.conditions()) == 75
    with pytest.raises(UserError, match="unknown subset 'fast'"):
        PassRequest(subset="fast").settings()


def test_corrupted_image_cache_keys_on_every_setting_and_hands_out_copies():
    pytest.importorskip("mmcv")
    from mnc_bench.data.corruption_transform import CorruptImage

    bgr = np.random.default_rng(2).integers(0, 256, size=(40, 40, 3), dtype=np.uint8)

    def corrupted(corruption="gaussian_noise", severity=1, seed=0, image_id=1, path="a.png"):
        return CorruptImage(corruption, severity, seed).transform({"img": bgr.copy(), "img_id": image_id,
                                                                   "img_path": path})["img"]

    first = corrupted()
    for other in (corrupted(severity=5), corrupted(seed=1), corrupted(image_id=2), corrupted("shot_noise")):
        assert not np.array_equal(other, first)
    first[:] = 0  # a consumer writing into its image must not change what the cache hands out next
    again = corrupted()
    np.testing.assert_array_equal(again[..., ::-1], corrupt_image(bgr[..., ::-1].copy(), "gaussian_noise", 1,
                                                                  image_id=1))
