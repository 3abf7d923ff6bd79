"""The SDXL configs are exactly SDXL base 1.0: parameter counts, shapes and FLOPs, on the meta device only
(the real-size pipeline is ~14 GB in float32 and is never built in a test)."""

from __future__ import annotations

import pytest
import torch

from dbooth.bench import components_sdxl as sdxl
from dbooth.bench.configs import CONFIGS
from dbooth.bench.flops import count_step_flops, static_memory, static_memory_of, step_flops
from dbooth.workspace.config import Manifest, apply_overrides, manifest_to_dict


def _resolved(name: str) -> dict:
    return manifest_to_dict(apply_overrides(Manifest(class_noun="dog"), CONFIGS[name].overrides))


def _split(models: dict):
    return models["unet"], models["vae"], {k: v for k, v in models.items() if k.startswith("text_encoder")}


def test_sdxl_parameter_counts_match_the_released_model():
    counts = sdxl.meta_sdxl_parameter_counts()
    assert counts == sdxl.SDXL_PARAMETERS
    assert round(counts["unet"] / 1e9, 2) == 2.57
    assert round(sum(counts.values()) / 1e9, 2) == 3.47


@pytest.mark.slow
def test_sdxl_shapes():
    m = sdxl.meta_sdxl_models()
    # 1024 px -> 128x128x4 latents; context: 77 tokens x (768 + 1280); pooled: 1280 from the projection
    latents = m["vae"].encode(torch.empty(1, 3, 1024, 1024, device="meta")).latent_dist.mean
    assert tuple(latents.shape) == (1, 4, 128, 128)
    ids = torch.zeros(1, 77, dtype=torch.long, device="meta")
    first = m["text_encoder"](ids, output_hidden_states=True)
    second = m["text_encoder_2"](ids, output_hidden_states=True)
    context = torch.cat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1)
    assert tuple(context.shape) == (1, 77, 2048)
    assert tuple(second.text_embeds.shape) == (1, 1280)
    added = {"text_embeds": second.text_embeds, "time_ids": torch.empty(1, 6, device="meta")}
    out = m["unet"](latents, torch.zeros(1, dtype=torch.long, device="meta"), context, added_cond_kwargs=added).sample
    assert tuple(out.shape) == (1, 4, 128, 128)
    assert m["vae"].config.scaling_factor == 0.13025 and m["vae"].config.force_upcast
    assert m["text_encoder"].config.hidden_act == "quick_gelu" and m["text_encoder_2"].config.hidden_act == "gelu"


def test_sdxl_tokenizers_pad_as_sdxl_does():
    first, second = sdxl.sdxl_tokenizers()
    assert first.model_max_length == second.model_max_length == 77
    assert first.pad_token == "<|endoftext|>" and second.pad_token == "!"
    ids = second("a photo of sks dog", padding="max_length").input_ids
    assert len(ids) == 77 and ids[7:] == [second.pad_token_id] * 70  # bos + 5 words + eos, then '!'


def test_sdxl_scheduler_config_builds():
    from diffusers import DDPMScheduler, EulerDiscreteScheduler

    sched = EulerDiscreteScheduler(**sdxl.SDXL_SCHEDULER)
    assert sched.config.timestep_spacing == "leading" and sched.config.prediction_type == "epsilon"
    assert DDPMScheduler.from_config(sched.config).config.beta_schedule == "scaled_linear"  # what the trainer builds


@pytest.mark.slow
def test_sdxl_unet_forward_flops():
    """One SDXL UNet forward at 1024 px is ~6.8 TFLOP: the 60 transformer blocks at the 32x32 level alone
    are ~3.5 (1024 tokens x ~26M token-wise weights x 2), the 10 at 64x64 ~1 more, convolutions the rest."""
    from torch.utils.flop_counter import FlopCounterMode

    m = sdxl.meta_sdxl_models()
    x = torch.empty(1, 4, 128, 128, device="meta")
    added = {"text_embeds": torch.empty(1, 1280, device="meta"), "time_ids": torch.empty(1, 6, device="meta")}
    with FlopCounterMode(display=False) as counter:
        m["unet"](x, torch.zeros(1, dtype=torch.long, device="meta"), torch.empty(1, 77, 2048, device="meta"),
                  added_cond_kwargs=added)
    assert 6.5e12 <= counter.get_total_flops() <= 7.0e12


@pytest.mark.slow
@pytest.mark.parametrize("name, low, high", [("sdxl-full", 39e12, 42e12), ("sdxl-lora", 27e12, 30e12)])
def test_sdxl_step_flops(name, low, high):
    """A prior-preservation step (2 images at 1024 px): forward + backward ~3x a forward for full, ~2x for
    LoRA (no weight gradients); with caches off the two text encoders add a little."""
    m = _resolved(name)
    flops = count_step_flops(*_split(sdxl.meta_sdxl_models()), m["train"], prior=True)
    assert low <= flops["total"] <= high and set(flops) == {"unet", "total"}
    uncached = {**m["train"], "cache_text_embeddings": False}
    more = count_step_flops(*_split(sdxl.meta_sdxl_models()), uncached, prior=True)
    assert 0 < more["text_encoder"] < 0.01 * more["unet"]


@pytest.mark.slow
def test_sdxl_static_memory_by_tier():
    """The figures BENCHMARKS.md quotes (GiB, on a GPU): full fine-tuning is fp32 weights, gradients and
    AdamW state; LoRA is the frozen model in bf16. The 24 GB tier's floor is above 24 GB (see BENCHMARKS.md)."""
    gib = {}
    for name in ("sdxl-full", "sdxl-full-24gb", "sdxl-lora", "sdxl-lora-12gb"):
        est = static_memory_of(*_split(sdxl.meta_sdxl_models()), _resolved(name)["train"], "cuda")
        gib[name] = round(est["total_mb"] / 1024, 1)
    assert gib == {"sdxl-full": 39.8, "sdxl-full-24gb": 25.4, "sdxl-lora": 6.5, "sdxl-lora-12gb": 6.5}


@pytest.mark.slow
def test_flops_and_memory_read_an_sdxl_folder(tiny_sdxl_base):
    """From a saved folder: both text encoders (the second with its projection) and the added conditioning."""
    train = _resolved("sdxl-lora")["train"]
    small = {**train, "resolution": 32, "cache_text_embeddings": False}
    flops = step_flops(str(tiny_sdxl_base), small, prior=True)
    assert flops["unet"] > 0 and flops["text_encoder"] > 0
    est = static_memory(str(tiny_sdxl_base), {**small, "train_text_encoder": True}, "cpu")
    from dbooth.families.tiny import tiny_sdxl_pipeline

    pipe = tiny_sdxl_pipeline()
    n_te = sum(p.numel() for te in (pipe.text_encoder, pipe.text_encoder_2) for p in te.parameters())
    n_all = n_te + sum(p.numel() for p in pipe.unet.parameters()) + sum(p.numel() for p in pipe.vae.parameters())
    lora = est["trainable_parameters"]
    assert est["weights_mb"] * 2**20 == n_all * 2 + lora * 4  # bf16 frozen parts, fp32 adapters
    assert lora > 0
