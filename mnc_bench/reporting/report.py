"""``mnc-bench report``: collected suite results -> report.md, report.html, tables/*.tex, figures/*.{pdf,png}.

It only reads what ``mnc-bench collect`` (and ``mnc-bench bench``) wrote; it never runs a model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mnc_bench.errors import UserError, one_line
from mnc_bench.io import atomic_open, check_writable_output
from mnc_bench.reporting import curves, figures, latex, qualitative, sections
from mnc_bench.reporting.analysis import Analysis, analyse
from mnc_bench.reporting.claims import ClaimResult, evaluate_claims, load_claims
from mnc_bench.reporting.metrics import COCO_LAYOUT, VOC_LAYOUT
from mnc_bench.reporting.provenance import collect_provenance
from mnc_bench.reporting.published import load_published
from mnc_bench.reporting.render import to_html, to_markdown
from mnc_bench.reporting.style import FigureResult, Skipped
from mnc_bench.reporting.table import load_inputs

DEFAULT_METRIC = "coco/segm/AP"
FIGURE_FAILED = "could not be drawn from these results"
DEFAULT_BENCH = "results/bench/models.json"


@dataclass(frozen=True)
class Written:
    out: Path
    files: list[Path]
    skipped: list[Skipped]


def _draw_figures(a: Analysis, out: Path) -> list[FigureResult | Skipped]:
    fig_dir = out / "figures"
    done, axes, metric = a.done, a.inputs.axes, a.metric
    if done.empty or metric not in done:
        return [Skipped("all figures", "no finished run with the compared metric")]
    fig_dir.mkdir(parents=True, exist_ok=True)
    drawn: list[FigureResult | Skipped] = []
    for name, draw in (
        ("ap_vs_depth", lambda: figures.depth_figure(done, axes, metric, fig_dir)),
        ("loss_weights", lambda: figures.loss_weight_figure(done, axes, metric, fig_dir)),
        ("ap_vs_proposals", lambda: figures.proposal_figure(done, axes, metric, fig_dir)),
        ("ablation axes", lambda: figures.axis_figures(done, axes, metric, fig_dir)),
        ("speed_accuracy", lambda: figures.speed_figure(done, a.inputs.bench, metric, fig_dir)),
        ("training curves", lambda: curves.curve_figures(done, fig_dir)),
        ("qualitative", lambda: qualitative.qualitative_figure(done, fig_dir)),
    ):
        try:
            result = draw()
        except ValueError as exc:
            # A figure is one part of the report: data it cannot draw (what pandas, seaborn and matplotlib say
            # with ValueError) costs that figure, named with the reason, not the tables. Any other exception
            # is a bug in the figure code and stops the report with its traceback.
            result = Skipped(name, f"{FIGURE_FAILED}: {type(exc).__name__}: {one_line(exc)}")
        drawn += result if isinstance(result, list) else [result]
    return drawn


def _write_tables(a: Analysis, out: Path) -> list[Path]:
    written = []
    suites = sorted({k[0] for k in a.summaries})
    time_note = "" if a.inputs.bench is not None else "No bench results: time not measured."
    for suite in suites:
        rows = {k: v for k, v in a.summaries.items() if k[0] == suite}
        suffix = f"_{suite}" if len(suites) > 1 else ""
        measured = {key for cells in rows.values() for key, s in cells.items() if s.n}
        tables = {}
        if COCO_LAYOUT[0] in measured:
            tables[f"main_coco{suffix}.tex"] = latex.coco_table(rows, suite)
        for protocol, keys in VOC_LAYOUT.items():
            if keys[0] in measured:
                tables[f"main_voc_{protocol}{suffix}.tex"] = latex.voc_table(rows, suite, protocol, time_note)
        for name, text in tables.items():
            written.append(_write_text(out / "tables" / name, text))
    for ab in a.ablations:
        if ab.rows:
            written.append(_write_text(out / "tables" / f"ablation_{ab.name.replace('.', '_')}.tex",
                                       latex.ablation_table(ab, a.metric)))
    return written


def _write_claims_table(results: list[ClaimResult], out: Path) -> list[Path]:
    return [_write_text(out / "tables" / "claims.tex", latex.claims_table(results))] if results else []


def _write_text(path: Path, text: str) -> Path:
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)
    return path


def _remove_stale(out: Path, keep: set[Path]) -> None:
    """Figures and tables of an earlier report in the same folder that this one did not write."""
    for folder, patterns in (("figures", ("*.pdf", "*.png")), ("tables", ("*.tex",))):
        for pattern in patterns:
            for path in (out / folder).glob(pattern):
                if path not in keep:
                    path.unlink()


def command_line(suites: list[str], out: str | os.PathLike[str], baseline: str | None, metric: str,
                 results_dir: str | os.PathLike[str], bench: str | os.PathLike[str] | None,
                 claims: str | os.PathLike[str] | None = None) -> list[str]:
    cmd = ["mnc-bench", "report", *suites, "--out", str(out), "--metric", metric]
    cmd += ["--baseline", baseline] if baseline else []
    cmd += ["--claims", str(claims)] if claims else []
    cmd += ["--results", str(results_dir)] if str(results_dir) != "results" else []
    cmd += ["--bench", str(bench)] if bench is not None and str(bench) != DEFAULT_BENCH else []
    return cmd


def write_report(
    suites: list[str],
    out: str | os.PathLike[str],
    *,
    baseline: str | None = None,
    metric: str = DEFAULT_METRIC,
    results_dir: str | os.PathLike[str] = "results",
    bench: str | os.PathLike[str] | None = DEFAULT_BENCH,
    figures: bool = True,
    claims: str | os.PathLike[str] | None = None,
) -> Written:
    """Write the report of ``suites`` into ``out`` (``figures=False``: text and tables only, in seconds;
    ``claims``: a claims file, judged on these suites' runs); UserError (one line) for unusable input."""
    if not suites:
        raise UserError("report: name at least one suite")
    check_writable_output(out, "--out", directory=True)
    out_dir = Path(out)
    claim_list = load_claims(claims) if claims else []
    inputs = load_inputs(list(suites), results_dir=results_dir, bench=bench)
    a = analyse(inputs, metric, baseline)
    verdicts = evaluate_claims(claim_list, a.done)
    published = load_published()
    out_dir.mkdir(parents=True, exist_ok=True)
    drawn = _draw_figures(a, out_dir) if figures else [Skipped("all figures", "not asked for (--no-figures)")]
    tex = _write_tables(a, out_dir) + _write_claims_table(verdicts, out_dir)
    command = command_line(list(suites), out, baseline, metric, results_dir, bench, claims)
    command += [] if figures else ["--no-figures"]
    prov = collect_provenance(inputs, list(suites), command)
    blocks = [
        *sections.overview(a, suites),
        *sections.main_table(a),
        *sections.claims_section(verdicts),
        *sections.baseline_section(a),
        *sections.ablation_sections(a),
        *sections.figure_section(drawn, out_dir),
        *sections.files_section(tex, out_dir),
        *sections.not_counted(a),
        *sections.published_section(published, sorted(set(a.done["model"]))),
        *sections.provenance_section(prov),
    ]
    figure_files = [f for fig in drawn if isinstance(fig, FigureResult) for f in fig.files]
    md = _write_text(out_dir / "report.md", to_markdown(blocks))
    title = f"mnc-bench report: {', '.join(suites)}"
    page = _write_text(out_dir / "report.html", to_html(blocks, title, out_dir))
    _remove_stale(out_dir, set(figure_files) | set(tex))
    return Written(out_dir, [md, page, *tex, *figure_files], [s for s in drawn if isinstance(s, Skipped)])
