"""Safe file primitives: atomic writes, checksums, inter-process locks, process liveness,
deferred Ctrl-C."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import signal
import socket
import threading
import time

import pytest

from dattr_eval.atomic import (
    FileLock,
    ProcessId,
    atomic_write,
    deferred_sigint,
    is_alive,
    sha256_file,
    this_process,
)

FORK = mp.get_context("fork")


def test_atomic_write_replaces_whole_files_or_nothing(tmp_path):
    target = tmp_path / "f.bin"
    with atomic_write(target) as fh:
        fh.write(b"first")
    assert target.read_bytes() == b"first"
    for interruption in (RuntimeError("disk full"), KeyboardInterrupt()):
        with pytest.raises(type(interruption)), atomic_write(target) as fh:
            fh.write(b"half of the sec")
            raise interruption
        assert target.read_bytes() == b"first"
    with atomic_write(target, "w") as fh:
        fh.write("zweite Fassung\n")
    assert target.read_text(encoding="utf-8") == "zweite Fassung\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]  # no temporary file left
    umask = os.umask(0o022)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    with pytest.raises(ValueError, match="mode must be 'wb' or 'w'"), atomic_write(target, "a"):
        pass


def test_atomic_write_syncs_only_when_durable(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    with atomic_write(tmp_path / "durable") as fh:
        fh.write(b"x")
    assert len(synced) == 2  # the file, then its directory
    with atomic_write(tmp_path / "rebuildable", durable=False) as fh:
        fh.write(b"y")
    assert len(synced) == 2 and (tmp_path / "rebuildable").read_bytes() == b"y"


def test_sha256_file_matches_hashlib(tmp_path):
    data = os.urandom(3 * 1024 + 5)
    (tmp_path / "x").write_bytes(data)
    assert sha256_file(tmp_path / "x", chunk_bytes=1024) == hashlib.sha256(data).hexdigest()


def _hold(path: str, shared: bool, held, leave) -> None:
    with FileLock(path, shared=shared):
        held.set()
        leave.wait(30)


def _acquired_within(path, shared: bool, seconds: float) -> bool:
    """Whether this process gets the lock within ``seconds`` (tried in a thread)."""
    got = threading.Event()

    def take() -> None:
        with FileLock(path, shared=shared):
            got.set()

    threading.Thread(target=take, daemon=True).start()
    return got.wait(seconds)


def test_file_lock_exclusion_sharing_and_release_on_death(tmp_path):
    lock = tmp_path / "lock"
    held, leave = FORK.Event(), FORK.Event()
    holder = FORK.Process(target=_hold, args=(str(lock), True, held, leave))
    holder.start()
    assert held.wait(30)
    assert _acquired_within(lock, shared=True, seconds=5)  # shared with shared
    assert not _acquired_within(lock, shared=False, seconds=0.3)  # exclusive waits
    leave.set()
    holder.join(30)
    held.clear()
    killed = FORK.Process(target=_hold, args=(str(lock), False, held, FORK.Event()))
    killed.start()
    assert held.wait(30)
    assert not _acquired_within(lock, shared=True, seconds=0.3)
    os.kill(killed.pid, signal.SIGKILL)  # the kernel drops a dead holder's lock
    killed.join(30)
    assert _acquired_within(lock, shared=False, seconds=5)


def _exit_now() -> None:
    os._exit(0)


def test_process_liveness_tells_exited_and_reused_pids_apart():
    me = this_process()
    assert me.pid == os.getpid() and me.hostname == socket.gethostname()
    assert is_alive(me) is True
    child = FORK.Process(target=_exit_now)
    child.start()
    child.join(30)
    assert is_alive(ProcessId(me.hostname, child.pid, "")) is False
    if me.started:  # Linux: a pid reused by a later process is not the claimant
        assert is_alive(ProcessId(me.hostname, me.pid, me.started + "0")) is False
    assert is_alive(ProcessId(me.hostname + ".elsewhere", me.pid, me.started)) is None


def test_deferred_sigint_finishes_the_block_then_interrupts():
    steps = []
    with pytest.raises(KeyboardInterrupt), deferred_sigint():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the signal arrives here, and is held back
        steps.append("block finished")
    assert steps == ["block finished"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with deferred_sigint():
        steps.append("no signal")
    assert steps[-1] == "no signal"
