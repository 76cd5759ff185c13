"""Results store: damaged results.csv files, schema v1 import, atomic cells, concurrent runs,
claims, kills mid-write, a corrupt database, a full disk and unusable output directories."""

from __future__ import annotations

import csv
import multiprocessing as mp
import os
import resource
import signal
import sqlite3
import struct
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dattr_eval.evaluation.results_csv import read_results_csv
from dattr_eval.evaluation.store import (
    COLUMNS,
    DB_FILE,
    REJECTED_FILE,
    RESULTS_FILE,
    V1_COLUMNS,
    ResultStore,
    ResultStoreError,
    read_bootstrap,
    read_results,
)

FORK = mp.get_context("fork")
N_METRICS = 3


def cell_rows(cell: str, benchmark: str = "b", explainer: str = "e", score: float = 0.25):
    """A cell's rows: N_METRICS metric rows and a profile row, with its draws."""
    rows = [
        {
            "benchmark": benchmark,
            "explainer": explainer,
            "metric": f"m{i}",
            "kind": "metric",
            "status": "ok",
            "score": score + i,
            "higher_is_better": i % 2 == 0,
            "n_scored": 7,
            "metric_params": '{"top_k": 1}',
            "cell_key": cell,
            "metric_key": f"k{i}",
        }
        for i in range(N_METRICS)
    ]
    rows.append(
        {
            "benchmark": benchmark,
            "explainer": explainer,
            "metric": "",
            "kind": "profile",
            "status": "ok",
            "fit_s": 1.5,
            "n_train": 20,
            "cell_key": cell,
        }
    )
    seed = sum(map(ord, cell + benchmark + explainer))
    draws = {f"m{i}": np.random.default_rng(seed + i).random(1000) for i in range(N_METRICS)}
    return rows, draws


def v1_row(explainer: str, score: float) -> dict:
    return {
        "benchmark": "b",
        "explainer": explainer,
        "metric": "m",
        "kind": "metric",
        "status": "ok",
        "score": score,
        "higher_is_better": True,
        "error": "",
        "n_train": 20,
        "explainer_params": '{"seed": 0}',
    }


def write_v1(path: Path, rows: list[dict]) -> bytes:
    """A results.csv as the schema-v1 store wrote it (csv.DictWriter, header V1_COLUMNS)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=V1_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in V1_COLUMNS})
    return path.read_bytes()


V1_ROWS = [v1_row(f"e{i}", 0.125 * i) for i in range(5)]


def export_matches_db(out_dir: Path) -> None:
    """results.csv parses cleanly and holds exactly the database's rows."""
    content = read_results_csv(out_dir / RESULTS_FILE)
    assert content.rejected == []
    from_csv = pd.DataFrame(content.rows, columns=list(COLUMNS))
    from_db = ResultStore(out_dir).read(latest=False)
    assert len(from_csv) == len(from_db)
    for column in ("benchmark", "explainer", "metric", "cell_key", "metric_key"):
        assert list(from_csv[column]) == list(from_db[column])
    np.testing.assert_array_equal(from_csv["score"].astype(float), from_db["score"])


# --------------------------------------------------------------- damaged results.csv
def damaged(rows_bytes: bytes, row: int, edit) -> bytes:
    """``rows_bytes`` with line ``row`` (0 = header) passed through ``edit``."""
    lines = rows_bytes.split(b"\r\n")
    lines[row] = edit(lines[row])
    return b"\r\n".join(lines)


def flip(line: bytes, old: bytes, new: bytes) -> bytes:
    at = line.index(old)
    return line[:at] + new + line[at + len(old) :]


