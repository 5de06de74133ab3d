"""`mnc-bench report` end to end on a fixture results tree (no training): files, numbers, LaTeX, figures."""

from __future__ import annotations

import hashlib
import json
import re
import warnings
import zlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from report_browser import find_chromium, inspect_page
from report_fixtures import DISPLAY_NAMES

from mnc_bench.reporting import provenance, write_report
from mnc_bench.reporting.compare import short_label
from mnc_bench.reporting.style import Canvas
from mnc_bench.reporting.venue import COLUMN

# The whole report drawn from the fixture tree takes ~20 s: CI's slow tier; the pieces have fast tests in
# the other test_report_*.py files.
pytestmark = pytest.mark.slow

SUITES = ["mnc_vs_successors", "cascade_depth", "loss_weights", "proposal_quality", "stage3_labels"]
# Main figures: 3.25 in (PDF, PNG) and 6.875 in (<name>_textwidth.pdf). The grid holds 3 models at column
# width: the fixture's 4 go on in qualitative_2; at text width one figure holds all.
MAIN_FIGURES = ["ap_vs_depth", "loss_weights", "ap_vs_proposals", "speed_accuracy", "qualitative",
                "boundary_ap", "tide_errors", "robustness",
                "ablation_model_cascade_stage3_labels", "ablation_model_cascade_share_weights"]
FIGURES = [*MAIN_FIGURES, "qualitative_2",
           *(f"training_loss_{suite}" for suite in SUITES),
           *(f"training_stages_{model}" for model in ("mask_rcnn_shapes", "panet_shapes", "mnc_3stage_shapes",
                                                      "mnc_5stage_shapes"))]
COLUMN_PNG_PX = 650  # 3.25 in at 200 dpi
TABLES = ["main_coco_mnc_vs_successors", "main_voc_mnc_mnc_vs_successors", "main_voc_sds_mnc_vs_successors",
          "main_coco_cascade_depth", "ablation_model_cascade_num_stages", "ablation_model_cascade_box_grad",
          "ablation_model_loss_weights_mask", "ablation_model_loss_weights_cls",
          "ablation_model_proposal_control", "ablation_model_cascade_share_weights",
          "ablation_model_cascade_stage3_labels"]


def _keeping(save, drawn: dict):
    """Canvas.save that also keeps each column-width Figure, by name."""

    def keeping_save(canvas, fig, name, caption):
        if canvas.width == COLUMN:
            drawn[name] = fig
        return save(canvas, fig, name, caption)

    return keeping_save


@pytest.fixture(scope="module")
def fixture_report(tmp_path_factory, shapes_dataset, build_results):
    """(results root, the collected table, report folder, what write_report returned, the matplotlib Figure of
    each figure drawn, by name)."""
    root = tmp_path_factory.mktemp("report")
    table = build_results(root, shapes_dataset)
    out = root / "reports" / "fixture"
    drawn = {}
    with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings():
        # The report names the checkout's commit; other work committing meanwhile must not change "same code".
        patch.setattr(provenance, "checkout_commit", lambda: ("c0ffee", False))
        patch.setattr(Canvas, "save", _keeping(Canvas.save, drawn))  # for the tests of what each figure plots
        warnings.simplefilter("error", UserWarning)  # e.g. matplotlib's "constrained_layout not applied"
        written = write_report(SUITES, out, results_dir=root / "results",
                               bench=root / "results" / "bench" / "models.json")
        yield root, table, out, written, drawn


def md_table(text: str, heading: str, index: int = 0) -> pd.DataFrame:
    """The ``index``-th Markdown table after ``heading``, cells as strings with the bold marks removed."""
    section = text.split(heading, 1)[1]
    blocks = re.findall(r"((?:^\|.*\|\n)+)", section, flags=re.M)
    lines = blocks[index].strip().splitlines()
    split = [[c.strip().replace("**", "") for c in line.strip("|").split(" | ")] for line in lines]
    return pd.DataFrame(split[2:], columns=split[0])


def independent_aggregates(table: pd.DataFrame, key: str) -> pd.DataFrame:
    done = table[table["status"] == "done"]
    stats = done.groupby(["suite", "model", "variant"])[key].agg(["mean", "std", "count", "size"])
    return stats.reset_index()


