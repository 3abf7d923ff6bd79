"""One writer per workspace: ``train`` and ``prior`` hold ``.dbooth.lock`` while they run.

The lock is a kernel lock (``flock``) on a file that also names its holder (pid, host, verb), so
the kernel releases it when the holder dies, even by ``kill -9``: a lock file left behind by a dead
process is simply taken over. Reading commands (``sample``, ``export``, ``status``) never lock, so
they keep working on finished runs while a run trains.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Iterator

from dbooth.util.errors import DboothError

LOCK_NAME = ".dbooth.lock"


def holder(root: Path) -> dict | None:
    """Who the lock file says holds (or last held) the workspace."""
    try:
        data = json.loads((Path(root) / LOCK_NAME).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def held_by(root: Path) -> dict | None:
    """Who holds the workspace's lock right now (pid, host, verb, since), or None; takes nothing."""
    import fcntl

    path = Path(root) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return holder(root) or {}
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


@contextlib.contextmanager
def workspace_lock(root: Path, verb: str, *, on_stale=None, wait: float | None = None,
                   on_wait=None, poll: float = 1.0) -> Iterator[None]:
    """Hold the workspace's lock for ``verb``; a second holder gets one line naming the first.

    ``on_stale(info)`` is called when the file names a process that no longer holds the lock.
    With ``wait`` (seconds; ``float("inf")`` for as long as it takes) a busy workspace is waited for,
    calling ``on_wait(info)`` once, instead of refused.
    """
    import fcntl

    path = Path(root) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise DboothError(f"workspace {root}: cannot create {LOCK_NAME} ({exc.strerror}); "
                          "check that the folder is writable") from None
    try:
        deadline = None if wait is None else time.monotonic() + wait
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                other = holder(root) or {}
                if deadline is None or time.monotonic() >= deadline:
                    who = (f"`dbooth {other.get('verb', '?')}` (pid {other.get('pid', '?')} on "
                           f"{other.get('host', '?')})")
                    how = "" if wait is None else f" after waiting {wait:g} s"
                    raise DboothError(f"workspace {root}: {who} is already using it{how}; wait for it to finish "
                                      "(or pass --wait), or stop that process, then run this again") from None
                if not told and on_wait is not None:
                    on_wait(other)
                    told = True
                time.sleep(poll)
        previous = holder(root)
        if previous and on_stale is not None:
            on_stale(previous)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "verb": verb, "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # released: an empty file names nobody
    finally:
        os.close(fd)  # closing releases the flock
