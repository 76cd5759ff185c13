"""The results of an evaluation: ``out_dir/results.sqlite`` (the source of truth) and its export
``out_dir/results.csv``.

Rows (columns :data:`COLUMNS`, see ``results_schema``) are appended one finished cell at a time, in
one SQLite transaction together with the cell's bootstrap draws, so a cell is stored whole or not at
all whatever interrupts the run (SIGKILL, Ctrl-C, a full disk). ``results.csv`` lists every stored
row in insertion order; it is rewritten atomically (temporary file + ``os.replace``) inside the same
transaction, so it never shows a torn line (it is not fsync-ed: after a power cut the next append
rebuilds it from the database). Reruns append; the latest row per :data:`KEY` is the
current result.

Concurrency: several processes may share one ``out_dir``. SQLite serialises writers (busy timeout
``BUSY_TIMEOUT_S``); ``claim`` / ``release`` let two runs split a grid: a claim records the claiming
process (host name, pid and its start time) and is taken over once that process has exited, or
when it is older than ``stale_after_s`` (the only test for a process on another host). A lock file
(``.results.lock``, ``flock``: shared for every operation, exclusive for opening and repairing the
database) keeps one process from rebuilding the database under another.

Healing, never failing on content:

- a database that SQLite reports corrupt is moved aside (``results.sqlite.corrupt-<time>``) with a
  warning and rebuilt from what of it can still be read, else from ``results.csv``;
- rows (or bootstrap draws) whose checksum fails (see ``results_db``) are moved to
  ``results.rejected.csv`` with a warning when the store is opened, so the next run recomputes them;
- a ``results.csv`` without a database (schema v1, written by an older dattr_eval, or an export
  whose database was lost) is imported on first open; malformed records are set aside in
  ``results.rejected.csv`` with a warning (see ``results_csv``), and a v1 original is kept as
  ``results.v1.csv``;
- an export changed outside the store is rewritten from the database on the next append.

:func:`read_results` and :func:`read_bootstrap` only read: they work on a read-only directory, leave
damaged rows out with a warning, and fall back to ``results.csv`` when the database cannot be read.

Journal mode: SQLite's rollback journal with ``synchronous=FULL``. Write-ahead logging buys little
here, because connections are short-lived (one per operation, which is also safe across ``fork``),
and it would keep a read-only directory from being read and needs shared memory that network file
systems do not provide. An ``out_dir`` on a network file system still depends on its ``flock`` and
``fcntl`` locks being honoured.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sqlite3
import time
import warnings
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from dattr_eval.atomic import (
    TEMP_SUFFIX,
    FileLock,
    atomic_write,
    deferred_sigint,
    is_alive,
    temp_sibling,
    this_process,
)
from dattr_eval.evaluation.results_csv import (
    CsvContent,
    RejectedRecord,
    append_rejected,
    read_results_csv,
    write_results_csv,
)
from dattr_eval.evaluation.results_db import (
    BUSY_TIMEOUT_S,
    all_rows_and_draws,
    bootstrap_draws,
    claim_holder,
    connect,
    create_schema,
    damaged_ids,
    delete_rows,
    draws_checksum,
    drop_claim,
    finished_pairs,
    insert_draws,
    insert_rows,
    is_corruption,
    latest_statuses,
    read_meta,
    record_claim,
    row_checksum,
    rows_frame,
    select_rows,
    transaction,
    write_meta,
)
from dattr_eval.evaluation.results_schema import (
    COLUMNS,
    FINISHED_STATUSES,
    KEY,
    SCHEMA_VERSION,
    V1_COLUMNS,
    normalize_row,
    to_frame,
    to_json,
)

__all__ = [
    "BUSY_TIMEOUT_S",
    "CLAIM_STALE_AFTER_S",
    "COLUMNS",
    "DB_FILE",
    "KEY",
    "REJECTED_FILE",
    "RESULTS_FILE",
    "SCHEMA_VERSION",
    "V1_COLUMNS",
    "ResultStore",
    "ResultStoreError",
    "read_bootstrap",
    "read_results",
    "to_json",
]

RESULTS_FILE = "results.csv"
DB_FILE = "results.sqlite"
REJECTED_FILE = "results.rejected.csv"
LOCK_FILE = ".results.lock"
V1_BACKUP_FILE = "results.v1.csv"
#: default age (seconds) after which a claim is taken over even if its process may still run
CLAIM_STALE_AFTER_S = 24 * 3600.0

_T = TypeVar("_T")


class ResultStoreError(OSError):
    """The results database could not be read or written (locked too long, disk full, ...)."""


def _stat_token(path: Path) -> str | None:
    """``"size:mtime_ns:inode"`` of a file, ``None`` when absent: tells whether it was changed."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def _prepare_out_dir(out_dir: str | os.PathLike[str]) -> Path:
    """Create ``out_dir`` if needed and check that files can be created in it."""
    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(
            f"out_dir '{path}' is a file; expected a directory for the results"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next(p for p in path.parents if p.exists())
        raise NotADirectoryError(
            f"out_dir '{path}' cannot be created: '{blocker}' is a file, not a directory"
        ) from None
    except OSError as exc:
        raise PermissionError(f"out_dir '{path}' cannot be created: {exc.strerror}") from None
    probe = temp_sibling(path / LOCK_FILE)
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        os.unlink(probe)
        with open(path / LOCK_FILE, "ab"):
            pass
    except OSError as exc:
        raise PermissionError(
            f"out_dir '{path}' is not writable ({exc.strerror}); results cannot be stored there"
        ) from None
    return path


def _rows_from_csv(path: Path, *, side_file: Path | None) -> CsvContent:
    """The rows of a results CSV (none if absent), warning about the records it sets aside."""
    content = read_results_csv(path) if path.is_file() else CsvContent()
    if content.rejected:
        _set_aside(path, content.rejected, "malformed", side_file)
    return content


def _set_aside(
    source: Path, rejected: list[RejectedRecord], what: str, side_file: Path | None
) -> None:
    """Warn about records left out of ``source`` and keep them in ``side_file`` (if given)."""
    places = ", ".join(r.where for r in rejected[:10]) + (" ..." if len(rejected) > 10 else "")
    kept = f"; kept in {side_file}" if side_file is not None else ""
    warnings.warn(
        f"{source}: {len(rejected)} {what} record(s) set aside ({places}: {rejected[0].reason})"
        f"{kept}",
        stacklevel=4,
    )
    if side_file is not None:
        append_rejected(side_file, source.name, rejected)


def _as_rejected(conn: sqlite3.Connection, ids: Collection[int]) -> list[RejectedRecord]:
    """Damaged rows of the database as CSV records for the side file."""
    rejected = []
    for row_id in sorted(ids):
        text = io.StringIO()
        write_results_csv(text, select_rows(conn, "WHERE id = ?", (row_id,)), header=False)
        reason = "checksum mismatch (the row or its bootstrap draws were damaged on disk)"
        rejected.append(RejectedRecord(f"row {row_id}", text.getvalue().encode(), reason))
    return rejected


# ----------------------------------------------------------------------- the store
class ResultStore:
    """Appends finished cells' rows and bootstrap draws to ``out_dir``; answers what is finished.

    Opening the store creates or repairs the database (see the module docstring), so later calls
    find it sound.

    Args:
        out_dir: the evaluation's output directory, created if missing.

    Raises:
        NotADirectoryError: ``out_dir`` is a file or lies under a file.
        PermissionError: ``out_dir`` cannot be created or written.
        ResultStoreError: the database cannot be opened (locked for too long, disk full).

    Attributes:
        out_dir: the directory.
        path: ``out_dir/results.csv``, the export users read.
        db_path: ``out_dir/results.sqlite``, the source of truth.
        rejected_path: ``out_dir/results.rejected.csv``, records set aside (created when needed).
    """

    def __init__(self, out_dir: str | os.PathLike[str]) -> None:
        self.out_dir = _prepare_out_dir(out_dir)
        self.path = self.out_dir / RESULTS_FILE
        self.db_path = self.out_dir / DB_FILE
        self.rejected_path = self.out_dir / REJECTED_FILE
        self._lock_path = self.out_dir / LOCK_FILE
        with FileLock(self._lock_path):
            try:
                with connect(self.db_path) as conn, transaction(conn):
                    if create_schema(conn):
                        self._import_csv(conn)
                    self._drop_damaged(conn)
            except sqlite3.Error as exc:
                if not is_corruption(exc):
                    raise self._error(True, exc) from exc
                self._heal(exc)

    # --------------------------------------------------------------- public API
    def append(
        self, rows: Iterable[Mapping[str, Any]], draws: Mapping[str, np.ndarray] | None = None
    ) -> None:
        """Store one finished cell: its rows and its metric rows' bootstrap draws, all or nothing.

        Args:
            rows: dicts with keys from ``COLUMNS`` (missing ones are empty); ``schema_version`` is
                filled in.
            draws: metric label -> ``(n_resamples,)`` bootstrap draws of that label's
                ``kind="metric"`` row in ``rows``.

        Raises:
            ValueError: an unknown column, a bad value (see ``normalize_row``), a draws label that
                matches no (or several) metric rows, or draws that are not one-dimensional.
            TypeError: a number or bool column given a value of another type.
            ResultStoreError: the database cannot be written (disk full, locked for too long).

        The same transaction drops this process's claims on the stored cells (``release``
        afterwards is then free). Ctrl-C during the write is held back until the cell is stored
        (then raised as usual).
        """
        checked = [normalize_row(row) for row in rows]
        for row in checked:
            if row["schema_version"] != SCHEMA_VERSION:
                raise ValueError(
                    f"schema_version is set by the store ({SCHEMA_VERSION}), got "
                    f"{row['schema_version']!r}"
                )
        matched = _match_draws(checked, draws or {})
        if not checked:
            return

        me = this_process()

        def insert(conn: sqlite3.Connection) -> None:
            ids = insert_rows(conn, checked)
            insert_draws(conn, [(ids[i], values) for i, values in matched])
            for cell_key in {row["cell_key"] for row in checked if row["cell_key"]}:
                drop_claim(conn, cell_key, me)
            self._export(conn)

        with deferred_sigint():
            self._run(insert, write=True)

    def finished(self) -> set[tuple[str, str]]:
        """``(cell_key, metric_key)`` pairs whose latest row has status ok, skipped or not_applicable.

        Profile and card rows have ``metric_key = ""``. Rows without a ``cell_key`` (imported from
        schema v1) never count as finished.
        """
        return self._run(finished_pairs, write=False)

    def claim(
        self,
        cell_key: str,
        *,
        stale_after_s: float = CLAIM_STALE_AFTER_S,
        needed: Collection[str] | None = None,
    ) -> bool:
        """Whether this process may compute the cell ``cell_key``; if so, records its claim.

        True when the cell has work left and no other live process claims it. Work left: with
        ``needed`` (the metric keys the caller would compute, ``""`` for the profile row), one of
        them is not finished; with ``needed=None``, the cell has no rows yet or one of its latest
        rows is not finished (an error). Pass ``needed`` when the grid may have gained metrics
        since the cell was stored. A claim by another process is taken over, with a warning, when
        that process has exited (same host: pid and start time) or when the claim is older than
        ``stale_after_s`` seconds. Claiming a cell twice is harmless.
        """
        if not isinstance(cell_key, str) or not cell_key:
            raise ValueError(f"cell_key must be a non-empty string, got {cell_key!r}")
        if not stale_after_s > 0:
            raise ValueError(f"stale_after_s must be > 0, got {stale_after_s!r}")
        wanted = None if needed is None else set(needed)

        def take(conn: sqlite3.Connection) -> bool:
            if wanted is None:
                statuses = latest_statuses(conn, cell_key).values()
                left = not statuses or any(s not in FINISHED_STATUSES for s in statuses)
            else:
                left = not wanted <= {m for _, m in finished_pairs(conn, cell_key)}
            if not left:
                return False
            me, held = this_process(), claim_holder(conn, cell_key)
            if held is not None and held[0] != me:
                holder, age = held[0], time.time() - held[1]
                alive = is_alive(holder)
                if alive is not False and age < stale_after_s:
                    return False
                why = "has exited" if alive is False else f"claimed it {age:.0f} s ago"
                warnings.warn(
                    f"cell {cell_key!r}: taking over the claim of process {holder.pid} on "
                    f"{holder.hostname}, which {why}",
                    stacklevel=4,
                )
            record_claim(conn, cell_key, me, time.time())
            return True

        return self._run(take, write=True)

    def release(self, cell_key: str) -> None:
        """Drop this process's claim on ``cell_key`` (no-op when it holds none)."""
        me = this_process()
        self._run(lambda conn: drop_claim(conn, cell_key, me), write=True)

    def read(self, latest: bool = True) -> pd.DataFrame:
        """The stored rows (columns ``COLUMNS``), in insertion order.

        Args:
            latest: keep only the latest row per ``KEY`` (benchmark, explainer, metric, kind).
        """
        return self._run(lambda conn: rows_frame(conn, latest), write=False)

    def read_bootstrap(self) -> dict[tuple[str, str, str], np.ndarray]:
        """``(benchmark, explainer, metric) -> (n_resamples,)`` draws of the latest ok metric row."""
        return self._run(bootstrap_draws, write=False)

    # --------------------------------------------------------------- internals
    def _run(self, op: Callable[[sqlite3.Connection], _T], *, write: bool) -> _T:
        """Run ``op`` on a fresh connection (in a write transaction if ``write``); heals once."""
        try:
            return self._attempt(op, write)
        except sqlite3.Error as exc:
            if not is_corruption(exc):
                raise self._error(write, exc) from exc
            damaged, seen = exc, _stat_token(self.db_path)
        with FileLock(self._lock_path):  # exclusive, taken after the shared lock was released
            if _stat_token(self.db_path) == seen:  # not already rebuilt by another process
                self._heal(damaged)
        try:
            return self._attempt(op, write)
        except sqlite3.Error as exc:
            raise self._error(write, exc) from exc

    def _attempt(self, op: Callable[[sqlite3.Connection], _T], write: bool) -> _T:
        with FileLock(self._lock_path, shared=True), connect(self.db_path) as conn:
            if not write:
                return op(conn)
            with transaction(conn):
                return op(conn)

    def _error(self, write: bool, exc: sqlite3.Error) -> ResultStoreError:
        action = "write to" if write else "read"
        return ResultStoreError(f"cannot {action} the results database {self.db_path}: {exc}")

    def _export(self, conn: sqlite3.Connection, *, rewrite: bool = False) -> None:
        """Bring ``results.csv`` up to date inside the caller's write transaction.

        Appends the new rows to a copy of the last export when the file is still the one this store
        wrote (same size, mtime and inode), else rewrites it from all rows; either way the new file
        replaces the old one atomically.
        """
        meta = read_meta(conn)
        recorded, current = meta.get("export_stat"), _stat_token(self.path)
        incremental = not rewrite and current is not None and current == recorded
        if not rewrite and recorded is not None and current != recorded:
            same_size = current is not None and current.split(":")[0] == recorded.split(":")[0]
            if not same_size:
                warnings.warn(
                    f"{self.path} differs from the last export (an interrupted write or an edit); "
                    f"rewritten from {self.db_path.name}, the source of truth",
                    stacklevel=5,
                )
        for stale in self.out_dir.glob(f".{RESULTS_FILE}.*{TEMP_SUFFIX}"):
            stale.unlink(missing_ok=True)  # left by a killed writer; writers hold the write lock
        after = int(meta.get("export_last_id", 0)) if incremental else 0
        text = io.StringIO()
        write_results_csv(text, select_rows(conn, "WHERE id > ?", (after,)), header=not incremental)
        with atomic_write(self.path, durable=False) as fh:  # rebuilt from the database if lost
            if incremental:
                with open(self.path, "rb") as old:
                    shutil.copyfileobj(old, fh, 1 << 20)
            fh.write(text.getvalue().encode("utf-8"))
        last_id = conn.execute("SELECT COALESCE(MAX(id), 0) FROM rows").fetchone()[0]
        write_meta(conn, {"export_stat": _stat_token(self.path), "export_last_id": str(last_id)})

    def _import_csv(self, conn: sqlite3.Connection) -> None:
        """Fill a new database from ``results.csv`` when one exists (schema v1 or an export)."""
        if not self.path.is_file():
            return
        content = _rows_from_csv(self.path, side_file=self.rejected_path)
        insert_rows(conn, content.rows)
        notes = []
        if any(row["schema_version"] == 1 for row in content.rows):
            backup = self.out_dir / V1_BACKUP_FILE
            if not backup.exists():
                shutil.copy2(self.path, backup)
            notes.append(f"the original is kept as {backup.name}")
        elif content.rows:
            notes.append("bootstrap draws are not in the CSV: read_bootstrap has none for them")
        self._export(conn, rewrite=True)
        if content.rows:
            warnings.warn(
                f"{self.path} had no {DB_FILE} beside it (written by an older dattr_eval, or the "
                f"database was lost): imported {len(content.rows)} row(s)"
                + "".join(f"; {note}" for note in notes),
                stacklevel=4,
            )

    def _drop_damaged(self, conn: sqlite3.Connection) -> None:
        """Move rows whose checksum fails to the side file (the next run recomputes them)."""
        bad = damaged_ids(conn, draws=True)
        if bad:
            _set_aside(self.db_path, _as_rejected(conn, bad), "damaged", self.rejected_path)
            delete_rows(conn, bad)
            self._export(conn, rewrite=True)

    def _heal(self, exc: sqlite3.Error) -> None:
        """Move a corrupt database aside and rebuild it (caller holds the exclusive lock)."""
        aside = self.db_path.with_name(
            f"{DB_FILE}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        )
        for suffix in ("", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.replace(f"{self.db_path}{suffix}", f"{aside}{suffix}")
        salvaged = _salvage(aside)
        with connect(self.db_path) as conn, transaction(conn):
            create_schema(conn)
            if salvaged is None:
                source = f"{self.path.name} (bootstrap draws and claims are lost)"
                insert_rows(conn, _rows_from_csv(self.path, side_file=self.rejected_path).rows)
            else:
                source = f"the readable part of {aside.name}"
                rows, draws = salvaged
                ids = insert_rows(conn, rows.values())
                new_id = dict(zip(rows, ids))
                insert_draws(conn, [(new_id[r], a) for r, a in draws.items() if r in new_id])
            self._export(conn, rewrite=True)
            n_rows = conn.execute("SELECT COUNT(*) FROM rows").fetchone()[0]
        warnings.warn(
            f"{self.db_path} is damaged ({exc}); moved to {aside.name} and rebuilt from "
            f"{source}: {n_rows} row(s)",
            stacklevel=4,
        )


def _salvage(db: Path) -> tuple[dict[int, dict], dict[int, np.ndarray]] | None:
    """Rows (by id) and draws (by row id) of a damaged database that pass their checksums.

    ``None`` unless the tables can be read to the end (then ``results.csv`` is the better source).
    """
    try:
        with connect(db, readonly=True) as conn:
            rows, draws = all_rows_and_draws(conn)
    except sqlite3.Error:
        return None
    good_rows = {
        row_id: dict(zip(COLUMNS, values))
        for row_id, crc, *values in rows
        if crc == row_checksum(row_id, values)
    }
    good_draws = {
        row_id: np.frombuffer(data, dtype="<f8")
        for row_id, n, data, crc in draws
        if isinstance(data, bytes) and crc == draws_checksum(row_id, n, data)
    }
    return good_rows, good_draws


def _match_draws(
    rows: list[dict[str, Any]], draws: Mapping[str, np.ndarray]
) -> list[tuple[int, np.ndarray]]:
    """``(row index, float64 draws)`` for each label of ``draws``."""
    matched = []
    for label, values in draws.items():
        hits = [i for i, r in enumerate(rows) if r["kind"] == "metric" and r["metric"] == label]
        if len(hits) != 1:
            raise ValueError(
                f"draws[{label!r}] must belong to exactly one kind='metric' row of this append, "
                f"found {len(hits)}"
            )
        array = np.asarray(values, dtype=np.float64)
        if array.ndim != 1:
            raise ValueError(f"draws[{label!r}] must be 1-D (n_resamples,), got {array.shape}")
        matched.append((hits[0], array))
    return matched


# ----------------------------------------------------------------------- read-only access
def _read_only(
    out_dir: str | os.PathLike[str], query: Callable[[sqlite3.Connection], _T], *, draws: bool
) -> _T | None:
    """``query`` on ``out_dir``'s database, leaving damaged rows out with a warning; ``None`` when
    there is no database or it cannot be read.

    The database is opened read-only, except after a writer was killed mid-transaction in a
    writable directory: then SQLite rolls the interrupted transaction back first, as any reader
    would (committed rows are untouched).
    """
    db = Path(out_dir) / DB_FILE
    if not db.is_file() or db.stat().st_size == 0:
        return None
    journal = db.with_name(f"{DB_FILE}-journal")
    readonly = not (journal.exists() and os.access(db.parent, os.W_OK))
    try:
        with connect(db, readonly=readonly) as conn:
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'rows'").fetchone() is None:
                return None  # created by a run killed before it stored anything
            return _checked_query(conn, query, db, draws=draws)
    except sqlite3.Error as exc:
        warnings.warn(
            f"{db} cannot be read ({exc}); reading {RESULTS_FILE} instead "
            "(the next run repairs the database)",
            stacklevel=3,
        )
        return None


def _checked_query(
    conn: sqlite3.Connection, query: Callable[[sqlite3.Connection], _T], db: Path, *, draws: bool
) -> _T:
    """``query``, on a copy without the rows that fail their checksum when there are any."""
    bad = damaged_ids(conn, draws=draws)
    if not bad:
        return query(conn)
    warnings.warn(
        f"{db}: {len(bad)} row(s) fail their checksum (damaged on disk) and are left out; "
        "the next run sets them aside and recomputes them",
        stacklevel=4,
    )
    memory = sqlite3.connect(":memory:", isolation_level=None)
    try:
        conn.backup(memory)
        delete_rows(memory, bad)
        return query(memory)
    finally:
        memory.close()


def read_results(out_dir: str | os.PathLike[str], latest: bool = True) -> pd.DataFrame:
    """The results in ``out_dir`` as a DataFrame with the columns ``COLUMNS``; writes nothing.

    Reads ``results.sqlite``, else (no database, or a damaged one) ``results.csv`` of any schema
    version, setting malformed records aside with a warning. An empty frame when there is neither.

    Args:
        out_dir: the evaluation's output directory.
        latest: keep only the latest row per ``KEY`` (benchmark, explainer, metric, kind).
    """
    frame = _read_only(out_dir, lambda conn: rows_frame(conn, latest), draws=False)
    if frame is not None:
        return frame
    content = _rows_from_csv(Path(out_dir) / RESULTS_FILE, side_file=None)
    df = to_frame([tuple(row[c] for c in COLUMNS) for row in content.rows])
    if latest and len(df):
        df = df.drop_duplicates(subset=list(KEY), keep="last").reset_index(drop=True)
    return df


def read_bootstrap(out_dir: str | os.PathLike[str]) -> dict[tuple[str, str, str], np.ndarray]:
    """``(benchmark, explainer, metric) -> (n_resamples,)`` bootstrap draws stored in ``out_dir``.

    The draws of the latest ``kind="metric"`` row per key, when that row is ok and has draws; an
    empty dict without a readable database (``results.csv`` holds no draws). Writes nothing.
    """
    return _read_only(out_dir, bootstrap_draws, draws=True) or {}
