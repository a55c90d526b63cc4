"""Result tables for the notebooks: rows in, a table that renders as HTML, Markdown or plain text.

A notebook cell that would otherwise be a page of f-strings becomes one call::

    from psft_edu.course.tables import show_table
    show_table({"sft": {"acc": 0.41, "kl": 3.2}, "psft": {"acc": 0.44, "kl": 0.7}},
               columns=["acc", ("kl", "KL to base")], formats={"acc": ".1%", "kl": ".2f"})

``rows`` may be a list of dicts, a dict of dicts (the outer keys become the first column, titled
``index``), or a list of lists/tuples (then ``columns`` names them in order). A cell's text comes
from ``formats[column]``: a format spec such as ``".3f"``, or any callable; without one, floats
are shown with three decimals and everything else with ``str``. :func:`arrow` formats a pair
``(before, after)`` as ``"before → after"``.

In Jupyter the table renders as HTML (and carries a Markdown and a plain-text version, which is
what a terminal and nbval see); outside Jupyter :func:`show_table` prints the plain text.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Format = str | Callable[[Any], str]
Column = str | tuple[str, str]
Rows = Sequence[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]] | Sequence[Sequence[Any]]


def _format_value(value: Any, fmt: Format | None) -> str:
    if value is None:
        return ""
    if callable(fmt):
        return str(fmt(value))
    if fmt is not None:
        return format(value, fmt)
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3f}"
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # 0-d tensors and NumPy scalars
        return _format_value(value.item(), None)
    return str(value)


def arrow(fmt: str = ".3f", sep: str = " → ") -> Callable[[Sequence[float]], str]:
    """A formatter for a pair ``(before, after)``: ``arrow(".2f")((0.1, 0.25)) == "0.10 → 0.25"``."""

    def formatter(pair: Sequence[float]) -> str:
        before, after = pair
        return f"{format(before, fmt)}{sep}{format(after, fmt)}"

    return formatter


def paired_columns(
    row: Mapping[str, Any],
    pairs: Sequence[tuple[str, str]] = (("_first", "_last"), ("_before", "_after")),
) -> dict[str, tuple[Any, Any]]:
    """Join the keys that differ only by a suffix pair into one ``(before, after)`` column.

    ``{"reward_first": 0.1, "reward_last": 0.3, "ood_before": 0.5, "ood_after": 0.4}`` becomes
    ``{"reward": (0.1, 0.3), "ood": (0.5, 0.4)}`` (in the order of the first keys); format those with
    :func:`arrow`. Keys without a partner are dropped.
    """
    out: dict[str, tuple[Any, Any]] = {}
    for key, value in row.items():
        for start, end in pairs:
            stem = key[: -len(start)]
            if key.endswith(start) and stem + end in row:
                out[stem] = (value, row[stem + end])
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_numbers(value: Any) -> bool:
    """A tuple of numbers (or None), such as the ``(before, after)`` pairs that :func:`arrow` formats."""
    return isinstance(value, tuple) and all(_is_number(v) or v is None for v in value)


class Table:
    """A formatted table: ``header`` (column titles), ``cells`` (text of every row) and per-column alignment."""

    def __init__(
        self, header: list[str], cells: list[list[str]], numeric: list[bool], title: str | None = None
    ) -> None:
        self.header, self.cells, self.numeric, self.title = header, cells, numeric, title

    def text(self) -> str:
        """Aligned plain text: numbers right-aligned, text left-aligned, a rule under the header."""
        widths = [max([len(h)] + [len(row[i]) for row in self.cells]) for i, h in enumerate(self.header)]

        def line(values: list[str]) -> str:
            parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, self.numeric)]
            return "  ".join(parts).rstrip()

        lines = [line(self.header), "  ".join("-" * w for w in widths)] + [line(row) for row in self.cells]
        return "\n".join(([self.title] if self.title else []) + lines)

    def markdown(self) -> str:
        """A GitHub-flavoured Markdown table (``|`` inside a cell is escaped)."""

        def row(values: list[str]) -> str:
            return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"

        rule = "| " + " | ".join("---:" if num else ":---" for num in self.numeric) + " |"
        lines = [row(self.header), rule] + [row(r) for r in self.cells]
        return "\n".join(([f"**{self.title}**", ""] if self.title else []) + lines)

    def html(self) -> str:
        """An HTML ``<table>`` (every cell escaped)."""

        def cell(tag: str, value: str, num: bool) -> str:
            return f'<{tag} style="text-align:{"right" if num else "left"}">{html.escape(value)}</{tag}>'

        head = "".join(cell("th", h, num) for h, num in zip(self.header, self.numeric))
        body = "".join(
            "<tr>" + "".join(cell("td", v, num) for v, num in zip(r, self.numeric)) + "</tr>" for r in self.cells
        )
        caption = f"<caption>{html.escape(self.title)}</caption>" if self.title else ""
        return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def _repr_html_(self) -> str:
        return self.html()

    def _repr_markdown_(self) -> str:
        return self.markdown()

    def __repr__(self) -> str:
        return self.text()

    __str__ = text


def make_table(
    rows: Rows,
    columns: Sequence[Column] | None = None,
    formats: Mapping[str, Format] | None = None,
    index: str = "run",
    title: str | None = None,
) -> Table:
    """Build a :class:`Table` from ``rows`` (see the module's docstring for the accepted shapes).

    ``columns`` lists the keys to show, in order; an entry ``(key, title)`` gives a column a title
    different from its key. Without ``columns``, a list of dicts shows the keys of its first row and
    a dict of dicts the keys of its first value. ``index`` titles the first column of a dict of dicts.
    Raises ``ValueError`` when a row lacks a column or a list row has the wrong length.
    """
    formats = dict(formats or {})
    if isinstance(rows, Mapping):
        records = [{index: name, **dict(values)} for name, values in rows.items()]
        if columns is None:
            first = next(iter(rows.values()), {})
            columns = [index, *first.keys()]
        elif index not in [c if isinstance(c, str) else c[0] for c in columns]:
            columns = [index, *columns]
    else:
        rows = list(rows)
        if rows and not isinstance(rows[0], Mapping):
            if columns is None:
                raise ValueError("rows given as lists need `columns` to name them")
            keys = [c if isinstance(c, str) else c[0] for c in columns]
            for number, row in enumerate(rows):
                if len(row) != len(keys):
                    raise ValueError(f"row {number} has {len(row)} values for {len(keys)} columns")
            records = [dict(zip(keys, row)) for row in rows]
        else:
            records = [dict(r) for r in rows]
            if columns is None:
                columns = list(records[0]) if records else []
    keys = [c if isinstance(c, str) else c[0] for c in columns]
    header = [c if isinstance(c, str) else c[1] for c in columns]
    for number, record in enumerate(records):
        missing = [k for k in keys if k not in record]
        if missing:
            raise ValueError(f"row {number} has no value for column {missing[0]!r}")
    cells = [[_format_value(record[k], formats.get(k)) for k in keys] for record in records]
    numeric = [
        bool(records) and all(_is_number(r[k]) or r[k] is None or _is_numbers(r[k]) for r in records) for k in keys
    ]
    return Table(header, cells, numeric, title)


def show_table(rows: Rows, **options: Any) -> None:
    """``make_table(rows, **options)`` (``columns``, ``formats``, ``index``, ``title``), displayed at once:
    HTML in Jupyter, plain text elsewhere.

    It returns nothing, so a cell may show several tables and never shows one twice; use
    :func:`make_table` to keep the table (its ``text()``, ``markdown()`` and ``html()``).
    """
    table = make_table(rows, **options)
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython is a dependency of the notebooks
        print(table.text())
        return
    if get_ipython() is None:
        print(table.text())
    else:
        display(table)
