"""Typeset LaTeX tables with pdflatex and measure them (test helper): per table, the width of each tabular,
the overfull boxes and the errors of the log.

Each table is ``\\input`` into a page of a 10 pt document: a two-column paper with CVPR/ICCV's text width
(6.875 in) and a 3.25 in column, or a one-column article with 1 in margins (6.5 in of text). The font is
Computer Modern, LaTeX's default: its digits are as wide as Times's (0.5 em) and its letters wider, so a table
that fits here fits a Times paper too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

DOCUMENTS = {
    "two-column": r"\documentclass[10pt,twocolumn,letterpaper]{article}"
                  r"\usepackage[textwidth=6.875in,columnsep=0.375in,textheight=9in]{geometry}",
    "one-column": r"\documentclass[10pt,letterpaper]{article}\usepackage[margin=1in]{geometry}",
}
# Every tabular is set in a box first, its width written to the log, then placed as it would be.
MEASURE = r"""\usepackage{booktabs}
\newsavebox\measuredtable
\let\plaintabular\tabular
\let\endplaintabular\endtabular
\renewenvironment{tabular}{\begin{lrbox}{\measuredtable}\plaintabular}%
  {\endplaintabular\end{lrbox}\typeout{MEASURED-WIDTH \the\wd\measuredtable}\usebox{\measuredtable}}
"""
_WIDTH = re.compile(r"^MEASURED-WIDTH ([\d.]+)pt", re.M)
_OVERFULL = re.compile(r"^Overfull \\hbox \(([\d.]+)pt too wide\).*$", re.M)
_ERROR = re.compile(r"^! .*$", re.M)


@dataclass
class Typeset:
    widths_pt: list[float] = field(default_factory=list)  # one per tabular
    overfull: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def find_pdflatex() -> str | None:
    return shutil.which("pdflatex")


def typeset(tables: dict[str, str], document: str, workdir: Path) -> dict[str, Typeset]:
    """Each of ``tables`` (name -> LaTeX) on a page of ``document`` (a key of :data:`DOCUMENTS`)."""
    workdir.mkdir(parents=True, exist_ok=True)
    body = []
    for i, (name, text) in enumerate(tables.items()):
        (workdir / f"table{i}.tex").write_text(text, encoding="utf-8")
        body.append(rf"\typeout{{TABLE-BEGIN {name}}}\input{{table{i}.tex}}\clearpage")
    (workdir / "doc.tex").write_text(
        "\n".join([DOCUMENTS[document], MEASURE, r"\begin{document}", *body, r"\end{document}", ""]),
        encoding="utf-8")
    env = {**os.environ, "max_print_line": "100000"}  # log lines unwrapped
    subprocess.run([find_pdflatex() or "pdflatex", "-interaction=nonstopmode", "doc.tex"], cwd=workdir,
                   env=env, capture_output=True, timeout=120, check=False)
    log = (workdir / "doc.log").read_text(encoding="utf-8", errors="replace")
    out = {}
    parts = re.split(r"^TABLE-BEGIN (.+)$", log, flags=re.M)
    for name, part in zip(parts[1::2], parts[2::2]):
        out[name] = Typeset([float(w) for w in _WIDTH.findall(part)], _OVERFULL.findall(part),
                            _ERROR.findall(part))
    missing = [name for name in tables if name not in out]
    if missing or _ERROR.search(parts[0]):
        raise RuntimeError(f"pdflatex did not reach table(s) {missing}: see {workdir / 'doc.log'}")
    return out
