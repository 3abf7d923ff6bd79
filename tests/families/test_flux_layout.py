"""BFL's FLUX layout as dbooth writes it, read back by diffusers' own single-file converter to the same tensors.

diffusers' converter splits the fused projections at FLUX.1's real widths (3072, MLP 12288), so the state
dict here has those output sizes; the input side is 1 wide (each row its own id), which the converter never
looks at, so the test stays small."""

from __future__ import annotations

import pytest
import torch
from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

from dbooth.families.flux_layout import flux_to_original

INNER, MLP, MOD = 3072, 12288, 6 * 3072


def _diffusers_state(guidance: bool) -> dict[str, torch.Tensor]:
    rows = {
        "transformer_blocks.0.norm1.linear": MOD, "transformer_blocks.0.norm1_context.linear": MOD,
        **{f"transformer_blocks.0.attn.{p}": INNER for p in ("to_q", "to_k", "to_v", "add_q_proj", "add_k_proj",
                                                            "add_v_proj", "to_add_out", "to_out.0")},
        "transformer_blocks.0.ff.net.0.proj": MLP, "transformer_blocks.0.ff.net.2": INNER,
        "transformer_blocks.0.ff_context.net.0.proj": MLP, "transformer_blocks.0.ff_context.net.2": INNER,
        "single_transformer_blocks.0.norm.linear": 3 * INNER, "single_transformer_blocks.0.proj_out": INNER,
        **{f"single_transformer_blocks.0.attn.{p}": INNER for p in ("to_q", "to_k", "to_v")},
        "single_transformer_blocks.0.proj_mlp": MLP,
        "time_text_embed.timestep_embedder.linear_1": INNER, "time_text_embed.timestep_embedder.linear_2": INNER,
        "time_text_embed.text_embedder.linear_1": INNER, "time_text_embed.text_embedder.linear_2": INNER,
        "context_embedder": INNER, "x_embedder": INNER, "proj_out": 64, "norm_out.linear": 2 * INNER,
    }
    if guidance:
        rows |= {"time_text_embed.guidance_embedder.linear_1": INNER, "time_text_embed.guidance_embedder.linear_2": INNER}
    state, counter = {}, 0
    for module, n in rows.items():
        for suffix in ("weight", "bias"):
            shape = (n, 1) if suffix == "weight" else (n,)
            state[f"{module}.{suffix}"] = torch.arange(counter, counter + n, dtype=torch.float64).reshape(shape)
            counter += n
    for block, names in (("transformer_blocks.0.attn", ("norm_q", "norm_k", "norm_added_q", "norm_added_k")),
                         ("single_transformer_blocks.0.attn", ("norm_q", "norm_k"))):
        for name in names:
            state[f"{block}.{name}.weight"] = torch.arange(counter, counter + 128, dtype=torch.float64)
            counter += 128
    return state


@pytest.mark.parametrize("guidance", [True, False])
def test_diffusers_reads_the_original_layout_back_to_the_same_tensors(guidance):
    state = _diffusers_state(guidance)
    original = flux_to_original(state)
    assert "double_blocks.0.img_attn.qkv.weight" in original and "single_blocks.0.linear1.bias" in original
    assert ("guidance_in.in_layer.weight" in original) == guidance
    back = convert_flux_transformer_checkpoint_to_diffusers({f"model.diffusion_model.{k}": v
                                                             for k, v in original.items()})
    assert back.keys() == state.keys()
    for key in state:
        assert torch.equal(back[key], state[key]), key


def test_a_tensor_without_a_place_is_refused():
    state = _diffusers_state(False) | {"extra.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match="extra.weight"):
        flux_to_original(state)


def test_a_file_in_this_layout_is_told_apart_as_flux():
    from dbooth.families import FLUX, family_from_keys

    assert family_from_keys(flux_to_original(_diffusers_state(True)).keys()) is FLUX
    assert family_from_keys(["model.diffusion_model.double_blocks.0.img_attn.qkv.weight"]) is FLUX
