"""Shared by the flow-transformer CLI tests (SD 3.5 / FLUX.1 and FLUX.2 [klein] / Z-Image): run a verb, find the
latest run, load a folder offline, and one number set standing for a pipeline's text encoders and transformer."""

from __future__ import annotations

import json

import torch
from typer.testing import CliRunner

from dbooth.cli.app import app

runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def said(result) -> str:
    """What the command told the user: its output, or the DboothError the CLI's main() prints as one line."""
    return result.output + str(result.exception or "")


def latest_run(ws):
    run = sorted((ws / "runs").iterdir())[-1]
    return run, json.loads((run / "run.json").read_text())


def load_folder(path):
    from diffusers import DiffusionPipeline

    return DiffusionPipeline.from_pretrained(str(path), local_files_only=True)


def signature(pipe, text_length: int) -> torch.Tensor:
    """Text encoders and transformer in one number set: the prediction for a caption at two noise levels."""
    from dbooth.families import family_of
    from dbooth.workspace.schema import Manifest

    family = family_of(pipe)
    ids = family.tokenize(family.tokenizers(pipe), ["a photo of sks dog"] * 2, max_sequence_length=text_length)
    noisy = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        cond = family.encode(list(family.text_encoders(pipe).values()), ids)
        condition = family.run_condition(pipe, Manifest(class_noun="dog"))
        return family.predict(pipe.transformer, noisy, torch.tensor([700.0, 300.0]), cond, None, condition)
