"""Rewrite a diffusers-format LoRA in the kohya-ss / AUTOMATIC1111 / ComfyUI key layout.

Each adapted module ``M`` becomes three tensors: ``<name>.lora_down.weight`` (peft's lora_A),
``<name>.lora_up.weight`` (lora_B) and ``<name>.alpha``; those tools apply ``up @ down * alpha / rank``.
``<name>`` is the diffusers module path with dots turned into underscores, behind ``lora_unet_`` or
``lora_te_``: for SD1.x this is what sd-scripts writes (its UNet uses diffusers' block names, e.g.
``lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q``) and what diffusers'
``_convert_non_diffusers_lora_to_diffusers`` reads back. Text-encoder names keep CLIP's ``text_model_``
prefix (``lora_te_text_model_encoder_layers_0_self_attn_q_proj``) even where transformers>=5 dropped it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from dbooth.export.dtypes import cast_floats
from dbooth.export.lora_file import LoraFile
from dbooth.fsutil import atomic_path

PREFIXES = {"unet": "lora_unet_", "text_encoder": "lora_te_"}


def kohya_name(component: str, module: str) -> str:
    if component == "text_encoder" and not module.startswith("text_model."):
        module = f"text_model.{module}"
    return PREFIXES[component] + module.replace(".", "_")


def lora_to_kohya(lora: LoraFile) -> dict[str, torch.Tensor]:
    """Kohya-layout tensors; each module's alpha is chosen so alpha / rank equals peft's scaling for it."""
    out: dict[str, torch.Tensor] = {}
    for component in lora.components.values():
        for module, (down, up) in component.modules.items():
            name = kohya_name(component.name, module)
            out[f"{name}.lora_down.weight"] = down
            out[f"{name}.lora_up.weight"] = up
            out[f"{name}.alpha"] = torch.tensor(component.scale(module) * component.rank(module))
    return out


def kohya_metadata(lora: LoraFile, *, base_model: str, output_name: str, steps: int, comment: str) -> dict[str, str]:
    """The ``ss_*`` keys kohya tools and AUTOMATIC1111's LoRA browser read (values are strings)."""
    any_component = next(iter(lora.components.values()))
    any_module = next(iter(any_component.modules))
    return {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(any_component.rank(any_module)),
        "ss_network_alpha": f"{any_component.scale(any_module) * any_component.rank(any_module):g}",
        "ss_network_train_unet_only": str("text_encoder" not in lora.components),
        "ss_base_model_version": "sd_v1",
        "ss_v2": "False",
        "ss_sd_model_name": base_model,
        "ss_output_name": output_name,
        "ss_max_train_steps": str(steps),
        "ss_training_comment": comment,
    }


def save_kohya_lora(
    lora: LoraFile, path: str | Path, *, dtype: torch.dtype = torch.float32, metadata: dict[str, str] | None = None
) -> Path:
    """Write ``lora`` to ``path`` in kohya layout (weights in ``dtype``, alphas kept float32)."""
    path = Path(path)
    tensors = lora_to_kohya(lora)
    weights = cast_floats({k: v for k, v in tensors.items() if not k.endswith(".alpha")}, dtype)
    alphas = {k: v.to(torch.float32) for k, v in tensors.items() if k.endswith(".alpha")}
    with atomic_path(path) as tmp:
        save_file(weights | alphas, str(tmp), metadata={"format": "pt", **(metadata or {})})
    return path
