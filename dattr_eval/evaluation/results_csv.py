"""``results.csv``: writing the export, and a reader that survives damaged files.

The reader never fails on content. It takes any header made of known column names (schema v1,
v2, or a reordered subset), and treats a header line met again later (two writers both wrote one)
as a layout switch, not as data. Every other record is checked (field count, types, ``kind`` and
``status`` values, JSON columns, UTF-8, no control characters) and set aside as *rejected*, with its line number and
reason, when a check fails. A record that fails is dropped one physical line at a time, so a flipped
byte that opens a stray quote costs only its own line: parsing restarts on the next line. A last
line without a line end is a torn write and is rejected. An empty file has no rows. When the header
itself is damaged, the layout is guessed from the field count of the first record (v1 or v2).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from dattr_eval.evaluation.results_schema import (
    COLUMNS,
    CONTROL_CHARACTERS,
    V1_COLUMNS,
    format_field,
    normalize_row,
    parse_field,
)

#: columns a header must name for its rows to be readable
REQUIRED_COLUMNS = ("benchmark", "kind", "status")


@dataclass(frozen=True)
class RejectedRecord:
    """A record set aside: where it was (``"line 4"``, ``"row 17"``), its raw bytes and why."""

    where: str
    raw: bytes
    reason: str


@dataclass
class CsvContent:
    """What :func:`read_results_csv` found.

    Attributes:
        rows: checked rows (``normalize_row`` output), in file order.
        rejected: records set aside, in file order.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[RejectedRecord] = field(default_factory=list)


def write_results_csv(fh: IO[str], rows: Iterable[Sequence[Any]], header: bool = True) -> None:
    """Write stored rows (tuples in ``COLUMNS`` order) to a text file opened with ``newline=""``."""
    writer = csv.writer(fh)
    if header:
        writer.writerow(COLUMNS)
    writer.writerows([format_field(c, v) for c, v in zip(COLUMNS, row)] for row in rows)


def _header(fields: Sequence[str]) -> tuple[str, ...] | None:
    """``fields`` as a layout when they form a valid header, else ``None``."""
    names = tuple(fields)
    known = set(COLUMNS)
    if (
        len(set(names)) == len(names)
        and set(names) <= known
        and set(REQUIRED_COLUMNS) <= set(names)
    ):
        return names
    return None


def _guess_layout(n_fields: int) -> tuple[str, ...] | None:
    return next((layout for layout in (COLUMNS, V1_COLUMNS) if len(layout) == n_fields), None)


class _Lines:
    """An iterator over decoded lines from ``pos``; stops at the end or at an undecodable line."""

    def __init__(self, lines: list[str | None], pos: int) -> None:
        self.lines, self.pos = lines, pos

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        if self.pos >= len(self.lines) or self.lines[self.pos] is None:
            raise StopIteration
        line = self.lines[self.pos]
        self.pos += 1
        return line


def _row(layout: Sequence[str], fields: Sequence[str]) -> dict[str, Any]:
    """A checked row from a record's fields; ValueError naming the problem."""
    if len(fields) != len(layout):
        raise ValueError(f"{len(fields)} fields, the header has {len(layout)}")
    if any(CONTROL_CHARACTERS.search(text) for text in fields):
        raise ValueError("a control character inside a field")
    values = {column: parse_field(column, text) for column, text in zip(layout, fields)}
    return normalize_row(values, schema_version=2 if "schema_version" in layout else 1)


def read_results_csv(path: str | Path) -> CsvContent:
    """Read a results CSV, setting aside malformed records (see the module docstring)."""
    data = Path(path).read_bytes()
    pieces = data.split(b"\n")
    raw = [p + b"\n" for p in pieces[:-1]] + ([pieces[-1]] if pieces[-1] else [])
    lines: list[str | None] = []
    for line in raw:
        try:
            lines.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append(None)
    content = CsvContent()
    layout: tuple[str, ...] | None = None

    def reject(start: int, stop: int, reason: str) -> None:
        content.rejected.append(
            RejectedRecord(f"line {start + 1}", b"".join(raw[start:stop]), reason)
        )

    pos = 0
    while pos < len(lines):
        if lines[pos] is None:
            reject(pos, pos + 1, "not UTF-8 text")
            pos += 1
            continue
        feed = _Lines(lines, pos)
        reader = csv.reader(feed, strict=True)
        while True:
            start = feed.pos
            try:
                fields = next(reader)
            except StopIteration:
                pos = feed.pos
                break
            except csv.Error as exc:
                reject(start, start + 1, f"malformed CSV: {exc}")
                pos = start + 1
                break
            if not fields:
                continue  # a blank line
            header = _header(fields)
            if header is not None:
                layout = header
                continue
            try:
                if not raw[feed.pos - 1].endswith(b"\n"):
                    raise ValueError("last line has no line end (a torn write)")
                current = layout or _guess_layout(len(fields))
                if current is None:
                    raise ValueError("no valid header before this line")
                content.rows.append(_row(current, fields))
            except ValueError as exc:
                reject(start, start + 1, str(exc))
                if feed.pos - start > 1:  # re-read the following lines on their own
                    pos = start + 1
                    break
    return content


def append_rejected(
    path: str | Path, source: str | Path, rejected: Sequence[RejectedRecord]
) -> None:
    """Append rejected records to the side file ``path``, each after a comment naming its origin.

    The comment line (``# <source> <where>: <reason>``) precedes the record's raw bytes, kept as
    they were so that a user can repair and re-add a row by hand.
    """
    with open(path, "ab") as fh:
        for record in rejected:
            fh.write(f"# {source} {record.where}: {record.reason}\n".encode())
            fh.write(record.raw if record.raw.endswith(b"\n") else record.raw + b"\n")
