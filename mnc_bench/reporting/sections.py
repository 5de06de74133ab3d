"""The report's sections as blocks: overview, main table, differences to the baseline, ablations, figures,
runs not counted, published reference rows, provenance. Numbers are formatted by
:mod:`mnc_bench.reporting.metrics`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from mnc_bench.reporting.analysis import PER_MODEL, Analysis
from mnc_bench.reporting.claims import ClaimResult, measured_text, tested_text
from mnc_bench.reporting.compare import best_groups, numbers
from mnc_bench.reporting.metrics import (
    column,
    difference_text,
    mean_std,
    number,
    probability_text,
    verdict_text,
)
from mnc_bench.reporting.paths import PathDisplay
from mnc_bench.reporting.provenance import Provenance
from mnc_bench.reporting.published import BLOCK_TITLE, display_value, relevant
from mnc_bench.reporting.render import Alert, Block, Bullets, Code, Heading, Image, Table, Text
from mnc_bench.reporting.stats import CONFIDENCE, N_BOOT, SEED
from mnc_bench.reporting.style import FigureResult, Skipped
from mnc_bench.reporting.table import bench_weights
from mnc_bench.reporting.venue import COLUMN, TEXT, Width
from mnc_bench.suites.contract import CPU_SHARE, RUN_STATES, RunState

MAIN_TABLE_ID = "main-table"
# A single-thread run on a core of its own spends >= 95 % of its wall time on the CPU (start-up and file I/O
# aside); under 90 % another process took its core for a while.
FULL_CPU_SHARE = 0.9


def dirty_warning(runs: pd.DataFrame, dirty_runs: list[str]) -> list[Block]:
    """The warning at the top of a report whose runs were trained from code with uncommitted changes."""
    if not dirty_runs:
        return []
    dirty = runs[runs["run_id"].astype(str).isin(dirty_runs)]
    commits = ", ".join(sorted(set(dirty["git_commit"].astype(str))))
    return [Alert(f"{len(dirty_runs)} of {len(runs)} runs were trained from code with uncommitted changes "
                    f"({commits}): no commit holds the code that made them, so checking out the commit and "
                    "rerunning may not reproduce these numbers. Commit, then rerun the suite, for numbers "
                    "anyone can reproduce. The runs: see 'Code commits' under Provenance.")]


def _models_table(a: Analysis) -> list[Block]:
    """The printed name of every model and the config it stands for."""
    runs = a.inputs.runs
    configs = runs.groupby("model", sort=True)["config"].first() if "config" in runs else None
    rows = [[a.names(model), f"`{model}`",
             f"`{configs[model]}`" if configs is not None and configs[model] else "—"]
            for model in sorted(set(runs["model"].astype(str)))]
    return [Text("Models (tables and figures print the name; options such as `--baseline` take the model):"),
            Table(["name", "model", "config"], rows)]


def overview(a: Analysis, suites: Sequence[str], dirty_runs: list[str] | None = None) -> list[Block]:
    runs = a.inputs.runs
    blocks: list[Block] = [Heading(f"Report: {', '.join(suites)}", 1), *dirty_warning(runs, dirty_runs or [])]
    if runs.empty:
        return blocks + [Text("The results hold no runs: there is nothing to compare. Run the suite "
                              "(`mnc-bench run SUITE`) and collect it (`mnc-bench collect SUITE`) first.")]
    counts = runs.groupby("suite")["status"].value_counts().unstack(fill_value=0)
    counts = counts.reindex(columns=RUN_STATES, fill_value=0)
    rows = []
    for suite, c in counts.iterrows():
        done = a.done[a.done["suite"] == suite]
        rows.append([suite, *(str(int(c[s])) for s in RUN_STATES), str(done["model"].nunique()),
                     ", ".join(str(s) for s in sorted(done["seed"].unique())) or "—"])
    blocks += [Text(f"Compared metric: `{a.metric}` ({column(a.metric).label}). Numbers below are what this "
                    "project measured; published numbers appear only in their own block near the end."),
               Table(["suite", *RUN_STATES, "models", "seeds (finished)"], rows), *_models_table(a)]
    for suite in counts.index[counts["done"] == 0]:
        blocks.append(Text(f"Suite {suite} has no finished run: it appears only under 'Runs not counted'."))
    return blocks


def _cell(a: Analysis, key: tuple[str, str, str], col_key: str, runs: int) -> str:
    summary = a.summaries[key].get(col_key)
    if summary is None or summary.n == 0:
        return "—"
    col = column(col_key)
    if col_key in PER_MODEL:
        return number(summary.mean, col)
    text = mean_std(summary, col)
    return text + (f" (n={summary.n})" if summary.n != runs else "")


def main_table(a: Analysis) -> list[Block]:
    if not a.summaries:
        return []
    multi_suite = len({k[0] for k in a.summaries}) > 1
    header = (["suite"] if multi_suite else []) + ["model", "n"] + [c.label for c in a.columns]
    offset = len(header) - len(a.columns)
    best = {c.key: best_groups(a.summaries, c) for c in a.columns}
    rows, bold = [], set()
    for i, key in enumerate(a.summaries):
        runs = a.group_runs[key]
        row = ([key[0]] if multi_suite else []) + [a.names.label(key[1], key[2]), str(runs)]
        for j, c in enumerate(a.columns):
            row.append(_cell(a, key, c.key, runs))
            if key in best[c.key]:
                bold.add((i, offset + j))
        rows.append(row)
    bench = a.inputs.bench
    weights = f", {bench_weights(bench)}" if bench is not None else ""
    notes = ["Each cell: mean ± sample std (ddof 1) over the seeds of the row; n = finished runs of the "
             "row, and a cell computed from fewer says (n=k). Accuracy in points (x 100). Bold: best per "
             "column within a suite. params, GFLOPs and ms/img are per model (ms/img: median of the bench "
             f"results, batch 1{weights}; plain model configs only); s/iter is the median logged iteration "
             "time of each run, mean ± std over seeds."]
    single = sorted(a.names.label(k[1], k[2]) for k, n in a.group_runs.items() if n == 1)
    if single:
        notes.append(f"One seed only (no spread, no interval): {', '.join(single)}.")
    notes.extend(mixed_thread_notes(a))
    notes.extend(contended_notes(a))
    for key, run_ids in a.missing.items():
        notes.append(f"`{key}` is missing from {len(run_ids)} finished run(s): {', '.join(run_ids)}; their "
                     "cells use the runs that have it.")
    if not a.metric_measured:
        notes.append(f"The compared metric `{a.metric}` has no value in any finished run: no comparison "
                     "below.")
    table = Table(header, rows, frozenset(bold), MAIN_TABLE_ID)
    return [Heading("Main comparison"), table, *map(Text, notes)]


def mixed_thread_notes(a: Analysis) -> list[str]:
    """A note per suite whose runs' s/iter were measured with different torch thread counts (a run reused from
    another suite, or another --workers): those s/iter are wall times under different settings, not costs."""
    done = a.done
    if "threads" not in done or "s_per_iter" not in done:
        return []
    timed = done[done["s_per_iter"].notna() & done["threads"].notna()]
    notes = []
    for suite, runs in timed.groupby("suite", sort=True):
        if runs["threads"].nunique() < 2:
            continue
        by_threads = "; ".join(
            f"{threads} thread{'s' if threads != 1 else ''}: "
            + ", ".join(sorted({a.names.label(m, v) for m, v in zip(group["model"], group["variant"])}))
            for threads, group in runs.groupby("threads", sort=True))
        notes.append(f"s/iter in suite {suite} was measured with different torch thread counts "
                     f"({by_threads}): compare those rows' s/iter as wall times under different settings, "
                     "not as model costs.")
    return notes


def contended_notes(a: Analysis) -> list[str]:
    """A note per suite with single-thread runs that had under :data:`FULL_CPU_SHARE` of their core
    (``cpu_share``): their s/iter is a wall time under load, not the model's cost. A run of several threads
    leaves cores idle in its serial parts on a quiet machine too, so its share does not tell load apart."""
    done = a.done
    if CPU_SHARE not in done or "s_per_iter" not in done or "threads" not in done:
        return []
    share, threads = numbers(done[CPU_SHARE]), numbers(done["threads"])
    contended = done[done["s_per_iter"].notna() & (threads == 1) & (share < FULL_CPU_SHARE)]
    notes = []
    for suite, runs in contended.groupby("suite", sort=True):
        shares = numbers(runs[CPU_SHARE])
        labels = sorted({a.names.label(m, v) for m, v in zip(runs["model"], runs["variant"])})
        notes.append(f"s/iter in suite {suite}: {len(runs)} single-thread run(s) had {shares.min():.0%} to "
                     f"{shares.max():.0%} of their core (CPU time / wall time; other processes competed), so "
                     f"their s/iter is a wall time under load, not a model cost: {', '.join(labels)}.")
    return notes


def _method() -> Text:
    return Text(f"Δ: difference of means to the baseline, in points, with a {CONFIDENCE:.0%} "
                "percentile-bootstrap interval stratified over seeds (each side's seeds resampled "
                f"separately; {N_BOOT:,} resamples, seed {SEED}). P(improvement): probability that a seed "
                "of the row beats a seed of the reference, Mann-Whitney U / (n_row · n_ref) (ties count "
                "half), with the same bootstrap interval. 'better' / 'worse' when the interval excludes 0 "
                "(Δ) or 0.5 (P) and the matching test agrees at p < 0.05: Student's t-test with pooled "
                "variances (Δ), the exact Mann-Whitney test (P); else 'inconclusive'. Intervals need 2 seeds "
                "per side, and with so few they are too narrow: the tests account for the sample sizes (the "
                "rank test cannot reach p < 0.05 below 4 seeds a side).")


def _comparison_cells(row, col) -> list[str]:
    if row.comparison is None:
        return ["reference", "", "", ""]
    d, p = row.comparison.difference, row.comparison.improvement
    return [difference_text(d, col), verdict_text(d, 0.0, col),
            probability_text(p), verdict_text(p, 0.5, col)]


def baseline_section(a: Analysis) -> list[Block]:
    col = column(a.metric)
    blocks: list[Block] = [Heading(f"Difference to the baseline: {col.label}")]
    for suite, base in sorted(a.baselines.items()):
        if base is None:
            blocks.append(Text(f"Suite {suite}: the baseline is not in this suite; no comparison."))
        else:
            label = a.names.label(base.model, base.variant)
            blocks.append(Text(f"Suite {suite}: baseline {label} ({base.note})."))
    if not a.comparisons:
        return blocks + [Text("No finished run to compare.")]
    multi_suite = len(a.baselines) > 1
    header = (["suite"] if multi_suite else []) + ["model", "n", col.label, "Δ [95 % CI]", "Δ verdict",
                                                    "P(model > baseline) [95 % CI]", "P verdict"]
    rows = [([r.suite] if multi_suite else []) + [a.names.label(r.model, r.variant), str(r.summary.n),
                                                  mean_std(r.summary, col), *_comparison_cells(r, col)]
            for r in a.comparisons]
    return blocks + [Table(header, rows), _method()]


def ablation_sections(a: Analysis) -> list[Block]:
    col = column(a.metric)
    blocks: list[Block] = []
    for ab in a.ablations:
        blocks.append(Heading(f"Ablation: {ab.name}"))
        if not ab.rows:
            blocks.append(Text("No setting where this axis takes two values among finished runs with the "
                               "metric."))
            continue
        header = ["setting", ab.name.split(".")[-1], "n", col.label, "Δ [95 % CI]", "Δ verdict",
                  "P(improvement) [95 % CI]", "P verdict"]
        rows = [[r.context(a.names(r.model) if r.model else "") or "—", r.value, str(r.row.summary.n),
                 mean_std(r.row.summary, col), *_comparison_cells(r.row, col)] for r in ab.rows]
        note = Text("Δ and P against the first value of the axis within the same setting (suite, model "
                    "and the other axes fixed); method as for the baseline.")
        blocks += [Table(header, rows), note]
    return blocks


def claims_section(results: list[ClaimResult], elsewhere: Sequence[str] = ()) -> list[Block]:
    """The verdicts, and a line naming the suites of the claims file's other claims (``elsewhere``), which
    the report leaves to a report of those suites."""
    left = ([Text(f"The claims file's claims about {', '.join(f'`{s}`' for s in elsewhere)} are left to a "
                  "report of those suites.")] if elsewhere else [])
    if not results:
        return [Heading("Claims"), *left] if left else []
    header = ["claim", "source", "suite", "tested", "metric", "n", "measured", "verdict"]
    rows = [[r.claim.claim, r.claim.source or "—", r.claim.suite, tested_text(r.claim),
             column(r.metric).label, " / ".join(str(n) for n in r.n), measured_text(r),
             r.verdict + (f" ({r.reason})" if r.reason else "")] for r in results]
    notes = sorted({f"{r.claim.claim}: {r.claim.note}" for r in results if r.claim.note})
    method = Text(
        "Each claim is tested on the finished runs of its suite, one row per metric, in points. A comparison "
        "gives Δ = mean(first setting) − mean(second) with a stratified percentile-bootstrap 95 % interval "
        "over seeds: *supported* when the interval lies above 0 and Student's t-test (variances pooled) "
        "agrees, p < 0.05; *contradicted* when it lies below 0 and the test agrees; else *inconclusive* "
        "(with 2 seeds a side the bootstrap interval alone is too narrow; the t quantile accounts for so "
        "few seeds). "
        "A factor ('across') is tested by a permutation test of one-way ANOVA's F over its "
        "cells (seeds as replicates): *supported* when p < 0.05, else *inconclusive*, since no test shows "
        "that a factor does not matter. n: finished runs per side or per cell. Verdicts hold for this data "
        "and schedule only; with 2-3 seeds the intervals are coarse.")
    return [Heading("Claims"), Table(header, rows), method, *left] + ([Bullets(notes)] if notes else [])


def figure_section(figures: list[FigureResult | Skipped], out: Path, display: PathDisplay) -> list[Block]:
    blocks: list[Block] = [Heading("Figures")]
    drawn = [f for f in figures if isinstance(f, FigureResult)]
    pages = [f for f in drawn if f.png is not None]
    for fig in pages:
        blocks.append(Image(fig.png.relative_to(out).as_posix(), fig.caption))
    if pages:
        blocks.append(Text("Each figure is in `figures/` as PDF (vector, for papers) and PNG, "
                           f"{COLUMN.inches} in wide (one column of a two-column paper), with no text under "
                           "7 pt at that size."))
    wide = [f.files[0].relative_to(out).as_posix() for f in drawn if f.png is None]
    if wide:
        blocks += [Text(f"The same figures {TEXT.inches} in wide (both columns, `figure*`), PDF only:"),
                   Bullets([f"`{path}`" for path in wide])]
    skipped = [f for f in figures if isinstance(f, Skipped)]
    if skipped:
        blocks += [Text("Not drawn:"), Bullets([f"{s.name}: {display.text(s.reason)}" for s in skipped])]
    return blocks


def not_counted(a: Analysis, display: PathDisplay) -> list[Block]:
    runs = a.inputs.runs[a.inputs.runs["status"] != RunState.DONE]
    if runs.empty:
        return []
    reason = runs["failure_reason"] if "failure_reason" in runs else pd.Series("", index=runs.index)
    rows = [[r.suite, r.run_id, a.names.label(r.model, r.variant), str(r.seed), r.status,
             display.text(reason[i]) or "—"] for i, r in zip(runs.index, runs.itertuples())]
    return [Heading("Runs not counted"), Text("Runs that did not finish are left out of every number above."),
            Table(["suite", "run id", "model", "seed", "status", "reason"], rows)]


def published_section(published: pd.DataFrame, measured_models: list[str]) -> list[Block]:
    rows = relevant(published, measured_models)
    blocks: list[Block] = [Heading(BLOCK_TITLE[0].upper() + BLOCK_TITLE[1:]),
                           Text("Reference rows as their authors published them, for the model families "
                                "measured above: other data, backbones, schedules and hardware, so not "
                                "comparable to the measured numbers and never mixed with them. All "
                                "published rows: `mnc_bench/reporting/published_results.csv`.")]
    if rows.empty:
        return blocks + [Text("No published row names a measured model family.")]
    header = ["model", "source", "dataset", "split", "backbone", "schedule", "metric", "value", "notes"]
    body = [[r.model, r.source, r.dataset, r.split, r.backbone, r.schedule or "—", r.metric,
             display_value(r.metric, r.value), r.notes] for r in rows.itertuples()]
    return blocks + [Table(header, body)]


def provenance_section(p: Provenance) -> list[Block]:
    return [
        Heading("Provenance"),
        Text("Input files (sha256, first 12 hex digits):"),
        Bullets([f"`{path}` {digest}" for path, digest in p.files] or ["none"]),
        Text("Commands (suite run, collect, bench, this report):"),
        Code("\n".join(p.commands)),
        Text("Code commits:"),
        Bullets([f"{what}: {commit}" for what, commit in p.commits]),
        Text("Packages:"),
        Table(["package", "version"], [list(x) for x in p.packages]),
        Text("Machine (the report's; the bench machine where bench results were read):"),
        Table(["what", "value"], [list(x) for x in p.machine]),
        Text("Equivalent single-run command of every run (the suite runner adds its work dir and threads; a "
             "mapping value, shown as JSON, is merged into the config by the runner):"),
        Code("\n".join(f"# {run_id}\n{cmd}" for run_id, cmd in p.run_commands) or "none"),
    ]


def files_section(tex: list[tuple[Path, Width]], out: Path) -> list[Block]:
    if not tex:
        return [Heading("LaTeX tables"), Text("None written (no finished run).")]
    return [Heading("LaTeX tables"),
            Text("Booktabs tables (`\\usepackage{booktabs}`), ready to paste, each made to fit its width "
                 f"at 10 pt: one column ({COLUMN.inches} in, `table`) or the text width of a two-column "
                 f"paper ({TEXT.inches} in, `table*`); `--table-width` chooses:"),
            Bullets([f"`{p.relative_to(out).as_posix()}` ({w.name} width)" for p, w in tex])]
