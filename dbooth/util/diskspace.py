"""Free-space checks before large writes, and one-line errors when a write fails anyway.

Checked up front, a full disk is a line saying how much is needed and where, instead of a run
that dies hours in; a write that fails anyway (ENOSPC, a read-only folder) only ever loses the
temporary file, since every output is written beside its target and renamed (dbooth.util.fsutil).
"""

from __future__ import annotations

import contextlib
import errno
import shutil
from pathlib import Path
from typing import Iterator

from dbooth.util.errors import DboothError

MARGIN = 16 * 2**20  # metadata, JSON and headers around the tensors


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def free_bytes(path: Path) -> int:
    """Free space on the filesystem that holds ``path`` (or its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def require_free(path: Path, needed: int, what: str) -> None:
    """Raise a one-line error when ``path``'s filesystem has less than ``needed`` bytes (+ a margin) free."""
    needed = int(needed) + MARGIN
    free = free_bytes(path)
    if free < needed:
        raise DboothError(f"not enough free space for {what} in {path}: needs about {human(needed)}, "
                          f"{human(free)} free; free some space there and run this again")


def parameter_bytes(models, *, trainable_only: bool) -> int:
    """Bytes of the (trainable) parameters at float32, the precision dbooth saves them in."""
    total = 0
    for model in models:
        for p in model.parameters():
            if p.requires_grad or not trainable_only:
                total += p.numel() * 4
    return total


@contextlib.contextmanager
def writing(what: str, path: Path, *, kept: str = "") -> Iterator[None]:
    """Turn a failed write (disk full, read-only, no permission) into one line saying what is intact."""
    try:
        yield
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            reason, fix = "the disk is full", "free some space"
        elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            reason, fix = "the folder is not writable", "make it writable"
        else:
            raise
        tail = f"; {kept}" if kept else ""
        raise DboothError(f"writing {what} to {path} failed: {reason} ({exc.strerror}); nothing was half-written"
                          f"{tail}; {fix} and run this again") from None
