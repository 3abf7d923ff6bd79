"""Stable Diffusion XL: two text encoders, a pooled embedding and per-image size/crop conditioning.

The context is both encoders' penultimate hidden states side by side; the second encoder's projected
pooled output and ``add_time_ids`` (original size, crop top-left, target size) go in through
``added_cond_kwargs``, exactly as ``StableDiffusionXLPipeline`` builds them at inference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from dbooth.families.base import Conditioning, Family, device_of


@dataclass(frozen=True)
class StableDiffusionXL(Family):
    def encode(self, encoders: Sequence, ids: Sequence) -> Conditioning:
        import torch

        hidden, pooled = [], None
        for encoder, token_ids in zip(encoders, ids):
            out = encoder(token_ids.to(device_of(encoder)), output_hidden_states=True)
            if pooled is None and out[0].ndim == 2:  # the projection model's text_embeds
                pooled = out[0]
            hidden.append(out.hidden_states[-2])
        return Conditioning(torch.cat(hidden, dim=-1), pooled)

    def unet_kwargs(self, cond: Conditioning, geometry) -> dict:
        time_ids = geometry.to(cond.pooled.device, cond.pooled.dtype)
        return {"added_cond_kwargs": {"text_embeds": cond.pooled, "time_ids": time_ids}}


SDXL = StableDiffusionXL(
    name="sdxl",
    title="Stable Diffusion XL",
    pipeline_class_name="StableDiffusionXLPipeline",
    default_resolution=1024,
    single_file_layout="sdxl",
    kohya_base_version="sdxl_base_v1-0",
    config_repo="stabilityai/stable-diffusion-xl-base-1.0",
    text_encoder_names=("text_encoder", "text_encoder_2"),
    tokenizer_names=("tokenizer", "tokenizer_2"),
    kohya_unet_names="original",
    kohya_prefixes={"unet": "lora_unet_", "text_encoder": "lora_te1_", "text_encoder_2": "lora_te2_"},
)
