"""Paths as a report prints them: relative to the checkout, or ``<results>/...`` for what lies under the
results folder outside it, never an absolute path of the machine that made the report.

The results folder is the one the report read (``--results``) and the ones the collect tables recorded: a
run's ``run_dir`` is ``<results root>/<suite>/<run id>`` on the machine that ran it, and a bench file names
checkpoints inside such run folders.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePath

import pandas as pd

from mnc_bench.env import CHECKOUT

RESULTS = "<results>"
_PATH_CHAR = r"[^\s'\"`:,;()\[\]]"  # a path in free text ends at a space, quote or punctuation
OUTSIDE = "<outside>"  # a path outside the checkout and the results: only its file name is printed


def _absolute(path: str | os.PathLike[str]) -> PurePath:
    """An absolute, normalised path without touching the disk for a path recorded on another machine."""
    path = Path(path)
    if path.is_absolute() and not path.exists():
        return PurePath(os.path.normpath(path))
    return path.resolve()


def recorded_roots(runs: pd.DataFrame) -> list[PurePath]:
    """The results roots the collect tables name: ``run_dir`` minus its ``<suite>/<run id>``."""
    if "run_dir" not in runs:
        return []
    roots = set()
    for run_dir, suite, run_id in zip(runs["run_dir"], runs["suite"], runs["run_id"]):
        path = PurePath(str(run_dir or ""))
        if path.is_absolute() and path.parts[-2:] == (str(suite), str(run_id)):
            roots.add(PurePath(os.path.normpath(path.parent.parent)))
    return sorted(roots)


@dataclass(frozen=True)
class PathDisplay:
    checkout: PurePath
    results: tuple[PurePath, ...]  # absolute: the folder read, then the roots the tables recorded

    @classmethod
    def of(cls, results_dir: str | os.PathLike[str], runs: pd.DataFrame, checkout: Path = CHECKOUT
           ) -> PathDisplay:
        roots = [_absolute(results_dir), *recorded_roots(runs)]
        return cls(_absolute(checkout), tuple(dict.fromkeys(roots)))

    def path(self, path: str | os.PathLike[str]) -> str:
        """``path`` relative to the checkout; else ``<results>/...``; else ``<outside>/<file name>``."""
        if str(path) == "":
            return ""
        absolute = _absolute(path)
        if absolute.is_relative_to(self.checkout):
            return absolute.relative_to(self.checkout).as_posix() or "."
        for root in self.results:
            if absolute.is_relative_to(root):
                rest = absolute.relative_to(root).as_posix()
                return RESULTS if rest == "." else f"{RESULTS}/{rest}"
        return f"{OUTSIDE}/{absolute.name}"

    def recorded(self, path: str | os.PathLike[str]) -> str:
        """A path another command wrote down (a run's config, a bench file's config or checkpoint): a relative
        one is relative to the checkout it ran in and prints as it is; an absolute one as :meth:`path`."""
        return PurePath(path).as_posix() if not PurePath(path).is_absolute() else self.path(path)

    def text(self, text: str) -> str:
        """``text`` (a failure reason, a skipped figure's reason) with every absolute path under a known
        folder printed as :meth:`path` prints it (longest folders first, so a results root inside the checkout
        reads ``results/...``)."""
        for root in sorted({*self.results, self.checkout}, key=lambda p: -len(str(p))):
            pattern = re.compile(re.escape(str(root)) + rf"(?P<rest>/{_PATH_CHAR}*)?(?!{_PATH_CHAR})")
            text = pattern.sub(lambda m, root=root: self.path(str(root) + (m.group("rest") or "")), text)
        return text



def shell_join(parts: Iterable[str]) -> str:
    """``shlex.join``, leaving the ``<results>`` / ``<outside>`` placeholders unquoted: they stand for a
    folder the reader substitutes, not for literal text."""
    out = []
    for part in parts:
        bare = part.replace(RESULTS, "").replace(OUTSIDE, "")
        out.append(part if bare != part and (not bare or shlex.quote(bare) == bare) else shlex.quote(part))
    return " ".join(out)
