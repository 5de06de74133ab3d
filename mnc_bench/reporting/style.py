"""One figure style for every report figure, and deterministic saving (PDF for papers, PNG for the pages).

Each figure is drawn at the print widths of :mod:`venue`: one column of a two-column paper (3.25 in; PDF and
PNG, the PNG shown in report.html) and the text width (6.875 in; PDF, ``<name>_textwidth.pdf``), with no text
smaller than 7 pt at that size. Figures are built on ``matplotlib.figure.Figure`` directly (no pyplot): no
backend or global state is touched outside the ``style()`` block. Saved files carry no creation date, so the
same data gives the same bytes.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import matplotlib as mpl
import numpy as np
import seaborn as sns
from matplotlib.figure import Figure

from mnc_bench.io import atomic_open
from mnc_bench.reporting.names import DisplayNames
from mnc_bench.reporting.stats import mean_interval
from mnc_bench.reporting.venue import COLUMN, MIN_FONT_PT, TEXT, Width

PNG_DPI = 200
PALETTE = "colorblind"
FONT_PT = MIN_FONT_PT  # every text of a figure: titles, labels, ticks, legends, annotations
TEXT_WIDTH_SUFFIX = "_textwidth"
RC = {
    "font.family": "DejaVu Sans",  # ships with matplotlib: the same glyphs on every machine
    "font.size": FONT_PT,
    "axes.titlesize": FONT_PT,
    "axes.labelsize": FONT_PT,
    "xtick.labelsize": FONT_PT,
    "ytick.labelsize": FONT_PT,
    "legend.fontsize": FONT_PT,
    "legend.title_fontsize": FONT_PT,
    "figure.titlesize": FONT_PT,
    "lines.linewidth": 1.0,
    "lines.markersize": 3.5,
    "axes.linewidth": 0.6,
    "grid.linewidth": 0.4,
    "pdf.fonttype": 42,  # TrueType in the PDF: editable text, accepted by paper submission systems
    "svg.hashsalt": "mnc-bench",
    "savefig.dpi": PNG_DPI,
    "image.interpolation": "nearest",
}
# Keys matplotlib would stamp with the current time or version: dropped so the bytes depend on the data only.
PDF_METADATA = {"CreationDate": None, "Creator": None, "Producer": None}
PNG_METADATA = {"Software": None}


@dataclass(frozen=True)
class FigureResult:
    name: str
    caption: str
    files: tuple[Path, ...]  # pdf, and png at column width

    @property
    def png(self) -> Path | None:
        return next((f for f in self.files if f.suffix == ".png"), None)


@dataclass(frozen=True)
class Skipped:
    name: str
    reason: str


@contextlib.contextmanager
def style() -> Iterator[None]:
    with sns.axes_style("whitegrid"), mpl.rc_context(RC):
        yield


@dataclass(frozen=True)
class Canvas:
    """Where and at which print width a report's figures are drawn, and the model names they print."""

    out_dir: Path
    width: Width
    names: DisplayNames

    @property
    def wide(self) -> bool:
        return self.width == TEXT

    def figure(self, height_in: float) -> Figure:
        return Figure(figsize=(self.width.inches, height_in), layout="constrained")

    def save(self, fig: Figure, name: str, caption: str) -> FigureResult:
        """Write ``name``.pdf and ``name``.png at column width, ``name``_textwidth.pdf at text width,
        atomically (call inside ``style()``)."""
        kinds = [("pdf", PDF_METADATA)] + ([("png", PNG_METADATA)] if self.width == COLUMN else [])
        stem = name if self.width == COLUMN else name + TEXT_WIDTH_SUFFIX
        files = []
        for ext, metadata in kinds:
            path = self.out_dir / f"{stem}.{ext}"
            with atomic_open(path, "wb") as handle:
                fig.savefig(handle, format=ext, dpi=PNG_DPI, metadata=metadata)
            files.append(path)
        return FigureResult(name, caption, tuple(files))

    def legend_columns(self, labels: list[str]) -> int:
        """Columns of a legend under the plot that fit the figure width at the legend font size (a character
        ~0.6 em of DejaVu Sans, plus the marker)."""
        longest = max((len(label) for label in labels), default=0)
        per_column_in = (longest * 0.6 + 3.5) * FONT_PT / 72
        return max(1, min(len(labels) or 1, int(self.width.inches // per_column_in)))

    def legend_height(self, labels: list[str]) -> float:
        """Inches a legend of ``labels`` under the plot takes."""
        return 0.15 * math.ceil(len(labels) / self.legend_columns(labels))

    def legend_below(self, ax, labels: list[str]) -> None:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=self.legend_columns(labels),
                  frameon=False)


def ci95(values: np.ndarray) -> tuple[float, float]:
    """Error bars of seaborn plots: the report's percentile-bootstrap 95 % interval of the mean (none for
    n < 2)."""
    return mean_interval(values)
