"""Files a workspace refers to must live inside it.

Photos, class images, caption files and run outputs are found by listing the workspace; a symlink or
``../`` among them could make dbooth read (and copy into a model's training data) or overwrite files
elsewhere on the machine. Paths given on the command line (``--base``, ``--images``, ``--out``) are the
user's own choice and are not checked.
"""

from __future__ import annotations

from pathlib import Path

from dbooth.util.errors import DboothError


def escapes(path: Path, root: Path) -> bool:
    """Whether ``path``, with every symlink and ``..`` followed, lies outside ``root``."""
    try:
        Path(path).resolve(strict=False).relative_to(Path(root).resolve(strict=False))
    except (ValueError, RuntimeError, OSError):  # RuntimeError: a symlink loop (Python < 3.13)
        return True
    return False


def require_inside(paths, root: Path, what: str) -> None:
    """Raise one line naming every path (up to a few) that leads out of ``root``."""
    root = Path(root)
    out = []
    for p in paths:
        if escapes(p, root):
            try:
                target = str(Path(p).resolve(strict=False))
            except (RuntimeError, OSError):
                target = "a link loop"
            out.append(f"{_relative(p, root)} -> {target}")
    if out:
        listing = ", ".join(out[:5]) + (f" (+{len(out) - 5} more)" if len(out) > 5 else "")
        raise DboothError(f"{len(out)} {what} lead outside the workspace {root}: {listing}; "
                          "copy the files into the workspace instead of linking to them")


def _relative(p: Path, root: Path) -> str:
    try:
        return str(Path(p).relative_to(root))
    except ValueError:
        return str(p)
