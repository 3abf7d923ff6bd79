"""Stage (b) end to end through the CLI on tiny models: init -> prior -> train (stage a) -> train --upscaler
(full and LoRA) -> sample --upscale -> merge-lora / export -> every output read back by diffusers."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import StableDiffusionUpscalePipeline
from PIL import Image
from typer.testing import CliRunner

from dbooth import api
from dbooth.cli.app import app
from dbooth.workspace.config import apply_overrides, load_manifest, write_manifest
from dbooth.util.errors import DboothError
from dbooth.util.pngmeta import read_record
from dbooth.workspace.folder import find_run, open_workspace

runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def fails(*args: str, match: str) -> None:
    """The command stops with one clear dbooth error (the CLI's main prints it as one line)."""
    with pytest.raises(DboothError, match=match) as caught:
        runner.invoke(app, list(args), catch_exceptions=False)
    assert "\n" not in str(caught.value)


@pytest.fixture
def workspace(tmp_path, tiny_base, tiny_upscaler_base, photos):
    ws = tmp_path / "ws"
    invoke("init", str(ws), "--class", "dog", "--base", str(tiny_base), "--images", str(photos))
    write_manifest(ws / "dbooth.yaml", apply_overrides(load_manifest(ws / "dbooth.yaml"), {
        "prior.num_class_images": 2, "prior.steps": 2, "train.max_steps": 2, "train.checkpoint_every": 0,
        "train.validation_every": 0, "train.validation_images": 1, "sample.steps": 2, "sample.num_images": 2,
        "upscaler.base": str(tiny_upscaler_base), "upscaler.max_steps": 3, "upscaler.checkpoint_every": 2,
        "upscaler.validation_every": 3, "upscaler.learning_rate": 1e-3}))
    invoke("prior", "-w", str(ws))
    invoke("train", "-w", str(ws))
    return ws


def _latest(ws, stage):
    return find_run(open_workspace(ws), stage=stage)


def _unet_output(pipe) -> torch.Tensor:
    """The UNet's prediction for one fixed input: compares weights through behaviour, LoRA or not."""
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 7, 16, 16, generator=generator)
    hidden = torch.randn(1, 16, 32, generator=generator)
    with torch.no_grad():
        return pipe.unet(sample, 500, hidden, class_labels=torch.tensor([10])).sample


def _load(path):
    return StableDiffusionUpscalePipeline.from_pretrained(str(path), local_files_only=True)


@pytest.mark.slow
def test_full_upscaler_trains_samples_and_exports(workspace, tiny_upscaler_base, tmp_path):
    ws = workspace
    stage_a = _latest(ws, "base")
    out = invoke("sample", "-w", str(ws), "a {identifier} {class}", "--upscale").output
    assert "base upscaler" in out  # no upscaler run yet: the note, and the base upscaler does stage (b)
    assert list((ws / "samples").glob(f"{stage_a.id}+base-upscaler/*/000-seed0.png"))

    invoke("train", "-w", str(ws), "--upscaler")
    run = _latest(ws, "upscaler")
    info = json.loads((run.dir / "run.json").read_text())
    assert (info["stage"], info["family"], info["prediction_type"]) == ("upscaler", "sd-x4-upscaler", "v_prediction")
    assert (info["status"], info["steps"], info["noise_level"], info["resolution"]) == ("complete", 3, 10, 64)
    assert info["class_prompt"] == "a photo of dog"  # prior pairs from the class images, on by default
    assert [p.name for p in run.checkpoints()] == ["step-000002"]
    (shot,) = (run.dir / "validation" / "step-000003").glob("*.png")
    assert Image.open(shot).size == (64, 64) and read_record(shot)["noise_level"] == 10

    final, base = _load(run.final_dir), _load(tiny_upscaler_base)
    assert not torch.allclose(_unet_output(final), _unet_output(base))
    assert final.vae.config.scaling_factor == 0.08333
    assert final(prompt="a photo of sks dog", image=Image.new("RGB", (16, 16)), num_inference_steps=2).images[0].size == (64, 64)

    # stage (a) stays the default everywhere: the upscaler run is never "the latest run" of plain verbs
    assert _latest(ws, "base").id == stage_a.id
    invoke("sample", "-w", str(ws), "a {identifier} {class}")
    assert list((ws / "samples" / stage_a.id).glob("*/000-seed0.png"))

    invoke("sample", "-w", str(ws), "a {identifier} {class} on the beach", "--upscale")
    (image,) = (ws / "samples").glob(f"{stage_a.id}+{run.id}/*/000-seed0.png")
    record = read_record(image)
    assert Image.open(image).size == (128, 128)  # 4x stage (a)'s 32 px
    assert Image.open(image.parent / record["source"]).size == (32, 32)
    assert record["model"].endswith(stage_a.id) and record["upscaler"].endswith(run.id)
    assert record["noise_level"] == 10

    exported = tmp_path / "up-diffusers"
    invoke("export", "-w", str(ws), "--upscaler", "-f", "diffusers", "--out", str(exported))
    torch.testing.assert_close(_unet_output(_load(exported)), _unet_output(final), rtol=0, atol=0)
    for fmt in ("single-file", "lora-kohya"):
        fails("export", "-w", str(ws), "--upscaler", "-f", fmt, match="no client loads a Stable Diffusion x4 upscaler")
    fails("eval", "-w", str(ws), "--run", run.id, match="upscaler run")
    fails("sample", "-w", str(ws), "a sks dog", "--run", run.id, match="--upscaler-run")


