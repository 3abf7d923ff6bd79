"""The workspace the main before the layout change wrote (tests/fixtures/previous-main, made by its make.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "previous-main"
EXPECTED = FIXTURE / "expected"


def interrupted_workspace(dest: Path) -> Path:
    """A copy at ``dest`` of the LoRA run on builtin:shapes interrupted during step 3 (checkpoint step-2 kept)."""
    shutil.copytree(FIXTURE / "workspace", dest)
    return dest


def finished_workspace(dest: Path) -> Path:
    """The same workspace with the run as the previous main finished it after `--resume` (no checkpoints)."""
    interrupted_workspace(dest)
    [run] = list((dest / "runs").iterdir())
    shutil.rmtree(run)
    shutil.copytree(EXPECTED / "finished-run", run)
    return dest
