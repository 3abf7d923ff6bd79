"""Stable Diffusion 3 / 3.5: an MMDiT transformer on 16-channel latents, conditioned on CLIP-L, CLIP-G and T5-XXL.

The context is both CLIPs' penultimate hidden states side by side, zero-padded to T5's width, then T5's
states after them in the sequence; the pooled vector is both CLIPs' projected outputs side by side: exactly
what ``StableDiffusion3Pipeline.encode_prompt`` builds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from dbooth.families.base import Conditioning, device_of
from dbooth.families.flow import FlowFamily


@dataclass(frozen=True)
class StableDiffusion3(FlowFamily):
    def encode(self, encoders: Sequence, ids: Sequence) -> Conditioning:
        import torch
        import torch.nn.functional as F

        *clips, t5 = encoders
        hidden, pooled = [], []
        for encoder, token_ids in zip(clips, ids):
            out = encoder(token_ids.to(device_of(encoder)), output_hidden_states=True)
            pooled.append(out[0])
            hidden.append(out.hidden_states[-2])
        clip = torch.cat(hidden, dim=-1)
        t5_states = t5(ids[-1].to(device_of(t5)))[0].to(clip.dtype)
        clip = F.pad(clip, (0, t5_states.shape[-1] - clip.shape[-1]))
        return Conditioning(torch.cat([clip, t5_states], dim=-2), torch.cat(pooled, dim=-1))

    def sampling_card(self, denoiser_config: dict) -> tuple[int, float]:
        # the model cards: SD 3.5 Large 28 steps at CFG 3.5; Medium (24 blocks) 40 steps at CFG 4.5
        return (40, 4.5) if denoiser_config.get("num_layers", 38) <= 24 else (28, 3.5)

    def predict(self, denoiser, noisy, timesteps, cond: Conditioning, batch, condition):
        return denoiser(hidden_states=noisy, timestep=timesteps, encoder_hidden_states=cond.embeds,
                        pooled_projections=cond.pooled, return_dict=False)[0]


SD3 = StableDiffusion3(
    name="sd3",
    title="Stable Diffusion 3.5",
    pipeline_class_name="StableDiffusion3Pipeline",
    default_resolution=1024,
    single_file_layout="sd3",  # the transformer alone: dbooth.families.sd3_layout
    kohya_base_version="sd3",
    config_repo="stabilityai/stable-diffusion-3.5-medium",
    text_encoder_names=("text_encoder", "text_encoder_2", "text_encoder_3"),
    tokenizer_names=("tokenizer", "tokenizer_2", "tokenizer_3"),
    kohya_prefixes={"transformer": "lora_unet_", "text_encoder": "lora_te1_", "text_encoder_2": "lora_te2_"},
    flow_preconditioning=True,
    default_timestep_sampling="logit_normal",  # diffusers' train_dreambooth_lora_sd3.py
    lora_presets={
        "attention": ("attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0", "attn.add_q_proj", "attn.add_k_proj",
                      "attn.add_v_proj", "attn.to_add_out"),
        "wide": ("attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0", "attn.add_q_proj", "attn.add_k_proj",
                 "attn.add_v_proj", "attn.to_add_out", "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj",
                 "ff_context.net.2"),
    },
)
