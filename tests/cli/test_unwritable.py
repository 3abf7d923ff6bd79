"""Output paths that cannot be written are refused before any work, in one line with exit 2 (no traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest
from previous_main import finished_workspace
from run_cli import run_dbooth, user_error



@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A workspace with a finished LoRA run (the previous main's, tests/fixtures/previous-main)."""
    ws = finished_workspace(tmp_path_factory.mktemp("unwritable") / "heart")
    (ws.parent / "a-file").write_text("not a folder")
    return ws


CASES = {
    "init under /proc": (["init", "/proc/mydog", "--class", "dog"], "workspace /proc/mydog: cannot write in /proc"),
    "export into /proc": (["export", "-w", "{ws}", "--format", "lora", "--out", "/proc/x.safetensors"],
                          "export --out /proc/x.safetensors: cannot write in /proc"),
    "export under a file": (["export", "-w", "{ws}", "--format", "lora", "--out", "{tmp}/a-file/x.safetensors"],
                            "a-file is a file, not a folder"),
    "merge-lora into /sys": (["merge-lora", "-w", "{ws}", "--out", "/sys/merged"],
                             "merge-lora --out /sys/merged: cannot write in /sys"),
    "demo into /proc": (["demo", "--out", "/proc/demo"], "demo --out /proc/demo: cannot write in /proc"),
    "bench --json into /proc": (["bench", "--json", "/proc/b.json"], "bench --json /proc/b.json: cannot write"),
    "batch --json under a file": (["batch", "{ws}", "--json", "{tmp}/a-file/b.json"], "a-file is a file"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_an_unwritable_output_is_one_line_before_any_work(finished, case):
    args, expected = CASES[case]
    args = [a.format(ws=finished, tmp=finished.parent) for a in args]
    message = user_error(run_dbooth(args, cwd=finished.parent))
    assert expected in message, message
    assert "choose" in message  # what to do
    assert not list(finished.rglob("export")) and not (Path("/proc") / "mydog").exists()
