"""The SD 1.5 configs are exactly SD 1.5: parameter counts and tensor shapes, built on the meta device."""

from __future__ import annotations

import pytest
import torch

from dbooth.bench import components
from dbooth.bench.components import SD15_PARAMETERS, meta_parameter_counts


def test_sd15_parameter_counts_match_the_released_model():
    counts = meta_parameter_counts()
    assert counts == SD15_PARAMETERS
    assert round(counts["unet"] / 1e6, 1) == 859.5


@pytest.mark.slow
def test_sd15_shapes():
    with torch.device("meta"):
        unet = components.sd15_unet()
        vae = components.sd15_vae()
        te = components.sd15_text_encoder()
    # 512 px images -> 64x64x4 latents -> UNet keeps the shape; text: 77 tokens x 768
    pixels = torch.empty(1, 3, 512, 512, device="meta")
    latents = vae.encode(pixels).latent_dist.mean
    assert tuple(latents.shape) == (1, 4, 64, 64)
    ids = torch.zeros(1, 77, dtype=torch.long, device="meta")
    hidden = te(ids)[0]
    assert tuple(hidden.shape) == (1, 77, 768)
    out = unet(latents, torch.zeros(1, dtype=torch.long, device="meta"), hidden).sample
    assert tuple(out.shape) == (1, 4, 64, 64)
    assert unet.config.block_out_channels == (320, 640, 1280, 1280) or list(unet.config.block_out_channels) == [
        320, 640, 1280, 1280]
    assert vae.config.scaling_factor == 0.18215
    assert te.config.num_hidden_layers == 12 and te.config.num_attention_heads == 12


def test_sd15_unet_forward_flops_match_the_published_estimate(tmp_path):
    """One SD 1.5 UNet forward at 512 px is ~0.7-0.8 TFLOP; a prior-preservation step ~5 TFLOP."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        unet = components.sd15_unet()
    x = torch.empty(1, 4, 64, 64, device="meta")
    e = torch.empty(1, 77, 768, device="meta")
    with FlopCounterMode(display=False) as counter:
        unet(x, torch.zeros(1, dtype=torch.long, device="meta"), e)
    assert 0.7e12 <= counter.get_total_flops() <= 0.85e12


def test_tokenizer_is_clip_length():
    tok = components.sd15_tokenizer()
    assert tok.model_max_length == 77
    assert len(tok("a photo of sks dog").input_ids) == 7  # bos + 5 words + eos


def test_sd15_scheduler_config_builds():
    from diffusers import DDPMScheduler, PNDMScheduler

    sched = PNDMScheduler(**components.SD15_SCHEDULER)
    assert sched.config.beta_schedule == "scaled_linear" and sched.config.steps_offset == 1
    assert DDPMScheduler.from_config(sched.config).config.num_train_timesteps == 1000  # what the trainer builds
