"""Model setup for a run: which parts train, in which precision, on which device.

Works on components (a denoiser - UNet or transformer -, a VAE, any number of text encoders) as the family names them; the
family itself is only asked for those names.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

from dbooth.families import Family, family_of
from dbooth.training.adapters import add_lora, lora_config
from dbooth.training.objectives import check_settings


@dataclass
class Models:
    family: Family
    denoiser: torch.nn.Module  # the UNet, or SD 3.5's / FLUX's transformer
    vae: torch.nn.Module
    text_encoders: dict[str, torch.nn.Module]  # every encoder, by pipeline attribute name
    trained_encoders: dict[str, torch.nn.Module]  # the ones being trained (all or none)
    tokenizers: list
    noise_scheduler: object
    vae_dtype: torch.dtype
    condition: object = None  # the family's run_condition: the upscaler's LowResCondition, FLUX's guidance; or None

    @property
    def trained(self) -> list[torch.nn.Module]:
        return [self.denoiser, *self.trained_encoders.values()]


def prepare_models(pipe, cfg, device: torch.device, weight_dtype: torch.dtype) -> Models:
    """Freeze, wrap (LoRA) and place the pipeline's parts for training with ``cfg`` (train settings)."""
    family = family_of(pipe)
    check_settings(cfg, family)
    unet, vae = family.denoiser(pipe), pipe.vae
    encoders = family.text_encoders(pipe)
    vae.requires_grad_(False)
    for encoder in encoders.values():
        encoder.requires_grad_(False)
    trained_encoders = family.trained_text_encoders(pipe) if cfg.train_text_encoder else {}
    if family.denoiser_name == "unet":  # the transformers' joint attention has its own (SDPA) processors
        # attention processors are chosen before LoRA wraps the projections
        unet.set_attn_processor(AttnProcessor2_0() if cfg.attention == "sdpa" else AttnProcessor())
    if cfg.method == "lora":
        unet.requires_grad_(False)
        unet.to(device, weight_dtype)
        add_lora(unet, lora_config(cfg.lora, family.lora_targets(cfg.lora.target_modules)))
        for encoder in trained_encoders.values():
            encoder.to(device, weight_dtype)
            add_lora(encoder, lora_config(cfg.lora, cfg.lora.text_encoder_target_modules, text_encoder=True))
        for model in [unet, *trained_encoders.values()]:
            for p in model.parameters():
                if p.requires_grad:
                    p.data = p.data.float()  # trained weights stay float32 under mixed precision
    else:
        unet.train()
        for encoder in trained_encoders.values():
            encoder.requires_grad_(True)
    for name, encoder in encoders.items():
        if name not in trained_encoders:
            encoder.to(device, weight_dtype)
    vae_dtype = vae_precision(vae, weight_dtype)
    vae.to(device, vae_dtype)
    _speed_settings(unet, cfg, device)
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
        for encoder in trained_encoders.values():
            encoder.gradient_checkpointing_enable()
    return Models(family, unet, vae, encoders, trained_encoders, family.tokenizers(pipe), family.training_scheduler(pipe),
                  vae_dtype)


def load_dtype(cfg):
    """The precision a run loads its base in. A LoRA run under mixed precision keeps every base weight frozen in
    that precision, so it loads them so (peak host RAM near the bf16 size, not twice it for fp32 then a cast);
    the VAE comes in float32 and ``vae_precision`` decides. A full fine-tune trains float32 weights: float32."""
    half = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(cfg.mixed_precision)
    if cfg.method != "lora" or half is None:
        return torch.float32
    return {"default": half, "vae": torch.float32}


def vae_precision(vae, weight_dtype: torch.dtype) -> torch.dtype:
    """The SDXL VAE overflows in float16 (its config says ``force_upcast``): encode in float32 there."""
    if weight_dtype == torch.float16 and getattr(vae.config, "force_upcast", False):
        return torch.float32
    return weight_dtype


def _speed_settings(unet, cfg, device) -> None:
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = cfg.allow_tf32
        torch.backends.cudnn.allow_tf32 = cfg.allow_tf32
    if cfg.channels_last:
        unet.to(memory_format=torch.channels_last)
    if cfg.compile:
        unet.compile()  # in place: parameter names (and so checkpoints) stay the same
