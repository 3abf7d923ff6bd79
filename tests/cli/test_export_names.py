"""`dbooth export` of a LoRA run, as a user runs it: a default name with no word twice, and the
AUTOMATIC1111 tag it prints is that file's name."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from dbooth.cli.app import app
from dbooth.workspace.config import apply_overrides, load_manifest, write_manifest

runner = CliRunner()


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _exported(printed: str) -> Path:
    found = re.findall(r"exported \S+ \(\w+\) to (.+)", printed)
    assert len(found) == 1, printed
    return Path(found[0].strip())


def test_export_of_a_lora_run_is_named_after_the_workspace_and_prints_its_tag(tmp_path, tiny_base, photos):
    ws = tmp_path / "corgi"
    invoke("init", str(ws), "--class", "dog", "--base", str(tiny_base), "--images", str(photos))
    small = {"prior.enabled": False, "train.max_steps": 2, "train.checkpoint_every": 0, "train.validation_every": 0}
    write_manifest(ws / "dbooth.yaml", apply_overrides(load_manifest(ws / "dbooth.yaml"), small))
    invoke("train", "-w", str(ws), "--lora", "--rank", "4")
    (run,) = (ws / "runs").iterdir()

    printed = invoke("export", "-w", str(ws), "--format", "lora-kohya")
    kohya = _exported(printed)
    assert kohya.is_file() and kohya.parent == run / "export"
    words = re.split(r"[-@.]", kohya.name)
    assert len(words) == len(set(words)), kohya.name  # no `-lora-lora-kohya`
    assert kohya.name.startswith("corgi-") and run.name.startswith(kohya.stem.removeprefix("corgi-"))
    tags = re.findall(r"<lora:([^:>]+):1>", printed)
    assert tags == [kohya.stem], printed

    plain = _exported(invoke("export", "-w", str(ws), "--format", "lora", "--dtype", "fp16"))
    assert plain.name == f"{kohya.stem}-diffusers-fp16.safetensors"  # told apart from the kohya file
    assert f"<lora:{kohya.stem}:1>" in kohya.with_suffix(".md").read_text()
