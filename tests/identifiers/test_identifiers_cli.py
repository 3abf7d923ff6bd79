"""``dbooth identifiers`` and ``init --identifier auto`` through the real command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import dbooth


def dbooth_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    paths = [str(Path(dbooth.__file__).resolve().parents[1]), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", COLUMNS="200", NO_COLOR="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(p for p in paths if p))
    return subprocess.run([sys.executable, "-m", "dbooth", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_init_auto_prints_what_it_took_and_identifiers_lists_the_rest(tmp_path):
    made = dbooth_cli(["init", "ws", "--class", "star", "--base", "builtin:shapes", "--identifier", "auto"], tmp_path)
    assert made.returncode == 0, made.stderr
    assert "--identifier auto took sks" in made.stdout + made.stderr
    listed = dbooth_cli(["identifiers", "-n", "2"], tmp_path / "ws")  # the current folder is the workspace
    assert listed.returncode == 0, listed.stderr
    assert "zwx  qlt\n" in listed.stdout and "in use in this workspace: sks" in listed.stdout
    assert "sks: one token" in listed.stdout


@pytest.mark.slow
def test_prior_through_the_command(tmp_path):
    out = dbooth_cli(["identifiers", "--base", "builtin:shapes", "--prior", "--samples", "2", "circle"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "circle: it is an ordinary word" in out.stdout
    assert 'prior of circle ("a photo of a circle", 2 samples, oracle): looks like' in out.stdout


def test_an_unreadable_tokenizer_is_one_error_line(tmp_path):
    out = dbooth_cli(["identifiers", "--base", "some-org/not-downloaded"], tmp_path)
    assert out.returncode == 2 and out.stderr.count("error:") == 1
    assert "huggingface-cli download some-org/not-downloaded" in out.stderr and "Traceback" not in out.stderr
