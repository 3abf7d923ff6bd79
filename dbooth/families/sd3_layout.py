"""SD 3 / 3.5's transformer (MMDiT) in Stability's original key layout under ``model.diffusion_model.``
(``joint_blocks.N.x_block.attn.qkv.weight`` ...), as ComfyUI's loaders and ``SD3Transformer2DModel.from_single_file``
read it.

As for FLUX (``flux_layout``): one table per block, fused ``qkv`` = diffusers' q, k, v stacked, and the
modulations that store (shift, scale) where diffusers has (scale, shift): the final layer's and the last block's
context modulation (that block only conditions the image stream: ``context_pre_only``). A test checks the
table against diffusers' own reader (``convert_sd3_transformer_checkpoint_to_diffusers``).
"""

from __future__ import annotations

import torch

PREFIX = "model.diffusion_model."
_X = {"attn.qkv": ["attn.to_q", "attn.to_k", "attn.to_v"], "attn.proj": ["attn.to_out.0"],
      "adaLN_modulation.1": ["norm1.linear"], "mlp.fc1": ["ff.net.0.proj"], "mlp.fc2": ["ff.net.2"]}
_X2 = {"attn2.qkv": ["attn2.to_q", "attn2.to_k", "attn2.to_v"], "attn2.proj": ["attn2.to_out.0"]}
_CONTEXT = {"attn.qkv": ["attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"], "attn.proj": ["attn.to_add_out"],
            "adaLN_modulation.1": ["norm1_context.linear"], "mlp.fc1": ["ff_context.net.0.proj"],
            "mlp.fc2": ["ff_context.net.2"]}
_NORMS = {"x_block.attn.ln_q": "attn.norm_q", "x_block.attn.ln_k": "attn.norm_k",
          "context_block.attn.ln_q": "attn.norm_added_q", "context_block.attn.ln_k": "attn.norm_added_k",
          "x_block.attn2.ln_q": "attn2.norm_q", "x_block.attn2.ln_k": "attn2.norm_k"}
_TOP = {"x_embedder.proj": "pos_embed.proj", "t_embedder.mlp.0": "time_text_embed.timestep_embedder.linear_1",
        "t_embedder.mlp.2": "time_text_embed.timestep_embedder.linear_2", "context_embedder": "context_embedder",
        "y_embedder.mlp.0": "time_text_embed.text_embedder.linear_1",
        "y_embedder.mlp.2": "time_text_embed.text_embedder.linear_2", "final_layer.linear": "proj_out"}


def _swap(t: torch.Tensor) -> torch.Tensor:
    first, second = t.chunk(2, dim=0)
    return torch.cat([second, first])


def _block(state: dict, i: int, last: bool) -> dict:
    src, out = f"transformer_blocks.{i}.", {}
    tables = [("x_block", _X), ("x_block", _X2), ("context_block", _CONTEXT)]
    for side, table in tables:
        for name, parts in table.items():
            for suffix in ("weight", "bias"):
                keys = [f"{src}{p}.{suffix}" for p in parts]
                if all(k in state for k in keys):
                    value = torch.cat([state[k] for k in keys])
                    # the last block's context modulation has only (scale, shift), stored the other way round
                    swap = last and side == "context_block" and name == "adaLN_modulation.1"
                    out[f"joint_blocks.{i}.{side}.{name}.{suffix}"] = _swap(value) if swap else value
    for name, part in _NORMS.items():
        if f"{src}{part}.weight" in state:
            out[f"joint_blocks.{i}.{name}.weight"] = state[f"{src}{part}.weight"]
    return out


def sd3_to_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A diffusers ``SD3Transformer2DModel`` state dict in the original layout, keys under ``model.diffusion_model.``."""
    blocks = sorted({int(k.split(".")[1]) for k in state if k.startswith("transformer_blocks.")})
    out = {"pos_embed": state["pos_embed.pos_embed"]}
    for name, part in _TOP.items():
        for suffix in ("weight", "bias"):
            out[f"{name}.{suffix}"] = state[f"{part}.{suffix}"]
    for suffix in ("weight", "bias"):
        out[f"final_layer.adaLN_modulation.1.{suffix}"] = _swap(state[f"norm_out.linear.{suffix}"])
    for i in blocks:
        out |= _block(state, i, last=i == blocks[-1])
    placed = sum(t.numel() for t in out.values())
    if placed != sum(t.numel() for t in state.values()):
        raise ValueError("SD 3 tensors with no place in the original layout: the transformer is not SD 3-shaped")
    return {PREFIX + k: v for k, v in out.items()}
