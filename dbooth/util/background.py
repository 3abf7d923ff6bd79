"""Writing files from a worker thread, so encoding and disk writes overlap the work that comes next.

Class images (``BackgroundWriter(depth=2 * batch)``) write their PNGs while the next batch is sampled;
checkpoints (``CheckpointWriter``, depth 1) write while the next steps train. One thread writes in the
order the writes were handed over; at most ``depth`` wait in the queue, so a slow disk slows the caller
down rather than filling memory. The first failed write stops the rest (the files before it are on disk,
the ones after it are not: a rerun continues from there) and is raised in the caller's thread at its next
``submit`` or ``wait``/``close``. ``wait`` lets the worker finish and end; the next ``submit`` starts another.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

_DONE = object()


class BackgroundWriter:
    """Calls handed over with ``submit``, run in order on one worker thread (see the module docstring)."""

    def __init__(self, depth: int = 8, name: str = "dbooth-png-writer"):
        self._queue: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self._name = name  # of the worker thread
        self._thread: threading.Thread | None = None  # started by the first submit after a wait
        self._error: BaseException | None = None  # raised once, in the caller's thread
        self._failed = False  # set by the first failed write; later ones are skipped
        self.written = 0  # writes finished without error
        self.write_seconds = 0.0  # time the worker spent writing
        self.wait_seconds = 0.0  # time the caller waited: for room in the queue, and at wait/close

    def submit(self, write: Callable[[], object]) -> None:
        """Queue ``write`` (a call that writes files); raises the error of an earlier write, if any."""
        self._raise()
        if self._thread is None:
            # a daemon: a second Ctrl-C abandons the write (each is atomic, so it leaves only a temporary file)
            self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
            self._thread.start()
        began = time.perf_counter()
        self._queue.put(write)
        self.wait_seconds += time.perf_counter() - began

    def wait(self, *, quiet: bool = False) -> None:
        """Block until every queued write is done; raise the first error unless ``quiet`` (the caller is failing
        already: the queued writes land, each atomically, and their errors would hide the caller's own)."""
        began = time.perf_counter()
        if self._thread is not None:
            self._queue.put(_DONE)
            self._thread.join()
            self._thread, self._failed = None, False
        self.wait_seconds += time.perf_counter() - began
        if quiet:
            self._error = None
        else:
            self._raise()

    def close(self) -> None:
        """Wait for every queued write; raise the first error."""
        self.wait()

    def abandon(self) -> None:
        """The caller is failing already: let the queued writes finish, keep quiet about errors."""
        self.wait(quiet=True)

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if kind is None:
            self.close()
        else:
            self.abandon()

    def _work(self) -> None:
        while True:
            write = self._queue.get()
            if write is _DONE:
                return
            if self._failed:
                continue  # after a failure nothing more is written: no gaps behind the files on disk
            began = time.perf_counter()
            try:
                write()
                self.written += 1
            except BaseException as exc:  # re-raised in the caller's thread
                self._failed, self._error = True, exc
            finally:
                self.write_seconds += time.perf_counter() - began

    def _raise(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error
