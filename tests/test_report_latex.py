"""The report's LaTeX tables compile with pdflatex and fit the print width they are made for, measured on the
typeset page; `--table-width` chooses that width per table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from latex_fit import DOCUMENTS, find_pdflatex, typeset
from report_fixtures import DISPLAY_NAMES, build_results

from mnc_bench.cli import main
from mnc_bench.errors import UserError
from mnc_bench.reporting import write_report
from mnc_bench.reporting.analysis import analyse
from mnc_bench.reporting.claims import evaluate_claims, load_claims
from mnc_bench.reporting.report import plan_tables
from mnc_bench.reporting.table import load_inputs
from mnc_bench.reporting.venue import COLUMN, TEXT, parse_table_widths

SUITES = ["mnc_vs_successors", "cascade_depth", "loss_weights", "proposal_quality", "stage3_labels"]
CHECKOUT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p.parent.name for p in (CHECKOUT / "results").glob("*/collect.parquet"))
# The COCO table as reports wrote it before tables had a width: every ± in a column of its own, 14 columns.
UNFITTED_COCO = r"""\begin{table}[t]
\centering
\caption{Mask AP on cascades\_vs\_unified (COCO protocol, points): mean $\pm$ std over seeds; $n$ seeds.}
\label{tab:cascades_vs_unified-coco}
\begin{tabular}{lrrlrlrlrlrlrl}
\toprule
method & $n$ & AP & $\pm$ & AP$_{50}$ & $\pm$ & AP$_{75}$ & $\pm$
  & AP$_S$ & $\pm$ & AP$_M$ & $\pm$ & AP$_L$ & $\pm$ \\
\midrule
cascade\_mask\_rcnn\_shapes & 3 & 59.1 & $\pm$0.9 & \textbf{75.8} & $\pm$1.2 & \textbf{65.4} & $\pm$1.2
  & 50.5 & $\pm$0.9 & \textbf{71.4} & $\pm$0.9 & 62.1 & $\pm$3.1 \\
mask2former\_shapes & 3 & 11.1 & $\pm$0.2 & 15.8 & $\pm$0.3 & 11.5 & $\pm$0.4
  & 7.9 & $\pm$0.8 & 17.8 & $\pm$0.9 & 59.9 & $\pm$12.9 \\
