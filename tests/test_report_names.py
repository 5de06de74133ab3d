"""Display names (one mapping, overridable per report) in tables, figures and the qualitative grid; which
models the grid shows, in which order, and how it wraps."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.text import Text
from report_fixtures import DISPLAY_NAMES, build_results

from mnc_bench.cli import main
from mnc_bench.errors import UserError
from mnc_bench.reporting import write_report
from mnc_bench.reporting.compare import resolve_baselines, short_label
from mnc_bench.reporting.figures import speed_figure
from mnc_bench.reporting.names import display_names, parse_overrides
from mnc_bench.reporting.qualitative import choose_models, qualitative_figures
from mnc_bench.reporting.style import Canvas, FigureResult
from mnc_bench.reporting.table import load_inputs
from mnc_bench.reporting.venue import COLUMN, TEXT

CHECKOUT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def results(tmp_path_factory, shapes_dataset) -> Path:
    root = tmp_path_factory.mktemp("names")
    build_results(root, shapes_dataset)
    return root / "results"


@pytest.fixture(scope="module")
def done(results):
    return load_inputs(["mnc_vs_successors"], results_dir=results).done


def test_every_shipped_config_has_a_display_name():
    stems = [p.stem for p in (CHECKOUT / "configs").glob("*/*.py") if p.parent.name != "_base_"]
    alone = {stem: display_names([stem])(stem) for stem in stems}  # a report of one dataset: no qualifier
    assert stems and all(alone[stem] != stem for stem in stems), [s for s in stems if alone[s] == s]
    assert alone["mnc_5stage_shapes"] == "MNC 5-stage" and alone["mnc_3stage_voc_sbd"] == "MNC 3-stage"
    assert alone["cascade_mask_rcnn_shapes"] == "Cascade Mask R-CNN"  # not Mask R-CNN
    assert alone["mask2former_r50_coco"] == "Mask2Former"
    assert alone["mnc_5stage_c4_voc_sbd"] == "MNC 5-stage C4"
    names = display_names(stems)
    assert names.family("mnc_3stage_shapes") == names.family("mnc_5stage_c4_voc_sbd") == "MNC"
    assert len({names(stem) for stem in stems}) == len(stems)  # all of them in one report: none read alike
    assert names("mnc_5stage_shapes") == "MNC 5-stage shapes"
    assert names("mnc_5stage_voc_sbd") == "MNC 5-stage VOC SBD"


def test_configs_of_one_model_are_told_apart_by_their_stems():
    names = display_names(["solov2_shapes", "solov2_shapes_50e", "mask_rcnn_r50_fpn_coco",
                           "mask_rcnn_r101_fpn_coco", "my_model"])
    assert names("solov2_shapes") == "SOLOv2" and names("solov2_shapes_50e") == "SOLOv2 50e"
    assert names("mask_rcnn_r50_fpn_coco") == "Mask R-CNN R-50"
    assert names("mask_rcnn_r101_fpn_coco") == "Mask R-CNN R-101"
    assert names("my_model") == "my_model" and names.family("my_model") == "my_model"  # unknown: its stem
    assert display_names(["solov2_shapes_50e"])("solov2_shapes_50e") == "SOLOv2"  # alone, no qualifier


def test_a_variant_label_keeps_as_much_of_each_axis_key_as_tells_the_keys_apart():
    assert short_label("MNC 3-stage", "model.cascade.box_grad=False, model.cascade.num_stages=7") == (
        "MNC 3-stage [box_grad=False, num_stages=7]")
    assert short_label("M", "model.rpn_head.loss_weight=1.0, model.roi_head.loss_weight=2.0, seed_x=3") == (
        "M [rpn_head.loss_weight=1.0, roi_head.loss_weight=2.0, seed_x=3]")
    assert short_label("M", "") == "M"


def test_the_baseline_is_named_by_its_label_in_full_or_as_printed():
    done = pd.DataFrame({"suite": ["s"] * 2, "model": ["mnc_3stage_shapes"] * 2,
                         "variant": ["model.cascade.num_stages=3", "model.cascade.num_stages=5"]})
    for name in ("mnc_3stage_shapes [model.cascade.num_stages=5]", "mnc_3stage_shapes [num_stages=5]"):
        assert resolve_baselines(done, name)["s"].variant == "model.cascade.num_stages=5"
    with pytest.raises(UserError, match=r"--baseline mnc_3stage_shapes \[stages=5\]: no such model"):
        resolve_baselines(done, "mnc_3stage_shapes [stages=5]")
    twins = pd.DataFrame({"suite": ["s"] * 2, "model": ["m"] * 2, "variant": ["a.w=1.0", "b.w=1.0"]})
    with pytest.raises(UserError, match=r"--baseline m \[w=1.0\]: names 2 groups of suite s .*in full"):
        resolve_baselines(twins, "m [w=1.0]")
    assert resolve_baselines(twins, "m [b.w=1.0]")["s"].variant == "b.w=1.0"


def test_overrides_by_model_or_pattern_and_their_errors():
    names = display_names(["mnc_3stage_shapes", "mnc_5stage_shapes", "panet_shapes"],
                          parse_overrides(["panet_shapes=PANet (ours)", "mnc_*=MNC"]))
    assert names("panet_shapes") == "PANet (ours)"
    assert (names("mnc_3stage_shapes"), names("mnc_5stage_shapes")) == ("MNC 3stage", "MNC 5stage")
    assert names.family("panet_shapes") == "PANet"  # a new name, the same family
    with pytest.raises(UserError, match=r"^--display-name yolo_\*: matches no model in the results \("):
        display_names(["panet_shapes"], {"yolo_*": "YOLO"})
    for bad in ("panet_shapes", "=PANet", "panet_shapes="):
        with pytest.raises(UserError, match="expected MODEL=NAME"):
            parse_overrides([bad])


def test_names_reach_the_markdown_and_latex_tables(results, tmp_path):
    written = write_report(["mnc_vs_successors"], tmp_path / "out", results_dir=results, bench=None,
                           figures=False, display_name_overrides={"mnc_5stage_shapes": "Ours"})
    text = (written.out / "report.md").read_text()
    assert "| Ours | `mnc_5stage_shapes` | `configs/mnc/mnc_5stage_shapes.py` |" in text  # the models table
    main_rows = re.findall(r"^\| ([^|]+?) \| \d \| ", text.split("## Main comparison")[1], flags=re.M)
    assert main_rows[:4] == ["Mask R-CNN", "MNC 3-stage", "Ours", "PANet"]
    assert "baseline Mask R-CNN (first Mask R-CNN model" in text
    tex = (written.out / "tables" / "main_coco.tex").read_text()
    assert [line.split(" & ")[0] for line in tex.splitlines() if " & " in line][1:] == [
        "Mask R-CNN", "MNC 3-stage", "Ours", "PANet"]
    assert "--display-name mnc_5stage_shapes=Ours" in text  # the command, in the provenance


@dataclass(frozen=True)
class RecordingCanvas(Canvas):
    """A canvas that keeps the text of every figure it saves."""

    texts: dict[str, list[str]] = field(default_factory=dict)

    def save(self, fig, name, caption):
        self.texts[name] = [t.get_text() for t in fig.findobj(Text) if t.get_visible() and t.get_text()]
        return super().save(fig, name, caption)


def test_names_reach_the_figures(results, done, tmp_path):
    inputs = load_inputs(["mnc_vs_successors"], results_dir=results, bench=results / "bench" / "models.json")
    bench = inputs.bench
    canvas = RecordingCanvas(tmp_path, COLUMN, display_names(done["model"]))
    assert isinstance(speed_figure(done, bench, "coco/segm/AP", canvas), FigureResult)
    assert set(DISPLAY_NAMES.values()) <= set(canvas.texts["speed_accuracy"])  # the legend
    assert not any("_shapes" in t for t in canvas.texts["speed_accuracy"])


def test_grid_order_baseline_then_best_of_each_family(done):
    names = display_names(done["model"])
    choice = choose_models(done, "coco/segm/AP", ["mask_rcnn_shapes"], names)
    # mask AP of the fixture: MNC 5-stage 50 > Mask R-CNN 40 > MNC 3-stage 39 ~ PANet 38; MNC 3-stage is not
    # the best of its family, so it comes after PANet.
    assert choice.models == ["mask_rcnn_shapes", "mnc_5stage_shapes", "panet_shapes", "mnc_3stage_shapes"]
    assert choice.how.startswith("the baseline first, then the best model of each family by mask AP")
    chosen = choose_models(done, "coco/segm/AP", ["mask_rcnn_shapes"], names,
                           ["panet_shapes", "mnc_3stage_shapes"])
    assert chosen.models == ["panet_shapes", "mnc_3stage_shapes"]
    with pytest.raises(UserError, match=r"^--qualitative-models yolo: no finished run of this model \("):
        choose_models(done, "coco/segm/AP", [], names, ["mnc_3stage_shapes", "yolo"])


def test_grid_wraps_into_further_figures_instead_of_dropping_models(done, tmp_path):
    names = display_names(done["model"])
    choice = choose_models(done, "coco/segm/AP", ["mask_rcnn_shapes"], names)
    narrow = RecordingCanvas(tmp_path, COLUMN, names)
    parts = qualitative_figures(done, narrow, choice)
    assert [p.name for p in parts] == ["qualitative", "qualitative_2"]  # 3 models a column-width figure
    assert narrow.texts["qualitative"][:4] == ["ground truth", "Mask R-CNN", "MNC 5-stage", "PANet"]
    assert narrow.texts["qualitative_2"][:2] == ["ground truth", "MNC 3-stage"]
    caption = parts[0].caption
    assert "the 3 validation images with the most objects" in caption and "Part 1 of 2" in caption
    assert "Models: the baseline first" in caption
    wide = RecordingCanvas(tmp_path, TEXT, names)
    (whole,) = qualitative_figures(done, wide, choice)
    assert whole.files == (tmp_path / "qualitative_textwidth.pdf",) and "Part" not in whole.caption
    assert wide.texts["qualitative"][:5] == ["ground truth", *narrow.texts["qualitative"][1:4], "MNC 3-stage"]


def test_cli_takes_the_grid_models_and_names(results, tmp_path, capsys):
    code = main(["report", "mnc_vs_successors", "--out", str(tmp_path / "r"), "--results", str(results),
                 "--qualitative-models", "mnc_3stage_shapes", "yolo", "--no-figures"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --qualitative-models yolo: no finished run")
    assert err.count("\n") == 1
    assert not (tmp_path / "r").exists()
    code = main(["report", "mnc_vs_successors", "--out", str(tmp_path / "r"), "--results", str(results),
                 "--display-name", "panet_shapes"])
    assert code == 2 and "expected MODEL=NAME" in capsys.readouterr().err


def test_cli_says_where_the_report_went_and_counts_its_tables_and_figures(results, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["report", "cascade_depth", "--out", str(out), "--results", str(results)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    tables = len(list((out / "tables").glob("*.tex")))
    # a figure is one name, drawn at column width (PDF and PNG) and at text width (PDF)
    figures = len({path.stem.removesuffix("_textwidth") for path in (out / "figures").glob("*.pdf")})
    assert tables and figures
    assert printed.startswith(f"report {out}/report.md and {out}/report.html ({tables} LaTeX tables, "
                              f"{figures} figures; "), printed
