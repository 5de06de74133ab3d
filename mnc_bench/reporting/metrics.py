"""What each reported column is: label, LaTeX label, direction, display scale; and how numbers are printed.

Accuracy metrics are fractions in [0, 1] in the results; reports print them in points (x 100), as papers do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mnc_bench.errors import UserError
from mnc_bench.reporting.stats import Interval, Summary
from mnc_bench.suites.contract import METRIC_PREFIXES, is_metric_key


@dataclass(frozen=True)
class Column:
    key: str
    label: str  # plain text (Markdown / HTML)
    tex: str  # LaTeX, math mode where needed
    higher_is_better: bool = True
    scale: float = 100.0
    decimals: int = 1


# The main table's accuracy columns, in this order, where the table has them.
ACCURACY = (
    Column("coco/segm/AP", "mask AP", "AP"),
    Column("coco/segm/AP50", "AP50", "AP$_{50}$"),
    Column("coco/segm/AP75", "AP75", "AP$_{75}$"),
    Column("coco/segm/APs", "APs", "AP$_S$"),
    Column("coco/segm/APm", "APm", "AP$_M$"),
    Column("coco/segm/APl", "APl", "AP$_L$"),
    Column("coco/bbox/AP", "box AP", "AP$^{bb}$"),
    Column("voc_mnc/mAP@0.5", "mAP^r@0.5 (MNC protocol)", "mAP$^r$@0.5"),
    Column("voc_mnc/mAP@0.7", "mAP^r@0.7 (MNC protocol)", "mAP$^r$@0.7"),
    Column("voc_sds/mAP@0.5", "mAP^r@0.5 (SDS protocol)", "mAP$^r$@0.5"),
    Column("voc_sds/mAP@0.7", "mAP^r@0.7 (SDS protocol)", "mAP$^r$@0.7"),
    Column("coco/segm/AR100", "mask AR100", "AR$_{100}$"),
    Column("proposals/AR@100", "proposal AR@100", "AR@100"),
)
# Cost columns: from the collected table (params, s/iter) or the bench results (GFLOPs, ms/img).
COST = (
    Column("params", "params (M)", "params (M)", higher_is_better=False, scale=1e-6, decimals=1),
    Column("gflops", "GFLOPs", "GFLOPs", higher_is_better=False, scale=1.0, decimals=1),
    Column("infer_ms_median", "ms/img", "ms/img", higher_is_better=False, scale=1.0, decimals=1),
    Column("s_per_iter", "s/iter", "s/iter", higher_is_better=False, scale=1.0, decimals=2),
)
# The video tables (mnc_bench.reporting.video): video AP beside per-frame mask AP; the consistency measures.
VIDEO_ACCURACY = (
    Column("vis/AP", "video AP", "AP$^{vid}$"),
    Column("vis/AP50", "video AP50", "AP$^{vid}_{50}$"),
    Column("vis/AP75", "video AP75", "AP$^{vid}_{75}$"),
    Column("vis/AR10", "video AR10", "AR$^{vid}_{10}$"),
    Column("vis/frame/AP", "per-frame mask AP", "AP$^{frame}$"),
    Column("vis/frame/AP50", "per-frame AP50", "AP$^{frame}_{50}$"),
)
VIDEO_CONSISTENCY = (
    Column("vis/mots/sMOTSA", "sMOTSA", "sMOTSA"),
    Column("vis/mots/MOTSA", "MOTSA", "MOTSA"),
    Column("vis/mots/IDSW", "ID switches", "IDSW", higher_is_better=False, scale=1.0, decimals=1),
    Column("vis/hota/HOTA", "HOTA", "HOTA"),
    Column("vis/hota/AssA", "AssA", "AssA"),
    Column("vis/idf1", "IDF1", "IDF1"),
    Column("vis/stability/iou_change", "IoU change", r"$\Delta$IoU", higher_is_better=False, decimals=2),
)
# Paper table layouts (tables/*.tex): the MNC paper's VOC table and the Mask R-CNN / PANet COCO tables.
COCO_LAYOUT = ("coco/segm/AP", "coco/segm/AP50", "coco/segm/AP75", "coco/segm/APs", "coco/segm/APm",
               "coco/segm/APl")
VOC_LAYOUT = {p: (f"voc_{p}/mAP@0.5", f"voc_{p}/mAP@0.7") for p in ("mnc", "sds")}
# Proposal recall next to mask AP in the proposal-quality figure, first present wins.
RECALL_KEYS = ("proposals/AR@100", "proposals/AR@300", "proposals/AR@1000", "proposals/AR@10",
               "coco/segm/AR100")
_KNOWN = {c.key: c for c in ACCURACY + COST + VIDEO_ACCURACY + VIDEO_CONSISTENCY}


def column(key: str) -> Column:
    """The column description of ``key``; an unlisted metric key is printed as is, in points (a TIDE dAP, the
    AP an error type costs, is better lower)."""
    if key in _KNOWN:
        return _KNOWN[key]
    scale = 100.0 if key.startswith(METRIC_PREFIXES) else 1.0
    return Column(key, key, escape_tex(key),
                  higher_is_better=not key.startswith("tide/") or "/dAP_" not in key, scale=scale,
                  decimals=1 if scale == 100.0 else 3)


def resolve_metric(name: str, available: list[str]) -> str:
    """The metric column ``name`` means: a full key, or a unique suffix such as ``segm/AP``."""
    if name in available:
        return name
    matches = sorted(k for k in available if k.endswith("/" + name.lstrip("/")))
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(sorted(k for k in available if is_metric_key(k) and k.count("/") == 2)[:12])
    if len(matches) > 1:
        raise UserError(f"--metric {name}: ambiguous, matches {', '.join(matches)}")
    raise UserError(f"--metric {name}: not a column of the results table (metrics: {known or 'none'})")


def number(value: float, col: Column, *, decimals: int | None = None) -> str:
    if value is None or math.isnan(value):
        return "—"
    return f"{value * col.scale:.{col.decimals if decimals is None else decimals}f}"


def spread(std: float, col: Column) -> str:
    """A standard deviation at the column's precision; one that rounds to zero is shown as under the last
    digit ('<0.1'), so a real but small spread is never shown as '0.0' and never widens its column."""
    scaled = std * col.scale
    text = f"{scaled:.{col.decimals}f}"
    if scaled > 0 and float(text) == 0.0:
        text = f"<{10.0 ** -col.decimals:.{col.decimals}f}"
    return text


def mean_std(summary: Summary, col: Column, *, pm: str = " ± ") -> str:
    """'mean ± std' over seeds; with one value only the mean (never '± 0'); '—' with none."""
    if summary.n == 0:
        return "—"
    if summary.n == 1 or math.isnan(summary.std):
        return number(summary.mean, col)
    return f"{number(summary.mean, col)}{pm}{spread(summary.std, col)}"


def signed(value: float, col: Column) -> str:
    return f"{value * col.scale:+.{col.decimals + 1}f}"


def difference_text(interval: Interval, col: Column) -> str:
    """'+1.23 [+0.40, +2.10]' in points, or the estimate alone with 'no interval'."""
    if math.isnan(interval.estimate):
        return "—"
    if not interval.has_interval:
        return f"{signed(interval.estimate, col)} (no interval: n = 1)"
    return f"{signed(interval.estimate, col)} [{signed(interval.low, col)}, {signed(interval.high, col)}]"


def probability_text(interval: Interval) -> str:
    if math.isnan(interval.estimate):
        return "—"
    if not interval.has_interval:
        return f"{interval.estimate:.2f} (no interval: n = 1)"
    return f"{interval.estimate:.2f} [{interval.low:.2f}, {interval.high:.2f}]"


def verdict_text(interval: Interval, null: float, col: Column) -> str:
    """'better' / 'worse' (in the metric's direction) when the interval excludes ``null``, else
    'inconclusive'."""
    verdict = interval.verdict(null)
    if verdict in ("higher", "lower"):
        return "better" if (verdict == "higher") == col.higher_is_better else "worse"
    return verdict


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def escape_tex(text: str) -> str:
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in str(text))