def test_every_file_is_written(fixture_report):
    _, _, out, written, _ = fixture_report
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    for name in TABLES:
        assert (out / "tables" / f"{name}.tex").is_file(), name
    for name in FIGURES:
        for ext in ("pdf", "png"):
            assert (out / "figures" / f"{name}.{ext}").is_file(), f"{name}.{ext}"
    wide = {p.name for p in (out / "figures").glob("*_textwidth.*")}
    assert wide == {f"{name}_textwidth.pdf" for name in MAIN_FIGURES}
    assert all(p.is_file() for p in written.files)
    assert written.skipped == []  # every figure of the fixture draws
    assert not list(out.rglob("*.tmp"))


@pytest.mark.parametrize("key,label", [("coco/segm/AP", "mask AP"), ("coco/bbox/AP", "box AP"),
                                       ("voc_mnc/mAP@0.7", "mAP^r@0.7 (MNC protocol)")])
def test_main_table_cells_equal_independent_aggregates(fixture_report, key, label):
    _, table, out, _, _ = fixture_report
    main = md_table((out / "report.md").read_text(), "## Main comparison")
    expected = independent_aggregates(table, key)
    assert len(main) == len(expected)  # one row per (suite, model, variant) with a finished run
    for row in expected.itertuples():
        name = DISPLAY_NAMES[row.model]
        label_text = short_label(name, row.variant)  # axis keys cut to what tells them apart
        cell = main[(main["suite"] == row.suite) & (main["model"] == label_text)][label].item()
        same = (table.suite == row.suite) & (table.model == row.model) & (table.variant == row.variant)
        group = table[same]
        n = int((group["status"] == "done").sum())
        std = f"{row.std * 100:.1f}" if round(row.std * 100, 1) or not row.std else "<0.1"  # never '± 0.0'
        text = f"{row.mean * 100:.1f}" + (f" ± {std}" if row.count > 1 else "")
        text += f" (n={row.count})" if row.count != n else ""
        assert cell == text, (row, cell)
    assert "± 0.0 " not in (out / "report.md").read_text()


def test_main_table_marks_the_best_mask_ap_per_suite(fixture_report):
    _, table, out, _, _ = fixture_report
    text = (out / "report.md").read_text()
    best = independent_aggregates(table, "coco/segm/AP").query("suite == 'mnc_vs_successors'")
    top = best.loc[best["mean"].idxmax()]
    assert f"**{top['mean'] * 100:.1f} ± {top['std'] * 100:.1f}**" in text
    assert top["model"] == "mnc_5stage_shapes"


def test_difference_to_baseline_matches_independent_means(fixture_report):
    _, table, out, _, _ = fixture_report
    diff = md_table((out / "report.md").read_text(), "## Difference to the baseline")
    done = table[(table.status == "done") & (table.suite == "mnc_vs_successors")]
    means = done.groupby("model")["coco/segm/AP"].mean() * 100
    rows = diff[diff["suite"] == "mnc_vs_successors"].set_index("model")
    assert rows.loc["Mask R-CNN", "Δ [95 % CI]"] == "reference"
    for model in ("panet_shapes", "mnc_3stage_shapes", "mnc_5stage_shapes"):
        difference = means[model] - means["mask_rcnn_shapes"]
        assert rows.loc[DISPLAY_NAMES[model], "Δ [95 % CI]"].startswith(f"{difference:+.2f} [")
    # mnc_5stage is ~10 points above with ~1 point of seed noise: separated samples.
    assert rows.loc["MNC 5-stage", "P(model > baseline) [95 % CI]"] == "1.00 [1.00, 1.00]"
    assert rows.loc["MNC 5-stage", "Δ verdict"] == "better"
    # the exact rank test cannot reach p < 0.05 at 3 seeds a side (smallest p: 2 / C(6, 3) = 0.1)
    assert rows.loc["MNC 5-stage", "P verdict"] == "inconclusive"


