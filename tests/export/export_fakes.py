"""Fake finished runs built from the tiny pipeline, and the probes the export tests compare.

A plain module (not conftest) so test files can import it by a name no other test folder uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from typing import Callable

from diffusers import DiffusionPipeline, StableDiffusionPipeline
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model
from peft.tuners.lora import LoraLayer

from dbooth.families.tiny import tiny_pipeline

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TE_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
RANK, ALPHA = 4, 2.0  # alpha != rank on purpose: a lost alpha changes every merged weight


@dataclass
class FakeRun:
    run_dir: Path
    base_dir: Path | None  # local diffusers folder of the base model (LoRA runs)
    reference: StableDiffusionPipeline  # base + live peft adapters (LoRA) or the trained pipeline (full)


def write_run_json(run_dir: Path, **fields) -> None:
    data = {
        "run_id": run_dir.name,
        "identifier": "sks",
        "class_noun": "dog",
        "instance_prompt": "a photo of sks dog",
        "steps": 800,
        "status": "complete",
        **fields,
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run.json").write_text(json.dumps(data, indent=2))


def make_lora_run(root: Path, *, train_text_encoder: bool = True, adapter_metadata: bool = False) -> FakeRun:
    """A LoRA run whose ``final/`` was written the way the trainer writes it (``save_lora_weights``)."""
    base_dir = root / "base"
    tiny_pipeline(seed=0).save_pretrained(base_dir)
    pipe = tiny_pipeline(seed=0)
    unet_cfg = LoraConfig(r=RANK, lora_alpha=ALPHA, init_lora_weights="gaussian", target_modules=UNET_TARGETS)
    te_cfg = LoraConfig(r=RANK, lora_alpha=ALPHA, init_lora_weights="gaussian", target_modules=TE_TARGETS)
    inject_adapter_in_model(unet_cfg, pipe.unet)
    if train_text_encoder:
        inject_adapter_in_model(te_cfg, pipe.text_encoder)
    gen = torch.Generator().manual_seed(123)
    with torch.no_grad():  # peft starts lora_B at zero, which would make every comparison pass trivially
        for name, p in [*pipe.unet.named_parameters(), *pipe.text_encoder.named_parameters()]:
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    run_dir = root / "runs" / "lora-run"
    kwargs = {"unet_lora_layers": convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet))}
    if adapter_metadata:
        kwargs["unet_lora_adapter_metadata"] = unet_cfg.to_dict()
    if train_text_encoder:
        kwargs["text_encoder_lora_layers"] = convert_state_dict_to_diffusers(
            get_peft_model_state_dict(pipe.text_encoder)
        )
        if adapter_metadata:
            kwargs["text_encoder_lora_adapter_metadata"] = te_cfg.to_dict()
    StableDiffusionPipeline.save_lora_weights(run_dir / "final", **kwargs)
    write_run_json(
        run_dir,
        method="lora",
        base_model=str(base_dir),
        train_text_encoder=train_text_encoder,
        lora={"rank": RANK, "alpha": ALPHA},
    )
    return FakeRun(run_dir, base_dir, pipe)


def make_full_run(root: Path) -> FakeRun:
    pipe = tiny_pipeline(seed=7)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():  # "trained": every weight moved away from its initialisation
        for module in (pipe.unet, pipe.vae, pipe.text_encoder):
            for p in module.parameters():
                p.add_(torch.randn(p.shape, generator=gen) * 0.01)
    run_dir = root / "runs" / "full-run"
    pipe.save_pretrained(run_dir / "final")
    write_run_json(run_dir, method="full", base_model="builtin:shapes", train_text_encoder=True, lora=None)
    return FakeRun(run_dir, None, pipe)


@dataclass
class FamilyLora:
    """A LoRA on a tiny pipeline of any family, saved by that pipeline class's ``save_lora_weights``."""

    base_dir: Path  # the base pipeline, saved
    reference: DiffusionPipeline  # base + live peft adapters
    path: Path  # the diffusers-format LoRA file

    @property
    def pipeline_class(self) -> type[DiffusionPipeline]:
        return type(self.reference)


def make_family_lora(
    root: Path, build: Callable[..., DiffusionPipeline], *, unet_targets=UNET_TARGETS, te_targets=TE_TARGETS
) -> FamilyLora:
    """LoRAs on the UNet and every text encoder of ``build(seed=0)``, with random (non-zero) up weights."""
    base_dir = root / "base"
    build(seed=0).save_pretrained(base_dir)
    pipe = build(seed=0)
    names = ["unet", *(n for n in ("text_encoder", "text_encoder_2") if getattr(pipe, n, None) is not None)]
    kwargs, gen = {}, torch.Generator().manual_seed(123)
    for name in names:
        config = LoraConfig(
            r=RANK, lora_alpha=ALPHA, init_lora_weights="gaussian",
            target_modules=unet_targets if name == "unet" else te_targets,
        )
        model = getattr(pipe, name)
        inject_adapter_in_model(config, model)
        with torch.no_grad():
            for param_name, p in model.named_parameters():
                if "lora_B" in param_name:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        kwargs[f"{name}_lora_layers"] = convert_state_dict_to_diffusers(get_peft_model_state_dict(model))
        kwargs[f"{name}_lora_adapter_metadata"] = config.to_dict()
    type(pipe).save_lora_weights(root / "lora", **kwargs)
    return FamilyLora(base_dir, pipe, root / "lora" / "pytorch_lora_weights.safetensors")


def merged_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What fusing ``model``'s live adapters would give: base weights + each LoRA's delta (model untouched)."""
    out = {k.replace(".base_layer", ""): v for k, v in model.state_dict().items() if "lora_" not in k}
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            out[f"{name}.weight"] = module.get_base_layer().weight + module.get_delta_weight("default")
    return out


def load_fused(lora: FamilyLora, path: Path) -> DiffusionPipeline:
    """The base pipeline with the LoRA file at ``path`` loaded by diffusers and fused."""
    pipe = lora.pipeline_class.from_pretrained(lora.base_dir, local_files_only=True)
    pipe.load_lora_weights(str(path))
    pipe.fuse_lora()
    pipe.unload_lora_weights()
    return pipe


def weight_diff(model: torch.nn.Module, expected: dict[str, torch.Tensor]) -> float:
    got = {k: v for k, v in model.state_dict().items() if not k.endswith("position_ids")}
    assert set(got) <= set(expected), sorted(set(got) - set(expected))[:3]
    return max((got[k].float() - expected[k].float()).abs().max().item() for k in got)


def local_loader(spec: str) -> StableDiffusionPipeline:
    """The ``base_pipeline_loader`` the tests pass: base models are local folders here."""
    return StableDiffusionPipeline.from_pretrained(spec, local_files_only=True)


@torch.no_grad()
def unet_probe(unet, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    sample = torch.randn(2, 4, 16, 16, generator=gen)
    context = torch.randn(2, 16, unet.config.cross_attention_dim, generator=gen)
    return unet(sample, torch.tensor([10, 700]), encoder_hidden_states=context).sample


@torch.no_grad()
def text_probe(text_encoder, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, text_encoder.config.vocab_size, (2, 16), generator=gen)
    return text_encoder(ids).last_hidden_state


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()
