"""The named ablations' figures draw the right data: the loss-weight heatmaps (the compared metric and a
high-IoU one) and the depth figure's 3-stage runs in every weight-sharing panel."""

from __future__ import annotations

import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from mnc_bench.reporting import figures
from mnc_bench.reporting.names import display_names
from mnc_bench.reporting.style import Canvas, FigureResult
from mnc_bench.reporting.table import load_inputs
from mnc_bench.reporting.venue import COLUMN


@pytest.fixture(scope="module")
def results(tmp_path_factory, shapes_dataset, build_results):
    root = tmp_path_factory.mktemp("ablation_figures")
    build_results(root, shapes_dataset)
    return root / "results"


def _done(results, suite: str) -> tuple[pd.DataFrame, list[str]]:
    inputs = load_inputs([suite], results_dir=results, bench=None)
    return inputs.done, inputs.axes


def _canvas(done: pd.DataFrame, folder) -> Canvas:
    return Canvas(folder, COLUMN, display_names(done["model"]))


def test_loss_weight_heatmaps_show_mask_ap_and_ap75_cell_means(results, tmp_path, monkeypatch):
    done, axes = _done(results, "loss_weights")
    drawn = []
    real = figures.sns.heatmap
    monkeypatch.setattr(figures.sns, "heatmap",
                        lambda data, **kw: drawn.append((data, kw)) or real(data, **kw))
    result = figures.loss_weight_figure(done, axes, "coco/segm/AP", _canvas(done, tmp_path))
    assert isinstance(result, FigureResult) and "mask AP and AP75" in result.caption
    assert [kw["cbar_kws"]["label"] for _, kw in drawn] == ["mask AP", "AP75"]
    rows, cols = [a for a in axes if "loss_weights" in a]  # heatmap rows: the suite's first weight axis
    for (matrix, _), key in zip(drawn, ("coco/segm/AP", "coco/segm/AP75")):
        expected = 100 * done.groupby([rows, cols])[key].mean()
        assert matrix.size == len(expected)
        for (row, col), value in expected.items():
            assert matrix.loc[f"{row:g}", f"{col:g}"] == pytest.approx(value)


def test_three_stage_runs_appear_in_every_weight_sharing_panel(results, tmp_path, monkeypatch):
    done, axes = _done(results, "cascade_depth")
    drawn = {}
    real = figures._pointplot

    def record(ax, data, x, order, hue, **kw):
        drawn.setdefault(id(ax), data)
        real(ax, data, x, order, hue, **kw)

    monkeypatch.setattr(figures, "_pointplot", record)
    result = figures.depth_figure(done, axes, "coco/segm/AP", _canvas(done, tmp_path))
    assert isinstance(result, FigureResult) and "nothing to share" in result.caption
    three = set(done.loc[done["axis.model.cascade.num_stages"] == 3, "run_id"])
    assert len(drawn) == 4 and three  # two sharing panels, of mask AP and below of proposal recall
    for data in drawn.values():
        assert set(data.loc[data["depth"] == "3", "run_id"]) == three
        assert data["axis.model.cascade.share_weights"].nunique() == 1


def _capture_figure(monkeypatch) -> list:
    """Keep the Figure that a figure function hands to Canvas.save (which still writes it)."""
    kept = []
    real = Canvas.save
    monkeypatch.setattr(Canvas, "save", lambda self, fig, *a: kept.append(fig) or real(self, fig, *a))
    return kept


def test_proposal_settings_read_as_words_inside_the_figure_with_the_default_dashed(results, tmp_path,
                                                                                  monkeypatch):
    done, axes = _done(results, "proposal_quality")
    kept = _capture_figure(monkeypatch)
    result = figures.proposal_figure(done, axes, "coco/segm/AP", _canvas(done, tmp_path))
    assert isinstance(result, FigureResult) and "dashed: the default" in result.caption
    (fig,) = kept
    ap, recall = fig.axes[:2]
    assert [t.get_text() for t in ap.get_yticklabels()] == [
        "RPN (default)", "jitter 0.2", "top 10", "top 50", "oracle IoU 0.9"]
    default = done[done["axis.model.proposal_control"].map(figures.proposal_setting_text) == "RPN (default)"]
    assert len(default) == 2
    for ax, key in ((ap, "coco/segm/AP"), (recall, "proposals/AR@100")):
        (line,) = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
        assert line.get_xdata()[0] == pytest.approx(100 * default[key].mean())
    # every label, tick and title inside the printed width (long labels used to squeeze the panels until the
    # recall panel's axis label ran off the page)
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)  # the constrained layout, as when saved
    drawn, page = fig.get_tightbbox(renderer), fig.bbox_inches
    assert page.x0 - 0.01 <= drawn.x0 and drawn.x1 <= page.x1 + 0.01, (drawn, page)


@pytest.mark.parametrize(("setting", "text"), [
    ("null", "RPN (default)"),
    ("", "RPN (default)"),
    ('{"max_proposals": 10}', "top 10"),
    ('{"mode": "random", "num_random": 300}', "random 300 boxes"),
    ('{"mode": "rpn", "jitter": 0.1, "apply_at": "test"}', "RPN jitter 0.1, at test"),
    ('{"mode": "oracle"}', "oracle"),
    ('{"strength": 3}', "strength=3"),
    ("{not json", "{not json"),
])
def test_proposal_setting_text(setting, text):
    assert figures.proposal_setting_text(setting) == text


def test_each_training_mode_has_one_colour_in_every_depth_panel(results, tmp_path, monkeypatch):
    # seaborn colours hue levels by their order of appearance in each panel's rows unless it is given the
    # order: a real partial table (shared step-wise runs first, unshared only end to end) swapped the colours
    # between panels under one legend
    done, axes = _done(results, "cascade_depth")
    calls = []
    real = figures._pointplot
    monkeypatch.setattr(figures, "_pointplot", lambda ax, data, x, order, hue, **kw: calls.append(
        (set(data[hue]), kw.get("hue_order"))) or real(ax, data, x, order, hue, **kw))
    figures.depth_figure(done, axes, "coco/segm/AP", _canvas(done, tmp_path))
    assert calls and {tuple(order or ()) for _, order in calls} == {("end-to-end", "step-wise")}
    assert all(levels <= set(order) for levels, order in calls)


def test_each_model_has_one_colour_in_every_proposal_panel(results, tmp_path, monkeypatch):
    # two models on the proposal axis, the first model's first runs without proposal recall: in the recall
    # panel the second model's rows come first, and seaborn (given no order) would swap the two colours there
    done, axes = _done(results, "proposal_quality")
    first, second = done.copy(), done.assign(model="mask_rcnn_shapes", run_id=done["run_id"] + "b")
    unscored = first.index[:2]
    first.loc[unscored, "proposals/AR@100"] = float("nan")
    done = pd.concat([first.loc[unscored], second, first.drop(index=unscored)], ignore_index=True)
    calls = []
    real = figures.sns.pointplot
    monkeypatch.setattr(figures.sns, "pointplot", lambda data, **kw: calls.append(
        (set(data[kw["hue"]]), kw.get("hue_order"))) or real(data=data, **kw))
    result = figures.proposal_figure(done, axes, "coco/segm/AP", _canvas(done, tmp_path))
    assert isinstance(result, FigureResult)
    assert len(calls) == 2  # mask AP and proposal recall
    orders = {tuple(order or ()) for _, order in calls}
    assert len(orders) == 1 and len(next(iter(orders))) == 2
    assert all(levels == set(order) for levels, order in calls)
