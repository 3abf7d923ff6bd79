"""The SD 3.5- and FLUX.1-shaped configs are the published models: sizes, the widths that must agree between parts,
and forwards, all on the meta device (the real pipelines are 16-34 GB in bf16 and never built in a test). The
builder is checked on a narrow variant: the folder it writes loads as the family it claims, in bf16."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from dbooth.bench import components_flow as cf

# The published sizes (model cards, the released checkpoints' tensors), to a few percent: not read from the module
PUBLISHED = {
    "flux": {"transformer": 11.9e9, "text_encoder": 123e6, "text_encoder_2": 4.76e9},
    "sd35m": {"transformer": 2.5e9, "text_encoder": 124e6, "text_encoder_2": 695e6, "text_encoder_3": 4.76e9},
    "sd35l": {"transformer": 8.1e9, "text_encoder": 124e6, "text_encoder_2": 695e6, "text_encoder_3": 4.76e9},
}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_parameter_counts_match_the_published_sizes(name):
    counts = cf.meta_flow_parameter_counts(name)
    for part, size in PUBLISHED[name].items():
        assert abs(counts[part] - size) / size < 0.03, (part, counts[part])
    assert 83e6 < counts["vae"] < 85e6  # SD's VAE with 16 latent channels and no quant convolutions


def test_widths_agree_between_the_parts():
    t5 = cf.T5_XXL["d_model"]
    for name in ("sd35m", "sd35l"):
        t = cf.flow_shape(name).transformer
        assert t["joint_attention_dim"] == t5  # the context is T5's width (the CLIPs zero-padded to it)
        assert t["pooled_projection_dim"] == cf.CLIP_L_TEXT["projection_dim"] + cf.CLIP_G_TEXT["projection_dim"]
        assert t["caption_projection_dim"] == t["num_attention_heads"] * t["attention_head_dim"]
    flux = cf.FLUX_DEV_TRANSFORMER
    assert flux["joint_attention_dim"] == t5 and flux["pooled_projection_dim"] == cf.CLIP_L_TEXT["hidden_size"]
    assert sum(flux["axes_dims_rope"]) == flux["attention_head_dim"]  # rotary axes fill each head
    assert flux["in_channels"] == 4 * cf.FLUX_VAE["latent_channels"]  # 2x2-packed latents
    assert cf.SD3_VAE["latent_channels"] == cf.SD35_MEDIUM_TRANSFORMER["in_channels"] == 16


def test_medium_has_dual_attention_in_its_first_13_blocks_only():
    m = cf.meta_flow_models("sd35m")["transformer"]
    dual = [i for i, block in enumerate(m.transformer_blocks) if getattr(block, "attn2", None) is not None]
    assert dual == list(range(13))
    large = cf.meta_flow_models("sd35l")["transformer"]
    assert not any(getattr(b, "attn2", None) is not None for b in large.transformer_blocks)


@pytest.mark.parametrize("name", ["sd35m", "flux"])
def test_a_1024_px_forward_on_the_meta_device(name):
    """4096 image tokens ((1024 / 16)^2) either way: SD 3.5 patches 128x128 latents, FLUX packs them."""
    from dbooth.bench.flow_activations import transformer_inputs
    from dbooth.families import FLUX, SD3

    m = cf.meta_flow_models(name)["transformer"]
    family = FLUX if name == "flux" else SD3
    out = m(**transformer_inputs(m, family, 1, 1024, 333, torch.float32))[0]
    assert tuple(out.shape) == ((1, 4096, 64) if name == "flux" else (1, 16, 128, 128))


def test_tokenizers_are_offline_stand_ins():
    sd3 = cf.flow_tokenizers(cf.flow_shape("sd35m"))
    assert set(sd3) == {"tokenizer", "tokenizer_2", "tokenizer_3"} and sd3["tokenizer_2"].pad_token == "!"
    flux = cf.flow_tokenizers(cf.flow_shape("flux"))
    assert set(flux) == {"tokenizer", "tokenizer_2"} and flux["tokenizer_2"].model_max_length == 512
    ids = flux["tokenizer_2"]("a photo of sks dog").input_ids
    assert len(ids) == 6 and max(ids) < cf.T5_XXL["vocab_size"]  # 5 words + </s>, inside the published table


def narrow(name: str) -> cf.FlowShape:
    """The published shape at toy widths (published vocabularies kept): what the builder does, in seconds."""
    shape = cf.flow_shape(name)
    clip = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, projection_dim=16)
    t5 = dict(d_model=32, d_ff=64, d_kv=8, num_heads=4, num_layers=1)
    encoders = tuple((a, c, {**cfg, **(t5 if "d_model" in cfg else clip)}) for a, c, cfg in shape.encoders)
    t = dict(shape.transformer, num_layers=2, attention_head_dim=8, num_attention_heads=2, joint_attention_dim=32)
    if name == "flux":
        t.update(num_single_layers=1, pooled_projection_dim=16, axes_dims_rope=(2, 2, 4))
    else:
        t.update(caption_projection_dim=16, pooled_projection_dim=32, pos_embed_max_size=16, sample_size=16,
                 dual_attention_layers=(0,) if shape.transformer["dual_attention_layers"] else ())
    vae = dict(shape.vae, block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2,
               up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=4, layers_per_block=1)
    return replace(shape, name=name + "-narrow", transformer=t, encoders=encoders, vae=vae)


@pytest.mark.parametrize("name, family", [("sd35m", "sd3"), ("flux", "flux")])
def test_the_saved_folder_loads_in_bf16_as_its_family(tmp_path, name, family):
    from dbooth.families import family_of
    from dbooth.families.loading import load_pipeline

    folder = cf.save_flow_pipeline(narrow(name), tmp_path / "model")
    pipe = load_pipeline(str(folder), dtype=torch.bfloat16)
    assert family_of(pipe).name == family
    counts = cf.meta_flow_parameter_counts(narrow(name))
    for part, count in counts.items():
        model = getattr(pipe, part)
        assert {p.dtype for p in model.parameters()} == {torch.bfloat16}, part
        assert sum(p.numel() for p in model.parameters()) + sum(
            b.numel() for b in model.buffers() if b.is_floating_point()) == count, part
    assert pipe.scheduler.config.shift == 3.0
    assert cf.save_flow_pipeline(narrow(name), folder) == folder  # written once, reused after


def test_the_estimate_reads_a_saved_folder_as_the_meta_models(tmp_path):
    """static_memory builds a folder's parts from its configs: the same figures as the shape's meta models."""
    from dbooth.bench.flops import static_memory, static_memory_of
    from dbooth.workspace.config import Manifest, apply_overrides, manifest_to_dict

    train = manifest_to_dict(apply_overrides(Manifest(class_noun="dog"), {
        "train.method": "lora", "train.mixed_precision": "bf16", "train.resolution": 64}))["train"]
    folder = cf.save_flow_pipeline(narrow("sd35m"), tmp_path / "model")
    from_folder = static_memory(str(folder), train, "cuda", prior=True)
    m = cf.meta_flow_models(narrow("sd35m"))
    encoders = {k: v for k, v in m.items() if k.startswith("text_encoder")}
    assert from_folder == static_memory_of(m["transformer"], m["vae"], encoders, train, "cuda", prior=True)
    assert from_folder["family"] == "sd3" and from_folder["activations_plain_mb"] > 0
