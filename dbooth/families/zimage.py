"""Z-Image (Turbo and base): a single-stream DiT on 2x2 patches of 16-channel FLUX-style latents, conditioned on
a Qwen3 language model.

Conditioning as ``ZImagePipeline.encode_prompt`` builds it: the caption in Qwen3's chat template (thinking on,
as the pipeline calls it), the model's penultimate hidden states, each caption cut to its own tokens (the mask
rides along in ``Conditioning.mask``; the transformer pads them itself). The latents are the VAE's with its
shift and scale, as for FLUX.1. ``predict`` hands the transformer a list of [C, 1, h, w] latents and the time
as the fraction of the way to the image (``(1000 - t) / 1000``); the transformer predicts image minus noise,
the negative of the flow-matching target, so its output is negated (as the pipeline and diffusers' script do).

The two releases share every config but the scheduler's: Turbo (distilled, no CFG) shifts by 3, the base
model by 6 (its model_index.json and transformer are the same).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from dbooth.families.base import Conditioning
from dbooth.families.lm_text import LMFlowFamily, hidden_states

BASE_SHIFT = 6.0  # Tongyi-MAI/Z-Image's scheduler shift; Z-Image-Turbo's is 3.0


@dataclass(frozen=True)
class ZImage(LMFlowFamily):
    def encode(self, encoders: Sequence, ids: Sequence) -> Conditioning:
        import torch

        (encoder,) = encoders
        states = hidden_states(encoder, ids, mask_dtype=torch.bool)[-2]
        return Conditioning(states, mask=ids[1].to(states.device))

    def sampling_card(self, denoiser_config: dict) -> tuple[int, float]:
        # the model cards: Z-Image-Turbo 9 steps (8 transformer calls) at guidance 0; Z-Image (base) 50 steps
        # at CFG 4 (28-50 recommended)
        shift = denoiser_config.get("_scheduler", {}).get("shift", 3.0)
        return (50, 4.0) if shift >= BASE_SHIFT else (9, 0.0)

    def run_condition(self, pipe, manifest):
        return None  # no guidance input: Turbo is distilled without one, the base model samples with CFG

    def predict(self, denoiser, noisy, timesteps, cond: Conditioning, batch, condition):
        import torch

        captions = [e[m.bool()] for e, m in zip(cond.embeds, cond.mask)]
        images = list(noisy.unsqueeze(2).unbind(0))  # [C, frames=1, h, w] each
        out = denoiser(images, (1000 - timesteps) / 1000, captions, return_dict=False)[0]
        return -torch.stack(out, dim=0).squeeze(2)


ZIMAGE = ZImage(
    name="zimage",
    title="Z-Image",
    pipeline_class_name="ZImagePipeline",
    default_resolution=1024,
    single_file_layout="",  # dbooth writes no single file for Z-Image (see dbooth.export.clients)
    kohya_base_version="zimage",
    config_repo="Tongyi-MAI/Z-Image-Turbo",
    transformer_class_name="ZImageTransformer2DModel",
    enable_thinking=True,  # ZImagePipeline._encode_prompt
    default_timestep_sampling="uniform",  # diffusers' train_dreambooth_lora_z_image.py (weighting_scheme none)
    lora_presets={
        "attention": ("to_q", "to_k", "to_v", "to_out.0"),  # diffusers' Z-Image script: every attention, refiners too
        # and the SwiGLU feed-forwards (not "adaLN_modulation.0": the final layer's is a SiLU, which peft refuses)
        "wide": ("to_q", "to_k", "to_v", "to_out.0", "feed_forward.w1", "feed_forward.w2", "feed_forward.w3"),
    },
)
