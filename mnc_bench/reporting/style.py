"""One figure style for every report figure, and deterministic saving (PDF for papers, PNG for the pages).

Figures are sized for one column of a two-column paper (3.3 in wide) with fonts legible at that size. They are
built on ``matplotlib.figure.Figure`` directly (no pyplot): no backend or global state is touched outside the
``style()`` block. Saved files carry no creation date, so the same data gives the same bytes.
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
from mnc_bench.reporting.stats import mean_interval

WIDTH_IN = 3.3
PNG_DPI = 200
PALETTE = "colorblind"
RC = {
    "font.family": "DejaVu Sans",  # ships with matplotlib: the same glyphs on every machine
    "font.size": 7,
    "axes.titlesize": 7,
    "axes.labelsize": 7,
    "xtick.labelsize": 6,
    "ytick.labelsize": 6,
    "legend.fontsize": 6,
    "legend.title_fontsize": 6,
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
    files: tuple[Path, ...]  # pdf, png

    @property
    def png(self) -> Path:
        return next(f for f in self.files if f.suffix == ".png")


@dataclass(frozen=True)
class Skipped:
    name: str
    reason: str


@contextlib.contextmanager
def style() -> Iterator[None]:
    with sns.axes_style("whitegrid"), mpl.rc_context(RC):
        yield


def new_figure(height_in: float, *, width_in: float = WIDTH_IN) -> Figure:
    return Figure(figsize=(width_in, height_in), layout="constrained")


def save(fig: Figure, out_dir: Path, name: str, caption: str) -> FigureResult:
    """Write ``name``.pdf and ``name``.png atomically (call inside ``style()``)."""
    files = []
    for ext, metadata in (("pdf", PDF_METADATA), ("png", PNG_METADATA)):
        path = out_dir / f"{name}.{ext}"
        with atomic_open(path, "wb") as handle:
            fig.savefig(handle, format=ext, dpi=PNG_DPI, metadata=metadata)
        files.append(path)
    return FigureResult(name, caption, tuple(files))


def legend_columns(labels: list[str]) -> int:
    """Columns of a legend under the plot that fit the figure width at the legend font size."""
    longest = max((len(label) for label in labels), default=0)
    return 3 if longest <= 10 else 2 if longest <= 22 else 1


def legend_height(labels: list[str]) -> float:
    """Inches a legend of ``labels`` under the plot takes."""
    return 0.12 * math.ceil(len(labels) / legend_columns(labels))


def legend_below(ax, labels: list[str]) -> None:
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=legend_columns(labels), frameon=False)


def ci95(values: np.ndarray) -> tuple[float, float]:
    """Error bars of seaborn plots: the report's percentile-bootstrap 95 % interval of the mean (none for
    n < 2)."""
    return mean_interval(values)
