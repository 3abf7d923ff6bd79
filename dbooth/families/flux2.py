"""FLUX.2 [klein] (4B, 9B; step-distilled or base): a rectified-flow transformer on 2x2-patchified, packed
VAE latents, conditioned on a Qwen3 language model.

Conditioning as ``Flux2KleinPipeline.encode_prompt`` builds it: the caption in Qwen3's chat template (thinking
off), padded to the text length, and the hidden states of three of the model's layers side by side per token
(``text_layers``, the pipeline's default (9, 18, 27)), padding tokens included.

The latents the trainer noises are the VAE's, normalised as the pipeline and diffusers' klein script do:
patchified 2x2 (32 channels become 128), shifted and scaled by the VAE's batch-norm statistics, and unpatchified
again, so they keep the VAE's layout (and loss masks their size). ``predict`` patchifies and packs them into the
transformer's sequence with (t, h, w, l) position ids, the timestep as a fraction and (0, 0, 0, l) text ids.
klein's transformer has no guidance embedding, distilled or not: the distilled release is step-distilled
(``is_distilled`` in model_index.json: its pipeline never runs classifier-free guidance), the base one
samples with CFG against an empty caption.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Sequence

from dbooth.families.base import Conditioning
from dbooth.families.flux import DEFAULT_TRAINING_GUIDANCE, Guidance
from dbooth.families.lm_text import LMFlowFamily, hidden_states

SINGLE_BLOCKS_MAX = 48  # single-stream blocks named in the presets (klein 4B has 20, 9B 24; FLUX.2 dev 48)


@dataclass(frozen=True)
class Flux2Klein(LMFlowFamily):
    text_layers: tuple[int, ...] = (9, 18, 27)  # Flux2KleinPipeline's text_encoder_out_layers default

    def pipeline_class(self):
        return _klein_pipeline_class()

    def encode(self, encoders: Sequence, ids: Sequence) -> Conditioning:
        import torch

        (encoder,) = encoders
        states = hidden_states(encoder, ids)
        stacked = torch.stack([states[k] for k in self.text_layers], dim=2)  # [N, tokens, layers, width]
        return Conditioning(stacked.flatten(2).to(encoder.dtype))

    def latent_normalizer(self, vae):
        import torch

        from diffusers import Flux2KleinPipeline as P

        mean = vae.bn.running_mean.detach().float().view(1, -1, 1, 1)
        std = torch.sqrt(vae.bn.running_var.detach().float().view(1, -1, 1, 1) + vae.config.batch_norm_eps)

        def normalize(latents):
            patches = P._patchify_latents(latents)
            patches = (patches - mean.to(patches.device, patches.dtype)) / std.to(patches.device, patches.dtype)
            return P._unpatchify_latents(patches)

        return normalize

    def sampling_card(self, denoiser_config: dict) -> tuple[int, float]:
        # the model cards: the distilled klein 4B / 9B sample in 4 steps at guidance 1 (no CFG); the base releases
        # in 50 steps with CFG 4 (Flux2KleinPipeline's example and call defaults)
        return (4, 1.0) if denoiser_config.get("_model_index", {}).get("is_distilled") else (50, 4.0)

    def run_condition(self, pipe, manifest) -> Guidance:
        if not getattr(pipe.transformer.config, "guidance_embeds", False):
            return Guidance(None)  # every klein release: no guidance input (as the pipeline passes guidance=None)
        value = manifest.train.flow.guidance
        return Guidance(DEFAULT_TRAINING_GUIDANCE if value is None else value)

    def predict(self, denoiser, noisy, timesteps, cond: Conditioning, batch, condition):
        import torch
        from diffusers import Flux2KleinPipeline as P

        patches = P._patchify_latents(noisy)
        b, c, h, w = patches.shape
        image_ids = P._prepare_latent_ids(patches).to(noisy.device)
        text_ids = P._prepare_text_ids(cond.embeds).to(noisy.device)
        guidance = None
        if condition is not None and condition.value is not None:
            guidance = torch.full((b,), condition.value, device=noisy.device, dtype=torch.float32)
        out = denoiser(hidden_states=P._pack_latents(patches), timestep=timesteps / 1000, guidance=guidance,
                       encoder_hidden_states=cond.embeds, txt_ids=text_ids, img_ids=image_ids, return_dict=False)[0]
        out = out[:, : h * w].transpose(1, 2).reshape(b, c, h, w)  # the sequence back in raster order
        return P._unpatchify_latents(out)


@cache
def _klein_pipeline_class():
    """Flux2KleinPipeline, called as dbooth calls every pipeline: ``pipe(prompts, negative_prompt=..., ...)``.

    diffusers' klein pipeline takes a reference ``image`` first and has no negative prompt (its CFG is against
    the empty caption). This subclass keeps the class name, so what it saves is an ordinary klein folder."""
    from diffusers import Flux2KleinPipeline as Base

    from dbooth.util.errors import DboothError

    class Flux2KleinPipeline(Base):
        def __call__(self, prompt=None, negative_prompt=None, **kwargs):
            if negative_prompt and any(negative_prompt if isinstance(negative_prompt, list) else [negative_prompt]):
                raise DboothError("sample.negative_prompt: FLUX.2 [klein] takes no negative prompt (its guidance "
                                  "runs against the empty caption); remove it from dbooth.yaml")
            return super().__call__(prompt=prompt, **kwargs)

    Flux2KleinPipeline.__qualname__ = Base.__qualname__
    return Flux2KleinPipeline


_ATTENTION = (
    "attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0",  # double-stream blocks, image side
    "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out",  # ... text side
    "attn.to_qkv_mlp_proj",  # single-stream blocks: fused q, k, v and MLP input (diffusers' klein script)
    # ... and their fused output; named per block, as diffusers' script does, since "attn.to_out" would also
    # match the double-stream blocks' to_out ModuleList
    *(f"single_transformer_blocks.{i}.attn.to_out" for i in range(SINGLE_BLOCKS_MAX)),
)

FLUX2_KLEIN = Flux2Klein(
    name="flux2-klein",
    title="FLUX.2 [klein]",
    pipeline_class_name="Flux2KleinPipeline",
    default_resolution=1024,
    single_file_layout="",  # dbooth writes no single file for klein (see dbooth.export.clients)
    kohya_base_version="flux2",
    config_repo="black-forest-labs/FLUX.2-klein-4B",
    transformer_class_name="Flux2Transformer2DModel",
    enable_thinking=False,  # Flux2KleinPipeline._get_qwen3_prompt_embeds
    default_timestep_sampling="uniform",  # diffusers' train_dreambooth_lora_flux2_klein.py (weighting_scheme none)
    lora_presets={
        "attention": _ATTENTION,
        "wide": (*_ATTENTION, "ff.linear_in", "ff.linear_out", "ff_context.linear_in", "ff_context.linear_out"),
    },
)
