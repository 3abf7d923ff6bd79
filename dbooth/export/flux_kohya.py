"""A FLUX.1 LoRA in the layout ComfyUI, Forge and kohya sd-scripts read: BFL's module names, fused projections.

BFL's transformer computes a double block's image query, key and value with one ``img_attn.qkv`` linear (the
text stream's with ``txt_attn.qkv``), and a single block's query, key, value and MLP input with one
``linear1``; diffusers splits each into separate linears, and so do the adapters dbooth trains. A set of
split adapters ``(down_i, up_i)`` on the parts of one fused linear is exactly one adapter on it with
``down = [down_1; down_2; ...]`` (rank = the sum of ranks) and ``up`` block-diagonal (each part's rows
take only its own ``down`` rows; parts without an adapter get zero rows). Its alpha keeps every part's scale:
``alpha / rank_total = scale``. diffusers' kohya-FLUX reader recognises the block-diagonal ``up`` and
splits it back (``FluxPipeline.lora_state_dict``); a test proves the round trip gives the same outputs.

Names: ``lora_unet_double_blocks_N_img_attn_qkv`` ... with ``.lora_down.weight``, ``.lora_up.weight`` and
``.alpha``; CLIP-L's adapters as ``lora_te1_text_model_encoder_layers_N_self_attn_q_proj``.
"""

from __future__ import annotations

import re

import torch

from dbooth.util.errors import DboothError

# diffusers module (after the block prefix) -> (BFL module, part of the fused linear or None)
_DOUBLE = {
    "attn.to_q": ("img_attn.qkv", 0), "attn.to_k": ("img_attn.qkv", 1), "attn.to_v": ("img_attn.qkv", 2),
    "attn.to_out.0": ("img_attn.proj", None),
    "attn.add_q_proj": ("txt_attn.qkv", 0), "attn.add_k_proj": ("txt_attn.qkv", 1),
    "attn.add_v_proj": ("txt_attn.qkv", 2), "attn.to_add_out": ("txt_attn.proj", None),
    "ff.net.0.proj": ("img_mlp.0", None), "ff.net.2": ("img_mlp.2", None),
    "ff_context.net.0.proj": ("txt_mlp.0", None), "ff_context.net.2": ("txt_mlp.2", None),
    "norm1.linear": ("img_mod.lin", None), "norm1_context.linear": ("txt_mod.lin", None),
}
_SINGLE = {
    "attn.to_q": ("linear1", 0), "attn.to_k": ("linear1", 1), "attn.to_v": ("linear1", 2),
    "proj_mlp": ("linear1", 3), "proj_out": ("linear2", None), "norm.linear": ("modulation.lin", None),
}
_BLOCK = re.compile(r"(transformer_blocks|single_transformer_blocks)\.(\d+)\.(.+)")


def bfl_module(module: str) -> tuple[str, int | None]:
    """BFL's module name for a diffusers FLUX transformer module, and its part of a fused linear (or None)."""
    found = _BLOCK.fullmatch(module)
    table = (_DOUBLE if found.group(1) == "transformer_blocks" else _SINGLE) if found else {}
    if not found or found.group(3) not in table:
        raise DboothError(f"FLUX LoRA module {module!r} has no name in BFL's layout (ComfyUI, Forge and kohya "
                          "read blocks only); train without it or export --format lora")
    name, part = table[found.group(3)]
    kind = "double_blocks" if found.group(1) == "transformer_blocks" else "single_blocks"
    return f"{kind}.{found.group(2)}.{name}", part


def fused_part_sizes(transformer_config: dict) -> dict[str, list[int]]:
    """Output rows of each part of the fused linears: qkv = 3 x inner; linear1 = 3 x inner + mlp."""
    inner = transformer_config["num_attention_heads"] * transformer_config["attention_head_dim"]
    mlp = int(inner * transformer_config.get("mlp_ratio", 4.0))
    return {"img_attn.qkv": [inner] * 3, "txt_attn.qkv": [inner] * 3, "linear1": [inner] * 3 + [mlp]}


def flux_lora_to_bfl(component, transformer_config: dict) -> dict[str, torch.Tensor]:
    """The transformer adapters of ``component`` (a ``LoraComponent``) as BFL-named kohya tensors."""
    sizes = fused_part_sizes(transformer_config)
    fused: dict[str, dict[int, str]] = {}
    out: dict[str, torch.Tensor] = {}
    for module in component.modules:
        name, part = bfl_module(module)
        if part is None:
            down, up = component.modules[module]
            _put(out, name, down, up, component.scale(module) * down.shape[0])
        else:
            fused.setdefault(name, {})[part] = module
    for name, parts in fused.items():
        down, up, alpha = _fuse(component, parts, sizes[name.split(".", 2)[-1]])
        _put(out, name, down, up, alpha)
    return out


def _fuse(component, parts: dict[int, str], rows: list[int]):
    scales = {component.scale(m) for m in parts.values()}
    if len(scales) != 1:
        raise DboothError("the parts of one fused FLUX projection have different LoRA scales; "
                          "BFL's layout holds one alpha per fused linear: export --format lora")
    downs = [component.modules[parts[i]][0] for i in sorted(parts)]
    rank = sum(d.shape[0] for d in downs)
    up = torch.zeros(sum(rows), rank, dtype=downs[0].dtype)
    col, starts = 0, [sum(rows[:i]) for i in range(len(rows))]
    for i in sorted(parts):
        d, u = component.modules[parts[i]]
        up[starts[i]: starts[i] + rows[i], col: col + d.shape[0]] = u
        col += d.shape[0]
    return torch.cat(downs), up, scales.pop() * rank


def _put(out: dict, name: str, down: torch.Tensor, up: torch.Tensor, alpha: float) -> None:
    key = "lora_unet_" + name.replace(".", "_")
    out[f"{key}.lora_down.weight"] = down.contiguous()
    out[f"{key}.lora_up.weight"] = up.contiguous()
    out[f"{key}.alpha"] = torch.tensor(float(alpha))
