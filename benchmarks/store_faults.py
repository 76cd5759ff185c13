"""The results store and the model cache under faults, and the store's speed.

1. Corruption table: each kind of damage to ``results.csv``, ``results.sqlite``, the output
   directory and a model-cache entry, then what a later ``report`` (``read_results``) and ``run``
   (``ResultStore`` + append a cell + read) see. Outcome ``healed``: no exception, every intact
   row kept, no row altered, the new cell stored, the export clean, and a warning whenever
   something was set aside; ``clear error``: an exception whose message names the path.
2. Random damage: single-bit flips at random offsets (and truncations) of a v1 ``results.csv``
   and of ``results.sqlite``; each trial counted as obscure (an exception), silent (a row or draws
   array read back altered), lost (an intact row gone) or healed.
3. Concurrency: runs sharing one directory split a grid with claims; a run killed (SIGKILL) at a
   random moment, then a second run finishes the grid.
4. Speed, side by side: appending one cell and reading 10k rows, for this store (SQLite + export),
   one CSV under a file lock, and one file per cell.

Writes ``benchmarks/results/store_faults.md``.
Run: ``.venv/bin/python benchmarks/store_faults.py [--trials 300]``
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import multiprocessing as mp
import os
import platform
import random
import re
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from dattr_eval.atomic import FileLock, atomic_write
from dattr_eval.evaluation.results_csv import read_results_csv
from dattr_eval.evaluation.store import (
    COLUMNS,
    DB_FILE,
    RESULTS_FILE,
    V1_COLUMNS,
    ResultStore,
    read_bootstrap,
    read_results,
)
from dattr_eval.models import ModelCache
from tests.test_model_cache import DAMAGE as CACHE_DAMAGE
from tests.test_model_cache import RECIPE, tiny_dataset
from tests.test_store import LINE_DAMAGE, N_METRICS, V1_ROWS, cell_rows, damaged, write_v1

FORK = mp.get_context("fork")
IDENTITY = ["benchmark", "explainer", "metric", "kind", "cell_key", "metric_key", "score"]


def identities(df: pd.DataFrame) -> Counter:
    """Rows as hashable tuples (NaN scores as None), counted."""
    return Counter(
        tuple(None if isinstance(v, float) and np.isnan(v) else v for v in row)
        for row in df[IDENTITY].itertuples(index=False)
    )


def exercise(out_dir: Path) -> dict:
    """What a report and then a run see in ``out_dir``: rows, draws, warnings, error."""
    seen: dict = {"error": None}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            seen["report"] = read_results(out_dir, latest=False)
            store = ResultStore(out_dir)
            seen["stored"] = store.read(latest=False)
            seen["draws"] = store.read_bootstrap()
            claimed = store.claim("fresh")
            store.append(*cell_rows("fresh", explainer="fresh"))
            store.release("fresh")
            after = store.read(latest=False)
            export = read_results_csv(out_dir / RESULTS_FILE)
            seen["export_ok"] = not export.rejected and len(export.rows) == len(after)
            seen["new_ok"] = claimed and int((after.cell_key == "fresh").sum()) == N_METRICS + 1
        except Exception as exc:  # noqa: BLE001 (any exception is an outcome to record)
            seen["error"] = f"{type(exc).__name__}: {exc}"
    seen["warnings"] = [str(w.message) for w in caught]
    return seen


def verdict(seen: dict, expected: Counter, damaged_rows: int = 0) -> tuple[str, str, str]:
    """``(outcome, rows kept / expected, note)`` of one damaged directory."""
    if seen["error"]:
        return "FAILED (obscure)", "-", seen["error"][:160]
    stored = identities(seen["stored"])
    kept = sum((stored & expected).values())
    altered = sum((stored - expected).values())
    note = seen["warnings"][0][:160] if seen["warnings"] else "no warning"
    lost = sum(expected.values()) - kept - damaged_rows
    healthy = seen["export_ok"] and seen["new_ok"] and altered == 0 and lost <= 0
    if healthy and (seen["warnings"] or kept == sum(expected.values())):
        outcome = "healed"
    else:
        outcome = f"FAILED (altered {altered}, lost {max(lost, 0)})"
    note = re.sub(r"/tmp/tmp\w+", "<out_dir>", note.replace("|", "/").replace("\n", " "))
    return outcome, f"{kept} / {sum(expected.values())}", note


# ----------------------------------------------------------------------- 1. corruption table
def v1_expected(keep: int = len(V1_ROWS)) -> Counter:
    """The first ``keep`` rows of ``V1_ROWS`` as stored identities."""
    full = [{**r, "cell_key": "", "metric_key": ""} for r in V1_ROWS[:keep]]
    return identities(pd.DataFrame(full, columns=IDENTITY))


def csv_cases() -> list[tuple[str, str, object, Counter, int]]:
    """``(target, damage, apply(dir), expected rows, damaged rows)`` for a v1 results.csv."""
    cases = []
    for name, edit in LINE_DAMAGE.items():

        def apply(d: Path, edit=edit) -> None:
            original = write_v1(d / RESULTS_FILE, V1_ROWS)
            (d / RESULTS_FILE).write_bytes(damaged(original, 3, edit))

        cases.append(("results.csv (v1)", f"one line: {name}", apply, v1_expected(), 1))

    def rewrite(change):
        def apply(d: Path) -> None:
            original = write_v1(d / RESULTS_FILE, V1_ROWS)
            (d / RESULTS_FILE).write_bytes(change(original))

        return apply

    header = ",".join(V1_COLUMNS).encode()
    n = len(V1_ROWS)
    whole = [  # (damage, change, rows it holds, rows damaged)
        ("torn last line (inside a quoted field)", lambda b: b[:-30], n, 1),
        ("torn last line (last field)", lambda b: b[:-3], n, 1),
        ("0-byte file", lambda b: b"", 0, 0),
        ("header only", lambda b: header + b"\r\n", 0, 0),
        ("header written twice", lambda b: b + header + b"\r\n", n, 0),
        ("torn header (SIGINT while writing it)", lambda b: b[:40] + b[b.index(b"\r\n") :], n, 0),
        ("random garbage file", lambda b: bytes(random.Random(0).randbytes(2000)), 0, 0),
        ("clean v1 file (older version)", lambda b: b, n, 0),
    ]
    for name, change, keep, n_bad in whole:
        cases.append(("results.csv (v1)", name, rewrite(change), v1_expected(keep), n_bad))
    return cases


def v2_directory(d: Path) -> Counter:
    """A v2 store with three cells; its rows."""
    store = ResultStore(d)
    for i in range(3):
        store.append(*cell_rows(f"c{i}", explainer=f"e{i}"))
    return identities(store.read(latest=False))


def db_cases() -> list[tuple[str, str, object, int]]:
    """``(target, damage, apply(dir), damaged rows)`` for a v2 directory."""

    def on(name: str, change):
        def apply(d: Path) -> None:
            path = d / name
            path.write_bytes(change(path.read_bytes()))

        return apply

    def smash_claims(d: Path) -> None:
        with sqlite3.connect(d / DB_FILE) as conn:
            page = conn.execute("PRAGMA page_size").fetchone()[0]
            (root,) = conn.execute(
                "SELECT rootpage FROM sqlite_master WHERE name='claims'"
            ).fetchone()
        with open(d / DB_FILE, "r+b") as fh:
            fh.seek((root - 1) * page)
            fh.write(b"\xff" * page)

    def flip_value(stored: bytes):
        def change(data: bytes) -> bytes:
            at = data.index(stored) + len(stored) - 2
            return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]

        return change

    score = np.float64(0.25 + 1).tobytes()[::-1]  # c0's m1 score, big-endian as SQLite stores it
    draws = cell_rows("c1", explainer="e1")[1]["m2"].astype("<f8").tobytes()[:64]
    return [
        (
            "results.csv (export)",
            "truncated to half",
            on(RESULTS_FILE, lambda b: b[: len(b) // 2]),
            0,
        ),
        ("results.csv (export)", "deleted", lambda d: (d / RESULTS_FILE).unlink(), 0),
        ("results.csv (export)", "flipped byte, same size", on(RESULTS_FILE, flip_value(b"e1")), 0),
        ("results.sqlite", "garbage", on(DB_FILE, lambda b: b"not a database " * 300), 0),
        ("results.sqlite", "truncated to 1000 bytes", on(DB_FILE, lambda b: b[:1000]), 0),
        ("results.sqlite", "0-byte file", on(DB_FILE, lambda b: b""), 0),
        ("results.sqlite", "deleted", lambda d: (d / DB_FILE).unlink(), 0),
        ("results.sqlite", "claims table page smashed", smash_claims, 0),
        ("results.sqlite", "flipped bit in a stored score", on(DB_FILE, flip_value(score)), 1),
        ("results.sqlite", "flipped bit in bootstrap draws", on(DB_FILE, flip_value(draws)), 1),
        (
            "results.sqlite-journal",
            "garbage hot journal beside the database",
            lambda d: (d / f"{DB_FILE}-journal").write_bytes(b"\xd9\xd5\x05\xf9" + os.urandom(600)),
            0,
        ),
    ]


def out_dir_case(kind: str, base: Path) -> tuple[str, str]:
    """Outcome and message of ``ResultStore`` on an unusable output directory."""
    (base / "file").write_text("x")
    target = {"a file": base / "file", "under a file": base / "file" / "sub"}.get(kind)
    if target is not None:
        try:
            ResultStore(target)
        except OSError as exc:
            return "clear error", f"{type(exc).__name__}: {exc}"
        return "FAILED (no error)", ""
    (base / "ro").mkdir(mode=0o555)
    base.chmod(0o755)
    queue = FORK.Queue()

    def as_nobody() -> None:
        if os.geteuid() == 0:
            os.setgid(65534)
            os.setuid(65534)
        try:
            ResultStore(base / "ro")
            queue.put("FAILED (no error)")
        except OSError as exc:
            queue.put(f"{type(exc).__name__}: {exc}")

    child = FORK.Process(target=as_nobody)
    child.start()
    child.join(60)
    message = queue.get(timeout=10)
    (base / "ro").chmod(0o755)
    return ("clear error" if message.startswith("PermissionError") else message), message


def cache_cases(clean_state: dict) -> list[tuple[str, str, str, str]]:
    """Each damage to a model-cache entry: outcome and the warning."""
    rows = []
    dataset = tiny_dataset()
    for name, (harm, _) in CACHE_DAMAGE.items():
        with tempfile.TemporaryDirectory() as tmp:
            cache = ModelCache(tmp)
            cache.get_or_train(RECIPE, dataset)
            harm(Path(tmp) / cache.key(RECIPE, dataset))
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    state = cache.get_or_train(RECIPE, dataset).model.state_dict()
                    same = all(torch.equal(state[k], clean_state[k]) for k in clean_state)
                    outcome = "healed" if same and caught else "FAILED (weights differ)"
                except Exception as exc:  # noqa: BLE001 (any exception is an outcome to record)
                    outcome = f"FAILED (obscure): {type(exc).__name__}: {exc}"
            note = str(caught[0].message) if caught else "no warning"
            rows.append(
                ("model cache entry", name, outcome, re.sub(r"/tmp/tmp\w+", "<root>", note)[:150])
            )
    return rows


# ----------------------------------------------------------------------- 2. random damage
def random_csv_trials(n: int, rng: random.Random) -> Counter:
    counts: Counter = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        original = write_v1(Path(tmp) / "v1.csv", V1_ROWS * 4)
    expected = Counter({k: 4 * v for k, v in v1_expected().items()})
    line_ends = [i + 1 for i, b in enumerate(original) if b == 0x0A][1:]  # of the data rows
    for trial in range(n):
        data = bytearray(original)
        if trial % 4 == 3:  # a kill mid-write: truncated at a random byte
            cut = rng.randrange(len(data))
            data, hit = data[:cut], sum(1 for end in line_ends if end > cut)
        else:
            at = rng.randrange(len(data))
            data[at] ^= 1 << rng.randrange(8)
            hit = 1
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / RESULTS_FILE).write_bytes(bytes(data))
            seen = exercise(Path(tmp))
        counts.update(_classify(seen, expected, hit))
    return counts


def _classify(seen: dict, expected: Counter, hit: int, original_draws: dict | None = None) -> list:
    if seen["error"]:
        return ["obscure"]
    stored = identities(seen["stored"])
    altered = sum((stored - expected).values())
    lost = sum(expected.values()) - sum((stored & expected).values())
    labels = []
    if original_draws is not None:
        for key, values in seen["draws"].items():
            if key in original_draws and not np.array_equal(values, original_draws[key]):
                altered += 1
    if altered:
        labels.append("silent (value altered, undetected)")
    if lost > hit:  # e.g. a flipped line end merges two rows into one malformed record
        labels.append(
            "a neighbouring row set aside too (warning)"
            if seen["warnings"]
            else "row lost silently"
        )
    if not (seen["export_ok"] and seen["new_ok"]):
        labels.append("store unusable afterwards")
    if not labels:
        labels.append("healed (warning)" if seen["warnings"] else "no effect")
    return labels


def random_db_trials(n: int, rng: random.Random) -> tuple[Counter, Counter]:
    counts: Counter = Counter()
    lost_draws: Counter = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source"
        expected = v2_directory(source)
        original_draws = read_bootstrap(source)
        size = (source / DB_FILE).stat().st_size
        for _ in range(n):
            trial = Path(tmp) / "trial"
            shutil.copytree(source, trial)
            with open(trial / DB_FILE, "r+b") as fh:
                at = rng.randrange(size)
                fh.seek(at)
                byte = fh.read(1)[0]
                fh.seek(at)
                fh.write(bytes([byte ^ (1 << rng.randrange(8))]))
            seen = exercise(trial)
            labels = _classify(seen, expected, hit=N_METRICS + 1, original_draws=original_draws)
            counts.update(labels)
            if not seen["error"]:
                lost_draws[len(original_draws) - len(seen["draws"])] += 1
            shutil.rmtree(trial)
    return counts, lost_draws


# ----------------------------------------------------------------------- 3. concurrency
def grid_worker(out_dir: str, barrier, n_cells: int, compute_s: float) -> None:
    store = ResultStore(out_dir)
    barrier.wait()
    for i in range(n_cells):
        if store.claim(f"c{i}"):
            time.sleep(compute_s)
            store.append(*cell_rows(f"c{i}", explainer=str(os.getpid())))
            store.release(f"c{i}")


def concurrent_runs(n_runs: int, n_cells: int, compute_s: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        barrier = FORK.Barrier(n_runs)
        runs = [
            FORK.Process(target=grid_worker, args=(tmp, barrier, n_cells, compute_s))
            for _ in range(n_runs)
        ]
        start = time.perf_counter()
        for p in runs:
            p.start()
        for p in runs:
            p.join(600)
        wall = time.perf_counter() - start
        df = read_results(tmp, latest=False)
    profiles = df[df.kind == "profile"]
    per_run = sorted(profiles.explainer.value_counts().tolist(), reverse=True)
    return {
        "runs": n_runs,
        "cells": n_cells,
        "each cell once": bool(sorted(profiles.cell_key) == sorted(f"c{i}" for i in range(n_cells)))
        and len(df) == n_cells * (N_METRICS + 1),
        "cells per run": per_run,
        "wall s": wall,
        "ideal s": n_cells * compute_s / n_runs,
    }


def kill_series(n: int, n_cells: int, compute_s: float, rng: random.Random) -> list[dict]:
    """Run A killed at a random moment; run B then finishes the grid."""
    results = []
    for _ in range(n):
        with tempfile.TemporaryDirectory() as tmp:
            first = FORK.Process(
                target=grid_worker, args=(tmp, FORK.Barrier(1), n_cells, compute_s)
            )
            first.start()
            time.sleep(rng.uniform(0.05, n_cells * compute_s * 0.8))
            os.kill(first.pid, signal.SIGKILL)
            first.join(60)
            done_by_a = int((read_results(tmp, latest=False).kind == "profile").sum())
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                grid_worker(tmp, FORK.Barrier(1), n_cells, 0.0)
            df = read_results(tmp, latest=False)
            profiles = df[df.kind == "profile"]
            results.append(
                {
                    "done before the kill": done_by_a,
                    "each cell once": sorted(profiles.cell_key)
                    == sorted(f"c{i}" for i in range(n_cells))
                    and len(df) == n_cells * (N_METRICS + 1),
                    "claims taken over": sum("taking over" in str(w.message) for w in caught),
                }
            )
    return results


# ----------------------------------------------------------------------- 4. speed
def bulk_rows(n_cells: int, offset: int = 0):
    """Rows and draws of ``n_cells`` cells with distinct metric labels, for one append."""
    rows, draws = [], {}
    for c in range(offset, offset + n_cells):
        cell, cell_draws = cell_rows(f"c{c}", explainer=f"e{c % 50}")
        for row in cell:
            if row["kind"] == "metric":
                draws[f"{row['metric']}-{c}"] = cell_draws[row["metric"]]
                row["metric"] = f"{row['metric']}-{c}"
        rows += cell
    return rows, draws


def median_s(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def speed(n_rows: int) -> list[tuple[str, str, str, str]]:
    n_cells = n_rows // (N_METRICS + 1)
    one_cell = cell_rows("new", explainer="new")
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store = ResultStore(tmp / "sqlite")
        append_empty = median_s(lambda: store.append(*one_cell), 15)
        for start in range(0, n_cells, 100):
            store.append(*bulk_rows(min(100, n_cells - start), start))
        append_full = median_s(lambda: store.append(*one_cell), 15)
        reads = {
            "ResultStore(out_dir) (opens, checks every checksum)": median_s(
                lambda: ResultStore(tmp / "sqlite"), 3
            ),
            "read(latest=False)": median_s(lambda: store.read(latest=False), 3),
            "read() (latest per key)": median_s(store.read, 3),
            "finished()": median_s(store.finished, 3),
            "claim(cell_key)": median_s(lambda: store.claim("c0"), 5),
            "read_bootstrap()": median_s(store.read_bootstrap, 3),
            "read_results(out_dir) (report's path, read-only)": median_s(
                lambda: read_results(tmp / "sqlite"), 3
            ),
        }
        n_stored = len(store.read(latest=False))
        # one CSV under a lock: append = flock + write + fsync; read = the tolerant reader
        csv_path = tmp / "lock" / RESULTS_FILE
        csv_path.parent.mkdir()
        shutil.copy(store.path, csv_path)

        def csv_append() -> None:
            with FileLock(csv_path.parent / ".lock"), open(csv_path, "a", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerows([[row.get(c, "") for c in COLUMNS] for row in one_cell[0]])
                fh.flush()
                os.fsync(fh.fileno())

        csv_append_s = median_s(csv_append, 15)
        csv_read_s = median_s(lambda: read_results_csv(csv_path), 3)
        pandas_read_s = median_s(lambda: pd.read_csv(csv_path, keep_default_na=False), 3)
        # one file per cell (rows as JSON + draws as .npy), each written atomically
        parts = tmp / "parts"
        parts.mkdir()

        def write_part(name: str, rows: list, draws: dict) -> None:
            with atomic_write(parts / f"{name}.json", "w") as fh:
                json.dump(rows, fh)
            with atomic_write(parts / f"{name}.npz") as fh:
                np.savez(fh, **draws)

        for c in range(n_cells):
            rows, draws = cell_rows(f"c{c}", explainer=f"e{c % 50}")
            write_part(f"c{c}", rows, draws)
        part_append_s = median_s(lambda: write_part("new", *one_cell), 15)

        def read_parts() -> pd.DataFrame:
            rows = [r for p in sorted(parts.glob("*.json")) for r in json.loads(p.read_text())]
            return pd.DataFrame(rows)

        def read_part_draws() -> int:
            return sum(len(np.load(p).files) for p in parts.glob("*.npz"))

        part_read_s = median_s(read_parts, 3)
        part_draws_s = median_s(read_part_draws, 3)

    def ms(seconds: float) -> str:
        return f"{1000 * seconds:.1f} ms"

    out.append(
        ("append one cell (4 rows, 3 x 1,000 draws), empty store", ms(append_empty), "-", "-")
    )
    out.append(
        (
            f"append one cell, store of {n_stored:,} rows",
            ms(append_full),
            ms(csv_append_s),
            ms(part_append_s),
        )
    )
    for name, seconds in reads.items():
        out.append((f"{name}, {n_stored:,} rows", ms(seconds), "-", "-"))
    out.append(
        (
            f"read all {n_stored:,} rows (tolerant reader / pandas read_csv / one file per cell)",
            ms(reads["read(latest=False)"]),
            f"{ms(csv_read_s)} / {ms(pandas_read_s)}",
            ms(part_read_s),
        )
    )
    out.append(("read all draws", ms(reads["read_bootstrap()"]), "(none)", ms(part_draws_s)))
    return out


# ----------------------------------------------------------------------- report
def table(header: list[str], rows: list) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(x) for x in row) + " |" for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300, help="random damages per file kind")
    parser.add_argument("--rows", type=int, default=10_000, help="rows for the speed section")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/store_faults.md")
    args = parser.parse_args()
    rng = random.Random(0)
    load_before = os.getloadavg()
    lines = [
        "# Results store and model cache under faults",
        "",
        (
            f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; machine: "
            f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}; load average "
            f"{load_before[0]:.1f} at the start (shared machine: timings are noisy, compare within a row)."
        ),
        "",
        (
            f"Command: `.venv/bin/python benchmarks/store_faults.py --trials {args.trials} "
            f"--rows {args.rows}`"
        ),
        "",
        "## 1. Corruption table",
        "",
        (
            "After the damage: `read_results(out_dir)` (what `report` does), then `ResultStore(out_dir)`,"
            " append a new cell, read everything back. *healed*: no exception, every intact row kept,"
            " no row altered, the new cell stored, `results.csv` clean afterwards, and a warning"
            " whenever something was set aside (the first warning is quoted). *clear error*: an"
            " exception naming the path."
        ),
        "",
    ]
    corruption = []
    for target, name, apply, expected, n_bad in csv_cases():
        with tempfile.TemporaryDirectory() as tmp:
            apply(Path(tmp))
            outcome, kept, note = verdict(exercise(Path(tmp)), expected, n_bad)
        corruption.append((target, name, outcome, kept, note))
    for target, name, apply, n_bad in db_cases():
        with tempfile.TemporaryDirectory() as tmp:
            expected = v2_directory(Path(tmp))
            apply(Path(tmp))
            outcome, kept, note = verdict(exercise(Path(tmp)), expected, n_bad)
        corruption.append((target, name, outcome, kept, note))
    for kind in ("a file", "under a file", "read-only (as an unprivileged user)"):
        base = Path(tempfile.mkdtemp())
        outcome, message = out_dir_case(kind, base)
        shutil.rmtree(base)
        corruption.append(("out_dir", kind, outcome, "-", message.replace(str(base), "<tmp>")))
    clean_state = (
        ModelCache(tempfile.mkdtemp()).get_or_train(RECIPE, tiny_dataset()).model.state_dict()
    )
    corruption += [(t, n, o, "-", note) for t, n, o, note in cache_cases(clean_state)]
    lines += table(["file", "damage", "outcome", "rows kept", "warning / message"], corruption)
    failures = sum(not row[2].startswith(("healed", "clear error")) for row in corruption)
    lines += ["", f"{len(corruption)} cases, {failures} failed."]

    print("random damage ...", flush=True)
    csv_counts = random_csv_trials(args.trials, rng)
    db_counts, lost_draws = random_db_trials(args.trials, rng)
    lines += [
        "",
        "## 2. Random damage",
        "",
        (
            f"{args.trials} trials per file: a v1 `results.csv` of 20 rows (3 in 4 trials flip one"
            " random bit, 1 in 4 truncates at a random byte, as a kill mid-write would), and a"
            f" `results.sqlite` of 3 cells ({3 * (N_METRICS + 1)} rows, {3 * N_METRICS} draws arrays"
            " of 1,000 float64) with one random bit flipped. A trial can carry several labels."
        ),
        "",
    ]
    labels = sorted(set(csv_counts) | set(db_counts))
    lines += table(
        ["outcome", "results.csv (v1)", "results.sqlite"],
        [(label, csv_counts.get(label, 0), db_counts.get(label, 0)) for label in labels],
    )
    lines += [
        "",
        "results.sqlite trials by the number of draws arrays no longer available (of "
        f"{3 * N_METRICS}; rows kept, draws lost when the database had to be rebuilt from "
        "results.csv): " + ", ".join(f"{k} lost: {v}" for k, v in sorted(lost_draws.items())),
        "",
        (
            "A v1 `results.csv` has no checksums: a flipped digit inside a number (or a letter inside a"
            " name) still parses, so it cannot be told from a real value; such trials are counted as"
            " silent above. Since schema v2 the database is the source of truth and every row and"
            " draws array carries a CRC-32, so the same flip there is detected."
        ),
    ]

    print("concurrency ...", flush=True)
    runs = [concurrent_runs(n, 40, 0.05) for n in (2, 4)]
    kills = kill_series(10, 20, 0.05, rng)
    lines += ["", "## 3. Concurrency", ""]
    lines += table(
        ["runs on one directory", "cells", "each cell once", "cells per run", "wall s", "ideal s"],
        [
            (
                r["runs"],
                r["cells"],
                r["each cell once"],
                r["cells per run"],
                f"{r['wall s']:.2f}",
                f"{r['ideal s']:.2f}",
            )
            for r in runs
        ],
    )
    lines += [
        "",
        (
            "Kill series: a run over 20 cells (50 ms each) is killed with SIGKILL at a random moment;"
            " a second run then finishes the grid."
        ),
        "",
    ]
    lines += table(
        ["trial", "cells stored before the kill", "each cell once at the end", "claims taken over"],
        [
            (i + 1, k["done before the kill"], k["each cell once"], k["claims taken over"])
            for i, k in enumerate(kills)
        ],
    )

    print("speed ...", flush=True)
    load_speed = os.getloadavg()[0]
    speeds = speed(args.rows)
    lines += [
        "",
        "## 4. Speed",
        "",
        (
            "Medians; the same rows in each layout. Columns: this store (SQLite source of truth,"
            " rollback journal, synchronous=FULL: a commit costs a few fsyncs; the `results.csv`"
            " export rewritten atomically in the same transaction, not fsync-ed); one CSV appended"
            " under a `flock` with fsync; one JSON + `.npz` file per cell, each written atomically"
            f" with fsync. Load average when this section started: {load_speed:.1f}."
        ),
        "",
    ]
    lines += table(["operation", "SQLite + export", "CSV + lock", "file per cell"], speeds)
    load_after = os.getloadavg()
    lines += ["", f"Load average at the end: {load_after[0]:.1f}.", ""]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
