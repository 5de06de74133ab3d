"""Display names of the compared models in tables, figures and the qualitative grid: one mapping from config
stems (the ``model`` column of the results) to names as papers print them, overridable per report (``mnc-bench
report --display-name MODEL=NAME``).

Two configs of one model in the same report (``solov2_shapes`` and ``solov2_shapes_50e``, or an R-50 and an
R-101 backbone) get the stem parts that tell them apart appended ("SOLOv2", "SOLOv2 50e"), so no two rows or
columns read alike. Command-line options and the report's model list keep the stems: they name the configs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase

from mnc_bench.errors import UserError
from mnc_bench.reporting.compare import short_label


@dataclass(frozen=True)
class Known:
    pattern: str  # shell-style, on the config stem; the first match wins
    name: str
    family: str  # models of one family compete for one place among the first models of the qualitative grid


KNOWN = (
    # The video models (configs/video/): per-frame models linked by mask IoU, Video MNC, MaskTrack R-CNN.
    Known("mnc_5stage_linked_*", "MNC 5-stage + linking", "MNC"),
    Known("mask_rcnn_linked_*", "Mask R-CNN + linking", "Mask R-CNN"),
    Known("video_mnc_*", "Video MNC", "MNC"),
    Known("masktrack_rcnn_*", "MaskTrack R-CNN", "MaskTrack R-CNN"),
    Known("mnc_3stage_*", "MNC 3-stage", "MNC"),
    Known("mnc_5stage_c4_*", "MNC 5-stage C4", "MNC"),
    Known("mnc_5stage_*", "MNC 5-stage", "MNC"),
    Known("mnc_*", "MNC", "MNC"),
    Known("mask_rcnn_*", "Mask R-CNN", "Mask R-CNN"),
    Known("panet_*", "PANet", "PANet"),
    Known("cascade_mask_rcnn_*", "Cascade Mask R-CNN", "Cascade Mask R-CNN"),
    Known("htc_*", "HTC", "HTC"),
    Known("solov2_*", "SOLOv2", "SOLOv2"),
    Known("mask2former_*", "Mask2Former", "Mask2Former"),
)
# Stem parts that tell two configs of one model apart, as printed (others print as they are: '50e', 'coco').
TOKENS = {"r50": "R-50", "r101": "R-101", "x101": "X-101", "c4": "C4", "fpn": "FPN", "voc": "VOC",
          "sbd": "SBD", "coco": "COCO"}


def _known(model: str) -> Known | None:
    return next((k for k in KNOWN if fnmatchcase(model, k.pattern)), None)


def parse_overrides(items: Iterable[str], option: str = "--display-name") -> dict[str, str]:
    """``MODEL=NAME`` strings (MODEL may be a shell-style pattern such as ``mnc_*``) as a mapping; UserError
    for one without '=' or with an empty side."""
    out = {}
    for item in items:
        model, sep, name = item.partition("=")
        if not sep or not model.strip() or not name.strip():
            raise UserError(f"{option} {item}: expected MODEL=NAME, e.g. mnc_5stage_shapes='MNC 5-stage'")
        out[model.strip()] = name.strip()
    return out


def _disambiguate(models: list[str], base: dict[str, str]) -> dict[str, str]:
    """Models sharing a base name get the stem parts the others of that name lack; the stem itself where those
    parts do not tell them apart either."""
    out = dict(base)
    for name in set(base.values()):
        same = [m for m in models if base[m] == name]
        if len(same) < 2:
            continue
        parts = {m: m.split("_") for m in same}
        common = set.intersection(*(set(p) for p in parts.values()))
        for m in same:
            extra = " ".join(TOKENS.get(p, p) for p in parts[m] if p not in common)
            out[m] = f"{name} {extra}" if extra else name
        if len({out[m] for m in same}) < len(same):
            out.update({m: f"{name} ({m})" for m in same})
    return out


@dataclass(frozen=True)
class DisplayNames:
    """model (config stem) -> printed name and family; a model it does not know prints as its stem."""

    names: Mapping[str, str]
    families: Mapping[str, str]

    def __call__(self, model: str) -> str:
        return self.names.get(model, model)

    def family(self, model: str) -> str:
        return self.families.get(model, model)

    def label(self, model: str, variant: str) -> str:
        """The row or legend label of a group: its name, then its variant (axis keys cut to their last
        parts)."""
        return short_label(self(model), variant)


def display_names(models: Iterable[str], overrides: Mapping[str, str] | None = None) -> DisplayNames:
    """The names of ``models``: ``overrides`` (stem or pattern -> name) first, then :data:`KNOWN`, else the
    stem. UserError for an override that matches none of ``models`` (a typo would otherwise pass unnoticed).
    """
    models = sorted(set(models))
    overrides = dict(overrides or {})
    for pattern in overrides:
        if models and not any(fnmatchcase(m, pattern) for m in models):
            raise UserError(f"--display-name {pattern}: matches no model in the results "
                            f"(models: {', '.join(models[:10])})")
    base, families = {}, {}
    for model in models:
        known = _known(model)
        chosen = next((name for pattern, name in overrides.items() if fnmatchcase(model, pattern)), None)
        base[model] = chosen or (known.name if known else model)
        families[model] = known.family if known else model
    return DisplayNames(_disambiguate(models, base), families)
