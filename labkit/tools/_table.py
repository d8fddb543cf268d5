"""Read the column-aligned tables sbx and docker model print (Go tabwriter style).

Cells are cut at the header's column starts, not split on runs of spaces: sbx leaves cells
empty (REASON on allowed requests, PORTS without ports, continuation rows of a rule) and
has values with single spaces in them (``10:15:23 29-Jan``, ``361.82 M``).
"""

from __future__ import annotations

import re

_COLUMN = re.compile(r"\S+(?: \S+)*")  # a header name may hold single spaces: "LAST SEEN", "APPLIES TO"


def columns(header: str) -> list[tuple[int, str]]:
    """(start, NAME) of each column of a header line."""
    return [(m.start(), m.group()) for m in _COLUMN.finditer(header)]


def read_row(line: str, cols: list[tuple[int, str]]) -> dict[str, str]:
    """One row as {COLUMN: cell}; a row that does not line up falls back to splitting on 2+ spaces."""
    starts = [start for start, _ in cols]
    aligned = all(start == 0 or start >= len(line) or line[start - 1] == " " for start in starts)
    if not aligned:
        parts = re.split(r"\s{2,}", line.strip())
        if len(parts) == len(cols):
            return {name: part for (_, name), part in zip(cols, parts, strict=True)}
    cells = {}
    for i, (start, name) in enumerate(cols):
        end = starts[i + 1] if i + 1 < len(starts) else None
        cells[name] = line[start:end].strip()
    return cells


def read_table(lines: list[str], header_index: int = 0) -> list[dict[str, str]]:
    """The rows under ``lines[header_index]`` up to the end (blank lines skipped)."""
    cols = columns(lines[header_index])
    return [read_row(line, cols) for line in lines[header_index + 1:] if line.strip()]


def split_list(cell: str) -> list[str]:
    """A comma-separated cell as its items ("a.com, b.com" or "a.com,b.com")."""
    return [item.strip() for item in cell.split(",") if item.strip()]
