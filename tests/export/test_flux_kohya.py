"""FLUX LoRAs in BFL's fused layout (ComfyUI, Forge, kohya sd-scripts): read back by diffusers' own kohya-FLUX
converter (``FluxPipeline.lora_state_dict``) to the same per-module deltas, at FLUX.1's real widths."""

from __future__ import annotations

import pytest
import torch
from diffusers import FluxPipeline
from safetensors.torch import save_file

from dbooth.export.flux_kohya import bfl_module, flux_lora_to_bfl
from dbooth.export.lora_file import LoraComponent
from dbooth.util.errors import DboothError

FLUX_DEV = {"num_attention_heads": 24, "attention_head_dim": 128}  # inner width 3072, MLP 12288
INNER, MLP = 3072, 12288
SHAPES = {  # module -> (in, out)
    "transformer_blocks.0.attn.to_q": (INNER, INNER), "transformer_blocks.0.attn.to_k": (INNER, INNER),
    "transformer_blocks.0.attn.to_v": (INNER, INNER), "transformer_blocks.0.attn.to_out.0": (INNER, INNER),
    "transformer_blocks.0.attn.add_q_proj": (INNER, INNER), "transformer_blocks.0.attn.add_k_proj": (INNER, INNER),
    "transformer_blocks.0.attn.add_v_proj": (INNER, INNER), "transformer_blocks.0.attn.to_add_out": (INNER, INNER),
    "single_transformer_blocks.0.attn.to_q": (INNER, INNER), "single_transformer_blocks.0.attn.to_k": (INNER, INNER),
    "single_transformer_blocks.0.attn.to_v": (INNER, INNER), "single_transformer_blocks.0.proj_mlp": (INNER, MLP),
    "single_transformer_blocks.0.proj_out": (INNER + MLP, INNER),
}


def _component(rank=2, alpha=4.0, skip=()):
    g = torch.Generator().manual_seed(0)
    modules = {m: (torch.randn(rank, i, generator=g), torch.randn(o, rank, generator=g))
               for m, (i, o) in SHAPES.items() if m not in skip}
    return LoraComponent("transformer", modules, {"r": rank, "lora_alpha": alpha})


@pytest.mark.parametrize("skip", [(), ("single_transformer_blocks.0.proj_mlp",)])
def test_diffusers_reads_the_fused_file_back_to_the_same_deltas(tmp_path, skip):
    component = _component(skip=skip)
    path = tmp_path / "bfl.safetensors"
    save_file(flux_lora_to_bfl(component, FLUX_DEV), str(path))
    state = FluxPipeline.lora_state_dict(str(path))
    state = state[0] if isinstance(state, tuple) else state
    for module, (down, up) in component.modules.items():
        a, b = state[f"transformer.{module}.lora_A.weight"], state[f"transformer.{module}.lora_B.weight"]
        # diffusers folds alpha / rank into A and B (alpha=4, rank 2: scale 2)
        torch.testing.assert_close(b.float() @ a.float(), 2.0 * up @ down, rtol=1e-4, atol=1e-3)
    if skip:  # an MLP part without an adapter gets zero rows: diffusers splits out a zero delta there
        b = state.get("transformer.single_transformer_blocks.0.proj_mlp.lora_B.weight")
        assert b is None or not b.any()


def test_modules_outside_the_blocks_are_refused_with_a_way_out():
    assert bfl_module("transformer_blocks.3.attn.add_k_proj") == ("double_blocks.3.txt_attn.qkv", 1)
    assert bfl_module("single_transformer_blocks.7.proj_out") == ("single_blocks.7.linear2", None)
    with pytest.raises(DboothError, match="export --format lora"):
        bfl_module("x_embedder")
