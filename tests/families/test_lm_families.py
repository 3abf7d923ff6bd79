"""FLUX.2 [klein] and Z-Image as the trainer sees them, checked against their diffusers pipelines: the chat
template renders as Qwen3's, the conditioning equals ``encode_prompt``, the denoiser call equals the pipeline's
own, the latents are normalised as the pipeline un-normalises them, and a saved LoRA loads with
``load_lora_weights`` to the same outputs."""

from __future__ import annotations

import pytest
import torch
from diffusers import Flux2KleinPipeline

from dbooth.families import FLUX2_KLEIN, ZIMAGE, family_of, family_from_configs
from dbooth.families.tiny_lm import tiny_klein_pipeline, tiny_zimage_pipeline
from dbooth.training.setup import prepare_models
from dbooth.util.errors import DboothError
from dbooth.workspace.schema import Manifest, TrainConfig
from flow_cli import first_denoiser_call

PROMPTS = ["a photo of sks dog", "a dog on the beach with a pink star in the snow"]  # of different lengths
MAKERS = {"flux2-klein": tiny_klein_pipeline, "zimage": tiny_zimage_pipeline}


def test_the_chat_template_renders_one_user_turn_as_qwen3s():
    tokenizer = tiny_klein_pipeline().tokenizer
    turn = [{"role": "user", "content": "a sks dog"}]
    head = "<|im_start|>user\na sks dog<|im_end|>\n<|im_start|>assistant\n"
    for thinking, tail in ((False, "<think>\n\n</think>\n\n"), (True, "")):
        text = tokenizer.apply_chat_template(turn, tokenize=False, add_generation_prompt=True, enable_thinking=thinking)
        assert text == head + tail
    ids = tokenizer(head).input_ids
    assert ids[0] == tokenizer.convert_tokens_to_ids("<|im_start|>") and len(ids) == 11  # specials stay whole
    assert tokenizer.decode(tokenizer("any text, even 你好").input_ids) == "any text, even 你好"  # byte-level


def _pipeline_embeds(pipe, family, prompts, length):
    if family is FLUX2_KLEIN:
        return pipe.encode_prompt(prompt=list(prompts), max_sequence_length=length)[0]
    embeds, _ = pipe.encode_prompt(prompt=list(prompts), do_classifier_free_guidance=False, max_sequence_length=length)
    return embeds  # a list: each caption's own tokens


@pytest.mark.parametrize("name", MAKERS)
@pytest.mark.parametrize("length", [None, 40])
def test_trainer_conditioning_equals_the_pipelines_encode_prompt(name, length):
    pipe = MAKERS[name]()
    family = family_of(pipe)
    assert family.name == name
    ids = family.tokenize(family.tokenizers(pipe), PROMPTS, max_sequence_length=length)
    assert len(ids) == 2 and ids[0].shape == ids[1].shape == (2, length or 512)
    cond = family.encode(list(family.text_encoders(pipe).values()), ids)
    expected = _pipeline_embeds(pipe, family, PROMPTS, length or 512)
    if family is ZIMAGE:
        assert [int(m.sum()) for m in cond.mask] == [len(e) for e in expected] and len(expected[0]) < len(expected[1])
        got = [e[m.bool()] for e, m in zip(cond.embeds, cond.mask)]
    else:
        assert cond.embeds.shape == expected.shape == (2, length or 512, 48)  # three layers side by side
        got, expected = list(cond.embeds), list(expected)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    cached = cond.to(dtype=torch.bfloat16).select([1])  # the prompt bank's caching keeps the mask a mask
    assert cached.embeds.dtype == torch.bfloat16 and (cond.mask is None or cached.mask.dtype == cond.mask.dtype)


@pytest.mark.parametrize("distilled", [True, False])
def test_klein_training_call_equals_the_pipelines_denoising_call(distilled):
    pipe = tiny_klein_pipeline(distilled=distilled)
    _, kw, out = first_denoiser_call(pipe, PROMPTS[0], guidance_scale=1.0, max_sequence_length=64)
    assert kw["guidance"] is None
    cond = FLUX2_KLEIN.encode([pipe.text_encoder], FLUX2_KLEIN.tokenize([pipe.tokenizer], PROMPTS[:1],
                                                                        max_sequence_length=64))
    torch.testing.assert_close(cond.embeds, kw["encoder_hidden_states"], atol=1e-6, rtol=0)
    # the pipeline's packed sequence of 2x2 patches (32 px image, VAE x2: 16x16 latents, 8x8 patches) -> the raw layout
    patches = kw["hidden_states"].transpose(1, 2).reshape(1, 16, 8, 8)
    noisy = Flux2KleinPipeline._unpatchify_latents(patches)
    assert noisy.shape == (1, 4, 16, 16)
    pred = FLUX2_KLEIN.predict(pipe.transformer, noisy, kw["timestep"] * 1000, cond, None,
                               FLUX2_KLEIN.run_condition(pipe, Manifest(class_noun="dog")))
    expected = Flux2KleinPipeline._unpatchify_latents(out.transpose(1, 2).reshape(1, 16, 8, 8))
    torch.testing.assert_close(pred, expected, atol=1e-5, rtol=0)


def test_zimage_training_call_equals_the_pipelines_denoising_call():
    pipe = tiny_zimage_pipeline()
    args, _, out = first_denoiser_call(pipe, PROMPTS[0], guidance_scale=0.0, max_sequence_length=64)
    latents, t, captions = args
    cond = ZIMAGE.encode([pipe.text_encoder], ZIMAGE.tokenize([pipe.tokenizer], PROMPTS[:1], max_sequence_length=64))
    torch.testing.assert_close(cond.embeds[0][cond.mask[0].bool()], captions[0], atol=1e-6, rtol=0)
    noisy = torch.stack(latents).squeeze(2)
    pred = ZIMAGE.predict(pipe.transformer, noisy, 1000 - t * 1000, cond, None, None)
    # the pipeline steps with minus the transformer's output: that is the flow-matching velocity noise - image
    torch.testing.assert_close(pred, -torch.stack(out).squeeze(2), atol=1e-5, rtol=0)


