"""Robustness to corruptions (Michaelis et al., "Benchmarking Robustness in Object Detection", 2019): the
record of a corrupted test pass (``robustness.json``) and its summary numbers.

* ``P_clean``: AP on the uncorrupted images of the pass (the same images as the corrupted conditions);
* ``mPC``: mean AP over every (corruption, severity) of the pass, the paper's mean performance under
  corruption (over its 15 corruptions x 5 severities when the pass has them all; over the subset it has
  otherwise, which the record states);
* ``rPC = mPC / P_clean``, relative performance under corruption.

Flat keys (``<kind>`` segm or bbox, fractions like every AP): ``robustness/<kind>/{AP_clean, mPC, rPC}``,
``robustness/<kind>/AP@s<severity>`` (mean over the corruptions at one severity) and
``robustness/<kind>/AP/<corruption>`` (mean over the severities of one corruption).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mnc_bench.errors import UserError
from mnc_bench.io import write_json

RECORD_FILE = "robustness.json"
RECORD_FORMAT = 1
KINDS = ("segm", "bbox")
PREFIX = "robustness/"


@dataclass(frozen=True)
class PassSettings:
    """What a corrupted pass runs: the corruptions, severities, image count (None: every test image) and the
    seed of the corrupted images."""

    corruptions: tuple[str, ...]
    severities: tuple[int, ...]
    images: int | None
    seed: int

    def conditions(self) -> list[tuple[str, int]]:
        return [(c, s) for c in self.corruptions for s in self.severities]


@dataclass
class RobustnessRecord:
    """One model's corrupted pass: settings, where it came from, COCO AP/AR per condition, summary keys."""

    settings: PassSettings
    config: str
    checkpoint: str
    ann_file: str
    image_ids: list[int]
    clean: dict[str, float]  # coco/<kind>/<name> on the clean images
    corrupted: dict[str, dict[int, dict[str, float]]]  # corruption -> severity -> coco/<kind>/<name>
    seconds: float = math.nan
    details: dict[str, Any] = field(default_factory=dict)  # threads, packages, per-condition seconds

    @property
    def summary(self) -> dict[str, float]:
        return summarize(self.clean, self.corrupted)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["settings"] = {**data["settings"], "corruptions": list(self.settings.corruptions),
                            "severities": list(self.settings.severities)}
        data["corrupted"] = {c: {str(s): m for s, m in by.items()} for c, by in self.corrupted.items()}
        return {"format": RECORD_FORMAT, **data, "summary": self.summary}


def summarize(clean: Mapping[str, float], corrupted: Mapping[str, Mapping[int, Mapping[str, float]]]
              ) -> dict[str, float]:
    """The flat summary keys (module docstring) from clean and per-condition COCO metrics."""
    results: dict[str, float] = {}
    for kind in KINDS:
        key = f"coco/{kind}/AP"
        if key not in clean:
            continue
        values = {(c, s): float(m[key]) for c, by in corrupted.items() for s, m in by.items()}
        p_clean = float(clean[key])
        mpc = _mean(values.values())
        results[f"{PREFIX}{kind}/AP_clean"] = p_clean
        results[f"{PREFIX}{kind}/mPC"] = mpc
        results[f"{PREFIX}{kind}/rPC"] = mpc / p_clean if p_clean > 0 else math.nan
        for severity in sorted({s for _, s in values}):
            at = [v for (_, s), v in values.items() if s == severity]
            results[f"{PREFIX}{kind}/AP@s{severity}"] = _mean(at)
        for corruption in corrupted:
            under = [v for (c, _), v in values.items() if c == corruption]
            results[f"{PREFIX}{kind}/AP/{corruption}"] = _mean(under)
    return results


def _mean(values: Any) -> float:
    array = np.array(list(values), dtype=np.float64)
    array = array[~np.isnan(array)]
    return float(array.mean()) if len(array) else math.nan


def write_record(path: str | os.PathLike[str], record: RobustnessRecord) -> None:
    """Write ``record`` atomically as strict JSON (NaN as null)."""
    write_json(path, record.to_json(), indent=1, nan_as_null=True)


def read_summary(path: str | os.PathLike[str]) -> dict[str, float]:
    """The flat summary keys of a ``robustness.json`` (NaN for null); {} when the file does not exist."""
    data = read_record(path)
    if data is None:
        return {}
    return {k: math.nan if v is None else float(v) for k, v in data["summary"].items()}


def read_record(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The parsed record (as written by :func:`write_record`), None when the file does not exist; a file of
    another format is a UserError naming it."""
    import json

    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a robustness record (unreadable JSON: {exc})") from None
    if not (isinstance(data, dict) and data.get("format") == RECORD_FORMAT
            and isinstance(data.get("summary"), dict)):
        raise UserError(f"{path}: not a robustness record of format {RECORD_FORMAT}")
    return data