def test_ablation_tables_and_one_seed_group(fixture_report):
    _, _, out, _, _ = fixture_report
    text = (out / "report.md").read_text()
    depth = md_table(text, "## Ablation: model.cascade.num_stages")
    assert set(depth["num_stages"]) == {"3", "5", "7"}
    single = depth[(depth["num_stages"] == "7")
                   & (depth["setting"] == "box_grad=False, share_weights=True")]
    assert single["n"].item() == "1"
    assert "no interval" in single["Δ [95 % CI]"].item() and "±" not in single["mask AP"].item()
    assert "One seed only (no spread, no interval)" in text
    assert "`coco/bbox/AP` is missing from 1 finished run(s)" in text
    assert "loss is NaN at iteration 420" in text.split("## Runs not counted", 1)[1]
    proposals = md_table(text, "## Ablation: model.proposal_control")  # a mapping-valued axis, stored as JSON
    assert list(proposals["proposal_control"]) == ["default", "jitter=0.2", "max_proposals=10",
                                                   "max_proposals=50", "mode=oracle, oracle_iou=0.9"]
    assert proposals["Δ [95 % CI]"].iloc[0] == "reference"


def test_published_rows_are_a_separate_labelled_block(fixture_report):
    _, _, out, _, _ = fixture_report
    text = (out / "report.md").read_text()
    head, published = text.split("## Published — different data, backbone and hardware", 1)
    assert "mmdetection model zoo" in published and "mmdetection model zoo" not in head
    block = md_table(text, "## Published — different data, backbone and hardware")
    assert set(block["model"]) <= {"mnc", "mnc_5stage", "mnc_3stage", "mask_rcnn", "panet"}
    assert "34.7" in set(block["value"])  # mmdet's Mask R-CNN R50-FPN 1x mask AP


def _tex_cells(line: str) -> int:
    return len(re.findall(r"(?<!\\)&", line)) + 1


@pytest.mark.parametrize("name", TABLES)
def test_latex_tables_balance(fixture_report, name):
    _, _, out, _, _ = fixture_report
    tex = (out / "tables" / f"{name}.tex").read_text()
    begins, ends = re.findall(r"\\begin\{(\w+)\}", tex), re.findall(r"\\end\{(\w+)\}", tex)
    assert begins == ends[::-1] and begins[:2] == ["table", "tabular"]  # column width by default
    spec = re.search(r"\\begin\{tabular\}\{(.*)\}$", tex, flags=re.M).group(1)
    columns = len(re.sub(r"@\{\}|\{[^}]*\}", "", spec))  # l, r and p{...} columns
    body = tex.split(r"\toprule", 1)[1].split(r"\bottomrule", 1)[0]
    header, rows = body.split(r"\midrule", 1)
    assert _tex_cells(header.strip()) == columns
    lines = [line for line in rows.strip().splitlines() if line.strip()]
    cells = [line for line in lines if not line.startswith(r"\multicolumn")]  # headings span the table
    assert cells and all(_tex_cells(line) == columns and line.rstrip().endswith(r"\\") for line in cells)
    assert all(line.startswith(rf"\multicolumn{{{columns}}}") for line in lines if line not in cells)
    assert tex.count("{") == tex.count(r"\{") + tex.count("}") - tex.count(r"\}")  # braces pair up
    assert "±" not in tex and "nan" not in tex.lower()
    assert not re.search(r"(^|&)\s*\$\\pm\$", body, flags=re.M)  # no spread in a cell of its own


def test_coco_latex_numbers(fixture_report):
    _, table, out, _, _ = fixture_report
    tex = (out / "tables" / "main_coco_mnc_vs_successors.tex").read_text()
    row = next(line for line in tex.splitlines() if line.startswith("Mask R-CNN &"))
    done = table[(table.status == "done") & (table.model == "mask_rcnn_shapes")
                 & (table.suite == "mnc_vs_successors")]
    ap = done["coco/segm/AP"] * 100
    cells = [c.strip() for c in row.rstrip("\\ ").split("&")]
    assert cells[1] == "3"  # PANet lost a seed: the rows differ in n, so the table has an n column
    assert cells[2] == rf"{ap.mean():.1f}\,{{\scriptsize$\pm${ap.std():.1f}}}"  # mean and spread share a cell
    assert len(cells) == 5  # method, n, AP, AP50, AP75: the column-width layout
    assert r"\label{tab:mnc_vs_successors-coco}" in tex
    assert [line.split(" &")[0] for line in tex.splitlines() if " & " in line][1:] == [
        "Mask R-CNN", "MNC 3-stage", "MNC 5-stage", "PANet"]


