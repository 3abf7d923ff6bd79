"""FLUX.1 (dev and schnell): a 12B rectified-flow transformer on 2x2-packed 16-channel latents.

Conditioning as ``FluxPipeline.encode_prompt`` builds it: T5-XXL's hidden states are the sequence, CLIP-L's
pooled output the vector. The transformer sees the latents packed into a sequence of 2x2 patches with
(0, row, column) position ids, the timestep as a fraction (t / 1000), zero text ids, and, on a
guidance-distilled model (dev), a guidance value (``train.flow.guidance``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from dbooth.families.base import Conditioning, device_of
from dbooth.families.flow import FlowFamily

DEFAULT_TRAINING_GUIDANCE = 3.5  # diffusers' train_dreambooth_lora_flux.py


@dataclass(frozen=True)
class Guidance:
    """A FLUX run's guidance input: the value trained at, or None for a model without one (schnell)."""

    value: float | None


@dataclass(frozen=True)
class Flux(FlowFamily):
    t5_name: str = "text_encoder_2"
    t5_max_length: int = 512

    def encode(self, encoders: Sequence, ids: Sequence) -> Conditioning:
        clip, t5 = encoders
        pooled = clip(ids[0].to(device_of(clip)), output_hidden_states=False).pooler_output
        states = t5(ids[1].to(device_of(t5)), output_hidden_states=False)[0]
        return Conditioning(states.to(pooled.dtype), pooled)

    def sampling_card(self, denoiser_config: dict) -> tuple[int, float]:
        # dev (guidance-distilled): ~28 steps at guidance 3.5; schnell (timestep-distilled): 4 steps, no guidance
        return (28, 3.5) if denoiser_config.get("guidance_embeds", True) else (4, 0.0)

    def run_condition(self, pipe, manifest) -> Guidance:
        if not pipe.transformer.config.guidance_embeds:
            return Guidance(None)
        value = manifest.train.flow.guidance
        return Guidance(DEFAULT_TRAINING_GUIDANCE if value is None else value)

    def predict(self, denoiser, noisy, timesteps, cond: Conditioning, batch, condition):
        import torch
        from diffusers import FluxPipeline

        b, c, h, w = noisy.shape
        packed = FluxPipeline._pack_latents(noisy, b, c, h, w)
        image_ids = FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, noisy.device, noisy.dtype)
        text_ids = torch.zeros(cond.embeds.shape[1], 3, device=noisy.device, dtype=noisy.dtype)
        guidance = None
        if condition is not None and condition.value is not None:
            guidance = torch.full((b,), condition.value, device=noisy.device, dtype=torch.float32)
        out = denoiser(hidden_states=packed, timestep=timesteps / 1000, guidance=guidance,
                       pooled_projections=cond.pooled, encoder_hidden_states=cond.embeds, txt_ids=text_ids,
                       img_ids=image_ids, return_dict=False)[0]
        return FluxPipeline._unpack_latents(out, h, w, 1)


FLUX = Flux(
    name="flux",
    title="FLUX.1",
    pipeline_class_name="FluxPipeline",
    default_resolution=1024,
    single_file_layout="flux",  # the transformer alone: dbooth.families.flux_layout
    kohya_base_version="flux1",
    config_repo="black-forest-labs/FLUX.1-dev",
    text_encoder_names=("text_encoder", "text_encoder_2"),
    tokenizer_names=("tokenizer", "tokenizer_2"),
    kohya_prefixes={"transformer": "lora_unet_", "text_encoder": "lora_te1_"},
    kohya_unet_names="bfl",  # BFL's module names with fused qkv / linear1 (dbooth.export.flux_kohya)
    default_timestep_sampling="uniform",  # diffusers' train_dreambooth_lora_flux.py (weighting_scheme none)
    lora_presets={
        "attention": ("attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0", "attn.add_q_proj", "attn.add_k_proj",
                      "attn.add_v_proj", "attn.to_add_out"),
        "wide": ("attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0", "attn.add_q_proj", "attn.add_k_proj",
                 "attn.add_v_proj", "attn.to_add_out", "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj",
                 "ff_context.net.2", "norm1.linear", "norm1_context.linear", "norm.linear", "proj_mlp", "proj_out"),
    },
)
