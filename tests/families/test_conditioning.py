"""The conditioning the trainer builds for a caption equals what each family's own pipeline builds at inference."""

from __future__ import annotations

import pytest
import torch

from dbooth.families import SD1, SD2, SDXL, family_of
from dbooth.families.tiny import tiny_pipeline, tiny_sd2_pipeline, tiny_sdxl_pipeline

PROMPTS = ["a photo of sks dog", "a sks dog on the beach in the snow", "a photo of dog"]
BUILDERS = {"sd1": tiny_pipeline, "sd2": tiny_sd2_pipeline, "sdxl": tiny_sdxl_pipeline}


def _trainer_conditioning(pipe, prompts):
    family = family_of(pipe)
    ids = family.tokenize(family.tokenizers(pipe), prompts)
    with torch.no_grad():
        return family.encode(list(family.text_encoders(pipe).values()), ids)


@pytest.mark.parametrize("name", ["sd1", "sd2"])
def test_sd_context_equals_encode_prompt(name):
    pipe = BUILDERS[name]()
    cond = _trainer_conditioning(pipe, PROMPTS)
    embeds, _ = pipe.encode_prompt(PROMPTS, "cpu", 1, do_classifier_free_guidance=False)
    assert cond.pooled is None
    torch.testing.assert_close(cond.embeds, embeds, rtol=0, atol=1e-6)


def test_sdxl_context_and_pooled_embedding_equal_encode_prompt():
    pipe = tiny_sdxl_pipeline()
    cond = _trainer_conditioning(pipe, PROMPTS)
    embeds, _, pooled, _ = pipe.encode_prompt(PROMPTS, device="cpu", num_images_per_prompt=1,
                                              do_classifier_free_guidance=False)
    # both encoders' penultimate layers side by side (32 + 48 wide), and the second one's projection
    assert cond.embeds.shape[-1] == 32 + 48 and cond.pooled.shape == (3, 32)
    torch.testing.assert_close(cond.embeds, embeds, rtol=0, atol=1e-6)
    torch.testing.assert_close(cond.pooled, pooled, rtol=0, atol=1e-6)


def test_sdxl_time_ids_equal_the_pipelines():
    pipe = tiny_sdxl_pipeline()
    cond = _trainer_conditioning(pipe, PROMPTS[:2])
    # (original h, w, crop top, left, target h, w) per image, as LatentBank records them
    geometry = torch.tensor([[480, 640, 0, 80, 32, 32], [32, 32, 0, 0, 32, 32]])
    added = SDXL.unet_kwargs(cond, geometry)["added_cond_kwargs"]
    for row, (oh, ow, top, left, th, tw) in enumerate(geometry.tolist()):
        expected = pipe._get_add_time_ids((oh, ow), (top, left), (th, tw), dtype=cond.pooled.dtype,
                                          text_encoder_projection_dim=pipe.text_encoder_2.config.projection_dim)
        torch.testing.assert_close(added["time_ids"][row : row + 1], expected, rtol=0, atol=0)
    assert added["text_embeds"] is cond.pooled


def test_sd_families_add_nothing_to_the_unet_call():
    cond = _trainer_conditioning(tiny_pipeline(), PROMPTS[:1])
    assert SD1.unet_kwargs(cond, torch.zeros(1, 6)) == {} and SD2.unet_kwargs(cond, torch.zeros(1, 6)) == {}


def test_trainer_conditioning_drives_the_unet_like_the_pipeline_does():
    """One denoising call with the trainer's conditioning equals the SDXL pipeline's own first UNet call."""
    pipe = tiny_sdxl_pipeline()
    cond = _trainer_conditioning(pipe, PROMPTS[:1])
    seen = {}
    real_forward = pipe.unet.forward

    def spy(*args, **kwargs):
        seen.setdefault("kwargs", kwargs)
        seen.setdefault("args", args)
        return real_forward(*args, **kwargs)

    pipe.unet.forward = spy
    pipe(PROMPTS[0], num_inference_steps=1, guidance_scale=1.0, height=32, width=32, output_type="latent",
         generator=torch.Generator().manual_seed(0))
    geometry = torch.tensor([[32, 32, 0, 0, 32, 32]])
    added = SDXL.unet_kwargs(cond, geometry)["added_cond_kwargs"]
    used = seen["kwargs"]["added_cond_kwargs"]
    torch.testing.assert_close(used["time_ids"], added["time_ids"], rtol=0, atol=0)
    torch.testing.assert_close(used["text_embeds"], added["text_embeds"], rtol=0, atol=1e-6)
    torch.testing.assert_close(seen["kwargs"]["encoder_hidden_states"], cond.embeds, rtol=0, atol=1e-6)
