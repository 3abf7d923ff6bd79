"""The one exception users see: a single line saying what, where and what to do."""

from __future__ import annotations

import difflib
from typing import Iterable


class DboothError(Exception):
    """A user-facing error. The CLI prints its message on one line and exits with code 2."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def closest_key(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate the user most likely meant, or None when nothing is close."""
    candidates = list(candidates)
    for candidate in candidates:
        if candidate.lower() == str(name).lower():
            return candidate
    matches = difflib.get_close_matches(str(name), candidates, n=1, cutoff=0.6)
    return matches[0] if matches else None
