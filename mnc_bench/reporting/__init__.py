"""Reports from collected suite results: statistics over seeds, Markdown/HTML pages, LaTeX tables, figures.

Modules, one concern each: ``table`` (read the collect tables and bench results), ``stats`` (mean ± std,
bootstrap intervals, probability of improvement), ``metrics`` (column labels and number formats), ``compare``
(groups, baselines, ablations), ``analysis`` (everything a report prints), ``latex``, ``figures`` /
``curves`` / ``qualitative`` (with ``style``), ``render`` (Markdown and HTML), ``sections``,
``provenance``, ``published``
(reference rows from the papers), ``report`` (the command).
"""

from mnc_bench.reporting.report import write_report

__all__ = ["write_report"]