def test_klein_latents_are_normalised_as_the_pipeline_undoes_it():
    pipe = tiny_klein_pipeline()
    raw = torch.randn(2, 4, 16, 16)
    normalized = FLUX2_KLEIN.latent_normalizer(pipe.vae)(raw)
    assert not torch.allclose(normalized, raw, atol=1e-2)
    # what the pipeline does to its final latents before decoding, on the normalised ones, gives the raw ones back
    bn_mean = pipe.vae.bn.running_mean.view(1, -1, 1, 1)
    bn_std = torch.sqrt(pipe.vae.bn.running_var.view(1, -1, 1, 1) + pipe.vae.config.batch_norm_eps)
    patches = Flux2KleinPipeline._patchify_latents(normalized)
    torch.testing.assert_close(Flux2KleinPipeline._unpatchify_latents(patches * bn_std + bn_mean), raw)


@pytest.mark.parametrize("name", MAKERS)
def test_a_saved_lora_loads_in_diffusers_to_the_same_outputs(name, tmp_path):
    pipe = MAKERS[name]()
    family = family_of(pipe)
    cfg = TrainConfig(method="lora")
    cfg.lora.target_modules = ["wide"]
    models = prepare_models(pipe, cfg, torch.device("cpu"), torch.float32)
    torch.manual_seed(1)
    with torch.no_grad():
        for n, p in models.denoiser.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.05)
    family.save_lora(tmp_path, models.denoiser, {})
    fresh = MAKERS[name]()
    fresh.load_lora_weights(str(tmp_path))
    ids = family.tokenize(family.tokenizers(pipe), PROMPTS, max_sequence_length=40)
    noisy = torch.randn(2, 4, 16, 16)
    t = torch.tensor([500.0, 250.0])
    with torch.no_grad():
        cond = family.encode(list(family.text_encoders(pipe).values()), ids)
        condition = family.run_condition(pipe, Manifest(class_noun="dog"))
        outs = [family.predict(family.denoiser(p), noisy, t, cond, None, condition) for p in (pipe, fresh)]
        base = family.predict(family.denoiser(MAKERS[name]()), noisy, t, cond, None, condition)
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=0)
    assert (outs[0] - base).abs().max() > 1e-3  # the LoRA does something


def test_klein_attention_preset_covers_both_streams_and_the_fused_single_blocks():
    pipe = tiny_klein_pipeline()
    models = prepare_models(pipe, TrainConfig(method="lora"), torch.device("cpu"), torch.float32)
    wrapped = {n.rsplit(".lora_A", 1)[0] for n, _ in models.denoiser.named_parameters() if ".lora_A" in n}
    assert {"transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.add_v_proj",
            "transformer_blocks.0.attn.to_out.0", "single_transformer_blocks.0.attn.to_qkv_mlp_proj",
            "single_transformer_blocks.0.attn.to_out"} <= wrapped
    assert not any(".ff." in n or "ff_context" in n for n in wrapped)


def test_the_language_model_encoders_are_never_trained():
    for maker in MAKERS.values():
        with pytest.raises(DboothError, match="train_text_encoder"):
            prepare_models(maker(), TrainConfig(method="lora", train_text_encoder=True), torch.device("cpu"),
                           torch.float32)


def test_detection_by_pipeline_class_and_by_parts():
    assert family_from_configs({"_class_name": "Flux2KleinPipeline"}, None) is FLUX2_KLEIN
    assert family_from_configs({"_class_name": "ZImagePipeline"}, None) is ZIMAGE
    from types import SimpleNamespace

    pipe = tiny_zimage_pipeline()  # as the memory estimate hands it over: the parts, no pipeline
    assert family_of(SimpleNamespace(transformer=pipe.transformer, text_encoder=pipe.text_encoder)) is ZIMAGE


def test_sampling_defaults_follow_each_release():
    klein, zimage = FLUX2_KLEIN.sampling_defaults, ZIMAGE.sampling_defaults
    assert klein({"_model_index": {"is_distilled": True}})["sample.steps"] == 4
    assert (klein({"_model_index": {}})["sample.steps"], klein({})["sample.guidance_scale"]) == (50, 4.0)
    assert (zimage({"_scheduler": {"shift": 3.0}})["sample.steps"], zimage({})["sample.guidance_scale"]) == (9, 0.0)
    assert zimage({"_scheduler": {"shift": 6.0}})["prior.guidance_scale"] == 4.0


@pytest.mark.parametrize("kind, family, card",
                         [("flux2-klein-base", FLUX2_KLEIN, (50, 4.0)), ("zimage", ZIMAGE, (9, 0.0))])
def test_a_cached_hub_id_is_read_offline_with_its_card_settings(kind, family, card, tmp_path, monkeypatch):
    import huggingface_hub.constants

    from dbooth import api
    from dbooth.families import detect_family
    from dbooth.families.source import resolve_model
    from dbooth.families.tiny_lm import save_tiny_lm_pipeline
    from test_hub import REPO, _cache_with

    base = save_tiny_lm_pipeline(tmp_path / kind, kind)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(_cache_with(tmp_path, base)))
    assert detect_family(resolve_model(REPO)) is family
    manifest = api.init(tmp_path / "ws", "dog", base_model=REPO).manifest()
    assert (manifest.train.resolution, manifest.sample.steps, manifest.sample.guidance_scale) == (32, *card)