#: damage to one line (the row of explainer e2) of a v1 results.csv
LINE_DAMAGE = {
    "digit to letter": lambda line: flip(line, b"0.25", b"0.2x"),
    "comma to semicolon": lambda line: flip(line, b",metric,", b";metric,"),
    "stray quote": lambda line: flip(line, b",e2,", b',"2,'),
    "invalid UTF-8": lambda line: flip(line, b"e2", b"\xff2"),
    "NUL byte": lambda line: flip(line, b"e2", b"\x002"),
    "extra field": lambda line: line + b",surplus",
    "missing field": lambda line: line[: line.rindex(b",")],
    "bad status": lambda line: flip(line, b",ok,", b",ox,"),
    "broken JSON": lambda line: flip(line, b'""seed""', b'""se"d""'),
}


@pytest.mark.parametrize(("name", "edit"), list(LINE_DAMAGE.items()))
def test_a_damaged_middle_row_is_set_aside_and_the_others_kept(tmp_path, name, edit):
    original = write_v1(tmp_path / RESULTS_FILE, V1_ROWS)
    (tmp_path / RESULTS_FILE).write_bytes(damaged(original, 3, edit))  # row of explainer e2
    with pytest.warns(UserWarning, match="1 malformed record"):
        df = read_results(tmp_path)  # read-only path: writes nothing
    assert list(df.explainer) == ["e0", "e1", "e3", "e4"]
    assert list(df.score) == [0.0, 0.125, 0.375, 0.5]
    assert sorted(os.listdir(tmp_path)) == [RESULTS_FILE]
    with pytest.warns(UserWarning, match="1 malformed record"):
        store = ResultStore(tmp_path)
    assert list(store.read().explainer) == ["e0", "e1", "e3", "e4"]
    rejected = (tmp_path / REJECTED_FILE).read_bytes()
    assert (
        rejected.startswith(b"# results.csv line 4:")
        and damaged(original, 3, edit).split(b"\r\n")[3] in rejected
    )
    store.append(*cell_rows("c1"))  # later runs are unaffected
    assert len(store.read()) == 4 + N_METRICS + 1
    export_matches_db(tmp_path)


def test_torn_last_line_is_set_aside(tmp_path):
    original = write_v1(tmp_path / RESULTS_FILE, V1_ROWS)
    (tmp_path / RESULTS_FILE).write_bytes(original[:-30])  # a kill mid-write of the last row
    with pytest.warns(UserWarning, match="1 malformed record.*line 6"):
        assert list(read_results(tmp_path).explainer) == ["e0", "e1", "e2", "e3"]
    with pytest.warns(UserWarning, match="1 malformed record"):
        store = ResultStore(tmp_path)
    store.append(*cell_rows("c1"))  # not glued onto the torn line
    assert list(store.read().explainer) == ["e0", "e1", "e2", "e3"] + ["e"] * (N_METRICS + 1)
    export_matches_db(tmp_path)
    (tmp_path / DB_FILE).unlink()
    (tmp_path / RESULTS_FILE).write_bytes(original[:-3])  # torn inside the last, unquoted field
    with pytest.warns(UserWarning, match="no line end"):
        assert list(read_results(tmp_path).explainer) == ["e0", "e1", "e2", "e3"]


def test_empty_file_is_a_new_results_file(tmp_path):
    (tmp_path / RESULTS_FILE).write_bytes(b"")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_results(tmp_path).empty
        store = ResultStore(tmp_path)
        assert store.read().empty and list(store.read().columns) == list(COLUMNS)
        store.append(*cell_rows("c1"))
    assert len(read_results(tmp_path)) == N_METRICS + 1


def test_header_written_twice_is_not_a_row(tmp_path):
    original = write_v1(tmp_path / RESULTS_FILE, V1_ROWS[:2])
    header, rest = original.split(b"\r\n", 1)
    (tmp_path / RESULTS_FILE).write_bytes(header + b"\r\n" + rest + header + b"\r\n" + rest)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df = read_results(tmp_path, latest=False)
    assert list(df.explainer) == ["e0", "e1", "e0", "e1"]