@pytest.mark.parametrize("name", FIGURES)
def test_figures_are_valid_sized_and_not_blank(fixture_report, name):
    _, _, out, _, _ = fixture_report
    png = Image.open(out / "figures" / f"{name}.png")
    png.verify()
    png = Image.open(out / "figures" / f"{name}.png").convert("L")
    assert png.width == COLUMN_PNG_PX  # one column of a two-column paper
    pixels = np.asarray(png, dtype=float)
    assert (pixels < 200).mean() > 0.01 and pixels.std() > 10  # something is drawn
    pdf = (out / "figures" / f"{name}.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    width = float(re.search(rb"/MediaBox \[\s*0 0 ([\d.]+) ([\d.]+)", pdf).group(1))
    assert width == pytest.approx(3.25 * 72)
    assert b"CreationDate" not in pdf


def _plotted_means(ax) -> list[float]:
    """The y of every marker seaborn's pointplot drew on ``ax``: its means over seeds."""
    return sorted(float(y) for line in ax.get_lines() if line.get_marker() not in ("", "None", None)
                  for y in line.get_ydata() if np.isfinite(y))


def _group_means(table: pd.DataFrame, key: str, axis: str) -> list[float]:
    """Means over seeds, in points, of every (suite, model, variant) with a value on ``axis``."""
    done = table[(table["status"] == "done") & table[axis].notna()]
    return sorted((done.groupby(["suite", "model", "variant"])[key].mean() * 100).dropna())


def test_the_ablation_figures_plot_the_compared_metric_of_each_group(fixture_report):
    _, table, _, _, drawn = fixture_report
    # panels: the other axes' settings (the 3-stage runs, with one round to share, drawn in each)
    # below the compared metric, the proposal recall of the same runs
    for label, key in (("mask AP", "coco/segm/AP"), ("proposal AR@100", "proposals/AR@100")):
        depth = sorted({round(y, 9) for ax in drawn["ap_vs_depth"].axes if ax.get_ylabel() == label
                        for y in _plotted_means(ax)})
        assert depth == pytest.approx(_group_means(table, key, "axis.model.cascade.num_stages"))
    weights = table.assign(both=table["axis.model.loss_weights.mask"] + table["axis.model.loss_weights.cls"])
    # one heatmap per metric
    for ax, key in zip(drawn["loss_weights"].axes, ("coco/segm/AP", "coco/segm/AP75")):
        heatmap = np.ma.compressed(ax.collections[0].get_array())
        assert sorted(heatmap) == pytest.approx(_group_means(weights, key, "both"))
    # an axis of its own: one panel per metric, the compared one first, then AP75 and mAP^r@0.7
    panels = drawn["ablation_model_cascade_stage3_labels"].axes
    assert [ax.get_title() for ax in panels] == ["mask AP", "AP75", "mAP^r@0.7\n(MNC protocol)"]
    for ax, key in zip(panels, ("coco/segm/AP", "coco/segm/AP75", "voc_mnc/mAP@0.7")):
        assert _plotted_means(ax) == pytest.approx(
            _group_means(table, key, "axis.model.cascade.stage3_labels"))


def test_the_training_loss_figure_plots_each_models_mean_total_loss_on_a_log_axis(fixture_report):
    root, table, _, _, drawn = fixture_report
    (ax,) = drawn["training_loss_mnc_vs_successors"].axes
    assert ax.get_yscale() == "log"  # every fixture loss is positive
    runs = table[(table["status"] == "done") & (table["suite"] == "mnc_vs_successors")]
    records = [dict(json.loads(line), model=run.model) for run in runs.itertuples()
               for line in (root / "results" / run.suite / run.run_id
                            / "scalars.json").read_text().splitlines()
               if "loss" in json.loads(line)]
    expected = pd.DataFrame(records).groupby(["model", "iter"])["loss"].mean()
    plotted = sorted(tuple(np.round(line.get_ydata(), 9)) for line in ax.get_lines() if len(line.get_ydata()))
    assert plotted == sorted(tuple(np.round(expected[model].to_numpy(), 9))
                             for model in sorted(set(runs.model)))


def _pdf_fonts(pdf: bytes) -> tuple[list[float], set[bytes]]:
    """The size of every text run (``Tf`` operators of the content streams) and the font subtypes of a PDF."""
    sizes = []
    for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", pdf, flags=re.S):
        try:
            text = zlib.decompress(stream)
        except zlib.error:
            continue  # a font program or an image, not page content
        sizes += [float(size) for size in re.findall(rb"/F\d+ ([\d.]+) Tf", text)]
    return sizes, set(re.findall(rb"/Subtype\s*/(TrueType|Type3|Type1|CIDFontType2|Type0)", pdf))


@pytest.mark.parametrize("name", [*FIGURES, *(f"{name}_textwidth" for name in MAIN_FIGURES)])
def test_figure_text_is_legible_at_print_size_and_embedded_as_truetype(fixture_report, name):
    _, _, out, _, _ = fixture_report
    pdf = (out / "figures" / f"{name}.pdf").read_bytes()
    sizes, subtypes = _pdf_fonts(pdf)
    assert sizes and min(sizes) >= 7.0, sorted(set(sizes))
    # TrueType programs (FontFile2; CIDFontType2 is TrueType in a composite font); no Type 3 (glyphs drawn)
    assert subtypes & {b"TrueType", b"CIDFontType2"} and b"Type3" not in subtypes and b"/FontFile2" in pdf
    width = float(re.search(rb"/MediaBox \[\s*0 0 ([\d.]+) ([\d.]+)", pdf).group(1))
    assert width == pytest.approx((6.875 if name.endswith("_textwidth") else 3.25) * 72)


@pytest.mark.slow  # writes a second whole report (~5 s); CI runs it
def test_same_input_gives_byte_identical_report(fixture_report):
    root, _, out, written, _ = fixture_report
    assert "- report code: c0ffee" in (out / "report.md").read_text()
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in written.files}
    write_report(SUITES, out, results_dir=root / "results", bench=root / "results" / "bench" / "models.json")
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in before}
    assert after == before
    assert re.search(r"\b20\d\d-\d\d-\d\d\b", (out / "report.md").read_text()) is None  # no dates


