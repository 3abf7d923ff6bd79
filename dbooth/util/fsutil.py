"""Atomic file writes: a crash or Ctrl-C never leaves a half-written file behind."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


_TEMP_OWNER = re.compile(r"\.(\d+)\.[^.]+\.tmp$")


def _plain_file_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file: 0666 less the umask (usually 0644).

    ``mkstemp`` makes its files 0600, which a plain write would not: a ComfyUI service or a colleague could not
    read an export. Read once: asking for the umask sets it, which is not safe beside threads writing files.
    """
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _plain_file_mode()
_FOLDER_MODE = _FILE_MODE | ((_FILE_MODE & 0o444) >> 2)  # the same, with search (x) wherever read (r) is allowed


def _plain_modes(target: Path) -> None:
    """Give ``target`` (a file, or a folder and everything in it) the modes a plain write would: safetensors
    (and mkstemp) make their files 0600 whatever the umask."""
    if target.is_dir() and not target.is_symlink():
        os.chmod(target, _FOLDER_MODE)
        for root, dirs, files in os.walk(target):
            for name in dirs:
                os.chmod(os.path.join(root, name), _FOLDER_MODE)
            for name in files:
                if not os.path.islink(os.path.join(root, name)):
                    os.chmod(os.path.join(root, name), _FILE_MODE)
    elif target.is_file() and not target.is_symlink():
        os.chmod(target, _FILE_MODE)


def _temp_prefix(path: Path) -> str:
    """Temporary names carry the writer's pid, so a leftover can be told from a write in progress."""
    return f".{path.name}.{os.getpid()}."


def _writer_alive(name: str) -> bool:
    match = _TEMP_OWNER.search(name)
    if not match:
        return False
    return pid_alive(int(match.group(1)))


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (one we may not signal counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_writable(path: str | os.PathLike, what: str) -> None:
    """Before any work: can ``path`` (a file or folder to be made) be written? One line naming ``what`` if not.

    Asks the filesystem itself: a temporary file is made and removed in the nearest existing folder above
    ``path`` (permission bits do not tell a read-only mount, /proc or /sys from a writable folder)."""
    from dbooth.util.errors import DboothError

    target = Path(path).expanduser().absolute()
    folder = target if target.is_dir() else target.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise DboothError(f"{what} {target}: {folder} is a file, not a folder; choose a path under a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".dbooth-write-check.", dir=folder)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise DboothError(f"{what} {target}: cannot write in {folder} ({reason}); choose a folder you can write "
                          "to") from None
    os.close(fd)
    os.unlink(probe)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path; on success it is renamed onto ``path``.

    Works for files and folders alike (e.g. ``pipe.save_pretrained(tmp)``). An existing
    ``path`` is replaced only after the new one is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent))
    target = tmp / path.name
    try:
        yield target
        _plain_modes(target)
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            _remove(old)
            os.replace(path, old)
        os.replace(target, path)
        if old is not None:
            _remove(old)
    finally:
        _remove(tmp)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def remove_temporaries(folder: str | os.PathLike, *, outputs_moved_aside: bool = True) -> list[Path]:
    """Clear what a killed writer left in ``folder``: temporary files of processes that are gone, and a
    replaced output's ``.old``.

    Temporary files of a live process are left alone. With ``outputs_moved_aside`` (only while holding
    the workspace lock) an output moved aside by ``atomic_path`` whose replacement never arrived is
    moved back; otherwise the leftover is removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    handled = []
    for p in folder.iterdir():
        if not p.name.startswith("."):
            continue
        if p.name.endswith(".tmp"):
            if _writer_alive(p.name):
                continue
            _remove(p)
        elif p.name.endswith(".old") and outputs_moved_aside:
            original = p.with_name(p.name[1:-len(".old")])
            if original.exists():
                _remove(p)
            else:
                os.replace(p, original)
        else:
            continue
        handled.append(p)
    return handled


def disk_size(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (links counted as themselves, unreadable entries skipped)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total
