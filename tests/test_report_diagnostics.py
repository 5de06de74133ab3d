"""The report's Boundary AP, TIDE and robustness tables and figures: drawn from a collected table that has
those columns, with cells equal to independently computed means; absent, with the reason, from one that has
not."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mnc_bench.evaluation.corruptions import CORRUPTIONS
from mnc_bench.evaluation.errors import ERROR_TYPES, SUMMARY_TYPES, TIDE_METRIC_NAMES
from mnc_bench.reporting import write_report
from mnc_bench.reporting.names import display_names

MODELS = {"mask_rcnn_shapes": 0.40, "mnc_3stage_shapes": 0.35, "htc_shapes": 0.45}
NAMES = display_names(MODELS)  # the rows are labelled with the models' display names
SEEDS = (0, 1)


def collected_table(with_diagnostics: bool) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for model, ap in MODELS.items():
        for seed in SEEDS:
            row = {"suite": "diag", "run_id": f"{model}-{seed}", "status": "done", "failure_reason": "",
                   "config": f"configs/x/{model}.py", "model": model, "seed": seed, "variant": "",
                   "coco/segm/AP": ap + rng.normal(0, 0.01), "coco/segm/AP50": ap + 0.2,
                   "coco/segm/AP75": ap + 0.03, "coco/bbox/AP": ap + 0.02}
            if with_diagnostics:
                row.update({"coco/boundary/AP": ap - 0.1 + rng.normal(0, 0.01),
                            "coco/boundary/AP50": ap + 0.1, "coco/boundary/AP75": ap - 0.15})
                for kind in ("segm", "bbox"):
                    row[f"tide/{kind}/base_AP50"] = ap + 0.2
                    for k, error in enumerate(ERROR_TYPES + SUMMARY_TYPES):
                        row[f"tide/{kind}/dAP_{error}"] = 0.01 * (k + 1) + rng.uniform(0, 0.03)
                    row[f"robustness/{kind}/AP_clean"] = ap
                    row[f"robustness/{kind}/mPC"] = ap * 0.6 + rng.normal(0, 0.01)
                    row[f"robustness/{kind}/rPC"] = row[f"robustness/{kind}/mPC"] / ap
                    for severity in (1, 3, 5):
                        row[f"robustness/{kind}/AP@s{severity}"] = ap * (1 - 0.15 * severity)
                    for k, corruption in enumerate(CORRUPTIONS):
                        row[f"robustness/{kind}/AP/{corruption}"] = ap * (0.3 + 0.04 * k)
            rows.append(row)
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    out = {}
    for with_diagnostics in (True, False):
        folder = tmp_path_factory.mktemp(f"diag_{with_diagnostics}")
        table = folder / "collect.csv"
        collected_table(with_diagnostics).to_csv(table, index=False)
        written = write_report([str(table)], folder / "report", bench=None)
        out[with_diagnostics] = (collected_table(with_diagnostics), written,
                                 (folder / "report" / "report.md").read_text())
    return out


def _table_after(md: str, heading: str, nth: int = 0) -> list[list[str]]:
    """The rows (cells) of the nth Markdown table after ``heading``."""
    part = md.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    tables = re.findall(r"((?:^\|.*\|\n)+)", part, flags=re.MULTILINE)
    lines = tables[nth].strip().splitlines()
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]


def _cell(table: pd.DataFrame, model: str, key: str, scale: float = 100) -> str:
    values = table.loc[table["model"] == model, key] * scale
    return f"{values.mean():.1f} ± {values.std(ddof=1):.1f}"


def test_boundary_table_cells_are_the_means_over_seeds(reports):
    table, _, md = reports[True]
    rows = {r[0]: r for r in _table_after(md, "Boundary AP")}
    assert set(rows) == {NAMES(m) for m in MODELS}
    for model in MODELS:
        assert rows[NAMES(model)][1] == _cell(table, model, "coco/segm/AP")
        assert rows[NAMES(model)][2] == _cell(table, model, "coco/boundary/AP")


def test_tide_tables_for_masks_and_boxes(reports):
    table, _, md = reports[True]
    for nth, kind in enumerate(("segm", "bbox")):
        rows = {r[0]: r for r in _table_after(md, "Error breakdown (TIDE)", nth)}
        for model in MODELS:
            cells = rows[NAMES(model)][1:]
            assert len(cells) == len(TIDE_METRIC_NAMES)
            assert cells[2] == _cell(table, model, f"tide/{kind}/dAP_loc")


def test_robustness_table(reports):
    table, _, md = reports[True]
    rows = {r[0]: r for r in _table_after(md, "Robustness to corruptions")}
    for model in MODELS:
        assert rows[NAMES(model)][2] == _cell(table, model, "robustness/segm/mPC")
        assert rows[NAMES(model)][3] == _cell(table, model, "robustness/segm/rPC")
    per_corruption = {r[0]: r for r in _table_after(md, "Robustness to corruptions", 1)}
    assert len(per_corruption[NAMES("htc_shapes")]) == 1 + len(CORRUPTIONS)


@pytest.mark.parametrize("name", ["boundary_ap", "tide_errors", "robustness"])
def test_figures_are_drawn_and_not_blank(reports, name):
    _, written, md = reports[True]
    png = next(p for p in written.files if p.name == f"{name}.png")
    pixels = np.asarray(Image.open(png).convert("L"), dtype=float)
    assert pixels.std() > 10 and pixels.shape[1] > 500
    assert f"figures/{name}.png" in md


def test_without_the_columns_nothing_is_shown_and_the_figures_say_why(reports):
    _, written, md = reports[False]
    for heading in ("Boundary AP", "Error breakdown (TIDE)", "Robustness to corruptions"):
        assert f"## {heading}" not in md
    reasons = {s.name: s.reason for s in written.skipped}
    assert "rescore SUITE --metric boundary" in reasons["boundary_ap"]
    assert "rescore SUITE --metric tide" in reasons["tide_errors"]
    assert "mnc-bench robustness SUITE" in reasons["robustness"]


def test_a_tide_dap_is_better_lower_when_compared():
    from mnc_bench.reporting.metrics import column

    assert not column("tide/segm/dAP_loc").higher_is_better
    assert column("tide/segm/base_AP50").higher_is_better and column("coco/boundary/AP").higher_is_better
    assert column("robustness/segm/rPC").scale == 100.0