PAGE_CHECKS = """(async () => {
  const images = Array.from(document.images);
  const decoded = await Promise.all(images.map(img => img.decode().then(() => true, () => false)));
  const table = document.getElementById('main-table');
  return {
    images: images.map((img, i) => ({decoded: decoded[i], width: img.naturalWidth})),
    header: table ? Array.from(table.tHead.rows[0].cells).map(c => c.textContent) : null,
    rows: table ? table.tBodies[0].rows.length : 0,
    scripts: document.scripts.length,
    external: Array.from(document.querySelectorAll('[src]')).filter(e => !e.src.startsWith('data:')).length,
  };
})()"""


def _chromium() -> str:
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("Chromium is not installed: Debian's `chromium` package (.ci/run installs it where it "
                    "can)")
    return chromium


def test_report_html_in_headless_chromium(fixture_report, tmp_path):
    _, table, out, _, _ = fixture_report
    shot = tmp_path / "report.png"
    page = inspect_page(_chromium(), out / "report.html", PAGE_CHECKS, shot)
    assert page.errors == []
    figures = len(list((out / "figures").glob("*.png")))
    assert len(page.checks["images"]) == figures
    assert all(img["decoded"] and img["width"] == COLUMN_PNG_PX for img in page.checks["images"])
    assert page.checks["header"][:4] == ["suite", "model", "n", "mask AP"]
    assert page.checks["rows"] == len(independent_aggregates(table, "coco/segm/AP"))
    assert page.checks["scripts"] == 0 and page.checks["external"] == 0  # self-contained
    with Image.open(shot) as image:
        assert image.format == "PNG" and image.width > 500 and image.height > 2000


def test_browser_check_catches_a_broken_image(fixture_report, tmp_path):
    """The check above has teeth: the same page with one corrupted figure fails it."""
    _, _, out, _, _ = fixture_report
    html = (out / "report.html").read_text()
    start = html.index("data:image/png;base64,") + len("data:image/png;base64,")
    broken = tmp_path / "broken.html"
    broken.write_text(html[:start] + "AAAA" + html[start + 4000:])
    page = inspect_page(_chromium(), broken, PAGE_CHECKS, tmp_path / "broken.png")
    assert [img["decoded"] for img in page.checks["images"]].count(False) == 1


