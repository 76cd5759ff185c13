"""The SQLite file behind the results store: tables, checksummed rows and draws, queries.

Tables: ``rows`` (``id``, a ``crc`` and one column per :data:`COLUMNS`), ``draws`` (``row_id``,
``n``, ``data``: ``n`` little-endian float64, ``crc``), ``claims`` (``cell_key``, the claiming
process, ``claimed_at``) and ``meta`` (key/value: schema version, export state).

Every row and every draws blob carries a CRC-32 of its content and id, computed when it is
inserted. SQLite detects damage to its own structure (then :func:`is_corruption` is true), not to
the values it stores: a flipped bit inside a score or a draw would otherwise be read back silently.
:func:`damaged_ids` finds the rows whose checksum (or whose draws' checksum) no longer matches.
There is deliberately no index: a damaged index entry can answer a query with values the table
does not hold, unseen by the row checksums, and scanning a results table is fast (10k rows in
milliseconds).

Connections are short-lived (one per operation) and use the rollback journal with
``synchronous=FULL``: a committed transaction survives a power cut, an interrupted one is rolled
back on the next open.
"""

from __future__ import annotations

import contextlib
import sqlite3
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dattr_eval.atomic import ProcessId
from dattr_eval.evaluation.results_schema import (
    BOOL_COLUMNS,
    COLUMNS,
    FINISHED_STATUSES,
    FLOAT_COLUMNS,
    INTEGER_COLUMNS,
    KEY,
    SCHEMA_VERSION,
    to_frame,
)

#: seconds a process waits for another one's write transaction before giving up
BUSY_TIMEOUT_S = 120.0
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26


def _sql_type(column: str) -> str:
    if column in FLOAT_COLUMNS:
        return "REAL"
    if column in INTEGER_COLUMNS or column in BOOL_COLUMNS:
        return "INTEGER"
    return "TEXT"


#: unquoted on purpose: SQLite reads an unknown "double-quoted" name as a string literal
COLUMN_LIST = ", ".join(COLUMNS)
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    (
        "CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, crc INTEGER, "
        + ", ".join(f"{c} {_sql_type(c)}" for c in COLUMNS)
        + ")"
    ),
    (
        "CREATE TABLE IF NOT EXISTS draws (row_id INTEGER PRIMARY KEY, n INTEGER NOT NULL, "
        "data BLOB NOT NULL, crc INTEGER NOT NULL)"
    ),
    (
        "CREATE TABLE IF NOT EXISTS claims (cell_key TEXT PRIMARY KEY, hostname TEXT NOT NULL, "
        "pid INTEGER NOT NULL, started TEXT NOT NULL, claimed_at REAL NOT NULL)"
    ),
)
_FIXED_TABLES = {
    "meta": ("key", "value"),
    "draws": ("row_id", "n", "data", "crc"),
    "claims": ("cell_key", "hostname", "pid", "started", "claimed_at"),
}
_LATEST_IDS = f"SELECT MAX(id) FROM rows GROUP BY {', '.join(KEY)}"


# ----------------------------------------------------------------------- connections
@contextlib.contextmanager
def connect(db: Path, *, readonly: bool = False) -> Iterator[sqlite3.Connection]:
    """A connection in autocommit mode (transactions are explicit), closed on exit."""
    uri = db.resolve().as_uri() + ("?mode=ro" if readonly else "")
    conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous=FULL")
        yield conn
    finally:
        conn.close()


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction (``BEGIN IMMEDIATE``: the write lock is taken at once)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class DamagedDatabase(sqlite3.DatabaseError):
    """The database's own schema is damaged (SQLite itself does not notice)."""


class NewerDatabase(sqlite3.DatabaseError):
    """The database was written by a newer dattr_eval, with a schema this version does not know."""


