"""The print sizes report tables and figures are made for: one column or the full text width of a two-column
paper, and the smallest font legible in print.

CVPR and ICCV print 10 pt Times in a text area 6.875 in wide (their author kits), split into two columns about
3.25 in wide. A table or figure made for the column also fits a one-column article (4.8 in of text at 10 pt,
the ``article`` class's default; more with smaller margins); one made for the text width spans both columns of
a two-column paper (``table*``) and needs a one-column article with at least that much text width.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mnc_bench.errors import UserError

POINTS_PER_INCH = 72.27  # TeX points: what pdflatex's \the\wd prints
MIN_FONT_PT = 7.0  # the smallest text in a figure at print size


@dataclass(frozen=True)
class Width:
    name: str
    inches: float
    float_env: str  # the float of a table this wide: table (one column) or table* (both columns)

    @property
    def points(self) -> float:
        return self.inches * POINTS_PER_INCH


COLUMN = Width("column", 3.25, "table")
TEXT = Width("text", 6.875, "table*")
WIDTHS = {w.name: w for w in (COLUMN, TEXT)}


def width(name: str, option: str = "--table-width") -> Width:
    """The width called ``name``; UserError naming ``option`` for any other."""
    if name not in WIDTHS:
        raise UserError(f"{option} {name}: not a width (choose from {', '.join(WIDTHS)})")
    return WIDTHS[name]


DEFAULT_TABLE_WIDTH = COLUMN


def parse_table_widths(items: Iterable[str], option: str = "--table-width") -> dict[str, Width]:
    """``WIDTH`` (every table) or ``TABLE=WIDTH``, where TABLE is a table's file stem or its start (``main``:
    the main tables, ``main_coco``, ``ablation``); the key of a bare WIDTH is ''. UserError for anything else.
    """
    out = {}
    for item in items:
        table, sep, name = item.rpartition("=")
        if sep and not table.strip():
            raise UserError(f"{option} {item}: expected WIDTH or TABLE=WIDTH, e.g. main_coco=text")
        out[table.strip()] = width(name.strip(), option)
    return out


def table_width(table: str, widths: Mapping[str, Width]) -> Width:
    """The width of the table with file stem ``table``: the longest key that names it or starts it wins."""
    keys = [k for k in widths if k == "" or table == k or table.startswith(k + "_")]
    return widths[max(keys, key=len)] if keys else DEFAULT_TABLE_WIDTH


def unused_keys(widths: Mapping[str, Width], tables: Iterable[str]) -> list[str]:
    """Keys that name none of ``tables`` (a typo would otherwise pass unnoticed)."""
    tables = list(tables)
    return [k for k in widths if k and not any(t == k or t.startswith(k + "_") for t in tables)]