def test_the_report_says_which_weights_the_bench_used_and_how_to_rerun_it(fixture_report):
    _, _, out, _, _ = fixture_report
    text = (out / "report.md").read_text()
    assert "batch 1, random weights; plain model configs only" in text
    bench_line = next(line for line in text.splitlines() if line.startswith("mnc-bench bench models"))
    assert " configs/mnc/mnc_3stage_shapes.py " in bench_line.split("--configs", 1)[1]
    assert "--checkpoint" not in bench_line


def test_total_loss_axis_is_logarithmic_for_positive_losses(fixture_report):
    from mnc_bench.reporting.curves import loss_scale

    _, _, out, _, _ = fixture_report
    assert "Log scale" in (out / "report.md").read_text()  # the fixture's losses are positive
    assert loss_scale(pd.Series([100.0, 40.0, 1.2, 0.9])) == "log"
    assert loss_scale(pd.Series([0.5, -0.1])) == "linear"  # a signed loss term: log would drop points


def test_s_per_iter_of_single_thread_runs_that_lacked_their_core_is_flagged():
    from types import SimpleNamespace

    from mnc_bench.reporting.names import display_names
    from mnc_bench.reporting.sections import contended_notes

    done = pd.DataFrame({"suite": ["a", "a", "a", "a", "b"], "model": ["m1", "m1", "m2", "m3", "m1"],
                         "variant": [""] * 5, "threads": pd.array([1, 1, 1, 2, 1], dtype="Int64"),
                         "s_per_iter": [1.0, 1.1, 0.6, 0.5, 0.7], "cpu_share": [0.97, 0.68, 0.81, 0.6, 0.95]})
    names = display_names(["m1", "m2", "m3"])
    (note,) = contended_notes(SimpleNamespace(done=done, names=names))  # suite b's run had its core
    assert note.startswith("s/iter in suite a: 2 single-thread run(s) had 68% to 81% of their core")
    assert note.endswith("not a model cost: m1, m2.")  # m3 ran 2 threads: its share does not tell load
    assert contended_notes(SimpleNamespace(done=done.drop(columns="cpu_share"), names=names)) == []


def test_s_per_iter_from_different_thread_counts_is_flagged_per_suite(fixture_report):
    from types import SimpleNamespace

    from mnc_bench.reporting.names import display_names
    from mnc_bench.reporting.sections import mixed_thread_notes

    _, _, out, _, _ = fixture_report
    assert "thread counts" not in (out / "report.md").read_text()  # every fixture run: 1 thread
    done = pd.DataFrame({"suite": ["a", "a", "a", "b", "b"], "model": ["m1", "m1", "m2", "m1", "m2"],
                         "variant": ["", "", "", "", ""], "threads": pd.array([1, 1, 2, 2, 2], dtype="Int64"),
                         "s_per_iter": [1.0, 1.1, 0.6, 0.5, np.nan]})
    names = display_names(["m1", "m2"])
    (note,) = mixed_thread_notes(SimpleNamespace(done=done, names=names))
    assert note.startswith("s/iter in suite a was measured with different torch thread counts "
                           "(1 thread: m1; 2 threads: m2)")
    done.loc[2, "s_per_iter"] = np.nan  # m2's s/iter unmeasured: nothing to compare
    assert mixed_thread_notes(SimpleNamespace(done=done, names=names)) == []
    # an older collect table
    assert mixed_thread_notes(SimpleNamespace(done=done.drop(columns="threads"), names=names)) == []


def test_log_loss_axis_labels_ticks_as_plain_numbers():
    import matplotlib.pyplot as plt

    from mnc_bench.reporting.curves import set_loss_scale

    fig, ax = plt.subplots()
    losses = pd.Series([0.55, 7.5])
    ax.plot([0, 1], losses)
    assert set_loss_scale(ax, losses) == "log"
    fig.canvas.draw()
    labels = [t.get_text() for minor in (False, True) for t in ax.get_yticklabels(minor=minor)
              if t.get_text()]
    plt.close(fig)
    assert {"1", "0.6", "2", "4"} <= set(labels), labels
    assert all(label.replace(".", "").isdigit() for label in labels), labels  # no 6 x 10^-1
