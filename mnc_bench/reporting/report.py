"""``mnc-bench report``: collected suite results -> report.md, report.html, tables/*.tex, figures/*.{pdf,png}.

It only reads what ``mnc-bench collect`` (and ``mnc-bench bench``) wrote; it never runs a model.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mnc_bench.bench import MODELS_JSON
from mnc_bench.errors import UserError, one_line
from mnc_bench.io import atomic_open, check_writable_output, ensure_dir
from mnc_bench.reporting import curves, diagnostics, figures, latex, qualitative, sections, video
from mnc_bench.reporting.analysis import Analysis, analyse
from mnc_bench.reporting.claims import ClaimResult, evaluate_claims, load_claims
from mnc_bench.reporting.metrics import COCO_LAYOUT, VOC_LAYOUT
from mnc_bench.reporting.paths import PathDisplay
from mnc_bench.reporting.provenance import collect_provenance
from mnc_bench.reporting.published import load_published
from mnc_bench.reporting.qualitative import ModelChoice, choose_models
from mnc_bench.reporting.render import to_html, to_markdown
from mnc_bench.reporting.style import Canvas, FigureResult, Skipped
from mnc_bench.reporting.table import load_inputs
from mnc_bench.reporting.venue import COLUMN, TEXT, Width, table_width, unused_keys
from mnc_bench.suites.contract import RESULTS_ROOT

DEFAULT_METRIC = "coco/segm/AP"
FIGURE_FAILED = "could not be drawn from these results"

Drawn = FigureResult | Skipped | list[FigureResult | Skipped]


@dataclass(frozen=True)
class Written:
    """What ``make_report`` wrote into ``out``: the two pages, the LaTeX tables and the figures (each as its
    PDF, PNG and text-width PDF), and the figures it could not draw, with the reason."""

    out: Path
    markdown: Path
    html: Path
    tables: list[Path]
    figures: list[FigureResult]
    skipped: list[Skipped]

    @property
    def files(self) -> list[Path]:
        return [self.markdown, self.html, *self.tables, *(f for fig in self.figures for f in fig.files)]


@dataclass(frozen=True)
class Drawer:
    name: str
    draw: Callable[[Canvas], Drawn]
    text_width: bool = True  # also drawn 6.875 in wide; training curves are diagnostics, one column only


def figure_drawers(a: Analysis, choice: ModelChoice) -> list[Drawer]:
    """Every figure of the report, in page order (a new report section adds its own here)."""
    done, axes, metric = a.done, a.inputs.axes, a.metric
    return [
        Drawer("ap_vs_depth", lambda c: figures.depth_figure(done, axes, metric, c)),
        Drawer("loss_weights", lambda c: figures.loss_weight_figure(done, axes, metric, c)),
        Drawer("ap_vs_proposals", lambda c: figures.proposal_figure(done, axes, metric, c)),
        Drawer("ablation axes", lambda c: figures.axis_figures(done, axes, metric, c)),
        Drawer("speed_accuracy", lambda c: figures.speed_figure(done, a.inputs.bench, metric, c)),
        Drawer("training curves", lambda c: curves.curve_figures(done, c), text_width=False),
        Drawer("qualitative", lambda c: qualitative.qualitative_figures(done, c, choice)),
        *(Drawer(name, draw) for name, draw in diagnostics.figures(done)),
        *(Drawer(name, draw) for name, draw in video.figures(done)),  # nothing without video runs
    ]


def _draw(drawer: Drawer, canvas: Canvas) -> list[FigureResult | Skipped]:
    try:
        result = drawer.draw(canvas)
    except ValueError as exc:
        # A figure is one part of the report: data it cannot draw (what pandas, seaborn and matplotlib say
        # with ValueError) costs that figure, named with the reason, not the tables. Any other exception is
        # a bug in the figure code and stops the report with its traceback.
        result = Skipped(drawer.name, f"{FIGURE_FAILED}: {type(exc).__name__}: {one_line(exc)}")
    return result if isinstance(result, list) else [result]


def _draw_figures(a: Analysis, out: Path, choice: ModelChoice) -> list[FigureResult | Skipped]:
    """Each figure at column width (PDF and PNG), then at text width (PDF); a figure skipped at column width
    is not tried again."""
    fig_dir = out / "figures"
    if a.done.empty or a.metric not in a.done:
        return [Skipped("all figures", "no finished run with the compared metric")]
    ensure_dir(fig_dir)
    column, text = Canvas(fig_dir, COLUMN, a.names), Canvas(fig_dir, TEXT, a.names)
    drawn: list[FigureResult | Skipped] = []
    for drawer in figure_drawers(a, choice):
        narrow = _draw(drawer, column)
        drawn += narrow
        if drawer.text_width and any(isinstance(d, FigureResult) for d in narrow):
            drawn += [d if isinstance(d, FigureResult) else Skipped(f"{d.name} (text width)", d.reason)
                      for d in _draw(drawer, text)]
    return drawn


def plan_tables(a: Analysis, claims: list[ClaimResult] | None = None) -> dict[str, Callable[[Width], str]]:
    """File stem -> the table at a given width: per suite the COCO, VOC and video tables it has metrics for,
    one table per ablation axis, and the claims table when ``claims`` holds verdicts."""
    tables: dict[str, Callable[[Width], str]] = {}
    suites = sorted({k[0] for k in a.summaries})
    time_note = "" if a.inputs.bench is not None else "No bench results: time not measured."
    for suite in suites:
        rows = {k: v for k, v in a.summaries.items() if k[0] == suite}
        suffix = f"_{suite}" if len(suites) > 1 else ""
        measured = {key for cells in rows.values() for key, s in cells.items() if s.n}
        if COCO_LAYOUT[0] in measured:
            tables[f"main_coco{suffix}"] = (
                lambda w, rows=rows, suite=suite: latex.coco_table(rows, suite, a.names, w))
        for protocol, keys in VOC_LAYOUT.items():
            if keys[0] in measured:
                tables[f"main_voc_{protocol}{suffix}"] = (
                    lambda w, rows=rows, suite=suite, p=protocol:
                    latex.voc_table(rows, suite, p, time_note, a.names, w))
        video_rows = video.video_summaries(a.done[a.done["suite"] == suite])
        if video_rows:
            tables[f"main_video{suffix}"] = (
                lambda w, rows=video_rows, suite=suite: latex.video_accuracy_table(rows, suite, a.names, w))
            tables[f"video_consistency{suffix}"] = (
                lambda w, rows=video_rows, suite=suite:
                latex.video_consistency_table(rows, suite, a.names, w))
    for ab in a.ablations:
        if ab.rows:
            tables[f"ablation_{ab.name.replace('.', '_')}"] = (
                lambda w, ab=ab: latex.ablation_table(ab, a.metric, a.names, w))
    if claims:
        tables["claims"] = lambda w: latex.claims_table(claims, w)
    return tables


def _write_tables(tables: dict[str, Callable[[Width], str]], widths: Mapping[str, Width], out: Path
                  ) -> list[tuple[Path, Width]]:
    written = []
    for stem, build in tables.items():
        width = table_width(stem, widths)
        written.append((_write_text(out / "tables" / f"{stem}.tex", build(width)), width))
    return written


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


def _shown_argument(argument: str, display: PathDisplay) -> str:
    """A suite argument as the provenance prints it: a path (suite file, results folder, table) like any path.
    """
    return display.path(argument) if os.sep in argument or Path(argument).exists() else argument


def command_line(suites: Sequence[str], out: str | os.PathLike[str], baseline: str | None, metric: str,
                 results_dir: str | os.PathLike[str], bench: str | os.PathLike[str] | None,
                 display: PathDisplay, *, claims: str | os.PathLike[str] | None = None,
                 table_widths: Mapping[str, Width] | None = None,
                 display_name_overrides: Mapping[str, str] | None = None,
                 qualitative_models: Sequence[str] | None = None, figures: bool = True) -> list[str]:
    """The report's command, its paths as ``display`` prints them (relative to the checkout, or
    <results>/...)."""
    cmd = ["mnc-bench", "report", *(_shown_argument(s, display) for s in suites), "--out", display.path(out),
           "--metric", metric]
    cmd += ["--baseline", baseline] if baseline else []
    cmd += ["--claims", display.path(claims)] if claims else []
    cmd += ["--results", display.path(results_dir)] if str(results_dir) != RESULTS_ROOT else []
    cmd += ["--bench", display.path(bench)] if bench is not None and str(bench) != MODELS_JSON else []
    if table_widths:
        cmd += ["--table-width", *(f"{k}={w.name}" if k else w.name for k, w in table_widths.items())]
    if display_name_overrides:
        cmd += ["--display-name", *(f"{k}={v}" for k, v in display_name_overrides.items())]
    cmd += ["--qualitative-models", *qualitative_models] if qualitative_models else []
    return cmd + ([] if figures else ["--no-figures"])


def write_report(
    suites: list[str],
    out: str | os.PathLike[str],
    *,
    baseline: str | None = None,
    metric: str = DEFAULT_METRIC,
    results_dir: str | os.PathLike[str] = RESULTS_ROOT,
    bench: str | os.PathLike[str] | None = MODELS_JSON,
    figures: bool = True,
    claims: str | os.PathLike[str] | None = None,
    table_widths: Mapping[str, Width] | None = None,
    display_name_overrides: Mapping[str, str] | None = None,
    qualitative_models: Sequence[str] | None = None,
) -> Written:
    """Write the report of ``suites`` into ``out`` (``figures=False``: text and tables only, in seconds;
    ``claims``: a claims file, judged on these suites' runs); UserError (one line) for unusable input, before
    anything is written.

    ``table_widths``: table file stem or its start ('' for every table) -> width (default: one column);
    ``display_name_overrides``: model or pattern -> printed name; ``qualitative_models``: the grid's models in
    order (default: the baseline, then the best model of each family, then the others)."""
    if not suites:
        raise UserError("report: name at least one suite")
    check_writable_output(out, "--out", directory=True)
    out_dir = Path(out)
    claim_list = load_claims(claims) if claims else []
    inputs = load_inputs(list(suites), results_dir=results_dir, bench=bench)
    a = analyse(inputs, metric, baseline, display_name_overrides)
    reported = set(inputs.runs["suite"])
    verdicts = evaluate_claims([c for c in claim_list if c.suite in reported], a.done)
    elsewhere = sorted({c.suite for c in claim_list} - reported)
    widths = dict(table_widths or {})
    tables = plan_tables(a, verdicts)
    for key in unused_keys(widths, tables):
        raise UserError(f"--table-width {key}={widths[key].name}: names no table of this report "
                        f"(tables: {', '.join(tables) or 'none'})")
    # A suite of one model has no baseline to speak of: the grid starts with the baselines of comparisons.
    models_per_suite = a.done.groupby("suite")["model"].nunique()
    compared = set(models_per_suite[models_per_suite > 1].index)
    baselines = [b.model for suite, b in sorted(a.baselines.items()) if b is not None and suite in compared]
    choice = choose_models(a.done, a.metric, baselines, a.names, list(qualitative_models or []))
    display = PathDisplay.of(results_dir, inputs.runs)
    published = load_published()
    ensure_dir(out_dir)
    drawn = (_draw_figures(a, out_dir, choice) if figures
             else [Skipped("all figures", "not asked for (--no-figures)")])
    tex = _write_tables(tables, widths, out_dir)
    command = command_line(list(suites), out, baseline, metric, results_dir,
                           bench, display, claims=claims, table_widths=widths,
                           display_name_overrides=display_name_overrides,
                           qualitative_models=qualitative_models, figures=figures)
    prov = collect_provenance(inputs, command, display)
    blocks = [
        *sections.overview(a, suites, prov.dirty_runs),
        *sections.main_table(a),
        *sections.claims_section(verdicts, elsewhere),
        *sections.baseline_section(a),
        *sections.ablation_sections(a),
        *diagnostics.sections(a.done, a.names),
        *video.sections(a.done, a.names),
        *sections.figure_section(drawn, out_dir, display),
        *sections.files_section(tex, out_dir),
        *sections.not_counted(a, display),
        *sections.published_section(published, sorted(set(a.done["model"]))),
        *sections.provenance_section(prov),
    ]
    md = _write_text(out_dir / "report.md", to_markdown(blocks))
    title = f"mnc-bench report: {', '.join(suites)}"
    page = _write_text(out_dir / "report.html", to_html(blocks, title, out_dir))
    written = Written(out_dir, md, page, tables=[path for path, _ in tex],
                      figures=[fig for fig in drawn if isinstance(fig, FigureResult)],
                      skipped=[s for s in drawn if isinstance(s, Skipped)])
    _remove_stale(out_dir, set(written.files))
    return written
