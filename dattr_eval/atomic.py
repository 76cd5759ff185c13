"""Crash- and concurrency-safe file primitives shared by the results store and the caches.

- :func:`atomic_write`: write a file through a temporary sibling, ``fsync`` and ``os.replace``, so
  a reader (or the next run after a kill, a full disk or Ctrl-C) sees the old content or the new
  one, never a torn file.
- :func:`sha256_file`: the checksum a cache records next to a file to detect flipped bytes
  (``torch.load`` does not: a flipped byte inside a tensor loads silently as a different weight).
- :class:`FileLock`: an exclusive or shared inter-process lock (``flock``); the kernel drops it when
  its holder dies, so a killed process never leaves a directory locked.
- :class:`ProcessId`, :func:`this_process`, :func:`is_alive`: who holds a claim and whether that
  process still runs (host name, pid and the process's start time, so a reused pid is not taken
  for the original process).
- :func:`deferred_sigint`: hold Ctrl-C back while a short critical write finishes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import signal
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

TEMP_SUFFIX = ".tmp"


def temp_sibling(path: Path) -> Path:
    """A fresh hidden temporary name beside ``path``: ``.<name>.<pid>.<random>.tmp``."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Flush a directory entry (a rename or a new file) to disk; a no-op where unsupported."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike[str],
    mode: str = "wb",
    *,
    encoding: str | None = None,
    durable: bool = True,
) -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; on success it replaces ``path`` atomically.

    Use as ``with atomic_write(p) as fh: torch.save(state, fh)`` (or ``mode="w"`` for text). The
    temporary file is flushed (and, if ``durable``, ``fsync``-ed) before ``os.replace``, and the
    directory is synced after it. On any exception (including ``KeyboardInterrupt``) the temporary
    file is removed and ``path`` keeps its previous content. The new file gets the usual
    permissions (``0o666`` less the umask), unlike ``tempfile.mkstemp``'s ``0o600``.

    Args:
        path: the file to (re)write; its directory must exist.
        mode: ``"wb"`` or ``"w"``.
        encoding: text encoding for ``mode="w"`` (default UTF-8).
        durable: also survive a power cut (two ``fsync`` calls, cost proportional to the file);
            ``False`` for files that can be rebuilt: a crash of the process still never leaves
            a torn file, only a power cut could.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    tmp = temp_sibling(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        text = {"encoding": encoding or "utf-8", "newline": ""} if mode == "w" else {}
        with os.fdopen(fd, mode, **text) as fh:
            yield fh
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def sha256_file(path: str | os.PathLike[str], chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in ``chunk_bytes`` blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk_bytes), b""):
            digest.update(block)
    return digest.hexdigest()


class FileLock:
    """An inter-process lock on a lock file (``flock``), exclusive or shared.

    ``with FileLock(path):`` blocks until no other holder conflicts; ``shared=True`` lets any
    number of shared holders in at once while keeping an exclusive holder out. Each ``with`` opens
    its own descriptor, so within one process a shared and an exclusive lock on the same file also
    exclude each other (never nest them). The lock file is created if needed and left in place
    (removing it would race with a waiting process). The kernel releases the lock when the holding
    process exits, however it exits.
    """

    def __init__(self, path: str | os.PathLike[str], *, shared: bool = False) -> None:
        self.path = Path(path)
        self.shared = shared
        self._fh: IO[bytes] | None = None

    def __enter__(self) -> None:
        import fcntl

        if self._fh is not None:
            raise RuntimeError(f"FileLock({self.path}) is already held by this object")
        fh = open(self.path, "a+b")  # stays open while the lock is held
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX)
        except BaseException:
            fh.close()
            raise
        self._fh = fh

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.close()  # closing the descriptor releases the flock
            self._fh = None


@dataclass(frozen=True)
class ProcessId:
    """A process, told apart from a later one that reuses its pid.

    Attributes:
        hostname: ``socket.gethostname()`` of the machine it runs on.
        pid: its process id.
        started: the boot id and the process's start time in clock ticks since boot (Linux
            ``/proc``), or ``""`` where unavailable (then only the pid is compared).
    """

    hostname: str
    pid: int
    started: str


def _start_token(pid: int) -> str:
    """``"<boot id>:<start ticks>"`` of ``pid`` from Linux ``/proc``; ``""`` when not readable."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # fields after the parenthesised command name; starttime is field 22 of the whole line
    return f"{boot}:{stat.rsplit(')', 1)[1].split()[19]}"


def this_process() -> ProcessId:
    """The calling process's :class:`ProcessId` (recomputed after a fork, which changes the pid)."""
    pid = os.getpid()
    return ProcessId(socket.gethostname(), pid, _start_token(pid))


def is_alive(process: ProcessId) -> bool | None:
    """Whether ``process`` still runs: ``None`` when it ran on another host (cannot be checked)."""
    if process.hostname != socket.gethostname():
        return None
    try:
        os.kill(process.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    return not process.started or _start_token(process.pid) == process.started


@contextlib.contextmanager
def deferred_sigint() -> Iterator[None]:
    """Hold back SIGINT (Ctrl-C) until the block ends, then deliver it to the previous handler.

    For short writes that should finish once started (a finished cell's rows). Outside the main
    thread signal handlers cannot be changed, and the block runs unprotected.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if pending:
            signal.raise_signal(signal.SIGINT)  # delivered to the restored handler
