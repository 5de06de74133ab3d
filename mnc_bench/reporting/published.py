"""Published reference numbers (``published_results.csv``, transcribed from the papers, MNC-code's README and
the mmdet model zoo).

Reports show them in their own block, labelled as measured on different data, backbones and hardware; they are
never merged into measured rows. Figures the project's reference notes flag "(verify)" (known only from a
secondary summary) are not transcribed until someone checks them against the paper.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from mnc_bench.errors import UserError

CSV_PATH = Path(__file__).with_name("published_results.csv")
HEADER = ["model", "source", "dataset", "split", "backbone", "schedule", "metric", "value", "notes"]
# Metrics in these units are not fractions in [0, 1].
UNIT_METRICS = {"infer_ms": "ms/img"}
BLOCK_TITLE = "published — different data, backbone and hardware"


def load_published(path: Path = CSV_PATH) -> pd.DataFrame:
    """The reference rows, validated: exact header, a number in every ``value``, fractions in [0, 1]."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError) as exc:
        raise UserError(f"{path}: cannot read the published results: {exc}") from None
    if list(frame.columns) != HEADER:
        raise UserError(f"{path}: header must be {','.join(HEADER)}")
    values = pd.to_numeric(frame["value"], errors="coerce")
    for index, (metric, value) in enumerate(zip(frame["metric"], values)):
        fraction = metric not in UNIT_METRICS
        if math.isnan(value) or (fraction and not 0.0 <= value <= 1.0) or value < 0:
            kind = "fraction in [0, 1]" if fraction else "number"
            raise UserError(f"{path}: row {index + 2} ({frame['model'][index]}, {metric}): "
                            f"value {frame['value'][index]!r} is not a {kind}")
    frame["value"] = values
    return frame


def matches(published_model: str, measured_model: str) -> bool:
    """Whether a published model id names the family of one of our config stems: 'mnc' matches
    'mnc_3stage_shapes', 'mnc_5stage' matches 'mnc_5stage_shapes' but not 'mnc_3stage_shapes'."""
    return measured_model == published_model or measured_model.startswith(published_model + "_")


def relevant(published: pd.DataFrame, measured_models: list[str]) -> pd.DataFrame:
    """Rows whose model is the family of a measured model, in file order."""
    keep = published["model"].map(lambda p: any(matches(p, m) for m in measured_models))
    return published[keep]


def display_value(metric: str, value: float) -> str:
    return f"{value:.0f} {UNIT_METRICS[metric]}" if metric in UNIT_METRICS else f"{value * 100:.1f}"
