"""Suite files: expansion, content-hashed run ids, and one test per validation rule (all before any run
starts)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("mmcv.ops")

from mnc_bench.cli import main  # noqa: E402
from mnc_bench.errors import UserError  # noqa: E402
from mnc_bench.suites.spec import load_suite  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MNC = "configs/mnc/mnc_3stage_shapes.py"
MASK_RCNN = "configs/mask_rcnn/mask_rcnn_shapes.py"


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(REPO)  # config paths in suites are relative to the working directory


def write_suite(tmp_path: Path, text: str, name: str = "s") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def load(path: Path, **kwargs):
    return load_suite(path, build_models=kwargs.pop("build_models", False), **kwargs)


def test_grid_zip_and_seeds_expand_into_runs_with_stable_content_ids(tmp_path):
    path = write_suite(tmp_path, f"""
        base: {MNC}
        grid:
          model.cascade.box_grad: [true, false]
        zip:
          model.loss_weights.mask: [1.0, 2.0]
          model.loss_weights.cls: [1.0, 0.5]
        seeds: [0, 1]
        cfg_options: {{train_cfg.max_iters: 7}}
    """)
    suite = load(path)
    assert len(suite.runs) == 2 * 2 * 2
    assert suite.axes == ["model.cascade.box_grad", "model.loss_weights.mask", "model.loss_weights.cls"]
    ids = [run.run_id for run in suite.runs]
    assert all(re.fullmatch(r"[0-9a-f]{12}", i) for i in ids) and len(set(ids)) == len(ids)
    assert ids == [run.run_id for run in load(path).runs]  # same file, same ids
    first = suite.runs[0]
    assert first.variant == ("model.cascade.box_grad=True, model.loss_weights.mask=1.0, "
                             "model.loss_weights.cls=1.0")
    assert first.seed == 0 and suite.runs[1].seed == 1 and suite.runs[1].variant == first.variant
    assert first.cfg.train_cfg.max_iters == 7 and first.cfg.model.loss_weights.mask == 1.0
    assert suite.runs[2].cfg.model.loss_weights.cls == 0.5
    assert first.test_ann_file.endswith("annotations/instances_val.json")
    # zip rows are taken together, not crossed
    assert {(r.axes["model.loss_weights.mask"], r.axes["model.loss_weights.cls"])
            for r in suite.runs} == {(1.0, 1.0), (2.0, 0.5)}


def test_editing_an_axis_keeps_the_ids_of_unchanged_runs(tmp_path):
    before = load(write_suite(tmp_path, f"""
        base: {MNC}
        grid: {{model.cascade.num_stages: [3, 5]}}
        seeds: [0]
    """))
    after = load(write_suite(tmp_path, f"""
        base: {MNC}
        grid: {{model.cascade.num_stages: [3, 5, 7]}}
        seeds: [0]
        cfg_options: {{default_hooks.logger.interval: 1, default_hooks.checkpoint.interval: 3}}
    """))
    old = {run.run_id for run in before.runs}
    new = {run.run_id for run in after.runs}
    # logging / checkpoint intervals cannot change results: not part of the id
    assert old < new and len(new - old) == 1


def test_seed_and_any_result_changing_option_change_the_id(tmp_path):
    base = load(write_suite(tmp_path, f"base: {MNC}\nseeds: [0, 1]\n")).runs
    assert base[0].run_id != base[1].run_id
    lr = load(write_suite(tmp_path,
                          f"base: {MNC}\nseeds: [0]\ncfg_options: {{optim_wrapper.optimizer.lr: 0.001}}\n"))
    assert lr.runs[0].run_id != base[0].run_id


def test_config_axis_and_seeds_override(tmp_path):
    suite = load(write_suite(tmp_path, f"grid: {{config: [{MNC}, {MASK_RCNN}]}}\nseeds: [0, 1, 2]\n"),
                 seeds=[5])
    assert [(r.model, r.seed, r.variant) for r in suite.runs] == [("mnc_3stage_shapes", 5, ""),
                                                                  ("mask_rcnn_shapes", 5, "")]


def test_a_mapping_replaces_a_config_value_that_is_not_a_mapping(tmp_path):
    suite = load(write_suite(tmp_path, f"""
        base: {MNC}
        grid:
          model.proposal_control: [null, {{max_proposals: 10}}]
    """))
    assert suite.runs[0].cfg.model.proposal_control is None
    assert dict(suite.runs[1].cfg.model.proposal_control) == {"max_proposals": 10}
    assert suite.runs[1].variant == 'model.proposal_control={"max_proposals": 10}'


def test_model_is_built_at_validation(tmp_path):
    path = write_suite(tmp_path, f"base: {MNC}\ngrid: {{model.cascade.num_stages: [3, 4]}}\n")
    with pytest.raises(UserError, match=r"num_stages=4.*model\.cascade\.num_stages: must be an odd integer"):
        load(path, build_models=True)


# ---- one test per rule: each message is one line naming the key -------------------------------------------

def _error(tmp_path: Path, text: str) -> str:
    with pytest.raises(UserError) as info:
        load(write_suite(tmp_path, text))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_unknown_config_key(tmp_path):
    message = _error(tmp_path, f"base: {MNC}\ngrid: {{model.cascade.num_stagez: [3, 5]}}\n")
    assert "model.cascade.num_stagez: unknown config key" in message and "'num_stagez'" in message


def test_unknown_key_in_one_config_of_a_config_axis(tmp_path):
    message = _error(tmp_path, f"grid: {{config: [{MNC}, {MASK_RCNN}], model.cascade.num_stages: [3]}}\n")
    assert "model.cascade.num_stages: unknown config key in configs/mask_rcnn/mask_rcnn_shapes.py" in message


def test_empty_axis(tmp_path):
    assert "grid.model.cascade.num_stages: empty axis" in _error(
        tmp_path, f"base: {MNC}\ngrid: {{model.cascade.num_stages: []}}\n")


def test_wrong_type_of_an_axis_value(tmp_path):
    message = _error(tmp_path, f"base: {MNC}\ngrid: {{model.cascade.num_stages: [3, five]}}\n")
    assert "model.cascade.num_stages: wrong type: five is a string" in message and "a number" in message


def test_wrong_type_of_a_float_written_without_a_dot(tmp_path):
    # YAML 1.1 reads 1e-3 as a string: caught instead of reaching the optimizer
    message = _error(tmp_path, f"base: {MNC}\ncfg_options: {{optim_wrapper.optimizer.lr: 1e-3}}\n")
    assert "optim_wrapper.optimizer.lr: wrong type: 1e-3 is a string" in message


def test_wrong_type_of_an_axis(tmp_path):
    assert "grid.model.cascade.num_stages: wrong type: expected a list" in _error(
        tmp_path, f"base: {MNC}\ngrid: {{model.cascade.num_stages: 3}}\n")
    assert "grid: wrong type: expected a mapping" in _error(tmp_path, f"base: {MNC}\ngrid: [3, 5]\n")


def test_duplicate_axis_in_the_yaml(tmp_path):
    message = _error(tmp_path, f"base: {MNC}\ngrid:\n  model.cascade.num_stages: [3]\n"
                               "  model.cascade.num_stages: [5]\n")
    assert "duplicate key 'model.cascade.num_stages'" in message and "line 4" in message


def test_duplicate_axis_in_grid_and_cfg_options(tmp_path):
    assert "duplicate axis model.cascade.num_stages: also set in cfg_options" in _error(
        tmp_path, f"base: {MNC}\ngrid: {{model.cascade.num_stages: [3]}}\n"
                  "cfg_options: {model.cascade.num_stages: 5}\n")


@pytest.mark.parametrize(("sections", "problem"), [
    # the zip's value would silently replace the grid's
    ("grid: {model.cascade.num_stages: [3]}\nzip: {model.cascade.num_stages: [5]}",
     "duplicate axis model.cascade.num_stages: also set in zip"),
    # the run would be labelled num_stages=3 and train 5 stages
    ("grid: {model.cascade.num_stages: [3], model.cascade: [{num_stages: 5}]}",
     "grid.model.cascade.num_stages overlaps grid.model.cascade: one sets part of the other"),
    ("grid: {model.cascade: [{num_stages: 5}]}\ncfg_options: {model.cascade.num_stages: 3}",
     "grid.model.cascade overlaps model.cascade.num_stages in cfg_options: one sets part of the other"),
    ("zip: {model.cascade.num_stages: [3]}\ngrid: {model.cascade: [{num_stages: 5}]}",
     "grid.model.cascade overlaps model.cascade.num_stages in zip: one sets part of the other"),
])
def test_an_axis_sets_its_key_alone(tmp_path, sections, problem):
    assert _error(tmp_path, f"base: {MNC}\n{sections}\n") == f"suite s: {problem}"


@pytest.mark.parametrize(("section", "problem"), [
    ("cfg_options: {1: 2}", "cfg_options: key 1 is not a config key"),
    ("cfg_options: {model.: 2}", "cfg_options: key 'model.' is not a config key"),
    ("grid: {.cascade: [3]}", "grid: axis key '.cascade' is not a config key"),
])
def test_keys_that_are_no_config_keys(tmp_path, section, problem):
    assert _error(tmp_path, f"base: {MNC}\n{section}\n") == f"suite s: {problem}"


def test_unknown_config_file(tmp_path):
    assert "config configs/mnc/nope.py not found" in _error(
        tmp_path, f"grid: {{config: [{MNC}, configs/mnc/nope.py]}}\n")


@pytest.mark.parametrize("seeds,problem", [
    ("[a]", "'a' is not an integer from 0 to 4294967295"),
    ("[1.5]", "1.5 is not an integer from 0 to 4294967295"),
    # YAML's true is no seed, though Python's bool is an int
    ("[true]", "True is not an integer from 0 to 4294967295"),
    ("[0, -1]", "-1 is not an integer from 0 to 4294967295"),
    # numpy, which mmengine seeds, refuses 2**32: the run would fail only once it started
    ("[4294967296]", "4294967296 is not an integer from 0 to 4294967295"),
    ("[]", "expected a non-empty list of integers, got []"),
    ("3", "expected a non-empty list of integers, got 3"),
    ("[1, 2, 1]", "a seed is listed twice"),
])
def test_seeds_must_be_distinct_integers_in_numpys_range(tmp_path, seeds, problem):
    assert _error(tmp_path, f"base: {MNC}\nseeds: {seeds}\n") == f"suite s: seeds: {problem}"


def test_malformed_yaml(tmp_path):
    message = _error(tmp_path, f"base: {MNC}\ngrid: {{model.cascade.num_stages: [3, 5}}\n")
    assert "malformed YAML at line 2" in message


def test_yaml_tags_never_run_code(tmp_path):
    marker = tmp_path / "ran"
    message = _error(tmp_path, f"base: !!python/object/apply:os.system ['touch {marker}']\n")
    assert "malformed YAML" in message and not marker.exists()


def test_zip_lists_of_different_lengths(tmp_path):
    assert "zip: lists of different lengths" in _error(
        tmp_path,
        f"base: {MNC}\nzip: {{model.loss_weights.mask: [1.0, 2.0], model.loss_weights.cls: [1.0]}}\n")


def test_unknown_section(tmp_path):
    assert "unknown section 'seed'" in _error(tmp_path, f"base: {MNC}\nseed: [0]\n")


def test_unknown_metric_and_slurm_setting(tmp_path):
    assert "metrics: 'segm_AP' is not a metric key" in _error(tmp_path, f"base: {MNC}\nmetrics: [segm_AP]\n")
    assert "slurm.gpu: unknown setting" in _error(tmp_path, f"base: {MNC}\nslurm: {{gpu: 1}}\n")
    # the key pattern alone would take these: the first names no COCO metric, the second a COCO metric that
    # Boundary AP lacks; a repeated key would be a repeated table column
    assert "metrics: coco/segm/NOPE: COCO segm metrics are AP, AP50" in _error(
        tmp_path, f"base: {MNC}\nmetrics: [coco/segm/NOPE]\n")
    assert "metrics: coco/boundary/AR100: COCO boundary metrics are AP, AP50, AP75, APs, APm, APl" in _error(
        tmp_path, f"base: {MNC}\nmetrics: [coco/boundary/AR100]\n")
    assert "metrics: coco/segm/AP is listed twice" in _error(
        tmp_path, f"base: {MNC}\nmetrics: [coco/segm/AP, coco/bbox/AP, coco/segm/AP]\n")


def test_base_and_a_config_axis_do_not_mix(tmp_path):
    # the config axis would silently win over base
    assert "base: the `config` axis names every run's model config; drop one of them" in _error(
        tmp_path, f"base: {MNC}\ngrid: {{config: [{MASK_RCNN}]}}\n")


def test_runs_that_resolve_to_the_same_config(tmp_path):
    message = _error(tmp_path, f"grid: {{config: [{MNC}, ./{MNC}]}}\n")
    assert "resolve to the same config and seed" in message


def test_the_demo_suite_is_valid():
    suite = load_suite("demo")  # models built
    assert [(run.model, run.seed) for run in suite.runs[:2]] == [("mnc_3stage_shapes", 0),
                                                                 ("mnc_3stage_shapes", 1)]
    assert len({run.model for run in suite.runs}) == 4 and len(suite.runs) == 8


@pytest.mark.slow
def test_shipped_suites_are_valid():
    """Every suite validates as shipped, models built; the full-size ones need their data and weights only
    when they run."""
    names = sorted(p.stem for p in (REPO / "configs" / "ablations").glob("*.yaml"))
    assert {"demo", "mnc_vs_successors", "cascade_depth", "loss_weights", "proposal_quality",
            "reproduce_mnc_voc", "reproduce_mnc_coco"} <= set(names)
    sizes = {name: len(load_suite(name).runs) for name in names}
    # The shapes ablations run 2 seeds per cell; their full-size versions 1.
    assert sizes["cascade_depth"] == 2 * sizes["cascade_depth_coco"] == 20
    assert sizes["loss_weights"] == sizes["proposal_quality"] == 18 and sizes["mnc_vs_successors"] == 12


def test_cli_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    path = write_suite(tmp_path, f"grid: {{config: [{MNC}, {MASK_RCNN}]}}\nseeds: [0, 1]\n", name="tiny")
    code = main(["run", str(path), "--dry-run", "--results", str(tmp_path / "results")])
    out = capsys.readouterr().out
    assert code == 0
    assert "suite tiny" in out and "4 runs" in out and "4 start" in out and "mask_rcnn_shapes, seed=1" in out
    assert not (tmp_path / "results").exists()


def test_cli_invalid_suite_is_one_error_line(tmp_path, capsys):
    path = write_suite(tmp_path, f"base: {MNC}\ngrid: {{model.cascade.num_stages: []}}\n", name="bad")
    code = main(["run", str(path), "--results", str(tmp_path / "results")])
    err = capsys.readouterr().err
    assert (code == 2 and err.count("\n") == 1
            and err.startswith("error: suite bad: grid.model.cascade.num_stages"))
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("where", ["results", "results/inside"])
def test_cli_results_root_that_cannot_be_written_is_one_error_line(where, tmp_path, capsys):
    # a file where the results folder (or a folder above it) should be; nothing is trained
    path = write_suite(tmp_path, f"base: {MNC}\nseeds: [0]\n", name="tiny")
    (tmp_path / "results").write_text("")
    code = main(["run", str(path), "--results", str(tmp_path / where)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"error: --results {tmp_path / where}"), err


def test_a_run_on_several_gpus_is_another_run(tmp_path):
    # The configs' batch size is per GPU: 8 GPUs train a run with 8 times the batch of one device.
    path = tmp_path / "gpus.yaml"
    path.write_text(f"base: {MNC}\nslurm: {{gpus_per_run: 8}}\n")
    one_device = load_suite(path, build_models=False).runs[0].run_id
    assert one_device == load_suite(tmp_path / "gpus.yaml", build_models=False,
                                    slurm_overrides={"gpus_per_run": 1}, distributed=True).runs[0].run_id
    eight = load_suite(path, build_models=False, distributed=True).runs[0].run_id
    four = load_suite(path, build_models=False, slurm_overrides={"gpus_per_run": 4},
                      distributed=True).runs[0].run_id
    assert len({one_device, eight, four}) == 3


def test_the_local_executor_refuses_runs_on_several_gpus(tmp_path, capsys):
    path = tmp_path / "gpus.yaml"
    path.write_text(f"base: {MNC}\nslurm: {{gpus_per_run: 8}}\n")
    results = tmp_path / "results"
    assert main(["run", str(path), "--dry-run", "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: suite gpus: its runs train on 8 GPUs each (slurm.gpus_per_run)")
    assert err.count("\n") == 1 and "--executor slurm" in err and not results.exists()
    # one device per run, said on the command line: the plan of one-device runs
    assert main(["run", str(path), "--dry-run", "--gpus-per-run", "1", "--results", str(results)]) == 0
    assert load_suite(path, build_models=False).runs[0].run_id in capsys.readouterr().out


def test_a_rehearsal_of_runs_on_several_gpus_runs_locally(tmp_path, capsys):
    path = tmp_path / "gpus.yaml"
    path.write_text(f"base: {MNC}\nslurm: {{gpus_per_run: 8}}\n")
    assert main(["run", str(path), "--smoke", "--dry-run", "--results", str(tmp_path / "results")]) == 0
    assert "error" not in capsys.readouterr().err
