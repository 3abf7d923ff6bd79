"""Writing generated PNGs from a worker thread, so encoding and disk writes overlap the next batch's sampling.

One thread writes the images in the order they were handed over; at most ``depth`` wait in the queue, so a
slow disk slows generation down rather than filling memory. The first failed write stops the rest (the images
before it are on disk, the ones after it are not: a rerun continues from there) and is raised in the caller's
thread at its next ``submit`` or at ``close``.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

_DONE = object()


class BackgroundWriter:
    def __init__(self, depth: int = 8):
        self._queue: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self._error: BaseException | None = None  # raised once, in the caller's thread
        self._failed = False  # set by the first failed write; later ones are skipped
        self.written = 0  # writes finished without error
        self.write_seconds = 0.0  # time the worker spent writing
        self.wait_seconds = 0.0  # time the caller waited: for room in the queue, and at close
        self._thread = threading.Thread(target=self._work, name="dbooth-png-writer", daemon=True)
        self._thread.start()

    def submit(self, write: Callable[[], object]) -> None:
        """Queue ``write`` (a call that writes one file); raises the error of an earlier write, if any."""
        self._raise()
        began = time.perf_counter()
        self._queue.put(write)
        self.wait_seconds += time.perf_counter() - began

    def close(self) -> None:
        """Wait for every queued write; raise the first error."""
        began = time.perf_counter()
        self._queue.put(_DONE)
        self._thread.join()
        self.wait_seconds += time.perf_counter() - began
        self._raise()

    def abandon(self) -> None:
        """The caller is failing already: let the queued writes finish (each is atomic), keep quiet about errors."""
        self._queue.put(_DONE)
        self._thread.join()
        self._error = None

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
                continue  # after a failure nothing more is written: no gaps behind the images on disk
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
