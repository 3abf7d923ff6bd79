"""SD 3.5's original single-file layout as dbooth writes it, read back by diffusers' own converter, for a tiny
SD 3-shaped transformer with and without dual attention (SD 3.5 Medium's attn2) and qk norms."""

from __future__ import annotations

import pytest
import torch
from diffusers import SD3Transformer2DModel
from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers

from dbooth.families.sd3_layout import sd3_to_original


@pytest.mark.parametrize("medium", [False, True])
def test_diffusers_reads_the_original_layout_back_to_the_same_tensors(medium):
    torch.manual_seed(0)
    extra = {"dual_attention_layers": (0,), "qk_norm": "rms_norm"} if medium else {}
    model = SD3Transformer2DModel(sample_size=16, patch_size=2, in_channels=4, out_channels=4, num_layers=2,
                                  attention_head_dim=8, num_attention_heads=2, joint_attention_dim=32,
                                  caption_projection_dim=16, pooled_projection_dim=64, pos_embed_max_size=16, **extra)
    state = {k: torch.randn_like(v) for k, v in model.state_dict().items()}
    original = sd3_to_original(state)
    assert all(k.startswith("model.diffusion_model.") for k in original)
    assert ("model.diffusion_model.joint_blocks.0.x_block.attn2.qkv.weight" in original) == medium
    back = convert_sd3_transformer_checkpoint_to_diffusers(dict(original))
    assert back.keys() == state.keys()
    for key in state:
        assert torch.equal(back[key], state[key]), key


def test_a_file_in_this_layout_is_told_apart_as_sd3():
    from dbooth.families import SD3, family_from_keys

    keys = ["model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight", "model.diffusion_model.pos_embed"]
    assert family_from_keys(keys) is SD3