\bottomrule
\end{tabular}
\end{table}
"""


def _pdflatex() -> None:
    if find_pdflatex() is None:
        pytest.skip("pdflatex is not installed: Debian's `texlive-latex-recommended` package (.ci/run "
                    "installs it where it can)")


@pytest.fixture(scope="module")
def fixture_results(tmp_path_factory, shapes_dataset) -> Path:
    root = tmp_path_factory.mktemp("latex")
    build_results(root, shapes_dataset)
    return root / "results"


def _tables(results: Path, suites: list[str], bench: Path | None) -> dict[str, dict[str, str]]:
    """Every table the report writes for ``suites`` (with the shipped claims file), at each width: width ->
    file stem -> LaTeX."""
    inputs = load_inputs(suites, results_dir=results, bench=bench)
    a = analyse(inputs, "coco/segm/AP", None)
    claims = evaluate_claims(load_claims(CHECKOUT / "configs" / "claims" / "mnc.yaml"), a.done)
    tables = plan_tables(a, claims)
    return {w.name: {stem: build(w) for stem, build in tables.items()} for w in (COLUMN, TEXT)}


@pytest.fixture(scope="module")
def fixture_tables(fixture_results) -> dict[str, dict[str, str]]:
    return _tables(fixture_results, SUITES, fixture_results / "bench" / "models.json")


def _assert_fits(tables: dict[str, str], width, document: str, workdir: Path) -> None:
    measured = typeset(tables, document, workdir)
    for name, result in measured.items():
        assert result.errors == [], (name, result.errors)
        assert len(result.widths_pt) == 1, name
        assert result.widths_pt[0] <= width.points + 0.01, (name, result.widths_pt[0], width.points)
        assert result.overfull == [], (name, result.overfull)  # no text past its cell or the column


@pytest.mark.parametrize("document", DOCUMENTS)
@pytest.mark.parametrize("width", [COLUMN, TEXT], ids=lambda w: w.name)
def test_every_table_fits_its_print_width(fixture_tables, tmp_path, width, document):
    _pdflatex()
    _assert_fits(fixture_tables[width.name], width, document, tmp_path)


@pytest.mark.parametrize("suite", SHIPPED)
def test_the_tables_of_the_shipped_results_fit(tmp_path, suite):
    """The committed collect tables: real model names (Cascade Mask R-CNN), real spreads."""
    _pdflatex()
    tables = _tables(CHECKOUT / "results", [suite], None)
    for width in (COLUMN, TEXT):
        _assert_fits(tables[width.name], width, "two-column", tmp_path / width.name)


def test_the_check_fails_the_unfitted_coco_table(tmp_path):
    """The measurement has teeth: the COCO table as reports wrote it before runs past both widths."""
    _pdflatex()
    (result,) = typeset({"coco": UNFITTED_COCO}, "two-column", tmp_path).values()
    assert result.errors == [] and result.widths_pt[0] > TEXT.points > COLUMN.points
    assert result.overfull  # LaTeX's own overfull warning agrees


def test_layouts_per_width(fixture_tables):
    column = fixture_tables["column"]["main_coco_mnc_vs_successors"]
    text = fixture_tables["text"]["main_coco_mnc_vs_successors"]
    assert column.startswith(r"\begin{table}[t]") and text.startswith(r"\begin{table*}[t]")
    header = {name: next(line for line in tex.splitlines() if line.startswith("method &"))
              for name, tex in (("column", column), ("text", text))}
    assert header["column"] == r"method & $n$ & AP & AP$_{50}$ & AP$_{75}$ \\"
    assert header["text"] == r"method & $n$ & AP & AP$_{50}$ & AP$_{75}$ & AP$_S$ & AP$_M$ & AP$_L$ \\"
    assert r"AP$_S$, AP$_M$, AP$_L$: in the text-width table" in column
    assert all(r"\label{tab:mnc_vs_successors-coco}" in tex for tex in (column, text))
    for width, tables in fixture_tables.items():  # every table has its own label, for \ref
        labels = [re.search(r"\\label\{(tab:[^}]+)\}", tex).group(1) for tex in tables.values()]
        assert len(set(labels)) == len(tables), width
    for tex in (column, text):
        rows = [line.split(" & ")[0] for line in tex.splitlines() if " & " in line][1:]
        models = ("mask_rcnn_shapes", "mnc_3stage_shapes", "mnc_5stage_shapes", "panet_shapes")
        assert rows == [DISPLAY_NAMES[m] for m in models]
        assert re.search(r" & \d+\.\d\\,\{\\scriptsize\$\\pm\$\d+\.\d+\} ", tex)  # mean and spread, one cell
    ablation = fixture_tables["column"]["ablation_model_cascade_stage3_labels"]
    assert r"\multicolumn{3}{@{}l@{}}{\emph{MNC 3-stage}} \\" in ablation  # a setting heads its rows
    assert "P(" not in ablation and r"$P(\mathrm{impr.})$" in fixture_tables["text"][
        "ablation_model_cascade_stage3_labels"]


def _report(results: Path, out: Path, widths: list[str]):
    return write_report(["mnc_vs_successors", "stage3_labels"], out, results_dir=results, bench=None,
                        figures=False, table_widths=parse_table_widths(widths))


def _floats(out: Path) -> dict[str, str]:
    """File stem -> the float each table is set in: table (one column) or table* (the text width)."""
    return {p.stem: re.match(r"\\begin\{(table\*?)\}", p.read_text()).group(1)
            for p in (out / "tables").glob("*.tex")}


def test_table_width_option_chooses_per_table(fixture_results, tmp_path):
    floats = _floats(_report(fixture_results, tmp_path / "a", ["main_coco=text"]).out)
    assert floats["main_coco_mnc_vs_successors"] == floats["main_coco_stage3_labels"] == "table*"
    assert floats["main_voc_mnc_mnc_vs_successors"] == "table"
    assert floats["ablation_model_cascade_stage3_labels"] == "table"
    floats = _floats(_report(fixture_results, tmp_path / "b", ["text", "ablation=column"]).out)
    assert floats["main_voc_sds_stage3_labels"] == "table*"
    assert floats["ablation_model_cascade_stage3_labels"] == "table"
    text = (tmp_path / "b" / "report.md").read_text()
    assert "--table-width text ablation=column" in text  # the command in the provenance
    assert "`tables/main_coco_stage3_labels.tex` (text width)" in text


@pytest.mark.parametrize("widths,message", [
    (["main_coco=wide"], "--table-width wide: not a width (choose from column, text)"),
    (["=text"], "--table-width =text: expected WIDTH or TABLE=WIDTH"),
    (["main_cocoa=text"], "--table-width main_cocoa=text: names no table of this report (tables: main_coco_"),
])
def test_bad_table_width_is_a_one_line_error_and_writes_nothing(fixture_results, tmp_path, capsys, widths,
                                                                  message):
    code = main(["report", "stage3_labels", "mnc_vs_successors", "--out", str(tmp_path / "out"), "--results",
                 str(fixture_results), "--no-figures", "--table-width", *widths])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: {message}") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
    with pytest.raises(UserError):
        _report(fixture_results, tmp_path / "out", widths)
