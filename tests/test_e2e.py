"""init -> prior -> train (full and LoRA, with prior preservation) -> sample, through the real CLI."""

from __future__ import annotations

import json

import torch
from diffusers import StableDiffusionPipeline
from PIL import Image
from typer.testing import CliRunner

from dbooth.cli.app import app

runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def _setup(tmp_path, tiny_base, photos):
    ws = tmp_path / "corgi"
    invoke("init", str(ws), "--class", "dog", "--base", str(tiny_base), "--images", str(photos))
    manifest = ws / "dbooth.yaml"
    text = manifest.read_text()
    for key, value in {"num_class_images": "3", "steps": "2", "max_steps": "3", "checkpoint_every": "2",
                       "validation_every": "3", "validation_images": "1"}.items():
        text = _set(text, key, value)
    manifest.write_text(text)
    invoke("prior", "-w", str(ws))
    assert len(list((ws / "class").glob("*.png"))) == 3
    return ws


def _set(text: str, key: str, value: str) -> str:
    """Set every `key:` line (any section) in the manifest text."""
    lines = []
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(f"{key}:"):
            line = line[: len(line) - len(stripped)] + f"{key}: {value}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _only_run(ws):
    runs = sorted((ws / "runs").iterdir())
    return runs[-1], json.loads((runs[-1] / "run.json").read_text())


def test_full_fine_tuning_end_to_end(tmp_path, tiny_base, photos):
    ws = _setup(tmp_path, tiny_base, photos)
    invoke("train", "-w", str(ws), "--full", "--train-text-encoder")
    run, info = _only_run(ws)
    assert info["status"] == "complete" and info["method"] == "full" and info["steps"] == 3
    assert info["class_prompt"] == "a photo of dog"
    assert (run / "config.yaml").is_file()
    assert list((run / "validation").rglob("*.png")), "validation images were not written"

    trained = StableDiffusionPipeline.from_pretrained(run / "final")
    base = StableDiffusionPipeline.from_pretrained(tiny_base)
    changed = [
        name for name, p in trained.unet.state_dict().items() if not torch.equal(p, base.unet.state_dict()[name])
    ]
    assert changed, "full fine-tuning left the UNet unchanged"
    te_changed = any(
        not torch.equal(p, base.text_encoder.state_dict()[n]) for n, p in trained.text_encoder.state_dict().items()
    )
    assert te_changed, "--train-text-encoder left the text encoder unchanged"
    assert all(torch.equal(p, base.vae.state_dict()[n]) for n, p in trained.vae.state_dict().items())
    weights = [p for p in (run / "final").rglob("*") if p.suffix in (".bin", ".pt", ".ckpt", ".safetensors")]
    assert weights and all(p.suffix == ".safetensors" for p in weights), weights

    invoke("sample", "a {identifier} dog on the beach", "-w", str(ws), "-n", "2")
    pngs = sorted((ws / "samples" / run.name).rglob("*.png"))
    assert {p.name for p in pngs} >= {"grid.png"}
    meta = json.loads(Image.open([p for p in pngs if p.name != "grid.png"][0]).text["dbooth"])
    assert meta["prompt"] == "a sks dog on the beach" and meta["seed"] == 0


def test_lora_end_to_end_loads_in_diffusers(tmp_path, tiny_base, photos):
    ws = _setup(tmp_path, tiny_base, photos)
    invoke("train", "-w", str(ws), "--lora", "--rank", "4", "--train-text-encoder")
    run, info = _only_run(ws)
    assert info["method"] == "lora" and info["lora"]["rank"] == 4
    lora_file = run / "final" / "pytorch_lora_weights.safetensors"
    assert lora_file.is_file()

    pipe = StableDiffusionPipeline.from_pretrained(tiny_base)
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, 16, 16, generator=generator)
    text = torch.randn(1, 16, 32, generator=generator)
    ids = pipe.tokenizer("a photo of sks dog", padding="max_length", return_tensors="pt").input_ids
    with torch.no_grad():
        before = pipe.unet(latents, 500, text).sample
        te_before = pipe.text_encoder(ids)[0]
        pipe.load_lora_weights(run / "final")
        after = pipe.unet(latents, 500, text).sample
        te_after = pipe.text_encoder(ids)[0]
    assert (after - before).abs().max() > 1e-6, "the UNet LoRA adapter changed nothing"
    assert (te_after - te_before).abs().max() > 1e-6, "the text-encoder LoRA adapter changed nothing"

    invoke("sample", "a sks dog", "-w", str(ws), "-n", "1")
    invoke("sample", "a sks dog", "-w", str(ws), "-n", "1", "--base-only")
    assert len(list((ws / "samples" / "base").rglob("*.png"))) == 1


def test_merge_and_export_through_cli(tmp_path, tiny_base, photos):
    ws = _setup(tmp_path, tiny_base, photos)
    invoke("train", "-w", str(ws), "--lora", "--rank", "4")
    run, _ = _only_run(ws)
    merged = tmp_path / "merged"
    invoke("merge-lora", "-w", str(ws), "--out", str(merged))
    pipe = StableDiffusionPipeline.from_pretrained(merged)
    ref = StableDiffusionPipeline.from_pretrained(tiny_base)
    ref.load_lora_weights(run / "final")
    sample = torch.randn(1, 4, 16, 16)
    text = torch.randn(1, 16, 32)
    with torch.no_grad():
        diff = (pipe.unet(sample, 10, text).sample - ref.unet(sample, 10, text).sample).abs().max()
    assert diff < 1e-4

    kohya = tmp_path / "subject.safetensors"
    printed = invoke("export", "-w", str(ws), "--format", "lora-kohya", "--dtype", "fp16", "--out", str(kohya)).output
    assert f'  diffusers: pipe.load_lora_weights("{kohya}")' in printed
    assert "  ComfyUI: copy to ComfyUI/models/loras/" in printed
    assert "  AUTOMATIC1111/Forge: copy to stable-diffusion-webui/models/Lora/, prompt with <lora:subject:1>" in printed
    assert "note:" not in printed
    printed = invoke("export", "-w", str(ws), "--format", "lora", "--out", str(tmp_path / "plain.safetensors")).output
    assert "ComfyUI: copy" not in printed
    assert "note: ComfyUI and AUTOMATIC1111/Forge do not load this file" in printed
    assert "--format lora-kohya" in printed
    from safetensors import safe_open

    with safe_open(str(kohya), "pt") as f:
        keys = list(f.keys())
        assert any(k.startswith("lora_unet_") and k.endswith(".lora_down.weight") for k in keys)
        assert f.get_tensor(next(k for k in keys if k.endswith("lora_down.weight"))).dtype == torch.float16
        assert f.metadata()["ss_network_dim"] == "4"
    again = runner.invoke(app, ["export", "-w", str(ws), "--format", "lora-kohya", "--out", str(kohya)])
    assert again.exit_code != 0 and "exists" in str(again.exception or again.output)
