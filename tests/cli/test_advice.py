"""Every command dbooth's messages advise (`dbooth VERB --option ...` in backquotes) exists: the verb answers
--help and lists each option. A message that sends a user to an option the verb lacks is a dead end."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dbooth.cli.app import app

ROOT = Path(__file__).resolve().parents[2]
ADVICE = re.compile(r"`dbooth ([a-z][a-z-]*)([^`]*)`")


def advised() -> dict[str, set[str]]:
    """verb -> the options some message pairs with it, read from the sources of both packages."""
    found: dict[str, set[str]] = {}
    for package in ("dbooth", "dbooth_shapes"):
        for path in (ROOT / package).rglob("*.py"):
            for verb, rest in ADVICE.findall(path.read_text()):
                found.setdefault(verb, set()).update(re.findall(r"(?<![\w-])--?[a-z][a-z-]*", rest))
    return found


ADVISED = advised()


def test_the_scan_finds_the_advice():
    assert {"train", "prior", "export", "sample", "init"} <= set(ADVISED)
    assert "--resume" in ADVISED["train"]


def dead_ends(verb: str, options: set[str]) -> list[str] | None:
    """None when ``verb`` is no verb at all, else the advised options its --help does not list."""
    result = CliRunner().invoke(app, [verb, "--help"], prog_name="dbooth", env={"COLUMNS": "200"})
    if result.exit_code != 0:
        return None
    return sorted(options - set(re.findall(r"(?<![\w-])--?[a-z][a-z-]*", result.output)))


@pytest.mark.parametrize("verb", sorted(ADVISED))
def test_each_advised_command_exists(verb):
    missing = dead_ends(verb, ADVISED[verb])
    assert missing is not None, f"`dbooth {verb}` is advised but is not a verb"
    assert not missing, f"`dbooth {verb}` is advised with {missing}, which it does not take"


def test_a_dead_end_is_found():
    """README's corgi example once met "pass ... with --base" at `dbooth prior`, which has no --base."""
    assert dead_ends("prior", {"--base"}) == ["--base"]
    assert dead_ends("pior", set()) is None
