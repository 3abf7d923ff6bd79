"""SD 3.5 and FLUX.1 as the trainer sees them, checked against their diffusers pipelines: the conditioning
equals ``encode_prompt``, the denoiser call equals the pipeline's own, and a saved LoRA loads with
``load_lora_weights`` to the same outputs."""

from __future__ import annotations

import pytest
import torch
from diffusers import FluxPipeline

from dbooth.families import FLUX, SD3, family_of
from dbooth.families.flux import Guidance
from dbooth.families.tiny_flow import tiny_flux_pipeline, tiny_sd3_pipeline
from dbooth.training.setup import prepare_models
from flow_cli import first_denoiser_call
from dbooth.workspace.schema import TrainConfig

PROMPTS = ["a photo of sks dog", "a dog on the beach"]
MAKERS = {"sd3": tiny_sd3_pipeline, "flux": tiny_flux_pipeline}


def _pipeline_embeds(pipe, family, prompts, length):
    if family is SD3:
        embeds, _, pooled, _ = pipe.encode_prompt(prompt=prompts, prompt_2=None, prompt_3=None,
                                                  do_classifier_free_guidance=False, max_sequence_length=length)
    else:
        embeds, pooled, _ = pipe.encode_prompt(prompt=prompts, prompt_2=None, max_sequence_length=length)
    return embeds, pooled


@pytest.mark.parametrize("name", MAKERS)
@pytest.mark.parametrize("length", [None, 77])
def test_trainer_conditioning_equals_the_pipelines_encode_prompt(name, length):
    pipe = MAKERS[name]()
    family = family_of(pipe)
    assert family.name == name
    ids = family.tokenize(family.tokenizers(pipe), PROMPTS, max_sequence_length=length)
    cond = family.encode(list(family.text_encoders(pipe).values()), ids)
    embeds, pooled = _pipeline_embeds(pipe, family, PROMPTS, length or family.t5_max_length)
    assert cond.embeds.shape == embeds.shape and cond.pooled.shape == pooled.shape
    torch.testing.assert_close(cond.embeds, embeds, atol=1e-6, rtol=0)
    torch.testing.assert_close(cond.pooled, pooled, atol=1e-6, rtol=0)


@pytest.mark.parametrize("guidance", [True, False])
def test_flux_training_call_equals_the_pipelines_denoising_call(guidance):
    pipe = tiny_flux_pipeline(guidance=guidance)
    _, kw, out = first_denoiser_call(pipe, PROMPTS[0], guidance_scale=3.5)
    ids = FLUX.tokenize(FLUX.tokenizers(pipe), PROMPTS[:1])
    cond = FLUX.encode(list(FLUX.text_encoders(pipe).values()), ids)
    noisy = FluxPipeline._unpack_latents(kw["hidden_states"], 16, 16, 1)  # 32 px image, VAE x2: 16x16 latents
    assert torch.equal(FluxPipeline._pack_latents(noisy, 1, 4, 16, 16), kw["hidden_states"])
    torch.testing.assert_close(FluxPipeline._prepare_latent_image_ids(1, 8, 8, "cpu", noisy.dtype), kw["img_ids"])
    pred = FLUX.predict(pipe.transformer, noisy, kw["timestep"] * 1000, cond, None, Guidance(3.5 if guidance else None))
    torch.testing.assert_close(pred, FluxPipeline._unpack_latents(out, 16, 16, 1), atol=1e-5, rtol=0)


def test_sd3_training_call_equals_the_pipelines_denoising_call():
    pipe = tiny_sd3_pipeline()
    _, kw, out = first_denoiser_call(pipe, PROMPTS[0], guidance_scale=1.0)  # no CFG: one conditioned call
    ids = SD3.tokenize(SD3.tokenizers(pipe), PROMPTS[:1])
    cond = SD3.encode(list(SD3.text_encoders(pipe).values()), ids)
    pred = SD3.predict(pipe.transformer, kw["hidden_states"], kw["timestep"], cond, None, None)
    torch.testing.assert_close(pred, out, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", MAKERS)
def test_a_saved_lora_loads_in_diffusers_to_the_same_outputs(name, tmp_path):
    pipe = MAKERS[name]()
    family = family_of(pipe)
    cfg = TrainConfig(method="lora", train_text_encoder=True)
    models = prepare_models(pipe, cfg, torch.device("cpu"), torch.float32)
    assert "text_encoder_3" not in models.trained_encoders and family.t5_name not in models.trained_encoders
    torch.manual_seed(1)
    with torch.no_grad():
        for model in models.trained:
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.normal_(std=0.05)
    family.save_lora(tmp_path, models.denoiser, models.trained_encoders)
    fresh = MAKERS[name]()
    fresh.load_lora_weights(str(tmp_path))
    ids = family.tokenize(family.tokenizers(pipe), PROMPTS)
    noisy = torch.randn(2, 4, 16, 16)
    t = torch.tensor([500.0, 250.0])
    with torch.no_grad():
        outs = []
        for p, encoders in ((pipe, list(models.text_encoders.values())), (fresh, list(family.text_encoders(fresh).values()))):
            cond = family.encode(encoders, ids)
            condition = family.run_condition(p, _manifest()) if family is FLUX else None
            outs.append((cond.embeds, family.predict(family.denoiser(p), noisy, t, cond, None, condition)))
    torch.testing.assert_close(outs[0][0], outs[1][0], atol=1e-5, rtol=0)
    torch.testing.assert_close(outs[0][1], outs[1][1], atol=1e-5, rtol=0)


def test_flux_attention_preset_covers_both_streams_and_wide_adds_the_rest():
    pipe = tiny_flux_pipeline()
    models = prepare_models(pipe, TrainConfig(method="lora"), torch.device("cpu"), torch.float32)
    wrapped = {n.rsplit(".lora_A", 1)[0] for n, _ in models.denoiser.named_parameters() if ".lora_A" in n}
    assert "transformer_blocks.0.attn.add_q_proj" in wrapped and "transformer_blocks.0.attn.to_add_out" in wrapped
    assert "single_transformer_blocks.0.attn.to_q" in wrapped
    assert not any("proj_mlp" in n or "ff." in n for n in wrapped)
    pipe = tiny_flux_pipeline()
    cfg = TrainConfig(method="lora")
    cfg.lora.target_modules = ["wide"]
    models = prepare_models(pipe, cfg, torch.device("cpu"), torch.float32)
    wrapped = {n.rsplit(".lora_A", 1)[0] for n, _ in models.denoiser.named_parameters() if ".lora_A" in n}
    assert "single_transformer_blocks.0.proj_mlp" in wrapped and "transformer_blocks.0.ff.net.2" in wrapped


def _manifest():
    from dbooth.workspace.schema import Manifest

    return Manifest(class_noun="dog")
