"""export_run: what each format writes, where, with which card, and the one-line errors for bad requests."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import DiffusionPipeline
from safetensors import safe_open

from export_fakes import local_loader, max_diff, text_probe, unet_probe
from dbooth.util.errors import DboothError
from dbooth.export import FORMATS, export_run


def test_formats_are_the_documented_ones():
    assert FORMATS == ("diffusers", "single-file", "lora", "lora-kohya")


def test_diffusers_export_of_a_full_run(full_run):
    out = export_run(full_run.run_dir, "diffusers", dtype="bf16")

    name = f"{full_run.run_dir.parent.parent.name}-full-run-bf16"  # a full run's folder needs no format suffix
    assert out == full_run.run_dir / "export" / name
    pipe = DiffusionPipeline.from_pretrained(out, local_files_only=True, dtype=torch.bfloat16)
    for key, value in full_run.reference.unet.state_dict().items():
        assert torch.equal(pipe.unet.state_dict()[key], value.to(torch.bfloat16)), key
    with safe_open(str(out / "text_encoder" / "model.safetensors"), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}
    readme = (out / "README.md").read_text()
    for fact in ("builtin:shapes", "`sks`", "`dog`", "full fine-tune", "800", "a photo of sks dog", "bf16"):
        assert fact in readme, fact
    assert f'- diffusers: `DiffusionPipeline.from_pretrained("{name}")`' in readme
    assert f"- InvokeAI: import `{name}` in the Model Manager" in readme


def test_diffusers_export_of_a_lora_run_is_merged(lora_run):
    out = export_run(lora_run.run_dir, "diffusers", base_pipeline_loader=local_loader)

    assert out == lora_run.run_dir / "export" / f"{lora_run.run_dir.parent.parent.name}-lora-run-merged"

    pipe = DiffusionPipeline.from_pretrained(out, local_files_only=True)
    assert max_diff(unet_probe(pipe.unet), unet_probe(lora_run.reference.unet)) < 1e-4
    assert max_diff(text_probe(pipe.text_encoder), text_probe(lora_run.reference.text_encoder)) < 1e-4
    assert "merged into the base weights" in (out / "README.md").read_text()


def test_lora_export_records_alpha_so_diffusers_applies_it(lora_run):
    """The trainer's file has no adapter metadata; the exported one does, so a plain load is right."""
    out = export_run(lora_run.run_dir, "lora", dtype="fp16")

    name = f"{lora_run.run_dir.parent.parent.name}-lora-run-diffusers-fp16"  # beside the kohya file's name
    assert out == lora_run.run_dir / "export" / f"{name}.safetensors"
    with safe_open(str(out), "pt") as f:
        meta = f.metadata()
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}
    adapter = json.loads(meta["lora_adapter_metadata"])
    assert adapter["unet.lora_alpha"] == 2.0 and adapter["text_encoder.r"] == 4
    assert meta["dbooth.class_noun"] == "dog" and meta["dbooth.method"] == "lora"
    card = out.with_suffix(".md").read_text()
    assert f'- diffusers: `pipe.load_lora_weights("{name}.safetensors")`' in card
    note = next(line for line in card.splitlines() if line.startswith("- note:"))
    assert "ComfyUI" in note and "AUTOMATIC1111" in note and "`dbooth export --format lora-kohya`" in note
    assert meta["dbooth.clients"] == "diffusers"
    assert "ComfyUI and AUTOMATIC1111/Forge do not load this file" in meta["dbooth.load"]
    assert "--format lora-kohya" in meta["dbooth.load"]

    pipe = local_loader(str(lora_run.base_dir))
    pipe.load_lora_weights(str(out))
    assert max_diff(unet_probe(pipe.unet), unet_probe(lora_run.reference.unet)) < 1e-2  # fp16 weights


def test_existing_output_needs_force(full_run, tmp_path):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"old")
    with pytest.raises(DboothError, match="already exists.*--force") as err:
        export_run(full_run.run_dir, "single-file", out=target)
    assert str(target) in str(err.value)
    assert target.read_bytes() == b"old"

    export_run(full_run.run_dir, "single-file", out=target, force=True)
    with safe_open(str(target), "pt") as f:
        assert f.metadata()["dbooth.format"] == "single-file"


@pytest.mark.parametrize(
    "fmt,kwargs,message",
    [
        ("lora", {}, "full fine-tune.*--format diffusers"),
        ("lora-kohya", {}, "full fine-tune"),
        ("onnx", {}, "unknown export format 'onnx'.*diffusers, single-file, lora, lora-kohya"),
        ("diffusers", {"dtype": "fp8"}, "unknown dtype 'fp8'.*fp32, fp16, bf16"),
        ("single-file", {"out": "model.ckpt"}, "must end in .safetensors"),
        ("diffusers", {"out": "model.safetensors"}, "writes a folder"),
    ],
)
def test_bad_requests_raise_one_line(full_run, fmt, kwargs, message):
    with pytest.raises(DboothError, match=message) as err:
        export_run(full_run.run_dir, fmt, **kwargs)
    assert "\n" not in str(err.value)
    assert not (full_run.run_dir / "export").exists()


def test_unfinished_or_missing_runs_are_refused(full_run, tmp_path):
    with pytest.raises(DboothError, match="no run.json"):
        export_run(tmp_path, "diffusers")
    manifest = full_run.run_dir / "run.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "status": "running"}))
    with pytest.raises(DboothError, match="status 'running'"):
        export_run(full_run.run_dir, "diffusers")
