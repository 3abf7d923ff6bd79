"""Export round trips on the shipped builtin:shapes model, from a real (short) LoRA run."""

from __future__ import annotations

import pytest
import torch
from diffusers import StableDiffusionPipeline

from dbooth import api
from dbooth_shapes import builtin_model_path
from dbooth.workspace.config import apply_overrides, write_manifest


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    ws = api.init(tmp_path_factory.mktemp("ws") / "mystar", None, example="checkered_star")
    settings = {"train.method": "lora", "train.max_steps": 3, "prior.enabled": False, "train.checkpoint_every": 0,
                "train.lora.rank": 4, "train.lora.alpha": 2.0, "train.learning_rate": 1e-2}
    write_manifest(ws.manifest_path, apply_overrides(ws.manifest(), settings))
    return ws, api.train(ws).run


def _unet_out(pipe):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 16, 16, generator=g)
    ids = pipe.tokenizer("a photo of a sks star", padding="max_length", return_tensors="pt").input_ids
    with torch.no_grad():
        return pipe.unet(x, 400, pipe.text_encoder(ids)[0]).sample


@pytest.mark.slow
def test_kohya_file_loads_like_the_diffusers_file(lora_run, tmp_path):
    ws, run = lora_run
    base = builtin_model_path("shapes")
    kohya = api.export(ws, "lora-kohya", out=tmp_path / "mystar.safetensors")
    a = StableDiffusionPipeline.from_pretrained(base)
    plain = _unet_out(a)
    a.load_lora_weights(str(run.final_dir))
    b = StableDiffusionPipeline.from_pretrained(base)
    b.load_lora_weights(str(kohya))
    out_a, out_b = _unet_out(a), _unet_out(b)
    assert (out_a - plain).abs().max() > 1e-4  # the adapter does something
    assert (out_a - out_b).abs().max() < 1e-5


@pytest.mark.slow
def test_single_file_of_merged_run_reloads_identically(lora_run, tmp_path):
    ws, run = lora_run
    merged = api.merge_lora(ws, out=tmp_path / "merged")
    single = api.export(ws, "single-file", out=tmp_path / "mystar-merged.safetensors", dtype="fp16")
    want = StableDiffusionPipeline.from_pretrained(merged)
    got = StableDiffusionPipeline.from_single_file(str(single), config=str(merged), local_files_only=True)
    for name in ("unet", "vae", "text_encoder"):
        w, g = getattr(want, name).state_dict(), getattr(got, name).state_dict()
        for key, tensor in w.items():
            if key.endswith("position_ids"):
                continue
            assert torch.equal(tensor.half(), g[key].half()), f"{name}.{key}"
