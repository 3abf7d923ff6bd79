"""Merging a LoRA must give the same model as running base + adapter."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import StableDiffusionPipeline
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors import safe_open

from export_fakes import (
    ALPHA,
    local_loader,
    make_lora_run,
    max_diff,
    merged_weights,
    text_probe,
    unet_probe,
    weight_diff,
)
from dbooth.util.errors import DboothError
from dbooth.export import merge_lora_into_pipeline, merge_run

TOL = 1e-4


def _lora_file(run):
    return run.run_dir / "final" / "pytorch_lora_weights.safetensors"


@pytest.mark.parametrize("adapter_metadata", [False, True], ids=["alpha-from-run", "alpha-in-file"])
def test_merged_outputs_match_base_plus_adapter(tmp_path, adapter_metadata):
    run = make_lora_run(tmp_path, adapter_metadata=adapter_metadata)
    pipe = local_loader(str(run.base_dir))
    assert max_diff(unet_probe(pipe.unet), unet_probe(run.reference.unet)) > 1e-2  # the LoRA does something

    merge_lora_into_pipeline(pipe, _lora_file(run), default_alpha=ALPHA)

    assert not any(isinstance(m, BaseTunerLayer) for m in [*pipe.unet.modules(), *pipe.text_encoder.modules()])
    unet_diff = max_diff(unet_probe(pipe.unet), unet_probe(run.reference.unet))
    text_diff = max_diff(text_probe(pipe.text_encoder), text_probe(run.reference.text_encoder))
    print(f"merge max abs diff: unet {unet_diff:.2e}, text encoder {text_diff:.2e}")
    assert unet_diff < TOL
    assert text_diff < TOL


def test_alpha_matters_when_the_file_does_not_record_it(lora_run):
    """Without the run's alpha (file has no adapter metadata) diffusers would assume alpha == rank."""
    pipe = local_loader(str(lora_run.base_dir))
    merge_lora_into_pipeline(pipe, _lora_file(lora_run))  # no default_alpha: scale 1.0 instead of alpha/rank
    assert max_diff(unet_probe(pipe.unet), unet_probe(lora_run.reference.unet)) > 1e-3


def test_scale_zero_leaves_the_base_unchanged(lora_run):
    base = local_loader(str(lora_run.base_dir))
    pipe = merge_lora_into_pipeline(local_loader(str(lora_run.base_dir)), _lora_file(lora_run), scale=0.0)
    assert max_diff(unet_probe(pipe.unet), unet_probe(base.unet)) < 1e-6


def test_sdxl_merge_covers_both_text_encoders(sdxl_lora):
    pipe = sdxl_lora.pipeline_class.from_pretrained(sdxl_lora.base_dir, local_files_only=True)
    merge_lora_into_pipeline(pipe, sdxl_lora.path)

    for name in ("unet", "text_encoder", "text_encoder_2"):
        assert weight_diff(getattr(pipe, name), merged_weights(getattr(sdxl_lora.reference, name))) < TOL, name
        assert not any(isinstance(m, BaseTunerLayer) for m in getattr(pipe, name).modules())


def test_merge_run_writes_a_loadable_pipeline_equal_to_base_plus_adapter(lora_run):
    out = merge_run(lora_run.run_dir, base_pipeline_loader=local_loader)

    assert out == lora_run.run_dir / f"{lora_run.run_dir.parent.parent.name}-lora-run-merged"
    merged = StableDiffusionPipeline.from_pretrained(out, local_files_only=True)
    assert max_diff(unet_probe(merged.unet), unet_probe(lora_run.reference.unet)) < TOL
    assert max_diff(text_probe(merged.text_encoder), text_probe(lora_run.reference.text_encoder)) < TOL
    readme = (out / "README.md").read_text()
    assert "sks dog" in readme and "merged" in readme and "800" in readme


def test_merge_run_without_text_encoder_lora_keeps_the_base_text_encoder(tmp_path):
    run = make_lora_run(tmp_path, train_text_encoder=False)
    out = merge_run(run.run_dir, base_pipeline_loader=local_loader, out=tmp_path / "m", dtype="fp16")
    with safe_open(str(out / "unet" / "diffusion_pytorch_model.safetensors"), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}
    merged = StableDiffusionPipeline.from_pretrained(out, local_files_only=True, dtype=torch.float16)
    base = local_loader(str(run.base_dir))
    for key, value in base.text_encoder.state_dict().items():
        assert torch.equal(merged.text_encoder.state_dict()[key], value.half()), key
    assert max_diff(unet_probe(merged.unet.float()), unet_probe(run.reference.unet)) < 5e-2  # fp16 rounding


def test_merge_run_refuses_a_full_run_and_an_existing_output(full_run, lora_run):
    with pytest.raises(DboothError, match="full fine-tune"):
        merge_run(full_run.run_dir)
    mine = lora_run.run_dir / f"{lora_run.run_dir.parent.parent.name}-lora-run-merged"  # merge_run's default
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(DboothError, match="already exists.*--force"):
        merge_run(lora_run.run_dir, base_pipeline_loader=local_loader)
    with pytest.raises(DboothError, match="not a diffusers pipeline folder"):
        merge_run(lora_run.run_dir, base_pipeline_loader=local_loader, force=True)
    assert (mine / "notes.txt").read_text() == "mine"


def test_merge_run_needs_a_loader_for_a_hub_base(lora_run):
    manifest = lora_run.run_dir / "run.json"
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**data, "base_model": "some-org/some-model"}))
    with pytest.raises(DboothError, match="not a local diffusers folder"):
        merge_run(lora_run.run_dir)
