"""SD 2.x (v-prediction) and SDXL end to end through the CLI: init -> prior -> train (full and LoRA, with
prior preservation and the text encoders) -> sample -> merge-lora -> every export format, each output
read back by diffusers' own loaders."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import DiffusionPipeline
from typer.testing import CliRunner

from dbooth.cli.app import app
from dbooth.workspace.config import apply_overrides, load_manifest, write_manifest
from dbooth.families import family_of

runner = CliRunner()
FAMILIES = {"sd2": "tiny_sd2_base", "sdxl": "tiny_sdxl_base"}


def invoke(*args: str):
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def _workspace(tmp_path, base, photos):
    ws = tmp_path / "ws"
    invoke("init", str(ws), "--class", "dog", "--base", str(base), "--images", str(photos))
    manifest = load_manifest(ws / "dbooth.yaml")
    assert manifest.train.resolution == 32  # read from the model's own configs
    write_manifest(ws / "dbooth.yaml", apply_overrides(manifest, {
        "prior.num_class_images": 2, "prior.steps": 2, "train.max_steps": 3, "train.checkpoint_every": 2,
        "train.validation_every": 3, "train.validation_images": 1, "sample.steps": 2}))
    invoke("prior", "-w", str(ws))
    assert len(list((ws / "class").glob("*.png"))) == 2
    return ws


def _run(ws):
    run = sorted((ws / "runs").iterdir())[-1]
    return run, json.loads((run / "run.json").read_text())


def _signature(pipe) -> torch.Tensor:
    """Text encoders and UNet in one number set: the UNet's output for a caption's conditioning."""
    family = family_of(pipe)
    ids = family.tokenize(family.tokenizers(pipe), ["a photo of sks dog"])
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        cond = family.encode(list(family.text_encoders(pipe).values()), ids)
        sample = torch.randn(1, 4, 16, 16, generator=generator)
        extra = family.unet_kwargs(cond, torch.tensor([[32, 32, 0, 0, 32, 32]]))
        return pipe.unet(sample, 500, cond.embeds, **extra).sample


def _load(path, **kwargs):
    return DiffusionPipeline.from_pretrained(str(path), local_files_only=True, **kwargs)


def _same_weights(a, b):
    for name in ("unet", "vae", *family_of(a).text_encoder_names):
        want, got = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert want.keys() == got.keys(), name
        for key in want:
            torch.testing.assert_close(got[key], want[key], rtol=0, atol=0, msg=lambda m: f"{name}.{key}: {m}")


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_full_fine_tuning(family, request, tmp_path, photos):
    base = request.getfixturevalue(FAMILIES[family])
    ws = _workspace(tmp_path, base, photos)
    invoke("train", "-w", str(ws), "--full", "--train-text-encoder", "--prior")
    run, info = _run(ws)
    assert (info["status"], info["family"], info["steps"]) == ("complete", family, 3)
    assert info["prediction_type"] == ("v_prediction" if family == "sd2" else "epsilon")
    assert list((run / "validation").rglob("*.png"))
    final = _load(run / "final")
    assert family_of(final).name == family
    base_pipe = _load(base)
    for name in ("unet", *family_of(final).text_encoder_names):  # every trained part moved
        trained, untouched = getattr(final, name).state_dict(), getattr(base_pipe, name).state_dict()
        assert any(not torch.equal(trained[k], untouched[k]) for k in trained), name
    _same_weights_of = {"vae": (final.vae, base_pipe.vae)}  # the VAE is frozen
    for a, b in _same_weights_of.values():
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))

    invoke("sample", "a sks dog", "-w", str(ws), "-n", "1", "--steps", "2")
    assert len(list((ws / "samples").rglob("*.png"))) == 1
    invoke("export", "-w", str(ws), "--format", "diffusers", "--out", str(tmp_path / "folder"))
    _same_weights(final, _load(tmp_path / "folder"))
    single = tmp_path / "model.safetensors"
    printed = invoke("export", "-w", str(ws), "--format", "single-file", "--out", str(single)).output
    cls = type(final)
    assert f'{cls.__name__}.from_single_file("{single}")' in printed  # the family's own class
    assert f"{cls.__name__}.from_single_file" in single.with_suffix(".md").read_text()
    _same_weights(final, cls.from_single_file(str(single), config=str(base), local_files_only=True))


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_lora_merge_and_exports(family, request, tmp_path, photos):
    base = request.getfixturevalue(FAMILIES[family])
    ws = _workspace(tmp_path, base, photos)
    invoke("train", "-w", str(ws), "--lora", "--rank", "4", "--train-text-encoder", "--prior", "--lr", "1e-2")
    run, info = _run(ws)
    assert (info["status"], info["family"]) == ("complete", family)

    reference = _load(base)
    reference.load_lora_weights(str(run / "final"))
    expected = _signature(reference)
    assert not torch.allclose(expected, _signature(_load(base)), atol=1e-4)  # the LoRA does something

    invoke("sample", "a sks dog", "-w", str(ws), "-n", "1", "--steps", "2")
    invoke("merge-lora", "-w", str(ws), "--out", str(tmp_path / "merged"))
    merged = _load(tmp_path / "merged")
    torch.testing.assert_close(_signature(merged), expected, rtol=0, atol=1e-5)

    for fmt in ("lora", "lora-kohya"):
        path = tmp_path / f"{fmt}.safetensors"
        invoke("export", "-w", str(ws), "--format", fmt, "--out", str(path))
        pipe = _load(base)
        pipe.load_lora_weights(str(path))
        torch.testing.assert_close(_signature(pipe), expected, rtol=0, atol=1e-5, msg=lambda m: f"{fmt}: {m}")

    invoke("export", "-w", str(ws), "--format", "diffusers", "--out", str(tmp_path / "folder"))
    _same_weights(merged, _load(tmp_path / "folder"))
    single = tmp_path / "merged.safetensors"
    invoke("export", "-w", str(ws), "--format", "single-file", "--out", str(single))
    _same_weights(merged, type(merged).from_single_file(str(single), config=str(base), local_files_only=True))


def test_sdxl_trains_on_buckets_through_the_cli(tmp_path, tiny_sdxl_base, photos):
    """Wide and tall photos in SDXL's buckets, masks and square class images, through `dbooth train`."""
    from PIL import Image

    for photo, size in zip(sorted(photos.iterdir()), [(160, 96), (96, 160), (96, 96)]):
        Image.open(photo).resize(size).save(photo)
    Image.new("L", (160, 96), 255).save(sorted(photos.iterdir())[0].with_name("00.mask.png"))
    ws = _workspace(tmp_path, tiny_sdxl_base, photos)
    invoke("train", "-w", str(ws), "--lora", "--buckets", "--steps", "3")
    _, info = _run(ws)
    assert info["status"] == "complete"
    assert info["options"]["buckets"] is True and info["options"]["masked_loss"] is True
    status = invoke("status", "-w", str(ws)).output
    assert "lora, masked loss, aspect buckets" in status and "photos 3;" in status