def test_lora_upscaler_loads_in_diffusers_and_merges(workspace, tiny_upscaler_base, tmp_path):
    ws = workspace
    invoke("train", "-w", str(ws), "--upscaler", "--lora", "--steps", "2", "--no-prior")
    run = _latest(ws, "upscaler")
    info = json.loads((run.dir / "run.json").read_text())
    assert (info["method"], info["steps"], info["class_prompt"]) == ("lora", 2, None)

    base = _load(tiny_upscaler_base)
    before = _unet_output(base)
    base.load_lora_weights(str(run.final_dir))
    adapted = _unet_output(base)
    assert not torch.allclose(adapted, before)

    invoke("merge-lora", "-w", str(ws), "--upscaler", "--out", str(tmp_path / "merged"))
    torch.testing.assert_close(_unet_output(_load(tmp_path / "merged")), adapted, rtol=0, atol=1e-5)
    lora_file = tmp_path / "up-lora.safetensors"
    invoke("export", "-w", str(ws), "--upscaler", "-f", "lora", "--out", str(lora_file))
    fresh = _load(tiny_upscaler_base)
    fresh.load_lora_weights(str(lora_file))
    torch.testing.assert_close(_unet_output(fresh), adapted, rtol=0, atol=1e-6)

    invoke("sample", "-w", str(ws), "a sks dog", "--upscaler-run", run.id)
    assert list((ws / "samples").glob(f"*+{run.id}/*/000-seed0.png"))


@pytest.mark.slow
def test_upscaler_resume_matches_uninterrupted(workspace, tmp_path):
    from tests.training.test_resume import InterruptAt

    ws = open_workspace(workspace)
    settings = {"train.max_steps": 4, "upscaler.checkpoint_every": 2, "upscaler.validation_every": 0}
    straight = api.train(ws, settings, upscaler=True).run
    with pytest.raises(KeyboardInterrupt):
        api.train(ws, settings, upscaler=True, reporter=InterruptAt(3))
    interrupted = find_run(ws, stage="upscaler", complete=False)
    assert interrupted.info()["status"] == "interrupted"
    with pytest.raises(DboothError, match="no unfinished run"):  # stage (a) has nothing to resume
        api.train(ws, resume=True)
    resumed = api.train(ws, {"train.max_steps": 4}, upscaler=True, resume=True)
    assert resumed.run.dir == interrupted.dir and resumed.steps == 4
    a, b = _load(straight.final_dir), _load(resumed.run.final_dir)
    torch.testing.assert_close(_unet_output(b), _unet_output(a), rtol=0, atol=1e-6)


def test_each_stage_refuses_the_other_kind_of_model(workspace, tiny_base, tiny_upscaler_base):
    ws = open_workspace(workspace)
    fails("train", "-w", str(workspace), "--upscaler", "--train-text-encoder", match="does not apply")
    write_manifest(ws.manifest_path, apply_overrides(ws.manifest(), {"upscaler.base": str(tiny_base)}))
    fails("train", "-w", str(workspace), "--upscaler", match="not an upscaler")
    write_manifest(ws.manifest_path, apply_overrides(ws.manifest(), {"base_model": str(tiny_upscaler_base)}))
    fails("train", "-w", str(workspace), match="is an upscaler")
