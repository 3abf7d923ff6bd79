"""FLUX.1's transformer in BFL's original key layout (``double_blocks.N.img_attn.qkv.weight`` ...), the layout
ComfyUI's diffusion-model loader, Forge and ``FluxTransformer2DModel.from_single_file`` read.

One table per block says which diffusers tensors make each original one: most are renamed, the fused
projections are diffusers' separate ones stacked along the output dimension (``qkv`` = q, k, v; a single
block's ``linear1`` = q, k, v and the MLP input), and the final modulation stores (shift, scale) where
diffusers stores (scale, shift). The same table converts both ways; a test checks it against diffusers' own
reader (``convert_flux_transformer_checkpoint_to_diffusers``).
"""

from __future__ import annotations

import torch

# original module -> the diffusers modules stacked into it (one: a rename); ".scale" params are norms' weights
_DOUBLE = {
    "img_mod.lin": ["norm1.linear"], "txt_mod.lin": ["norm1_context.linear"],
    "img_attn.qkv": ["attn.to_q", "attn.to_k", "attn.to_v"],
    "txt_attn.qkv": ["attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"],
    "img_attn.proj": ["attn.to_out.0"], "txt_attn.proj": ["attn.to_add_out"],
    "img_mlp.0": ["ff.net.0.proj"], "img_mlp.2": ["ff.net.2"],
    "txt_mlp.0": ["ff_context.net.0.proj"], "txt_mlp.2": ["ff_context.net.2"],
}
_DOUBLE_NORMS = {"img_attn.norm.query_norm": "attn.norm_q", "img_attn.norm.key_norm": "attn.norm_k",
                 "txt_attn.norm.query_norm": "attn.norm_added_q", "txt_attn.norm.key_norm": "attn.norm_added_k"}
_SINGLE = {"modulation.lin": ["norm.linear"], "linear1": ["attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"],
           "linear2": ["proj_out"]}
_SINGLE_NORMS = {"norm.query_norm": "attn.norm_q", "norm.key_norm": "attn.norm_k"}
_TOP = {
    "time_in.in_layer": ["time_text_embed.timestep_embedder.linear_1"],
    "time_in.out_layer": ["time_text_embed.timestep_embedder.linear_2"],
    "vector_in.in_layer": ["time_text_embed.text_embedder.linear_1"],
    "vector_in.out_layer": ["time_text_embed.text_embedder.linear_2"],
    "guidance_in.in_layer": ["time_text_embed.guidance_embedder.linear_1"],
    "guidance_in.out_layer": ["time_text_embed.guidance_embedder.linear_2"],
    "txt_in": ["context_embedder"], "img_in": ["x_embedder"], "final_layer.linear": ["proj_out"],
}
_SWAPPED = {"final_layer.adaLN_modulation.1": "norm_out.linear"}  # (shift, scale) vs diffusers' (scale, shift)


def _pairs(state: dict) -> list[tuple[str, list[str], str]]:
    """(original name, diffusers names, parameter suffix) for every tensor of a diffusers FLUX state dict."""
    blocks = {int(k.split(".")[1]) for k in state if k.startswith("transformer_blocks.")}
    singles = {int(k.split(".")[1]) for k in state if k.startswith("single_transformer_blocks.")}
    out = []
    for prefix, table, norms, indices, original in (
            ("transformer_blocks", _DOUBLE, _DOUBLE_NORMS, blocks, "double_blocks"),
            ("single_transformer_blocks", _SINGLE, _SINGLE_NORMS, singles, "single_blocks")):
        for i in sorted(indices):
            for name, parts in table.items():
                for suffix in ("weight", "bias"):
                    out.append((f"{original}.{i}.{name}.{suffix}", [f"{prefix}.{i}.{p}.{suffix}" for p in parts], suffix))
            for name, part in norms.items():
                out.append((f"{original}.{i}.{name}.scale", [f"{prefix}.{i}.{part}.weight"], "scale"))
    for name, parts in _TOP.items():
        for suffix in ("weight", "bias"):
            if f"{parts[0]}.{suffix}" in state:  # guidance_in: dev only
                out.append((f"{name}.{suffix}", [f"{p}.{suffix}" for p in parts], suffix))
    return out


def flux_to_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A diffusers ``FluxTransformer2DModel`` state dict in BFL's layout (no prefix)."""
    out = {name: torch.cat([state[p] for p in parts]) if len(parts) > 1 else state[parts[0]]
           for name, parts, _ in _pairs(state)}
    for name, part in _SWAPPED.items():
        for suffix in ("weight", "bias"):
            scale, shift = state[f"{part}.{suffix}"].chunk(2, dim=0)
            out[f"{name}.{suffix}"] = torch.cat([shift, scale])
    used = {p for _, parts, _ in _pairs(state) for p in parts} | {f"{p}.{s}" for p in _SWAPPED.values()
                                                                  for s in ("weight", "bias")}
    missing = sorted(set(state) - used)
    if missing:
        raise ValueError(f"FLUX tensors with no place in BFL's layout: {', '.join(missing[:5])}")
    return out
