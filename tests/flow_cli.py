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


def first_denoiser_call(pipe, prompt: str, **call_kwargs):
    """(positional inputs, keyword inputs, output) of the transformer at the pipeline's first denoising step, for a
    32 px image sampled in 2 steps from seed 0."""
    seen = []
    real = pipe.transformer.forward

    def spy(*args, **kw):
        out = real(*args, **kw)
        if not seen:
            seen.append((args, kw, out[0] if isinstance(out, tuple) else out.sample))
        return out

    pipe.transformer.forward = spy
    try:
        pipe(prompt=prompt, num_inference_steps=2, height=32, width=32, generator=torch.Generator().manual_seed(0),
             output_type="latent", **call_kwargs)
    finally:
        pipe.transformer.forward = real
    return seen[0]


def assert_resume_is_exact(make_workspace) -> None:
    """A LoRA run interrupted at step 3 and resumed from its step-2 checkpoint ends with bitwise the weights of one
    trained straight through; ``make_workspace(name)`` gives a fresh workspace folder for each."""
    from safetensors.torch import load_file

    from dbooth import api
    from dbooth.workspace.folder import open_workspace
    from interrupt import InterruptAt

    results = []
    for name, stop in (("whole", None), ("resumed", 3)):
        ws_dir = make_workspace(name)
        ws = open_workspace(ws_dir)
        overrides = {"train.method": "lora", "train.max_steps": 4, "train.checkpoint_every": 2,
                     "train.validation_every": 0, "train.lora.rank": 4, "train.learning_rate": 1e-2}
        if stop is None:
            api.train(ws, overrides)
        else:
            try:
                api.train(ws, overrides, reporter=InterruptAt(stop))
            except KeyboardInterrupt:
                pass
            else:
                raise AssertionError("the run was not interrupted")
            api.train(ws, resume=True)
        run, info = latest_run(ws_dir)
        assert info["status"] == "complete" and info["steps"] == 4
        results.append(load_file(str(run / "final" / "pytorch_lora_weights.safetensors")))
    assert results[0].keys() == results[1].keys()
    for key in results[0]:
        torch.testing.assert_close(results[1][key], results[0][key], rtol=0, atol=0)