def test_a_torn_header_is_recovered_from_the_field_count(tmp_path):
    original = write_v1(tmp_path / RESULTS_FILE, V1_ROWS[:2])
    header, rest = original.split(b"\r\n", 1)
    (tmp_path / RESULTS_FILE).write_bytes(header[:40] + b"\r\n" + rest)  # SIGINT mid-header
    with pytest.warns(UserWarning, match="1 malformed record"):
        assert list(read_results(tmp_path).explainer) == ["e0", "e1"]


def test_v1_results_are_imported_with_a_backup(tmp_path):
    original = write_v1(tmp_path / RESULTS_FILE, V1_ROWS)
    with pytest.warns(UserWarning, match="imported 5 row.*results.v1.csv"):
        store = ResultStore(tmp_path)
    assert (tmp_path / "results.v1.csv").read_bytes() == original
    df = store.read()
    assert list(df.explainer) == [f"e{i}" for i in range(5)]
    assert list(df.schema_version) == [1] * 5 and list(df.n_train) == [20] * 5
    assert df.higher_is_better.tolist() == [True] * 5
    assert store.finished() == set()  # v1 rows have no resume key: the next run recomputes
    header = (tmp_path / RESULTS_FILE).read_text().splitlines()[0]
    assert header == ",".join(COLUMNS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # imported once only
        assert len(ResultStore(tmp_path).read()) == 5


# --------------------------------------------------------------- rows, draws, resume
def test_append_round_trips_types_draws_and_export(tmp_path):
    store = ResultStore(tmp_path)
    rows, draws = cell_rows("c1")
    rows[0].update(score=1 / 3, ci_low=float("nan"), passed=False, card={"accuracy": 0.9})
    store.append(rows, draws)
    df = store.read()
    assert df.score.iloc[0] == 1 / 3 and np.isnan(df.ci_low.iloc[0])
    assert df.passed.iloc[0] is False and pd.isna(df.passed.iloc[1])
    assert df.card.iloc[0] == '{"accuracy": 0.9}' and df.card.iloc[1] == ""
    assert df.n_scored.dtype == float  # missing on the profile row
    assert df.schema_version.tolist() == [2] * (N_METRICS + 1)
    boot = read_bootstrap(tmp_path)
    assert set(boot) == {("b", "e", f"m{i}") for i in range(N_METRICS)}
    for i in range(N_METRICS):
        np.testing.assert_array_equal(boot[("b", "e", f"m{i}")], draws[f"m{i}"])
    export_matches_db(tmp_path)
    assert read_results_csv(tmp_path / RESULTS_FILE).rows[0]["score"] == 1 / 3  # full precision


def test_latest_row_wins_for_results_draws_and_finished(tmp_path):
    store = ResultStore(tmp_path)
    rows, draws = cell_rows("c1")
    store.append(rows, draws)
    assert store.finished() == {("c1", "k0"), ("c1", "k1"), ("c1", "k2"), ("c1", "")}
    failed = {**rows[0], "status": "error", "score": None, "error": "boom"}
    store.append([failed])
    assert ("c1", "k0") not in store.finished()
    assert ("b", "e", "m0") not in store.read_bootstrap()  # the latest row is not ok
    assert store.read().set_index("metric").loc["m0", "status"] == "error"
    assert len(store.read(latest=False)) == N_METRICS + 2
    store.append([{**rows[0], "status": "not_applicable", "score": None}])
    assert ("c1", "k0") in store.finished()


def test_bad_input_stores_nothing(tmp_path):
    store = ResultStore(tmp_path)
    rows, draws = cell_rows("c1")
    with pytest.raises(ValueError, match="unknown result column.*'scroe'"):
        store.append([*rows, {"benchmark": "b", "kind": "metric", "status": "ok", "scroe": 1}])
    with pytest.raises(ValueError, match=r"draws\['m9'\] must belong to exactly one"):
        store.append(rows, {**draws, "m9": np.zeros(3)})
    with pytest.raises(ValueError, match="must be 1-D"):
        store.append(rows, {"m0": np.zeros((2, 3))})
    with pytest.raises(ValueError, match="'status' must be one of"):
        store.append([{**rows[0], "status": "done"}])
    with pytest.raises(TypeError, match="'score' must be a number"):
        store.append([{**rows[0], "score": "high"}])
    with pytest.raises(ValueError, match="'metric_params' must hold JSON"):
        store.append([{**rows[0], "metric_params": "{top_k: 1"}])
    assert store.read().empty and read_bootstrap(tmp_path) == {}


# --------------------------------------------------------------- concurrency
def _append_cells(out_dir: str, worker: int, n_cells: int) -> None:
    store = ResultStore(out_dir)
    for i in range(n_cells):
        store.append(*cell_rows(f"w{worker}-c{i}", explainer=f"w{worker}"))


def test_concurrent_appends_keep_every_row_once(tmp_path):
    workers = [FORK.Process(target=_append_cells, args=(str(tmp_path), w, 15)) for w in range(3)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(120)
    assert [p.exitcode for p in workers] == [0, 0, 0]
    df = ResultStore(tmp_path).read(latest=False)
    assert len(df) == 3 * 15 * (N_METRICS + 1)
    assert not df.duplicated(["cell_key", "metric_key"]).any()
    assert len(read_bootstrap(tmp_path)) == 3 * N_METRICS  # latest per (b, explainer, metric)
    export_matches_db(tmp_path)


def _claim_grid(out_dir: str, barrier, n_cells: int) -> None:
    store = ResultStore(out_dir)
    barrier.wait()
    for i in range(n_cells):
        if store.claim(f"c{i}"):
            time.sleep(0.02)  # "compute" the cell
            store.append(*cell_rows(f"c{i}", explainer=str(os.getpid())))
            store.release(f"c{i}")


def test_claims_split_a_grid_between_two_runs(tmp_path):
    barrier = FORK.Barrier(2)
    runs = [FORK.Process(target=_claim_grid, args=(str(tmp_path), barrier, 20)) for _ in range(2)]
    for p in runs:
        p.start()
    for p in runs:
        p.join(120)
    assert [p.exitcode for p in runs] == [0, 0]
    df = read_results(tmp_path, latest=False)
    profiles = df[df.kind == "profile"]
    assert sorted(profiles.cell_key) == sorted(f"c{i}" for i in range(20))  # each cell once
    assert len(df) == 20 * (N_METRICS + 1)
    assert profiles.explainer.nunique() == 2  # both runs computed part of the grid


def _claim_and_wait(out_dir: str, claimed, leave) -> None:
    ResultStore(out_dir).claim("c1")
    claimed.set()
    leave.wait(60)


def test_claims_of_live_dead_and_stale_processes(tmp_path):
    store = ResultStore(tmp_path)
    claimed, leave = FORK.Event(), FORK.Event()
    holder = FORK.Process(target=_claim_and_wait, args=(str(tmp_path), claimed, leave))
    holder.start()
    assert claimed.wait(60)
    assert not store.claim("c1")  # held by a live process
    time.sleep(0.05)
    with pytest.warns(UserWarning, match=r"taking over.*claimed it \d+ s ago"):
        assert store.claim("c1", stale_after_s=0.01)  # too old
    store.release("c1")
    leave.set()
    holder.join(60)
    claimed.clear()
    killed = FORK.Process(target=_claim_and_wait, args=(str(tmp_path), claimed, FORK.Event()))
    killed.start()
    assert claimed.wait(60)
    assert not store.claim("c1")
    os.kill(killed.pid, signal.SIGKILL)
    killed.join(60)
    with pytest.warns(UserWarning, match=f"taking over the claim of process {killed.pid}.*exited"):
        assert store.claim("c1")
    assert store.claim("c1")  # own claim: claiming again is harmless
    store.append(*cell_rows("c1"))  # drops this process's claim on c1
    with sqlite3.connect(tmp_path / DB_FILE) as conn:
        assert conn.execute("SELECT COUNT(*) FROM claims").fetchone() == (0,)
    store.release("c1")
    assert not store.claim("c1")  # finished
    assert store.claim("c1", needed={"k0", "k9"})  # k9 still to do (a metric added since)
    assert not store.claim("c1", needed={"k0", ""})
    rows, _ = cell_rows("c1")
    store.append([{**rows[1], "status": "error", "score": None}])
    assert store.claim("c1")  # an errored metric is work left


def _append_forever(out_dir: str, worker: int) -> None:
    store = ResultStore(out_dir)
    try:
        for i in range(10_000):
            store.append(*cell_rows(f"w{worker}-c{i}"))
    except KeyboardInterrupt:
        os._exit(130)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_a_kill_mid_write_keeps_whole_cells_and_a_clean_export(tmp_path, sig):
    rng = np.random.default_rng(sig)
    for attempt in range(3):
        writer = FORK.Process(target=_append_forever, args=(str(tmp_path), attempt))
        writer.start()
        time.sleep(0.2 + rng.random() * 0.4)
        os.kill(writer.pid, sig)
        writer.join(60)
        assert writer.exitcode in (-signal.SIGKILL, 130)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a SIGKILL mid-export may leave a stale export
            store = ResultStore(tmp_path)
            store.append(*cell_rows(f"after-{attempt}"))
        df = store.read(latest=False)
        assert (df.groupby("cell_key").size() == N_METRICS + 1).all()  # no partial cell
        assert not df.duplicated(["cell_key", "metric_key"]).any()
        export_matches_db(tmp_path)
    assert not list(tmp_path.glob(".*.tmp"))


def _die_mid_transaction(out_dir: str) -> None:
    conn = sqlite3.connect(Path(out_dir) / DB_FILE, isolation_level=None)
    conn.execute("PRAGMA cache_size=1")  # spill changed pages into the file before the commit
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO meta VALUES (?, ?)", [(f"k{i}", "x" * 500) for i in range(200)])
    os._exit(0)  # killed: no commit, no rollback


def test_a_report_after_a_kill_mid_transaction_reads_the_committed_rows(tmp_path):
    ResultStore(tmp_path).append(*cell_rows("c1"))
    dying = FORK.Process(target=_die_mid_transaction, args=(str(tmp_path),))
    dying.start()
    dying.join(60)
    assert (tmp_path / f"{DB_FILE}-journal").stat().st_size > 0  # a hot journal
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback to results.csv
        assert len(read_results(tmp_path)) == N_METRICS + 1
        assert len(read_bootstrap(tmp_path)) == N_METRICS


def _append_with_file_size_limit(out_dir: str, limit: int, result) -> None:
    store = ResultStore(out_dir)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        store.append(*cell_rows("big"))
        result.put("stored")
    except (ResultStoreError, OSError) as exc:
        result.put(f"{type(exc).__name__}: {exc}")


def test_a_full_disk_fails_the_append_and_nothing_else(tmp_path):
    store = ResultStore(tmp_path)
    store.append(*cell_rows("c1"))
    result = FORK.Queue()
    limit = (tmp_path / DB_FILE).stat().st_size + 4096
    child = FORK.Process(target=_append_with_file_size_limit, args=(str(tmp_path), limit, result))
    child.start()
    child.join(60)
    message = result.get(timeout=10)
    assert message != "stored" and "results" in message
    assert set(store.read(latest=False).cell_key) == {"c1"}  # the failed cell left nothing
    store.append(*cell_rows("c2"))
    assert set(store.read(latest=False).cell_key) == {"c1", "c2"}
    export_matches_db(tmp_path)


# --------------------------------------------------------------- a damaged database
@pytest.mark.parametrize("damage", ["garbage", "truncated", "zero bytes"])
def test_a_damaged_database_is_rebuilt_from_the_export(tmp_path, damage):
    store = ResultStore(tmp_path)
    store.append(*cell_rows("c1"))
    store.append(*cell_rows("c2"))
    before = store.read(latest=False)
    db = tmp_path / DB_FILE
    data = db.read_bytes()
    db.write_bytes(
        {"garbage": b"not a database " * 300, "truncated": data[:1000], "zero bytes": b""}[damage]
    )
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert len(read_results(tmp_path, latest=False)) == len(before)  # read-only fallback
    assert [str(w.message).endswith("(the next run repairs the database)") for w in seen] == (
        [] if damage == "zero bytes" else [True]  # an empty file is no database at all
    )
    match = "had no results.sqlite" if damage == "zero bytes" else "damaged.*rebuilt from results"
    with pytest.warns(UserWarning, match=match):
        store = ResultStore(tmp_path)
    pd.testing.assert_frame_equal(store.read(latest=False), before)
    assert store.finished() == {(c, k) for c in ("c1", "c2") for k in ("k0", "k1", "k2", "")}
    if damage != "zero bytes":
        assert len(list(tmp_path.glob(f"{DB_FILE}.corrupt-*"))) == 1
    store.append(*cell_rows("c3"))
    export_matches_db(tmp_path)


def test_damage_found_during_a_run_is_healed_with_the_draws_kept(tmp_path):
    store = ResultStore(tmp_path)
    rows, draws = cell_rows("c1")
    store.append(rows, draws)
    with sqlite3.connect(tmp_path / DB_FILE) as conn:  # smash the page of the claims table
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name='claims'").fetchone()
    with open(tmp_path / DB_FILE, "r+b") as fh:
        fh.seek((root - 1) * page_size)
        fh.write(b"\xff" * page_size)
    with pytest.warns(UserWarning, match="damaged.*rebuilt from the readable part"):
        assert store.claim("c2")  # the claims table cannot be read: healed, then claimed
    assert store.finished() == {("c1", "k0"), ("c1", "k1"), ("c1", "k2"), ("c1", "")}
    np.testing.assert_array_equal(store.read_bootstrap()[("b", "e", "m1")], draws["m1"])


def flip_stored_bytes(db: Path, stored: bytes) -> None:
    """Flip one bit inside ``stored`` where it sits in the database file (SQLite cannot tell)."""
    data = bytearray(db.read_bytes())
    at = data.index(stored) + len(stored) - 2
    data[at] ^= 0x01
    db.write_bytes(bytes(data))


@pytest.mark.parametrize("where", ["score", "text", "draws"])
def test_a_flipped_bit_in_a_stored_value_is_caught_by_its_checksum(tmp_path, where):
    store = ResultStore(tmp_path)
    rows, draws = cell_rows("c1")
    rows[1]["score"] = 0.123456789
    rows[1]["metric_params"] = '{"top_k": 12345}'
    store.append(rows, draws)
    store.append(*cell_rows("c2", explainer="other"))
    stored = {
        "score": struct.pack(">d", 0.123456789),  # SQLite stores a REAL big-endian
        "text": b'{"top_k": 12345}',
        "draws": draws["m1"].astype("<f8").tobytes()[:64],
    }[where]
    flip_stored_bytes(tmp_path / DB_FILE, stored)
    with pytest.warns(UserWarning, match="1 row.* fail their checksum"):
        boot = read_bootstrap(tmp_path)
    assert ("b", "e", "m1") not in boot and ("b", "e", "m0") in boot
    if where != "draws":  # read_results checks the rows, not the draws
        with pytest.warns(UserWarning, match="1 row.* fail their checksum"):
            df = read_results(tmp_path, latest=False)
        assert list(df.metric[df.cell_key == "c1"]) == ["m0", "m2", ""]  # m1 left out
    with pytest.warns(UserWarning, match="1 damaged record.*row 2: checksum mismatch"):
        store = ResultStore(tmp_path)
    assert ("c1", "k1") not in store.finished() and ("c1", "k0") in store.finished()
    assert store.claim("c1", needed={"k0", "k1", "k2", ""})  # the next run recomputes k1
    assert b"# results.sqlite row 2: checksum mismatch" in (tmp_path / REJECTED_FILE).read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # set aside once
        assert len(ResultStore(tmp_path).read(latest=False)) == 2 * (N_METRICS + 1) - 1
    export_matches_db(tmp_path)


@pytest.mark.parametrize(
    ("stored", "damaged_to"),
    [
        (b"schema_version INTEGER", b"schema_ver\xf3ion INTEGER"),  # not UTF-8
        (b"schema_version INTEGER", b"schema_verqion INTEGER"),  # another name
        (b"data BLOB", b"dava BLOB"),
    ],
)
def test_a_damaged_column_name_is_corruption_and_healed(tmp_path, stored, damaged_to):
    store = ResultStore(tmp_path)
    store.append(*cell_rows("c1"))
    before = store.read(latest=False)
    data = (tmp_path / DB_FILE).read_bytes()
    assert data.count(stored) == 1  # in the table's CREATE statement
    (tmp_path / DB_FILE).write_bytes(data.replace(stored, damaged_to))
    with pytest.warns(UserWarning, match="damaged .*rebuilt from results.csv"):
        store = ResultStore(tmp_path)
    pd.testing.assert_frame_equal(store.read(latest=False), before)


def test_a_database_of_a_newer_schema_is_refused_clearly(tmp_path):
    ResultStore(tmp_path).append(*cell_rows("c1"))
    with sqlite3.connect(tmp_path / DB_FILE) as conn:
        conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    with pytest.raises(ResultStoreError, match="schema version '3'.*upgrade dattr_eval"):
        ResultStore(tmp_path)


def test_a_damaged_export_is_rewritten_from_the_database(tmp_path):
    store = ResultStore(tmp_path)
    store.append(*cell_rows("c1"))
    text = (tmp_path / RESULTS_FILE).read_bytes()
    (tmp_path / RESULTS_FILE).write_bytes(text[: len(text) // 2])
    assert len(store.read()) == N_METRICS + 1  # the database is the source of truth
    with pytest.warns(UserWarning, match="differs from the last export"):
        store.append(*cell_rows("c2"))
    export_matches_db(tmp_path)


def test_columns_added_to_the_schema_are_added_to_an_older_database(tmp_path):
    ResultStore(tmp_path).append(*cell_rows("c1"))
    with sqlite3.connect(tmp_path / DB_FILE) as conn:
        conn.execute("ALTER TABLE rows DROP COLUMN card")
    store = ResultStore(tmp_path)
    rows, draws = cell_rows("c2")
    store.append([{**rows[0], "card": "{}"}, *rows[1:]], draws)
    assert store.read().card.tolist()[-N_METRICS - 1 :] == ["{}", "", "", ""]


# --------------------------------------------------------------- the output directory
def _open_store(out_dir: str, result) -> None:
    try:
        ResultStore(out_dir)
        result.put("opened")
    except OSError as exc:
        result.put(f"{type(exc).__name__}: {exc}")


def test_unusable_out_dir_errors_name_it(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"out_dir '.*file' is a file"):
        ResultStore(tmp_path / "file")
    with pytest.raises(NotADirectoryError, match=r"'.*file/sub/out' cannot be created: '.*file'"):
        ResultStore(tmp_path / "file" / "sub" / "out")
    shared = Path(tempfile.mkdtemp())  # traversable by another user, unlike tmp_path
    try:
        shared.chmod(0o755)
        (shared / "ro").mkdir(mode=0o555)
        result = FORK.Queue()

        def as_nobody() -> None:
            if os.geteuid() == 0:  # root may write anywhere: drop to an unprivileged user
                os.setgid(65534)
                os.setuid(65534)
            _open_store(str(shared / "ro"), result)

        child = FORK.Process(target=as_nobody)
        child.start()
        child.join(60)
        assert result.get(timeout=10) == (
            f"PermissionError: out_dir '{shared / 'ro'}' is not writable (Permission denied); "
            "results cannot be stored there"
        )
    finally:
        (shared / "ro").chmod(0o755)
        for path in sorted(shared.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        shared.rmdir()
