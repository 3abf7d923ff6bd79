"""Tiny SD 3.5- and FLUX.1-shaped pipelines built in code, for tests and offline smoke runs.

The same classes and code paths as the real models (SD3Transformer2DModel / FluxTransformer2DModel, an
AutoencoderKL with shift and scaling factors, CLIP encoders, a T5 encoder with a tokenizer built offline,
the flow-matching scheduler with each model's published settings), a few hundred thousand parameters each.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
)
from transformers import CLIPTextModel, CLIPTextModelWithProjection, T5Config, T5EncoderModel

from dbooth.families.tiny import TINY_WORDS, _clip_config
from dbooth.families.tokenizer import build_t5_tokenizer, build_word_tokenizer

T5_WIDTH = 64  # the tiny T5's d_model: SD 3's joint attention width (CLIP-L + CLIP-G = 64, padded to it)


def tiny_sd3_pipeline(seed: int = 0) -> StableDiffusion3Pipeline:
    """SD 3.5-shaped: MMDiT with 2x2 patches, two CLIPs with projections (pooled 32 + 32), a T5, and the
    scheduler's fixed shift of 3 (SD 3.5's config)."""
    torch.manual_seed(seed)
    tokenizer = build_word_tokenizer(TINY_WORDS, model_max_length=16)
    transformer = SD3Transformer2DModel(
        sample_size=16, patch_size=2, in_channels=4, out_channels=4, num_layers=2, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=T5_WIDTH, caption_projection_dim=16, pooled_projection_dim=64,
        pos_embed_max_size=16,
    )
    clip_l = CLIPTextModelWithProjection(_clip_config(tokenizer, hidden_size=32, projection_dim=32))
    clip_g = CLIPTextModelWithProjection(_clip_config(tokenizer, hidden_size=32, hidden_act="gelu", projection_dim=32))
    t5_tokenizer, t5 = _tiny_t5()
    return StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=_flow_vae(),
        text_encoder=clip_l, tokenizer=tokenizer, text_encoder_2=clip_g, tokenizer_2=tokenizer,
        text_encoder_3=t5, tokenizer_3=t5_tokenizer,
    )


def tiny_flux_pipeline(seed: int = 0, *, guidance: bool = True) -> FluxPipeline:
    """FLUX.1-shaped: one double and one single block on 2x2-packed latents, CLIP-L's pooled vector, a T5,
    rotary axes (4, 4, 8), dynamic shifting; ``guidance``: a guidance-distilled model (dev) or not (schnell)."""
    torch.manual_seed(seed)
    tokenizer = build_word_tokenizer(TINY_WORDS, model_max_length=16)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=T5_WIDTH, pooled_projection_dim=32, guidance_embeds=guidance,
        axes_dims_rope=(4, 4, 8),
    )
    clip = CLIPTextModel(_clip_config(tokenizer, hidden_size=32))
    t5_tokenizer, t5 = _tiny_t5()
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    return FluxPipeline(transformer=transformer, scheduler=scheduler, vae=_flow_vae(), text_encoder=clip,
                        tokenizer=tokenizer, text_encoder_2=t5, tokenizer_2=t5_tokenizer)


def save_tiny_flow_pipeline(path: str | Path, kind: str = "flux", seed: int = 0) -> Path:
    """``kind``: "sd3", "flux" (dev-style, with guidance) or "flux-schnell" (without)."""
    path = Path(path)
    pipe = tiny_sd3_pipeline(seed) if kind == "sd3" else tiny_flux_pipeline(seed, guidance=kind == "flux")
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def _tiny_t5():
    tokenizer = build_t5_tokenizer(TINY_WORDS)
    config = T5Config(vocab_size=len(tokenizer), d_model=T5_WIDTH, d_ff=64, d_kv=16, num_layers=1, num_heads=4,
                      relative_attention_num_buckets=8, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id)
    return tokenizer, T5EncoderModel(config).eval()  # as from_pretrained gives it: no dropout


def _flow_vae() -> AutoencoderKL:
    """A VAE halving the side, with SD 3's / FLUX's latent normalisation ``(z - shift) * scale``."""
    return AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(16, 32), down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8, layers_per_block=1,
        sample_size=32, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5305,
    )
