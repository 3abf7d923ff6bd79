"""Running the real ``dbooth`` command in a subprocess, and checking the shape of a user-facing error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dbooth


def subprocess_env() -> dict[str, str]:
    """The test's environment, with the dbooth these tests import first on the path (not another checkout's)."""
    paths = [str(Path(dbooth.__file__).resolve().parents[1]), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    return dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", COLUMNS="200", NO_COLOR="1",
                OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(p for p in paths if p))


def run_dbooth(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dbooth", *args], cwd=cwd, env=subprocess_env(), capture_output=True, text=True,
        timeout=300,
    )


def user_error(result: subprocess.CompletedProcess) -> str:
    """Check the shape of a user-facing failure and return its message."""
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output, output
    lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    return lines[0][len("error: ") :]