def is_corruption(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says the database file is damaged (not busy, full or missing a table)."""
    if isinstance(exc, NewerDatabase):
        return False
    if isinstance(exc, DamagedDatabase) or str(exc).startswith("Could not decode to UTF-8"):
        return True  # the second: text stored in the file (a name in the schema) is not UTF-8
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:  # Python < 3.11: corruption raises the base DatabaseError class itself
        return type(exc) is sqlite3.DatabaseError
    return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)


def create_schema(conn: sqlite3.Connection) -> bool:
    """Create the tables (and columns added since) that are missing; True when the file was new.

    Raises:
        NewerDatabase: the file's schema version is newer than :data:`SCHEMA_VERSION`.
        DamagedDatabase: the ``rows`` table has a column this schema does not know.
    """
    fresh = conn.execute("SELECT name FROM sqlite_master WHERE name = 'meta'").fetchone() is None
    for statement in _SCHEMA:
        conn.execute(statement)
    version = read_meta(conn).get("schema_version", str(SCHEMA_VERSION))
    if not version.isdigit() or int(version) > SCHEMA_VERSION:
        raise NewerDatabase(
            f"written with results schema version {version!r}; this dattr_eval reads up to "
            f"{SCHEMA_VERSION} (upgrade dattr_eval)"
        )
    for table, columns in _FIXED_TABLES.items():
        found = [info[1] for info in conn.execute(f"PRAGMA table_info({table})")]
        if found != list(columns):
            raise DamagedDatabase(f"the {table} table has columns {found}, expected {columns}")
    present = [info[1] for info in conn.execute("PRAGMA table_info(rows)")]
    unknown = set(present) - set(COLUMNS) - {"id", "crc"}
    if present[:2] != ["id", "crc"] or unknown:
        raise DamagedDatabase(f"the rows table has unknown column(s) {sorted(unknown)}")
    for column in COLUMNS:
        if column not in present:
            conn.execute(f"ALTER TABLE rows ADD COLUMN {column} {_sql_type(column)}")
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    return fresh


def read_meta(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT key, value FROM meta"))


def write_meta(conn: sqlite3.Connection, values: Mapping[str, str]) -> None:
    conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(values.items()))


# ----------------------------------------------------------------------- checksums
def row_checksum(row_id: int, values: Sequence[Any]) -> int:
    """CRC-32 of a row's id and its values as SQLite returns them (bools as 0/1)."""
    return zlib.crc32(repr((row_id, *values)).encode("utf-8", "surrogatepass"))


def draws_checksum(row_id: int, n: int, data: bytes) -> int:
    """CRC-32 of a draws blob together with its row id and length."""
    return zlib.crc32(data, zlib.crc32(f"{row_id}:{n}".encode()))


def damaged_ids(conn: sqlite3.Connection, *, draws: bool = True) -> set[int]:
    """Ids of rows whose checksum fails, or (``draws=True``) whose draws' checksum fails."""
    bad = {
        row_id
        for row_id, crc, *values in conn.execute(f"SELECT id, crc, {COLUMN_LIST} FROM rows")
        if crc != row_checksum(row_id, values)
    }
    if draws:
        bad |= {
            row_id
            for row_id, n, data, crc in conn.execute("SELECT row_id, n, data, crc FROM draws")
            if not isinstance(data, bytes) or crc != draws_checksum(row_id, n, data)
        }
    return bad


# ----------------------------------------------------------------------- writing
def insert_rows(conn: sqlite3.Connection, rows: Iterable[Mapping[str, Any]]) -> list[int]:
    """Insert checked rows (``normalize_row`` output) under new ids, with checksums; the ids."""
    next_id = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM rows").fetchone()[0]
    sql = (
        f"INSERT INTO rows (id, crc, {COLUMN_LIST}) VALUES ({', '.join('?' * (len(COLUMNS) + 2))})"
    )
    ids = []
    for row_id, row in enumerate(rows, start=next_id):
        values = [int(row[c]) if isinstance(row[c], bool) else row[c] for c in COLUMNS]
        conn.execute(sql, [row_id, row_checksum(row_id, values), *values])
        ids.append(row_id)
    return ids


def insert_draws(conn: sqlite3.Connection, draws: Iterable[tuple[int, np.ndarray]]) -> None:
    """Store ``(row_id, (n,) draws)`` pairs as little-endian float64 blobs with checksums."""
    blobs = [(row_id, np.asarray(a, dtype="<f8").tobytes()) for row_id, a in draws]
    conn.executemany(
        "INSERT INTO draws VALUES (?, ?, ?, ?)",
        [(r, len(b) // 8, b, draws_checksum(r, len(b) // 8, b)) for r, b in blobs],
    )


def delete_rows(conn: sqlite3.Connection, ids: Iterable[int]) -> None:
    """Delete rows and their draws, and any draws left without a row."""
    conn.executemany("DELETE FROM rows WHERE id = ?", [(i,) for i in ids])
    conn.execute("DELETE FROM draws WHERE row_id NOT IN (SELECT id FROM rows)")


# ----------------------------------------------------------------------- reading
def select_rows(conn: sqlite3.Connection, where: str = "", args: tuple = ()) -> list[tuple]:
    """Rows as tuples in ``COLUMNS`` order (bools as 0/1), in insertion order."""
    return conn.execute(f"SELECT {COLUMN_LIST} FROM rows {where} ORDER BY id", args).fetchall()


def rows_frame(conn: sqlite3.Connection, latest: bool) -> pd.DataFrame:
    """All rows, or the latest per ``KEY``, as a typed DataFrame."""
    return to_frame(select_rows(conn, f"WHERE id IN ({_LATEST_IDS})" if latest else ""))


def bootstrap_draws(conn: sqlite3.Connection) -> dict[tuple[str, str, str], np.ndarray]:
    """Draws of the latest metric row per (benchmark, explainer, metric) when that row is ok."""
    found = conn.execute(
        "SELECT r.benchmark, r.explainer, r.metric, d.data FROM rows r "
        "JOIN draws d ON d.row_id = r.id WHERE r.status = 'ok' AND r.id IN "
        "(SELECT MAX(id) FROM rows WHERE kind = 'metric' GROUP BY benchmark, explainer, metric)"
    )
    return {
        (b, e, m): np.frombuffer(data, dtype="<f8").astype(np.float64) for b, e, m, data in found
    }


def latest_statuses(
    conn: sqlite3.Connection, cell_key: str | None = None
) -> dict[tuple[str, str], str]:
    """``(cell_key, metric_key) -> status`` of the latest row (of one cell, or of all)."""
    where, args = ("cell_key = ?", (cell_key,)) if cell_key else ("cell_key != ''", ())
    found = conn.execute(
        f"SELECT cell_key, metric_key, status FROM rows WHERE id IN "
        f"(SELECT MAX(id) FROM rows WHERE {where} GROUP BY cell_key, metric_key)",
        args,
    )
    return {(c, m): status for c, m, status in found}


def finished_pairs(conn: sqlite3.Connection, cell_key: str | None = None) -> set[tuple[str, str]]:
    """``(cell_key, metric_key)`` whose latest row is finished (of one cell, or of all)."""
    latest = latest_statuses(conn, cell_key)
    return {pair for pair, status in latest.items() if status in FINISHED_STATUSES}


def all_rows_and_draws(conn: sqlite3.Connection) -> tuple[list[tuple], list[tuple]]:
    """``(id, crc, *COLUMNS)`` of every row and ``(row_id, n, data, crc)`` of every draws blob."""
    rows = conn.execute(f"SELECT id, crc, {COLUMN_LIST} FROM rows ORDER BY id").fetchall()
    return rows, conn.execute("SELECT row_id, n, data, crc FROM draws").fetchall()


# ----------------------------------------------------------------------- claims
def claim_holder(conn: sqlite3.Connection, cell_key: str) -> tuple[ProcessId, float] | None:
    """The process claiming ``cell_key`` and when (epoch seconds), or ``None``."""
    held = conn.execute(
        "SELECT hostname, pid, started, claimed_at FROM claims WHERE cell_key = ?", (cell_key,)
    ).fetchone()
    return None if held is None else (ProcessId(*held[:3]), held[3])


def record_claim(
    conn: sqlite3.Connection, cell_key: str, process: ProcessId, claimed_at: float
) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?)",
        (cell_key, process.hostname, process.pid, process.started, claimed_at),
    )


def drop_claim(conn: sqlite3.Connection, cell_key: str, process: ProcessId) -> None:
    conn.execute(
        "DELETE FROM claims WHERE cell_key = ? AND hostname = ? AND pid = ? AND started = ?",
        (cell_key, process.hostname, process.pid, process.started),
    )
