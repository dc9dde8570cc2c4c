"""A DataTable whose new rows of plain text cost no Rich measuring pass.

DataTable sizes its columns on idle by measuring every cell of every new row through Rich
(``Text.__rich_measure__`` with a fresh set of console options per cell): for a page of 100 rows
of 8 :class:`rich.text.Text` cells that pass cost more than building the rows. A Text cell's
width is the cell length of its longest line (what that measure returns as its maximum), so
:class:`PageTable` reads it directly and leaves anything else (markup strings, other renderables,
labelled or auto-height rows) to DataTable.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import RowKey


def text_width(text: Text) -> int:
    """What Rich measures as the widest a Text can be: its longest line, in terminal cells."""
    plain = text.plain
    if "\n" not in plain and "\r" not in plain:
        return cell_len(plain)
    return max((cell_len(line) for line in plain.splitlines()), default=0)


class PageTable(DataTable):
    """A DataTable for pages of :class:`~rich.text.Text` cells (``widgets.text.plain``)."""

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        columns = self.ordered_columns
        rest: list[RowKey] = []
        for row_key in new_rows:
            row = self.rows.get(row_key)
            cells = self._data.get(row_key)
            if row is None or cells is None or row_key not in self._row_locations:
                continue  # removed before idle came
            if row.label is not None or row.auto_height:
                rest.append(row_key)
                continue
            for column in columns:
                value = cells.get(column.key)
                if isinstance(value, Text):
                    width = text_width(value)
                    if width > column.content_width:
                        column.content_width = width
                elif value is not None:
                    rest.append(row_key)  # DataTable measures the row (again: widths only grow)
                    break
        # with no rows left, DataTable only recomputes the virtual size from the column widths
        super()._update_dimensions(rest)
