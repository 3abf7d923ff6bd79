"""A workspace written by the main before the layout change resumes and exports as that main did.

The fixture (tests/fixtures/previous-main, how it was made in its make.py) holds a LoRA run on builtin:shapes
interrupted during step 3 with its step-2 checkpoint, and what the previous main made of it: the finished run
after ``--resume`` and its ``lora`` and ``lora-kohya`` exports.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from previous_main import EXPECTED, finished_workspace, interrupted_workspace

from dbooth import api
from dbooth.workspace.folder import Workspace, list_runs



@pytest.fixture
def workspace(tmp_path) -> Workspace:
    return api.open_workspace(interrupted_workspace(tmp_path / "legacy"))


def test_the_interrupted_run_resumes_to_the_previous_mains_weights(workspace, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    [run] = list_runs(workspace)
    assert run.info()["status"] == "interrupted"
    api.train(workspace, resume=True)
    [run] = list_runs(workspace)
    assert run.info()["status"] == "complete" and run.info()["steps"] == 4
    got = load_file(run.lora_file)
    want = load_file(EXPECTED / "finished-run" / "final" / "pytorch_lora_weights.safetensors")
    assert got.keys() == want.keys()
    for key in want:  # the same code path; only a CPU with other vector units may sum in another order
        torch.testing.assert_close(got[key], want[key], rtol=1e-4, atol=1e-6, msg=key)
    rows, old_rows = (_csv(folder / "loss.csv") for folder in (run.dir, EXPECTED / "finished-run"))
    assert [r["step"] for r in rows] == [r["step"] for r in old_rows] == ["1", "2", "3", "4"]
    assert [float(r["loss"]) for r in rows] == pytest.approx([float(r["loss"]) for r in old_rows], rel=1e-4)


def _csv(path: Path) -> list[dict]:
    import csv

    with path.open() as f:
        return list(csv.DictReader(f))


def _contents(path: Path) -> tuple[dict, dict]:
    with safe_open(str(path), "pt") as f:
        return f.metadata(), {k: f.get_tensor(k) for k in f.keys()}


@pytest.mark.parametrize("fmt", ["lora", "lora-kohya"])
def test_the_finished_run_exports_as_before(tmp_path, fmt):
    """Same tensors bit for bit, same metadata and model card. (Not the same bytes: safetensors writes the
    metadata's keys in a different order in every process, the previous main's two exports included.)"""
    workspace = api.open_workspace(finished_workspace(tmp_path / "legacy"))
    out = api.export(workspace, fmt, out=tmp_path / f"export-{fmt}.safetensors")
    metadata, tensors = _contents(out)
    old_metadata, old_tensors = _contents(EXPECTED / f"export-{fmt}.safetensors")
    assert metadata == old_metadata and "dbooth.run_id" in metadata
    assert list(tensors) == list(old_tensors)
    assert all(torch.equal(tensors[k], old_tensors[k]) for k in old_tensors)
    assert out.with_suffix(".md").read_text() == (EXPECTED / f"export-{fmt}.md").read_text()
